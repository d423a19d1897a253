"""The transformer feed-forward block."""

import math

import jax
import jax.numpy as jnp
from flax import nnx

from papers_jax.core import sharding
from papers_jax.nn.activations import relu
from papers_jax.nn.drop import Dropout
from papers_jax.nn.linear import Dense
from papers_jax.nn.remat import MLP_HIDDEN, checkpoint_name


def gelu(x):
  """Exact GELU, x·Φ(x) = x/2·(1 + erf(x/√2)): PyTorch's nn.GELU default, in PyTorch's form.

  `jax.nn.gelu(approximate=False)` writes Φ with erfc, which XLA's CPU backend evaluates with an
  exponential and a two-branch select in separate fusions; erf is a single rational polynomial.
  """
  return 0.5 * x * (1.0 + jax.lax.erf(x * (1.0 / math.sqrt(2.0))))


ACTIVATIONS = {
    "gelu": gelu,  # timm / PyTorch nn.GELU default (erf)
    "gelu_tanh": lambda x: jax.nn.gelu(x, approximate=True),
    "relu": relu,
    "silu": jax.nn.silu,
    "quick_gelu": lambda x: x * jax.nn.sigmoid(1.702 * x),  # CLIP's sigmoid approximation of GELU
}


class Mlp(nnx.Module):
  """fc1 → activation → dropout → fc2 → dropout (timm's `Mlp`).

  `embed_axis` names the logical axis of the input/output features (None for MLP-Mixer's token
  mixing, whose features are token positions); `kernel_init` / `bias_init` default to
  Xavier-uniform / N(0, 1e-6).
  """

  def __init__(self, dim: int, hidden_dim: int, *, act: str = "gelu", drop: float = 0.0, bias: bool = True,
               embed_axis: str | None = "embed", kernel_init=None, bias_init=None, dtype=None,
               param_dtype=jnp.float32, rngs: nnx.Rngs):
    if act not in ACTIVATIONS:
      raise ValueError(f"unknown activation {act!r}; choose from {sorted(ACTIVATIONS)}")
    self.act = act
    # Small normal biases as in the ViT reference implementation (big_vision MlpBlock).
    bias_init = bias_init or nnx.initializers.normal(1e-6)
    kw = dict(use_bias=bias, kernel_init=kernel_init, bias_init=bias_init, dtype=dtype, param_dtype=param_dtype,
              rngs=rngs)
    self.fc1 = Dense(dim, hidden_dim, axes=(embed_axis, "mlp"), **kw)
    self.drop1 = Dropout(drop)
    self.fc2 = Dense(hidden_dim, dim, axes=("mlp", embed_axis), **kw)
    self.drop2 = Dropout(drop)

  def __call__(self, x, *, deterministic: bool | None = None, rngs: nnx.Rngs | None = None):
    h = checkpoint_name(ACTIVATIONS[self.act](self.fc1(x)), MLP_HIDDEN)
    h = sharding.constrain(h, ("act_batch", "act_len", "act_mlp"))
    h = self.drop1(h, deterministic=deterministic, rngs=rngs)
    return self.drop2(self.fc2(h), deterministic=deterministic, rngs=rngs)
