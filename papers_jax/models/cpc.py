"""Contrastive Predictive Coding for audio (van den Oord, Li & Vinyals, 2018, "Representation Learning with
Contrastive Predictive Coding", §3.1).

  waveform (B, N) at 16 kHz → g_enc: 5 strided 1-D convolutions (filters 10/8/4/4/4, strides 5/4/2/2/2,
      512 channels, ReLU): one frame z_t per 160 samples (10 ms)
  → g_ar: a GRU with 256 units → context c_t
  → predictions W_k c_t of z_{t+k} for k = 1…12, one linear map (no bias) per offset (the bilinear score
      f_k(z, c) = zᵀ W_k c; objectives/speech.cpc_infonce).
The convolutions are padded (3/2/1/1/1) so that N samples give exactly N / 160 frames; the paper does not
say. `features` gives the mean of c_t over the valid frames, for linear probes.
"""

import jax
import jax.numpy as jnp
from flax import nnx

from papers_jax.models import conv_flops
from papers_jax.models.registry import register
from papers_jax.nn.conv import Conv1D
from papers_jax.nn.linear import Dense

KERNELS = (10, 8, 4, 4, 4)
STRIDES = (5, 4, 2, 2, 2)
PADDINGS = (3, 2, 1, 1, 1)


def frame_lengths(lengths):
  for k, s, p in zip(KERNELS, STRIDES, PADDINGS):
    lengths = (lengths + 2 * p - k) // s + 1
  return lengths


class GRU(nnx.Module):
  """A single-layer GRU over (B, T, C) in time order (torch's nn.GRU equations, reset gate applied to the
  hidden projection's output), unrolled with lax.scan."""

  def __init__(self, in_dim: int, hidden: int, *, dtype=None, param_dtype=jnp.float32, rngs: nnx.Rngs):
    kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
    self.hidden = hidden
    self.input_proj = Dense(in_dim, (3, hidden), axes=("conv_out", None, "mlp"), **kw)
    self.hidden_proj = Dense(hidden, (3, hidden), axes=("mlp", None, None),
                             kernel_init=nnx.initializers.orthogonal(column_axis=-1), **kw)

  def __call__(self, x):
    b = x.shape[0]
    xs = self.input_proj(x).astype(jnp.float32)  # (B, T, 3, H): all steps' input terms at once
    w = self.hidden_proj.kernel[...].astype(jnp.float32)
    bias = self.hidden_proj.bias[...].astype(jnp.float32)

    def step(h, xt):
      hh = jnp.einsum("bh,hgk->bgk", h, w) + bias
      r = jax.nn.sigmoid(xt[:, 0] + hh[:, 0])
      u = jax.nn.sigmoid(xt[:, 1] + hh[:, 1])
      n = jnp.tanh(xt[:, 2] + r * hh[:, 2])
      h = (1.0 - u) * n + u * h
      return h, h

    _, hs = jax.lax.scan(step, jnp.zeros((b, self.hidden), jnp.float32), xs.swapaxes(0, 1))
    return hs.swapaxes(0, 1).astype(x.dtype)


class CPC(nnx.Module):
  def __init__(self, *, channels: int = 512, context_dim: int = 256, num_offsets: int = 12, dtype=None,
               param_dtype=jnp.float32, rngs: nnx.Rngs):
    kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
    self.num_offsets = num_offsets
    ins = (1,) + (channels,) * (len(KERNELS) - 1)
    self.encoder = nnx.List([Conv1D(i, channels, k, stride=s, padding=p, **kw)
                             for i, k, s, p in zip(ins, KERNELS, STRIDES, PADDINGS)])
    self.gru = GRU(channels, context_dim, **kw)
    self.predictors = Dense(context_dim, (num_offsets, channels), axes=("mlp", None, "conv_out"), use_bias=False, **kw)

  def frame_mask(self, audio_mask, num_frames: int):
    lengths = frame_lengths(jnp.sum(audio_mask, axis=-1).astype(jnp.int32))
    return jnp.arange(num_frames)[None] < lengths[:, None]

  def encode(self, audio):
    """z (B, T, channels) and c (B, T, context_dim)."""
    z = audio[..., None]
    for conv in self.encoder:
      z = jax.nn.relu(conv(z))
    return z, self.gru(z)

  def __call__(self, audio):
    """(predictions (K, B, T, channels), z (B, T, channels), c (B, T, context_dim))."""
    z, c = self.encode(audio)
    predictions = jnp.moveaxis(self.predictors(c), 2, 0)
    return predictions, z, c

  def features(self, audio, audio_mask):
    """The context averaged over the valid frames: (B, context_dim)."""
    _, c = self.encode(audio)
    m = self.frame_mask(audio_mask, c.shape[1]).astype(jnp.float32)[..., None]
    return (c.astype(jnp.float32) * m).sum(1) / jnp.maximum(m.sum(1), 1.0)


register("cpc_audio", CPC)


def forward_flops(model: CPC, num_samples: int = 20_480, *, count_padding: bool = True) -> float:
  """FLOPs of one forward pass on one waveform of num_samples samples (default: the paper's 20480-sample
  windows), element-wise work included (models/conv_flops.py): the strided convolutions, the GRU at every
  frame, and the predictions of every offset. The InfoNCE scores (tasks/cpc.py) are left out."""
  return conv_flops.traced_flops(lambda m, a: m(a), model, jax.ShapeDtypeStruct((1, num_samples), jnp.float32),
                                 count_padding=count_padding)


EMBEDDINGS = ()
