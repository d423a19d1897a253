"""Crossformer (Zhang & Yan, "Crossformer: Transformer Utilizing Cross-Dimension Dependency for
Multivariate Time Series Forecasting", ICLR 2023).

`Crossformer(x)`, x (batch, L, D channels) → (batch, H, D):
  1. Dimension-Segment-Wise (DSW) embedding: L is padded at the front to a multiple of the segment length
     L_seg by repeating the first step (the official code's padding); each channel's series is cut into
     L / L_seg segments, each embedded by one linear layer L_seg → d_model shared by every channel and
     segment, plus a learned position embedding per (channel, segment), then a LayerNorm.
  2. Two-Stage Attention (TSA, `TwoStageAttention`) on the (batch, D, segments, d_model) array:
     - cross-time stage: multi-head self-attention over the segments of each channel, then residual +
       LayerNorm, MLP, residual + LayerNorm;
     - cross-dimension stage through c routers per segment (learned, (segments, c, d_model)): the routers
       attend to the D channels (`sender`: routers query, channels are keys and values), giving the
       gathered z; then the channels attend to z (`receiver`: channels query, z keys and values), then
       residual + LayerNorm, MLP, residual + LayerNorm. The notes write the second call with the routers
       as keys and values (PAPERS.md mistake #14); it is the gathered z, as the paper's Eq. 4 and the
       official code.
  3. Hierarchical encoder: `encoder_layers` scale blocks; every block but the first begins with segment
     merging (`SegmentMerging`: each `win_size` adjacent segments concatenated, the last repeated to
     fill the window, LayerNorm, linear back to d_model), then one TSA layer. The embedding and each
     block's output are kept: encoder_layers + 1 scales.
  4. Decoder: encoder_layers + 1 layers, one per scale. Its input is a learned (D, H / L_seg, d_model)
     position embedding; each layer runs TSA on it, attends from it to its scale's encoder output
     (per channel, over segments), residual + LayerNorm, MLP (d → d → d), residual + LayerNorm, and
     predicts every output segment with a linear d_model → L_seg; the layers' predictions are summed.

The sizes (`PAPER`) are the official ETTh1 script's for H = 24 and 48: L = 168, L_seg = 6, win_size 2,
c = 10 routers, d_model 256, 4 heads, MLP 512, 3 encoder blocks, dropout 0.2. Departures from the
official code: none in the model (its `baseline` option, adding the window mean, is off in its scripts
and not built).
"""

import math

import jax.numpy as jnp
from flax import nnx

from papers_jax.errors import ConfigError
from papers_jax.models.informer import traced_forward_flops
from papers_jax.models.registry import register
from papers_jax.nn.attention import dot_product_attention
from papers_jax.nn.drop import Dropout
from papers_jax.nn.linear import Dense, param
from papers_jax.nn.norms import LayerNorm
from papers_jax.nn.mlp import ACTIVATIONS


class Attention(nnx.Module):
  """The official `AttentionLayer`: q, k, v projections to heads, softmax attention, output projection."""

  def __init__(self, dim: int, num_heads: int, *, attn_drop: float, dtype=None, param_dtype=jnp.float32,
               rngs: nnx.Rngs):
    if dim % num_heads:
      raise ConfigError(f"d_model={dim} is not divisible by num_heads={num_heads}")
    self.attn_drop = attn_drop
    heads = (num_heads, dim // num_heads)
    kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
    self.q = Dense(dim, heads, axes=("embed", "heads", "kv"), **kw)
    self.k = Dense(dim, heads, axes=("embed", "heads", "kv"), **kw)
    self.v = Dense(dim, heads, axes=("embed", "heads", "kv"), **kw)
    self.proj = Dense(heads, dim, axes=("heads", "kv", "embed"), **kw)

  def __call__(self, x, context, *, train: bool, rngs):
    rate = self.attn_drop if train else 0.0
    out = dot_product_attention(self.q(x), self.k(context), self.v(context), dropout_rate=rate,
                                dropout_rng=rngs["dropout"]() if rate > 0 else None)
    return self.proj(out)


class Mlp(nnx.Module):
  def __init__(self, dim: int, hidden: int, *, dtype=None, param_dtype=jnp.float32, rngs: nnx.Rngs):
    kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
    self.fc1 = Dense(dim, hidden, axes=("embed", "mlp"), **kw)
    self.fc2 = Dense(hidden, dim, axes=("mlp", "embed"), **kw)

  def __call__(self, x):
    return self.fc2(ACTIVATIONS["gelu"](self.fc1(x)))


class TwoStageAttention(nnx.Module):
  """TSA on (batch, D, segments, d_model): cross-time, then cross-dimension through the routers."""

  def __init__(self, num_segments: int, num_routers: int, dim: int, num_heads: int, d_ff: int, *, dropout: float,
               dtype=None, param_dtype=jnp.float32, rngs: nnx.Rngs):
    kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
    self.time_attn = Attention(dim, num_heads, attn_drop=dropout, **kw)
    self.sender = Attention(dim, num_heads, attn_drop=dropout, **kw)
    self.receiver = Attention(dim, num_heads, attn_drop=dropout, **kw)
    self.router = param(rngs, nnx.initializers.normal(1.0), (num_segments, num_routers, dim), param_dtype,
                        (None, None, "embed"))
    self.norm1, self.norm2, self.norm3, self.norm4 = (LayerNorm(dim, eps=1e-5, **kw) for _ in range(4))
    self.mlp1, self.mlp2 = Mlp(dim, d_ff, **kw), Mlp(dim, d_ff, **kw)
    self.drop = Dropout(dropout)

  def __call__(self, x, *, train: bool = False, rngs: nnx.Rngs | None = None):
    b, d, n, e = x.shape
    drop = lambda y: self.drop(y, deterministic=not train, rngs=rngs)  # noqa: E731
    t = x.reshape(b * d, n, e)  # cross-time: each channel's segments
    t = self.norm1(t + drop(self.time_attn(t, t, train=train, rngs=rngs)))
    t = self.norm2(t + drop(self.mlp1(t)))
    y = t.reshape(b, d, n, e).swapaxes(1, 2).reshape(b * n, d, e)  # cross-dimension: each segment's channels
    routers = jnp.broadcast_to(self.router[...].astype(y.dtype), (b,) + self.router.shape)
    routers = routers.reshape(b * n, -1, e)
    z = self.sender(routers, y, train=train, rngs=rngs)      # routers gather from the channels
    received = self.receiver(y, z, train=train, rngs=rngs)   # channels read the gathered z
    y = self.norm3(y + drop(received))
    y = self.norm4(y + drop(self.mlp2(y)))
    return y.reshape(b, n, d, e).swapaxes(1, 2)


def merge_segments(x, win_size: int):
  """(batch, D, n, d) → (batch, D, ⌈n / w⌉, w·d): each w adjacent segments concatenated, the last
  segments repeated to fill the final window (the official `SegMerging` before its norm and linear)."""
  n = x.shape[2]
  pad = -n % win_size
  if pad:
    x = jnp.concatenate([x, x[:, :, n - pad:]], axis=2)
  return jnp.concatenate([x[:, :, i::win_size] for i in range(win_size)], axis=-1)


class SegmentMerging(nnx.Module):
  def __init__(self, dim: int, win_size: int, *, dtype=None, param_dtype=jnp.float32, rngs: nnx.Rngs):
    kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
    self.win_size = win_size
    self.norm = LayerNorm(win_size * dim, eps=1e-5, **kw)
    self.linear = Dense(win_size * dim, dim, axes=("mlp", "embed"), **kw)

  def __call__(self, x):
    return self.linear(self.norm(merge_segments(x, self.win_size)))


class ScaleBlock(nnx.Module):
  """An encoder scale: segment merging (not in the first block), then `depth` TSA layers."""

  def __init__(self, win_size: int, num_segments: int, depth: int, *, num_routers, dim, num_heads, d_ff, dropout,
               dtype=None, param_dtype=jnp.float32, rngs: nnx.Rngs):
    kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
    self.merge = SegmentMerging(dim, win_size, **kw) if win_size > 1 else None
    self.layers = nnx.List([TwoStageAttention(num_segments, num_routers, dim, num_heads, d_ff, dropout=dropout, **kw)
                            for _ in range(depth)])

  def __call__(self, x, *, train: bool, rngs):
    if self.merge is not None:
      x = self.merge(x)
    for layer in self.layers:
      x = layer(x, train=train, rngs=rngs)
    return x


class DecoderLayer(nnx.Module):
  """TSA on the decoder state, cross-attention to one encoder scale, MLP, and that scale's prediction."""

  def __init__(self, seg_len: int, num_segments: int, *, num_routers, dim, num_heads, d_ff, dropout, dtype=None,
               param_dtype=jnp.float32, rngs: nnx.Rngs):
    kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
    self.tsa = TwoStageAttention(num_segments, num_routers, dim, num_heads, d_ff, dropout=dropout, **kw)
    self.cross_attn = Attention(dim, num_heads, attn_drop=dropout, **kw)
    self.norm1, self.norm2 = LayerNorm(dim, eps=1e-5, **kw), LayerNorm(dim, eps=1e-5, **kw)
    self.mlp = Mlp(dim, dim, **kw)
    self.pred = Dense(dim, seg_len, axes=("embed", None), **kw)
    self.drop = Dropout(dropout)

  def __call__(self, x, memory, *, train: bool, rngs):
    b, d, n, e = x.shape
    x = self.tsa(x, train=train, rngs=rngs).reshape(b * d, n, e)
    mem = memory.reshape(b * d, memory.shape[2], e)
    x = self.norm1(x + self.drop(self.cross_attn(x, mem, train=train, rngs=rngs), deterministic=not train, rngs=rngs))
    x = self.norm2(x + self.mlp(x)).reshape(b, d, n, e)
    return x, self.pred(x)  # prediction (batch, D, n, L_seg)


class Crossformer(nnx.Module):
  """(batch, context_length, num_channels) → (batch, prediction_length, num_channels); see the module docstring."""

  def __init__(self, *, num_channels: int = 7, context_length: int = 168, prediction_length: int = 24,
               seg_len: int = 6, win_size: int = 2, num_routers: int = 10, d_model: int = 256, num_heads: int = 4,
               d_ff: int = 512, encoder_layers: int = 3, dropout: float = 0.2, dtype=None, param_dtype=jnp.float32,
               rngs: nnx.Rngs):
    if encoder_layers < 1 or seg_len < 1 or win_size < 1:
      raise ConfigError("Crossformer needs encoder_layers, seg_len and win_size of at least 1")
    kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
    self.num_channels, self.context_length, self.prediction_length = num_channels, context_length, prediction_length
    self.seg_len = seg_len
    self.in_segments = math.ceil(context_length / seg_len)
    self.out_segments = math.ceil(prediction_length / seg_len)
    self.embed = Dense(seg_len, d_model, axes=(None, "embed"), **kw)
    self.enc_pos = param(rngs, nnx.initializers.normal(1.0), (num_channels, self.in_segments, d_model), param_dtype,
                         (None, None, "embed"))
    self.pre_norm = LayerNorm(d_model, eps=1e-5, **kw)
    block = dict(num_routers=num_routers, dim=d_model, num_heads=num_heads, d_ff=d_ff, dropout=dropout, **kw)
    self.encoder = nnx.List([
        ScaleBlock(1 if i == 0 else win_size, math.ceil(self.in_segments / win_size ** i), 1, **block)
        for i in range(encoder_layers)])
    self.dec_pos = param(rngs, nnx.initializers.normal(1.0), (num_channels, self.out_segments, d_model), param_dtype,
                         (None, None, "embed"))
    self.decoder = nnx.List([DecoderLayer(seg_len, self.out_segments, **block) for _ in range(encoder_layers + 1)])

  def __call__(self, x, *, train: bool = False, rngs: nnx.Rngs | None = None):
    if x.shape[1:] != (self.context_length, self.num_channels):
      raise ValueError(f"Crossformer takes (batch, {self.context_length}, {self.num_channels}), got {x.shape}")
    b, length, d = x.shape
    pad = self.in_segments * self.seg_len - length
    if pad:
      x = jnp.concatenate([jnp.repeat(x[:, :1], pad, axis=1), x], axis=1)
    segments = x.swapaxes(1, 2).reshape(b, d, self.in_segments, self.seg_len)
    h = self.embed(segments) + self.enc_pos[...].astype(self.embed.dtype or x.dtype)
    h = self.pre_norm(h)
    scales = [h]
    for block in self.encoder:
      h = block(h, train=train, rngs=rngs)
      scales.append(h)
    y = jnp.broadcast_to(self.dec_pos[...].astype(h.dtype), (b,) + self.dec_pos.shape)
    prediction = 0.0
    for layer, memory in zip(self.decoder, scales):
      y, pred = layer(y, memory, train=train, rngs=rngs)
      prediction = prediction + pred
    prediction = prediction.reshape(b, d, -1).swapaxes(1, 2)  # (batch, out_segments · L_seg, D)
    return prediction[:, :self.prediction_length].astype(jnp.float32)


def forward_flops(model) -> float:
  """FLOPs per example of one forward pass, counted on the traced program (informer.traced_forward_flops)."""
  return traced_forward_flops(model, model.context_length)


# Parameters models.embedding_params counts as embeddings: the segment embedding and both position tables.
EMBEDDINGS = ("embed", "enc_pos", "dec_pos")

PAPER = dict(context_length=168, seg_len=6, win_size=2, num_routers=10, d_model=256, num_heads=4, d_ff=512,
             encoder_layers=3, dropout=0.2)
register("crossformer", Crossformer, **PAPER)
