"""TF-C's encoders ("Self-Supervised Contrastive Pre-Training for Time Series via Time-Frequency Consistency",
Zhang et al., NeurIPS 2022), as the official code's convolutional model.

Two encoders of the same shape, one reading the series (time domain), one its magnitude spectrum
|FFT(x)| (frequency domain, the full FFT, so both inputs have the series' length). Each is three blocks
  conv1d (no bias) → BatchNorm → ReLU → max-pool (kernel 2, stride 2, padding 1) [→ dropout after block 1]
(block 1: kernel `kernel_size`, stride `stride`, 32 channels; blocks 2, 3: kernel 8, 64 then
`final_out_channels`), flattened into h, then a projector Linear → BatchNorm → ReLU → Linear (256, 128)
into the shared time-frequency space: z. `__call__` returns (h_time, z_time, h_freq, z_freq); the
representation TF-C hands to downstream tasks is [z_time, z_freq] (`represent`).

Missing steps (NaN) enter as zeros. The flattened width depends on the series' length, so `seq_len` is part
of the model (the official code: CNNoutput_channel). Initialisation is torch's default (U(±1/√fan_in)).
The official SleepEEG pre-training configuration: 1 channel, length 178, kernel 25, stride 3, 128 final
channels, dropout 0.35: 444,512 parameters per domain, 889,024 in all (tests/test_tfc.py).
"""

import math

import jax
import jax.numpy as jnp
from flax import nnx

from papers_jax.models import conv_flops
from papers_jax.models.registry import register
from papers_jax.nn.conv import Conv1D
from papers_jax.nn.linear import Dense
from papers_jax.nn.norms import BatchNorm


def _torch_uniform(fan_in: int):
  bound = 1.0 / math.sqrt(fan_in)
  return lambda key, shape, dtype=jnp.float32: jax.random.uniform(key, shape, dtype, -bound, bound)


def max_pool1d(x, window: int = 2, stride: int = 2, padding: int = 1):
  """torch's MaxPool1d over (batch, time, channels), the padding counting as −inf."""
  return jax.lax.reduce_window(x, -jnp.inf, jax.lax.max, (1, window, 1), (1, stride, 1),
                               ((0, 0), (padding, padding), (0, 0)))


def conv_output_length(seq_len: int, kernel_size: int, stride: int) -> int:
  """The time length after the three blocks (the official CNNoutput_channel)."""
  pool = lambda n: (n + 2 - 2) // 2 + 1  # noqa: E731
  n = pool((seq_len + 2 * (kernel_size // 2) - kernel_size) // stride + 1)
  for _ in range(2):
    n = pool(n + 2 * 4 - 8 + 1)
  return n


class ConvBlock(nnx.Module):
  def __init__(self, cin: int, cout: int, kernel_size: int, stride: int, dropout: float, *, dtype, param_dtype,
               rngs: nnx.Rngs):
    self.conv = Conv1D(cin, cout, kernel_size, stride=stride, padding=kernel_size // 2, use_bias=False,
                       kernel_init=_torch_uniform(cin * kernel_size), dtype=dtype, param_dtype=param_dtype, rngs=rngs)
    self.norm = BatchNorm(cout, dtype=dtype, param_dtype=param_dtype, rngs=rngs)
    self.dropout = nnx.Dropout(dropout) if dropout else None

  def __call__(self, x, *, train: bool, rngs):
    x = max_pool1d(jax.nn.relu(self.norm(self.conv(x), train=train)))
    return self.dropout(x, deterministic=not train, rngs=rngs) if self.dropout is not None else x


class Projector(nnx.Module):
  def __init__(self, cin: int, hidden: int, cout: int, *, dtype, param_dtype, rngs: nnx.Rngs):
    dense = lambda i, o: Dense(i, o, axes=(None, None), kernel_init=_torch_uniform(i),  # noqa: E731
                               bias_init=_torch_uniform(i), dtype=dtype, param_dtype=param_dtype, rngs=rngs)
    self.fc1, self.fc2 = dense(cin, hidden), dense(hidden, cout)
    self.norm = BatchNorm(hidden, dtype=dtype, param_dtype=param_dtype, rngs=rngs)

  def __call__(self, h, *, train: bool):
    return self.fc2(jax.nn.relu(self.norm(self.fc1(h), train=train)))


class Encoder(nnx.Module):
  """One domain's three conv blocks and its projector: x (batch, T, C) → (h (batch, flat), z (batch, 128))."""

  def __init__(self, input_dims, seq_len, kernel_size, stride, final_out_channels, dropout, projection_dims,
               *, dtype, param_dtype, rngs):
    kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
    self.blocks = nnx.List([ConvBlock(input_dims, 32, kernel_size, stride, dropout, **kw),
                            ConvBlock(32, 64, 8, 1, 0.0, **kw),
                            ConvBlock(64, final_out_channels, 8, 1, 0.0, **kw)])
    flat = conv_output_length(seq_len, kernel_size, stride) * final_out_channels
    self.projector = Projector(flat, 2 * projection_dims, projection_dims, **kw)

  def __call__(self, x, *, train: bool, rngs):
    for block in self.blocks:
      x = block(x, train=train, rngs=rngs)
    # flatten channel-major, as torch's (batch, channels, time).reshape(batch, -1)
    h = x.transpose(0, 2, 1).reshape(x.shape[0], -1)
    return h, self.projector(h, train=train)


def spectrum(x):
  """|FFT(x)| over time of (batch, T, C), NaN as 0 (the official x_data_f)."""
  return jnp.abs(jnp.fft.fft(jnp.nan_to_num(x.astype(jnp.float32)), axis=1))


class TFC(nnx.Module):
  def __init__(self, *, input_dims: int = 1, seq_len: int = 178, kernel_size: int = 25, stride: int = 3,
               final_out_channels: int = 128, dropout: float = 0.35, projection_dims: int = 128, dtype=None,
               param_dtype=jnp.float32, rngs: nnx.Rngs):
    self.input_dims, self.seq_len = input_dims, seq_len
    args = (input_dims, seq_len, kernel_size, stride, final_out_channels, dropout, projection_dims)
    self.time = Encoder(*args, dtype=dtype, param_dtype=param_dtype, rngs=rngs)
    self.freq = Encoder(*args, dtype=dtype, param_dtype=param_dtype, rngs=rngs)

  def __call__(self, x_time, x_freq, *, train: bool = False, rngs: nnx.Rngs | None = None):
    """x_time (batch, T, C) the series (NaN as 0), x_freq (batch, T, C) a magnitude spectrum."""
    h_t, z_t = self.time(jnp.nan_to_num(x_time), train=train, rngs=rngs)
    h_f, z_f = self.freq(x_freq, train=train, rngs=rngs)
    return h_t, z_t, h_f, z_f

  def represent(self, x):
    """(batch, 2 · projection_dims): [z_time, z_freq] of series x, in eval mode."""
    _, z_t, _, z_f = self(x, spectrum(x))
    return jnp.concatenate([z_t, z_f], axis=-1)


def forward_flops(model, **_) -> float:
  """FLOPs of encoding one series in both domains (the FFT left out), traced (models/conv_flops.py): the kernel
  taps on the zero padding left out, as XLA counts them."""
  series = jax.ShapeDtypeStruct((1, model.seq_len, model.input_dims), jnp.float32)
  return conv_flops.traced_flops(lambda m, x: m(x, x), model, series, count_padding=False)


EMBEDDINGS = ()

register("tfc", TFC)
