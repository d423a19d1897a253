"""TS2Vec's encoder ("TS2Vec: Towards Universal Representation of Time Series", Yue et al., AAAI 2022).

A linear input projection of each timestamp, then a stack of residual blocks of two dilated 1-D convolutions
(kernel 3, dilation 2^i in block i, GELU before each; a 1×1 projection on the residual where the width
changes and on the last block), and dropout 0.1 on the output: (batch, T, channels) → (batch, T, output_dims).
The paper's sizes: hidden 64, 10 blocks plus the output block, 320 output dimensions.

Missing observations (NaN) are zeroed before the projection and their projected features zeroed after it.
In training, timestamp masking zeroes the projected features of timestamps drawn with probability ½
(`mask_mode="binomial"`, the paper's) or in 5 spans of 10% of the length ("continuous").

`valid` (batch, T) restricts every convolution to a segment of each row: the features outside it are
zeroed before each convolution, so the outputs inside it equal those of the segment cropped out and
encoded alone (each convolution's zero padding falls where the crop's would). The task crops TS2Vec's two
overlapping contexts this way at a fixed array length, so a jitted step sees one shape whatever the crop.

Initialisation is torch's default (U(±1/√fan_in) for weights and biases), as the official code.
"""

import math

import jax
import jax.numpy as jnp
from flax import nnx

from papers_jax.models import conv_flops
from papers_jax.models.registry import register
from papers_jax.nn.conv import Conv1D
from papers_jax.nn.linear import Dense

MASK_MODES = ("binomial", "continuous", "all_true")


def _torch_uniform(fan_in: int):
  bound = 1.0 / math.sqrt(fan_in)
  return lambda key, shape, dtype=jnp.float32: jax.random.uniform(key, shape, dtype, -bound, bound)


def continuous_mask(key, batch: int, length: int, spans: int = 5, fraction: float = 0.1):
  """(batch, length) bool, False on `spans` spans of round-down(fraction · length) steps per row (the
  official generate_continuous_mask)."""
  n = max(min(spans, length // 2), 1)
  span = max(int(fraction * length), 1)
  starts = jax.random.randint(key, (batch, n), 0, length - span + 1)
  t = jnp.arange(length)
  hit = (t[None, None] >= starts[..., None]) & (t[None, None] < starts[..., None] + span)
  return ~hit.any(1)


class DilatedBlock(nnx.Module):
  def __init__(self, cin: int, cout: int, dilation: int, final: bool, *, dtype, param_dtype, rngs: nnx.Rngs):
    conv = lambda i, o, k: Conv1D(i, o, k, padding=dilation if k == 3 else 0,  # noqa: E731
                                  dilation=dilation if k == 3 else 1, kernel_init=_torch_uniform(i * k),
                                  bias_init=_torch_uniform(i * k), dtype=dtype, param_dtype=param_dtype, rngs=rngs)
    self.conv1 = conv(cin, cout, 3)
    self.conv2 = conv(cout, cout, 3)
    self.projector = conv(cin, cout, 1) if cin != cout or final else None

  def __call__(self, x, keep):
    x = x * keep
    residual = x if self.projector is None else self.projector(x)
    h = self.conv1(jax.nn.gelu(x, approximate=False))
    h = self.conv2(jax.nn.gelu(h, approximate=False) * keep)
    return h + residual


class TS2VecEncoder(nnx.Module):
  def __init__(self, *, input_dims: int = 1, output_dims: int = 320, hidden_dims: int = 64, depth: int = 10,
               mask_mode: str = "binomial", dropout: float = 0.1, dtype=None, param_dtype=jnp.float32,
               rngs: nnx.Rngs):
    if mask_mode not in MASK_MODES:
      raise ValueError(f"mask_mode={mask_mode!r}; choose one of {MASK_MODES}")
    self.input_dims, self.output_dims, self.mask_mode = input_dims, output_dims, mask_mode
    self.input_fc = Dense(input_dims, hidden_dims, axes=(None, "mlp"), kernel_init=_torch_uniform(input_dims),
                          bias_init=_torch_uniform(input_dims), dtype=dtype, param_dtype=param_dtype, rngs=rngs)
    widths = [hidden_dims] * depth + [output_dims]
    self.blocks = nnx.List([
        DilatedBlock(widths[i - 1] if i else hidden_dims, widths[i], 2 ** i, i == len(widths) - 1, dtype=dtype,
                     param_dtype=param_dtype, rngs=rngs) for i in range(len(widths))])
    self.dropout = nnx.Dropout(dropout)

  def __call__(self, x, *, valid=None, train: bool = False, rngs: nnx.Rngs | None = None):
    """x (batch, T, input_dims) with NaN for missing values; `valid` (batch, T) bool or None."""
    observed = ~jnp.isnan(x).any(-1)
    h = self.input_fc(jnp.where(observed[..., None], x, 0.0))
    keep = observed
    if train and self.mask_mode != "all_true":
      key = rngs.mask()
      if self.mask_mode == "binomial":
        keep = keep & jax.random.bernoulli(key, 0.5, observed.shape)
      else:
        keep = keep & continuous_mask(key, *observed.shape)
    h = h * keep[..., None].astype(h.dtype)
    segment = (jnp.ones_like(observed) if valid is None else valid)[..., None].astype(h.dtype)
    for block in self.blocks:
      h = block(h, segment)
    return self.dropout(h, deterministic=not train, rngs=rngs)


class TS2VecClassifier(TS2VecEncoder):
  """The encoder (its parameters where a TS2Vec run keeps them, so `init_from` reads its checkpoint as it is)
  with a linear classifier `head` and a two-layer projection `projector` (for a contrastive loss) on the
  representation max-pooled over time."""

  def __init__(self, *, num_classes: int = 2, output_dims: int = 320, projection_dims: int = 128, dtype=None,
               param_dtype=jnp.float32, rngs: nnx.Rngs, **encoder):
    super().__init__(output_dims=output_dims, dtype=dtype, param_dtype=param_dtype, rngs=rngs, **encoder)
    dense = lambda i, o: Dense(i, o, axes=(None, None), kernel_init=_torch_uniform(i),  # noqa: E731
                               bias_init=_torch_uniform(i), dtype=dtype, param_dtype=param_dtype, rngs=rngs)
    self.head = dense(output_dims, num_classes)
    self.projector = nnx.Sequential(dense(output_dims, output_dims), jax.nn.relu, dense(output_dims, projection_dims))

  def features(self, x, *, train: bool = False, rngs: nnx.Rngs | None = None):
    """(batch, output_dims): the encoder's output max-pooled over time."""
    return super().__call__(x, train=train, rngs=rngs).max(axis=1)

  def __call__(self, x, *, train: bool = False, rngs: nnx.Rngs | None = None):
    """Class logits of each series."""
    return self.head(self.features(x, train=train, rngs=rngs))


def forward_flops(model, *, seq_len: int | None = None) -> float:
  """FLOPs of encoding one series of `seq_len` steps, read off the traced eval-mode forward
  (models/conv_flops.py): convolutions and matmuls, 2 per multiply-add, counting only the kernel taps that
  read the series (with dilations up to 2^depth most of the deep blocks' outer taps fall on the zero padding
  of short series), and the element-wise work one FLOP per element, as XLA's cost analysis counts both."""
  if not seq_len:
    raise ValueError("TS2Vec's FLOPs grow with the series: give seq_len (the task passes its series length)")
  series = jax.ShapeDtypeStruct((1, seq_len, model.input_dims), jnp.float32)
  return conv_flops.traced_flops(lambda m, x: m(x), model, series, count_padding=False)  # a classifier: + its head


EMBEDDINGS = ()  # no embedding tables

register("ts2vec", TS2VecEncoder)
register("ts2vec_classifier", TS2VecClassifier)
