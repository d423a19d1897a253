"""DLinear and NLinear ("Are Transformers Effective for Time Series Forecasting?", Zeng et al., AAAI 2023).

Both map a look-back window (batch, L, channels) to (batch, H, channels) with linear layers over time,
shared by the channels (`individual=True`: one per channel, the paper's other setting):
  DLinear  decomposes the window into a trend, a moving average of kernel 25 (stride 1, the ends padded
           by repeating the first and last values, as Autoformer's series_decomp), and the seasonal
           remainder; one linear layer L → H per component, the two forecasts summed.
  NLinear  subtracts the window's last value, applies one linear layer L → H, and adds it back.
Initialisation is PyTorch's nn.Linear default, U(±1/√L) for weights and biases, as the official code.
"""

import math

import jax
import jax.numpy as jnp
from flax import nnx

from papers_jax.errors import ConfigError
from papers_jax.models import conv_flops
from papers_jax.models.registry import register
from papers_jax.nn.linear import param


def moving_average(x, kernel: int):
  """Trailing-and-leading moving average over axis 1 of (batch, L, C), length kept: (kernel − 1) // 2
  copies of the first value in front and of the last value at the end, then the mean of each window."""
  pad = (kernel - 1) // 2
  padded = jnp.concatenate([jnp.repeat(x[:, :1], pad, axis=1), x, jnp.repeat(x[:, -1:], pad, axis=1)], axis=1)
  # A window sum (as the reference's AvgPool1d), not a cumulative sum: XLA lowers cumsum to a window as long
  # as the series, L² additions.
  total = jax.lax.reduce_window(padded.astype(jnp.float32), 0.0, jax.lax.add, (1, kernel, 1), (1, 1, 1), "VALID")
  return total / kernel


class TimeLinear(nnx.Module):
  """y[b, :, c] = W x[b, :, c] + bias over the time axis, W (L, H) shared or one per channel."""

  def __init__(self, length: int, horizon: int, *, channels: int = 0, dtype=None, param_dtype=jnp.float32,
               rngs: nnx.Rngs):
    bound = 1.0 / math.sqrt(length)
    init = lambda key, shape, dt=jnp.float32: jax.random.uniform(key, shape, dt, -bound, bound)  # noqa: E731
    lead = (channels,) if channels else ()
    self.kernel = param(rngs, init, lead + (length, horizon), param_dtype, (None,) * len(lead) + (None, "mlp"))
    self.bias = param(rngs, init, lead + (horizon,), param_dtype, (None,) * len(lead) + ("mlp",))
    self.individual, self.dtype = bool(channels), dtype

  def __call__(self, x):
    dtype = self.dtype or x.dtype
    if self.individual:
      return jnp.einsum("blc,clh->bhc", x.astype(dtype), self.kernel[...].astype(dtype)) + self.bias[...].T
    return jnp.einsum("blc,lh->bhc", x.astype(dtype), self.kernel[...].astype(dtype)) + self.bias[...][:, None]


class DLinear(nnx.Module):
  def __init__(self, *, context_length: int = 336, prediction_length: int = 96, num_channels: int = 7,
               kernel_size: int = 25, individual: bool = False, dtype=None, param_dtype=jnp.float32,
               rngs: nnx.Rngs):
    if kernel_size < 1 or kernel_size % 2 == 0:
      raise ConfigError(f"kernel_size={kernel_size}; DLinear's moving average needs an odd kernel (the paper: 25)")
    kw = dict(channels=num_channels if individual else 0, dtype=dtype, param_dtype=param_dtype, rngs=rngs)
    self.context_length, self.num_channels, self.kernel_size = context_length, num_channels, kernel_size
    self.seasonal = TimeLinear(context_length, prediction_length, **kw)
    self.trend = TimeLinear(context_length, prediction_length, **kw)

  def __call__(self, x, *, train: bool = False, rngs=None):
    trend = moving_average(x, self.kernel_size)
    return self.seasonal(x.astype(jnp.float32) - trend) + self.trend(trend)


class NLinear(nnx.Module):
  def __init__(self, *, context_length: int = 336, prediction_length: int = 96, num_channels: int = 7,
               individual: bool = False, dtype=None, param_dtype=jnp.float32, rngs: nnx.Rngs):
    self.context_length, self.num_channels = context_length, num_channels
    self.linear = TimeLinear(context_length, prediction_length, channels=num_channels if individual else 0,
                             dtype=dtype, param_dtype=param_dtype, rngs=rngs)

  def __call__(self, x, *, train: bool = False, rngs=None):
    last = x[:, -1:].astype(jnp.float32)
    return self.linear(x - last) + last


def forward_flops(model) -> float:
  """FLOPs per example, element-wise work included (models/conv_flops.py): one L → H layer per component
  (two for DLinear) and channel, and DLinear's moving average (kernel additions per value): with the rest
  of the element-wise work, 7% of the total at the paper's L = 336, H = 96."""
  window = jax.ShapeDtypeStruct((1, model.context_length, model.num_channels), jnp.float32)
  return conv_flops.traced_flops(lambda m, x: m(x), model, window)


EMBEDDINGS = ()  # no embedding tables

register("dlinear", DLinear)
register("nlinear", NLinear)
