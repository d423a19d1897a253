"""Projection, prediction and prototype heads of the self-supervised methods (tasks/ssl/).

`MLPHead`: the projector / predictor MLPs of SimCLR, MoCo, BYOL, SimSiam, SwAV, InstDisc and CMC.
`WeightNormDense`: SwAV's prototypes and DINO's last layer, each output unit's weight vector
normalised at use. `DINOHead`: DINO's 3-layer MLP → bottleneck → L2 → weight-normalised layer.
"""

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from papers_jax.nn.linear import Dense, param
from papers_jax.nn.mlp import gelu
from papers_jax.nn.norms import BatchNorm
from papers_jax.objectives.contrastive import l2_normalize


class MLPHead(nnx.Module):
  """(Linear → BatchNorm → ReLU) × (layers − 1) → Linear [→ BatchNorm]: the projector/predictor
  MLPs of SimCLR, MoCo v2/v3, BYOL, SimSiam and SwAV (`layers=1`: MoCo v1's / InstDisc's linear
  projection)."""

  def __init__(self, in_dim: int, hidden: int, out_dim: int, *, layers: int = 2, bn: bool = True,
               last_bn: bool = False, last_bn_affine: bool = False, rngs: nnx.Rngs):
    dims = [in_dim] + [hidden] * (layers - 1) + [out_dim]
    self.linears = nnx.List([Dense(a, b, axes=("embed", "mlp") if i < layers - 1 else ("mlp", "embed"),
                                   use_bias=not bn, rngs=rngs) for i, (a, b) in enumerate(zip(dims, dims[1:]))])
    self.norms = nnx.List([BatchNorm(hidden, rngs=rngs) for _ in range(layers - 1)] if bn else [])
    self.last_norm = (BatchNorm(out_dim, use_scale=last_bn_affine, use_bias=last_bn_affine, rngs=rngs)
                      if last_bn else None)

  def __call__(self, x, *, train: bool):
    for i, linear in enumerate(self.linears):
      x = linear(x)
      if i < len(self.linears) - 1:
        x = jax.nn.relu(self.norms[i](x, train=train) if len(self.norms) else x)
    if self.last_norm is not None:
      x = self.last_norm(x, train=train)
    return x


def _torch_linear_init(key, shape, dtype=jnp.float32):
  """nn.Linear's default weight init, U(±1/√fan_in), for an (in, out) kernel."""
  bound = 1.0 / np.sqrt(shape[0])
  return jax.random.uniform(key, shape, dtype, -bound, bound)


def unit_columns_init(key, shape, dtype=jnp.float32):
  """nn.Linear's init with every output unit's weight vector scaled to norm 1 (SwAV's prototypes
  after the first normalisation)."""
  return l2_normalize(_torch_linear_init(key, shape), axis=0).astype(dtype)


class WeightNormDense(nnx.Module):
  """y = x · (v / ‖v‖)·g without bias, each output unit's weight vector normalised at use
  (`torch.nn.utils.weight_norm(nn.Linear(in, out, bias=False))`). `fixed_scale`: no gain
  parameter, g ≡ 1 (DINO's `norm_last_layer`; SwAV's unit-norm prototypes)."""

  def __init__(self, in_dim: int, out_dim: int, *, fixed_scale: bool = True, kernel_init=_torch_linear_init,
               rngs: nnx.Rngs):
    self.kernel = param(rngs, kernel_init, (in_dim, out_dim), jnp.float32, ("embed", "vocab"))
    self.scale = None if fixed_scale else param(rngs, nnx.initializers.ones, (out_dim,), jnp.float32, ("vocab",))

  def weight(self, frozen=False):
    """The effective (in, out) weight; `frozen` (a traced bool) stops its gradient."""
    v, g = self.kernel[...], None if self.scale is None else self.scale[...]
    if frozen is not False:  # SwAV's freeze_prototypes_niters / DINO's freeze_last_layer
      v = jnp.where(frozen, jax.lax.stop_gradient(v), v)
      g = None if g is None else jnp.where(frozen, jax.lax.stop_gradient(g), g)
    w = l2_normalize(v, axis=0)
    return w if g is None else w * g

  def __call__(self, x, *, frozen=False):
    return x.astype(jnp.float32) @ self.weight(frozen)


class DINOHead(nnx.Module):
  """DINO's head: (Linear [→ BatchNorm] → GELU) × (layers − 1) → Linear to the bottleneck,
  L2-normalise, then a weight-normalised Linear to K outputs. Linear weights trunc-normal(0.02),
  biases 0, as the reference's `_init_weights`; the last layer keeps nn.Linear's default init.
  `bn`: the reference's `use_bn_in_head` (off by default)."""

  def __init__(self, in_dim: int, hidden: int, bottleneck: int, out_dim: int, *, layers: int = 3,
               bn: bool = False, norm_last_layer: bool = True, rngs: nnx.Rngs):
    dims = [in_dim] + [hidden] * (layers - 1) + [bottleneck]
    init = nnx.initializers.truncated_normal(0.02)
    self.linears = nnx.List([Dense(a, b, axes=("embed", "mlp") if i < layers - 1 else ("mlp", "embed"),
                                   kernel_init=init, rngs=rngs) for i, (a, b) in enumerate(zip(dims, dims[1:]))])
    self.norms = nnx.List([BatchNorm(hidden, rngs=rngs) for _ in range(layers - 1)] if bn else [])
    self.last_layer = WeightNormDense(bottleneck, out_dim, fixed_scale=norm_last_layer, rngs=rngs)

  def __call__(self, x, *, train: bool, freeze_last_layer=False):
    for i, linear in enumerate(self.linears):
      x = linear(x)
      if i < len(self.linears) - 1:
        x = self.norms[i](x, train=train) if len(self.norms) else x
        x = gelu(x)  # torch's nn.GELU
    return self.last_layer(l2_normalize(x), frozen=freeze_last_layer)
