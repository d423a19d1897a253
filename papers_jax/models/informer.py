"""Informer (Zhou et al., "Informer: Beyond Efficient Transformer for Long Sequence Time-Series
Forecasting", AAAI 2021).

`Informer(x)`, x (batch, L, channels) → (batch, H, channels), the generative-style ("one forward pass")
forecaster of the paper's Figure 2:
  1. Embedding (the official `DataEmbedding`): a token embedding, Conv1d of kernel 3 with circular padding
     and no bias over the channels; plus the fixed sin/cos position table (interleaved: even features sin,
     odd cos, restarting at 0 in the decoder); plus, with `num_time_features` > 0, the "timeF" embedding
     of the time stamps (a linear layer without bias); then dropout.
  2. Encoder: post-norm layers (attention, residual, LayerNorm; GELU feed-forward, residual, LayerNorm) of
     ProbSparse self-attention, with self-attention distilling between them (`distil`): Conv1d of kernel 3
     (circular padding) → BatchNorm → ELU → max-pool of window 3, stride 2, padding 1, which halves the
     length; a final LayerNorm.
  3. Decoder: its input is the start token, the last `label_length` steps of x, followed by zeros as the
     placeholders of the H steps to forecast (time stamps of both, when given). Post-norm layers of masked
     (causal) ProbSparse self-attention, full cross-attention to the encoder output and the feed-forward,
     a final LayerNorm and a linear layer to the channels; the last H outputs are the forecast.

ProbSparse self-attention (§"Efficient Self-attention Mechanism", `prob_sparse_attention`): for each
query, U = c·⌈ln L_K⌉ keys are sampled and the sparsity measure M(q_i, K) = max_j(q_i·k_j) − mean_j(q_i·k_j)
is computed over them; the u = c·⌈ln L_Q⌉ queries with the largest M (the "active" ones) attend to every
key with a softmax; every other ("lazy") query outputs the mean of V in the encoder, and the cumulative
sum of V (the values up to its position) in the masked decoder self-attention, as the official code and
HF. The notes write V.sum(-2) under a comment saying mean (PAPERS.md mistake #15); the mean is right.
The official code and HF divide the sum of the sampled scores by L_K rather than by U; here the mean of
the sampled scores is the paper's mean estimated on the sample. c = `factor` (5 in the paper). The key
samples come from the "dropout" stream in training and a fixed key at evaluation (the official code draws
them with torch.randint in both), the same keys for every example and head, a different draw per layer.

`attention="full"` gives the canonical attention in every layer (the paper's "Informer†" ablation) and,
with `token_kernel_size=1, embed_norm=True, positions="halves", final_norm=False`, HF's
`InformerForPrediction` layout (tests/test_informer.py compares the encoder and decoder hidden states).

Departures from the official code:
- Its decoder self-attention "mix"es heads (a transpose of (heads, length) before the reshape back to the
  model width); here the heads are concatenated per position as in every other attention layer.
- The "InformerStack" variant (several encoders on halved inputs, concatenated) is not built.
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from papers_jax.errors import ConfigError
from papers_jax.models.conv_flops import jaxpr_flops
from papers_jax.models.registry import register
from papers_jax.nn.attention import dot_product_attention
from papers_jax.nn.conv import Conv1D
from papers_jax.nn.drop import Dropout
from papers_jax.nn.linear import Dense
from papers_jax.nn.mlp import ACTIVATIONS
from papers_jax.nn.norms import BatchNorm, LayerNorm

ATTENTIONS = ("prob", "full")
EVAL_SAMPLE_SEED = 0


def sinusoid_table(length: int, dim: int, *, offset: int = 0, layout: str = "interleaved") -> np.ndarray:
  """float32 (length, dim) fixed position table, rows offset..offset+length−1: sin(p / 10000^(2i/dim)) and
  cos of the same, at features 2i and 2i+1 ("interleaved", the paper) or i and dim/2 + i ("halves", HF)."""
  pos = np.arange(offset, offset + length, dtype=np.float64)[:, None]
  angle = pos / np.power(10000.0, np.arange(0, dim, 2, dtype=np.float64) / dim)[None, :]
  table = np.zeros((length, dim), np.float64)
  if layout == "interleaved":
    table[:, 0::2], table[:, 1::2] = np.sin(angle), np.cos(angle[:, :dim // 2])
  elif layout == "halves":
    half = (dim + 1) // 2
    table[:, :half], table[:, half:] = np.sin(angle), np.cos(angle[:, :dim // 2])
  else:
    raise ConfigError(f"positions={layout!r}; choose 'interleaved' (the paper) or 'halves' (HF)")
  return table.astype(np.float32)


def sparse_counts(len_q: int, len_k: int, factor: int) -> tuple[int, int]:
  """(u active queries, U sampled keys per query): c·⌈ln L⌉, at most L (the official code's n_top, sample_k)."""
  return min(factor * math.ceil(math.log(len_q)), len_q), min(factor * math.ceil(math.log(len_k)), len_k)


def prob_sparse_attention(q, k, v, sample_index, *, factor: int, causal: bool, dropout_rate: float = 0.0,
                          dropout_rng=None):
  """ProbSparse attention over (batch, length, heads, head_dim) inputs (module docstring);
  `sample_index` int (L_Q, U): the keys sampled for each query. Returns (batch, L_Q, heads, head_dim)."""
  len_q, len_k, head_dim = q.shape[1], k.shape[1], q.shape[-1]
  u, _ = sparse_counts(len_q, len_k, factor)
  q32, k32, v32 = (t.astype(jnp.float32).transpose(0, 2, 1, 3) for t in (q, k, v))  # (batch, heads, L, d)
  sampled = jnp.einsum("bhqd,bhqud->bhqu", q32, k32[:, :, sample_index])
  measure = sampled.max(-1) - sampled.mean(-1)  # (batch, heads, L_Q)
  _, top = jax.lax.top_k(measure, u)  # (batch, heads, u)
  q_top = jnp.take_along_axis(q32, top[..., None], axis=2)
  scores = jnp.einsum("bhud,bhkd->bhuk", q_top, k32) / math.sqrt(head_dim)
  if causal:  # query i sees keys 0..i
    scores = jnp.where(top[..., None] >= jnp.arange(len_k), scores, -jnp.inf)
  p = jax.nn.softmax(scores, axis=-1)
  if dropout_rate > 0:
    keep = jax.random.bernoulli(dropout_rng, 1.0 - dropout_rate, p.shape)
    p = jnp.where(keep, p / (1.0 - dropout_rate), 0.0)
  active = jnp.einsum("bhuk,bhkd->bhud", p, v32)
  if causal:
    context = jnp.cumsum(v32, axis=2)
  else:
    context = jnp.broadcast_to(v32.mean(2, keepdims=True), q32.shape[:3] + (v32.shape[-1],))
  b, h = jnp.arange(q.shape[0])[:, None, None], jnp.arange(q.shape[2])[None, :, None]
  context = context.at[b, h, top].set(active)
  return context.transpose(0, 2, 1, 3).astype(q.dtype)


class Attention(nnx.Module):
  """Multi-head attention with torch-layout projections; `kind` "prob" (ProbSparse) or "full"."""

  def __init__(self, dim: int, num_heads: int, *, kind: str, causal: bool, factor: int, attn_drop: float,
               dtype=None, param_dtype=jnp.float32, rngs: nnx.Rngs):
    if dim % num_heads:
      raise ConfigError(f"d_model={dim} is not divisible by num_heads={num_heads}")
    if kind not in ATTENTIONS:
      raise ConfigError(f"attention={kind!r}; choose one of {ATTENTIONS}")
    self.kind, self.causal, self.factor, self.attn_drop = kind, causal, factor, attn_drop
    heads = (num_heads, dim // num_heads)
    kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
    self.q = Dense(dim, heads, axes=("embed", "heads", "kv"), **kw)
    self.k = Dense(dim, heads, axes=("embed", "heads", "kv"), **kw)
    self.v = Dense(dim, heads, axes=("embed", "heads", "kv"), **kw)
    self.proj = Dense(heads, dim, axes=("heads", "kv", "embed"), **kw)

  def __call__(self, x, context, *, sample_key, train: bool, rngs: nnx.Rngs | None):
    q, k, v = self.q(x), self.k(context), self.v(context)
    rate = self.attn_drop if train else 0.0
    drop_rng = rngs["dropout"]() if rate > 0 else None
    if self.kind == "prob":
      _, count = sparse_counts(q.shape[1], k.shape[1], self.factor)
      index = jax.random.randint(sample_key, (q.shape[1], count), 0, k.shape[1])
      out = prob_sparse_attention(q, k, v, index, factor=self.factor, causal=self.causal, dropout_rate=rate,
                                  dropout_rng=drop_rng)
    else:
      out = dot_product_attention(q, k, v, is_causal=self.causal, dropout_rate=rate, dropout_rng=drop_rng)
    return self.proj(out)


def _circular_pad(x, pad: int):
  """(batch, L, C) padded by `pad` steps at each end with the other end's values (torch's "circular")."""
  return x if pad == 0 else jnp.concatenate([x[:, -pad:], x, x[:, :pad]], axis=1)


class Embedding(nnx.Module):
  """Token (Conv1d, circular padding, no bias) + fixed position table + optional time-feature linear."""

  def __init__(self, num_channels: int, d_model: int, *, num_time_features: int, kernel_size: int, dropout: float,
               layer_norm: bool, dtype=None, param_dtype=jnp.float32, rngs: nnx.Rngs):
    kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
    self.pad = (kernel_size - 1) // 2
    # The official TokenEmbedding's kaiming_normal_(mode="fan_in", nonlinearity="leaky_relu").
    init = nnx.initializers.variance_scaling(2.0 / (1 + 0.01 ** 2), "fan_in", "normal", in_axis=(0, 1), out_axis=2)
    self.token = Conv1D(num_channels, d_model, kernel_size, use_bias=False, kernel_init=init, **kw)
    self.time = (Dense(num_time_features, d_model, use_bias=False, axes=(None, "embed"), **kw)
                 if num_time_features else None)
    self.norm = LayerNorm(d_model, eps=1e-5, **kw) if layer_norm else None
    self.drop = Dropout(dropout)

  def __call__(self, x, marks, positions, *, train: bool, rngs):
    y = self.token(_circular_pad(x, self.pad)) + positions.astype(x.dtype)
    if self.time is not None:
      if marks is None:
        raise ValueError("this Informer embeds time features: pass marks (batch, length, num_time_features)")
      y = y + self.time(marks)
    if self.norm is not None:
      y = self.norm(y)
    return self.drop(y, deterministic=not train, rngs=rngs)


class FeedForward(nnx.Module):
  def __init__(self, dim: int, d_ff: int, *, act: str, dropout: float, dtype=None, param_dtype=jnp.float32,
               rngs: nnx.Rngs):
    kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
    self.act = act
    self.fc1 = Dense(dim, d_ff, axes=("embed", "mlp"), **kw)
    self.fc2 = Dense(d_ff, dim, axes=("mlp", "embed"), **kw)
    self.drop = Dropout(dropout)

  def __call__(self, x, *, train: bool, rngs):
    return self.fc2(self.drop(ACTIVATIONS[self.act](self.fc1(x)), deterministic=not train, rngs=rngs))


class EncoderLayer(nnx.Module):
  """Self-attention, residual, LayerNorm; feed-forward, residual, LayerNorm (post-norm)."""

  def __init__(self, dim, num_heads, d_ff, *, attention, factor, dropout, act, dtype=None, param_dtype=jnp.float32,
               rngs: nnx.Rngs):
    kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
    self.attn = Attention(dim, num_heads, kind=attention, causal=False, factor=factor, attn_drop=dropout, **kw)
    self.norm1, self.norm2 = LayerNorm(dim, eps=1e-5, **kw), LayerNorm(dim, eps=1e-5, **kw)
    self.ff = FeedForward(dim, d_ff, act=act, dropout=dropout, **kw)
    self.drop = Dropout(dropout)

  def __call__(self, x, *, sample_key, train: bool, rngs):
    drop = lambda y: self.drop(y, deterministic=not train, rngs=rngs)  # noqa: E731
    x = self.norm1(x + drop(self.attn(x, x, sample_key=sample_key, train=train, rngs=rngs)))
    return self.norm2(x + drop(self.ff(x, train=train, rngs=rngs)))


class DistilLayer(nnx.Module):
  """Self-attention distilling: Conv1d k=3 (circular) → BatchNorm → ELU → max-pool 3 / stride 2 / padding 1."""

  def __init__(self, dim: int, *, dtype=None, param_dtype=jnp.float32, rngs: nnx.Rngs):
    kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
    self.conv = Conv1D(dim, dim, 3, **kw)
    self.norm = BatchNorm(dim, **kw)

  def __call__(self, x, *, train: bool):
    y = self.conv(_circular_pad(x, 1))
    y = jax.nn.elu(self.norm(y.reshape(-1, y.shape[-1]), train=train).reshape(y.shape))
    return jax.lax.reduce_window(y, -jnp.inf, jax.lax.max, (1, 3, 1), (1, 2, 1), ((0, 0), (1, 1), (0, 0)))


class DecoderLayer(nnx.Module):
  """Masked self-attention, cross-attention to the encoder, feed-forward; each residual then LayerNorm."""

  def __init__(self, dim, num_heads, d_ff, *, attention, factor, dropout, act, dtype=None, param_dtype=jnp.float32,
               rngs: nnx.Rngs):
    kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
    self.self_attn = Attention(dim, num_heads, kind=attention, causal=True, factor=factor, attn_drop=dropout, **kw)
    self.cross_attn = Attention(dim, num_heads, kind="full", causal=False, factor=factor, attn_drop=dropout, **kw)
    self.norm1, self.norm2, self.norm3 = (LayerNorm(dim, eps=1e-5, **kw) for _ in range(3))
    self.ff = FeedForward(dim, d_ff, act=act, dropout=dropout, **kw)
    self.drop = Dropout(dropout)

  def __call__(self, x, memory, *, sample_key, train: bool, rngs):
    drop = lambda y: self.drop(y, deterministic=not train, rngs=rngs)  # noqa: E731
    x = self.norm1(x + drop(self.self_attn(x, x, sample_key=sample_key, train=train, rngs=rngs)))
    x = self.norm2(x + drop(self.cross_attn(x, memory, sample_key=None, train=train, rngs=rngs)))
    return self.norm3(x + drop(self.ff(x, train=train, rngs=rngs)))


class Informer(nnx.Module):
  """(batch, context_length, num_channels) → (batch, prediction_length, num_channels); see the module docstring."""

  def __init__(self, *, num_channels: int = 7, context_length: int = 96, prediction_length: int = 24,
               label_length: int = 48, d_model: int = 512, num_heads: int = 8, encoder_layers: int = 2,
               decoder_layers: int = 1, d_ff: int = 2048, factor: int = 5, dropout: float = 0.05,
               attention: str = "prob", distil: bool = True, act: str = "gelu", num_time_features: int = 0,
               token_kernel_size: int = 3, embed_norm: bool = False, positions: str = "interleaved",
               final_norm: bool = True, dtype=None, param_dtype=jnp.float32, rngs: nnx.Rngs):
    if not 0 <= label_length <= context_length:
      raise ConfigError(f"label_length={label_length} must lie in [0, context_length={context_length}]")
    kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
    self.num_channels, self.context_length, self.prediction_length = num_channels, context_length, prediction_length
    self.label_length, self.d_model, self.positions = label_length, d_model, positions
    sinusoid_table(1, d_model, layout=positions)  # validates `positions`
    emb = dict(num_time_features=num_time_features, kernel_size=token_kernel_size, dropout=dropout,
               layer_norm=embed_norm, **kw)
    self.enc_embed, self.dec_embed = Embedding(num_channels, d_model, **emb), Embedding(num_channels, d_model, **emb)
    layer = dict(attention=attention, factor=factor, dropout=dropout, act=act, **kw)
    self.encoder = nnx.List([EncoderLayer(d_model, num_heads, d_ff, **layer) for _ in range(encoder_layers)])
    self.distil = nnx.List([DistilLayer(d_model, **kw) for _ in range(encoder_layers - 1)] if distil else [])
    self.decoder = nnx.List([DecoderLayer(d_model, num_heads, d_ff, **layer) for _ in range(decoder_layers)])
    self.enc_norm = LayerNorm(d_model, eps=1e-5, **kw) if final_norm else None
    self.dec_norm = LayerNorm(d_model, eps=1e-5, **kw) if final_norm else None
    self.head = Dense(d_model, num_channels, axes=("embed", None), **kw)

  def _sample_keys(self, count: int, offset: int, train: bool, rngs):
    base = rngs["dropout"]() if train and rngs is not None else jax.random.key(EVAL_SAMPLE_SEED)
    return [jax.random.fold_in(base, offset + i) for i in range(count)]

  def encode(self, x, marks=None, *, train: bool = False, rngs: nnx.Rngs | None = None):
    """(batch, L, C) → (batch, L / 2^(layers − 1), D) with distilling."""
    positions = jnp.asarray(sinusoid_table(x.shape[1], self.d_model, layout=self.positions))
    h = self.enc_embed(x, marks, positions, train=train, rngs=rngs)
    keys = self._sample_keys(len(self.encoder), 0, train, rngs)
    for i, layer in enumerate(self.encoder):
      h = layer(h, sample_key=keys[i], train=train, rngs=rngs)
      if i < len(self.distil):
        h = self.distil[i](h, train=train)
    return h if self.enc_norm is None else self.enc_norm(h)

  def decode(self, y, memory, marks=None, *, position_offset: int = 0, train: bool = False,
             rngs: nnx.Rngs | None = None):
    """Decoder input (batch, T, C) and encoder output → hidden states (batch, T, D), before the head."""
    positions = jnp.asarray(sinusoid_table(y.shape[1], self.d_model, offset=position_offset, layout=self.positions))
    h = self.dec_embed(y, marks, positions, train=train, rngs=rngs)
    keys = self._sample_keys(len(self.decoder), len(self.encoder), train, rngs)
    for i, layer in enumerate(self.decoder):
      h = layer(h, memory, sample_key=keys[i], train=train, rngs=rngs)
    return h if self.dec_norm is None else self.dec_norm(h)

  def __call__(self, x, marks=None, future_marks=None, *, train: bool = False, rngs: nnx.Rngs | None = None):
    """x (batch, L, C); with time features, marks (batch, L, F) and future_marks (batch, H, F)."""
    if x.shape[1:] != (self.context_length, self.num_channels):
      raise ValueError(f"Informer takes (batch, {self.context_length}, {self.num_channels}), got {x.shape}")
    dec_in = decoder_input(x, self.label_length, self.prediction_length)
    dec_marks = None
    if marks is not None:
      dec_marks = jnp.concatenate([marks[:, marks.shape[1] - self.label_length:], future_marks], axis=1)
    memory = self.encode(x, marks, train=train, rngs=rngs)
    h = self.decode(dec_in, memory, dec_marks, train=train, rngs=rngs)
    return self.head(h[:, -self.prediction_length:]).astype(jnp.float32)


def decoder_input(x, label_length: int, horizon: int):
  """The generative decoder's input (batch, label_length + horizon, C): the start token (the last
  `label_length` steps of x), then zeros as the placeholders of the steps to forecast."""
  start = x[:, x.shape[1] - label_length:]
  return jnp.concatenate([start, jnp.zeros((x.shape[0], horizon, x.shape[2]), x.dtype)], axis=1)


def traced_forward_flops(model, length: int) -> float:
  """FLOPs of one eval-mode forward pass on one (length, channels) window, from the traced program
  (`jaxpr_flops` with element-wise operations: the attention softmax, norms and the sparse measure
  are a visible share at these widths). Works on an abstract model."""
  graphdef, state = nnx.split(model)
  x = jax.ShapeDtypeStruct((1, length, model.num_channels), jnp.float32)
  jaxpr = jax.make_jaxpr(lambda s, x: nnx.merge(graphdef, s)(x, train=False))(state, x)
  return float(jaxpr_flops(jaxpr, elementwise=True))


def forward_flops(model) -> float:
  """FLOPs per example of one forward pass (`traced_forward_flops`): with ProbSparse attention, only the
  sampled scores and the u active queries' attention count, as the model computes them."""
  return traced_forward_flops(model, model.context_length)


# Parameters models.embedding_params counts as embeddings: the token and time-feature embeddings.
EMBEDDINGS = ("enc_embed", "dec_embed")

# The paper's ETTh1 setting (§4 "Platform", the official main_informer.py defaults): L = 96, start token 48.
PAPER = dict(context_length=96, label_length=48, d_model=512, num_heads=8, encoder_layers=2, decoder_layers=1,
             d_ff=2048, factor=5, dropout=0.05, attention="prob", distil=True)
register("informer", Informer, **PAPER)
register("informer_full", Informer, **dict(PAPER, attention="full"))
