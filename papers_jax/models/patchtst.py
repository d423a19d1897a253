"""PatchTST ("A Time Series is Worth 64 Words", Nie et al., ICLR 2023).

Forecasting, `PatchTST(x)`, x (batch, L, channels) → (batch, H, channels):
  1. RevIN (Kim et al. 2022): each channel of each window is standardised by its own mean and standard
     deviation, sqrt(var + 1e-5), and the forecast is mapped back with them (the paper runs it without
     the affine part, `revin_affine=False`, the official scripts' default).
  2. Channel independence: every channel is a separate univariate series through the same weights
     ((batch · channels) sequences).
  3. Patching: patches of length P every S steps; `padding_patch="end"` first repeats the last value
     S times (the paper's ReplicationPad1d), giving N = (L − P) / S + 2 patches: 42 for L = 336 and 64 for
     L = 512 with P = 16, S = 8 (the names PatchTST/42 and /64). `padding_patch=None` drops the first
     (L − P) mod S steps instead and gives (L − P) // S + 1 patches (HF's PatchTSTPatchify, and the
     self-supervised model's non-overlapping patches).
  4. A linear patch embedding (P → D), a learned position embedding (N, D), dropout.
  5. A transformer encoder whose norms are BatchNorm over the (sequences × patches) positions (the paper:
     "BatchNorm ... outperforms LayerNorm" for time series), post-norm, GELU feed-forward, and residual
     attention (RealFormer): each layer adds the previous layer's pre-softmax scores to its own, and
     passes the sum on (`residual_attention`).
  6. The flatten head: the (N, D) output of each channel flattened (patch-major) and one linear layer
     to the H forecasts, shared by the channels.

`PatchTSTForPretraining` is the self-supervised variant (§3.2): non-overlapping patches (S = P, no
padding), 40 % of the patches of every channel replaced by zeros (a random mask per channel, as
MAE's argsort of uniform noise), the same encoder, and a linear head D → P that reconstructs every
patch; the loss is the MSE over the masked patches of the RevIN-normalised input
(`masked_patch_mse`).

Variants (`VARIANTS`, the paper's §4.1 and its official scripts): PatchTST/42 (L = 336) and
PatchTST/64 (L = 512), P = 16, S = 8, 3 layers, 16 heads, D = 128, F = 256, dropout 0.2; the "_small"
sizes (4 heads, D = 16, F = 128, dropout 0.3) are what the paper uses for ETTh1, ETTh2 and ILI to curb
overfitting. The self-supervised recipe: L = 512, P = S = 12 (42 patches), 16 heads, D = 128, F = 512,
dropout 0.2, mask ratio 0.4.

Against HF `PatchTSTForPrediction` / `PatchTSTForPretraining` (convert/hf_patchtst.py): HF has no
residual attention and no end padding, and its default is pre-norm with a fixed sin-cos position
table; with `residual_attention=False, padding_patch=None` (and HF's `pre_norm`) the outputs agree
(tests/test_patchtst.py). HF's "std" scaler is RevIN without the affine part.
"""

import math

import jax
import jax.numpy as jnp
from flax import nnx

from papers_jax.errors import ConfigError
from papers_jax.models.registry import register
from papers_jax.nn.attention import dot_product_attention
from papers_jax.nn.drop import Dropout
from papers_jax.nn.linear import Dense, param
from papers_jax.nn.mlp import ACTIVATIONS
from papers_jax.nn.norms import BatchNorm, LayerNorm

REVIN_EPS = 1e-5


def _uniform(bound: float):
  def init(key, shape, dtype=jnp.float32):
    return jax.random.uniform(key, shape, dtype, -bound, bound)
  return init


def revin_normalize(x):
  """(x − mean) / std over the time axis (1) of (batch, L, channels), std = sqrt(var + 1e-5) (ddof 0)."""
  x32 = x.astype(jnp.float32)
  mean = x32.mean(axis=1, keepdims=True)
  std = jnp.sqrt(jnp.square(x32 - mean).mean(axis=1, keepdims=True) + REVIN_EPS)
  return (x32 - mean) / std, mean, std


class RevIN(nnx.Module):
  """Reversible instance normalisation; `affine` adds RevIN's learned per-channel weight and bias."""

  def __init__(self, num_channels: int, *, affine: bool = False, rngs: nnx.Rngs):
    self.affine = affine
    self.weight = param(rngs, nnx.initializers.ones, (num_channels,), jnp.float32, ("norm",)) if affine else None
    self.bias = param(rngs, nnx.initializers.zeros, (num_channels,), jnp.float32, ("norm",)) if affine else None

  def normalize(self, x):
    y, mean, std = revin_normalize(x)
    if self.affine:
      y = y * self.weight[...] + self.bias[...]
    return y, (mean, std)

  def denormalize(self, y, stats):
    mean, std = stats
    y = y.astype(jnp.float32)
    if self.affine:
      y = (y - self.bias[...]) / (self.weight[...] + REVIN_EPS * REVIN_EPS)
    return y * std + mean


def num_patches(context_length: int, patch_length: int, stride: int, padding_patch: str | None) -> int:
  n = (max(context_length, patch_length) - patch_length) // stride + 1
  return n + 1 if padding_patch == "end" else n


def patchify(x, patch_length: int, stride: int, padding_patch: str | None):
  """(batch, L, C) → (batch, C, N, P) patches (see the module docstring for the two layouts)."""
  x = jnp.swapaxes(x, 1, 2)  # (batch, C, L)
  length = x.shape[-1]
  if padding_patch == "end":
    x = jnp.concatenate([x, jnp.repeat(x[..., -1:], stride, axis=-1)], axis=-1)
  else:
    n = (max(length, patch_length) - patch_length) // stride + 1
    x = x[..., length - (patch_length + stride * (n - 1)):]
  n = (x.shape[-1] - patch_length) // stride + 1
  index = stride * jnp.arange(n)[:, None] + jnp.arange(patch_length)[None, :]
  return x[..., index]


class Attention(nnx.Module):
  """Multi-head self-attention that can add the previous layer's scores (residual attention) and
  returns its own pre-softmax scores (float32, (batch, heads, N, N)) for the next layer."""

  def __init__(self, dim: int, num_heads: int, *, attn_drop: float = 0.0, dtype=None, param_dtype=jnp.float32,
               rngs: nnx.Rngs):
    if dim % num_heads:
      raise ConfigError(f"d_model={dim} is not divisible by num_heads={num_heads}")
    self.num_heads, self.head_dim, self.attn_drop = num_heads, dim // num_heads, attn_drop
    kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
    heads = (num_heads, self.head_dim)
    self.q = Dense(dim, heads, axes=("embed", "heads", "kv"), **kw)
    self.k = Dense(dim, heads, axes=("embed", "heads", "kv"), **kw)
    self.v = Dense(dim, heads, axes=("embed", "heads", "kv"), **kw)
    self.proj = Dense(heads, dim, axes=("heads", "kv", "embed"), **kw)

  def __call__(self, x, prev_scores=None, *, train: bool = False, rngs: nnx.Rngs | None = None):
    q, k, v = self.q(x), self.k(x), self.v(x)  # (batch, N, heads, head_dim)
    scale = 1.0 / math.sqrt(self.head_dim)
    scores = jnp.einsum("bqhd,bkhd->bhqk", q, k, preferred_element_type=jnp.float32) * scale
    if prev_scores is not None:
      scores = scores + prev_scores
    rate = self.attn_drop if train else 0.0
    out = dot_product_attention(q, k, v, bias=prev_scores, scale=scale, dropout_rate=rate,
                                dropout_rng=rngs["dropout"]() if rate > 0 else None)
    return self.proj(out), scores


class EncoderLayer(nnx.Module):
  """Attention and feed-forward sub-layers with BatchNorm (or LayerNorm), post- or pre-norm."""

  def __init__(self, dim: int, num_heads: int, d_ff: int, *, dropout: float, attn_drop: float, norm: str,
               pre_norm: bool, act: str = "gelu", dtype=None, param_dtype=jnp.float32, rngs: nnx.Rngs):
    kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
    self.pre_norm, self.act = pre_norm, act
    self.attn = Attention(dim, num_heads, attn_drop=attn_drop, **kw)
    if norm == "batchnorm":
      self.norm1, self.norm2 = BatchNorm(dim, **kw), BatchNorm(dim, **kw)
    elif norm == "layernorm":
      self.norm1, self.norm2 = LayerNorm(dim, eps=1e-5, **kw), LayerNorm(dim, eps=1e-5, **kw)
    else:
      raise ConfigError(f"norm={norm!r}; choose 'batchnorm' (the paper) or 'layernorm'")
    self.fc1 = Dense(dim, d_ff, axes=("embed", "mlp"), **kw)
    self.fc2 = Dense(d_ff, dim, axes=("mlp", "embed"), **kw)
    self.drop = Dropout(dropout)

  def _norm(self, norm, x, train):
    if isinstance(norm, BatchNorm):  # over every (sequence, patch) position
      return norm(x.reshape(-1, x.shape[-1]), train=train).reshape(x.shape)
    return norm(x)

  def _ff(self, x, train, rngs):
    return self.fc2(self.drop(ACTIVATIONS[self.act](self.fc1(x)), deterministic=not train, rngs=rngs))

  def __call__(self, x, prev_scores=None, *, train: bool = False, rngs: nnx.Rngs | None = None):
    drop = lambda y: self.drop(y, deterministic=not train, rngs=rngs)  # noqa: E731
    if self.pre_norm:
      a, scores = self.attn(self._norm(self.norm1, x, train), prev_scores, train=train, rngs=rngs)
      x = x + drop(a)
      return x + drop(self._ff(self._norm(self.norm2, x, train), train, rngs)), scores
    a, scores = self.attn(x, prev_scores, train=train, rngs=rngs)
    x = self._norm(self.norm1, x + drop(a), train)
    return self._norm(self.norm2, x + drop(self._ff(x, train, rngs)), train), scores


class PatchTSTEncoder(nnx.Module):
  """(batch, C, N, P) patches → (batch, C, N, D): embedding, position embedding, dropout, layers."""

  def __init__(self, *, patch_length: int, num_patches: int, d_model: int, num_heads: int, d_ff: int,
               num_layers: int, dropout: float, attn_drop: float, norm: str, pre_norm: bool,
               residual_attention: bool, dtype=None, param_dtype=jnp.float32, rngs: nnx.Rngs):
    kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
    self.residual_attention = residual_attention
    self.embed = Dense(patch_length, d_model, axes=(None, "embed"), **kw)
    # The paper's learned position embedding, U(−0.02, 0.02) as the official code's "zeros" init.
    self.pos_embed = param(rngs, _uniform(0.02), (num_patches, d_model), param_dtype, (None, "embed"))
    self.drop = Dropout(dropout)
    self.layers = nnx.List([
        EncoderLayer(d_model, num_heads, d_ff, dropout=dropout, attn_drop=attn_drop, norm=norm, pre_norm=pre_norm,
                     **kw) for _ in range(num_layers)])

  def __call__(self, patches, *, train: bool = False, rngs: nnx.Rngs | None = None):
    b, c, n, _ = patches.shape
    x = self.embed(patches) + self.pos_embed[...].astype(self.embed.dtype or patches.dtype)
    x = self.drop(x.reshape(b * c, n, -1), deterministic=not train, rngs=rngs)
    scores = None
    for layer in self.layers:
      x, new_scores = layer(x, scores, train=train, rngs=rngs)
      scores = new_scores if self.residual_attention else None
    return x.reshape(b, c, n, -1)


class PatchTST(nnx.Module):
  """Supervised PatchTST: (batch, context_length, num_channels) → (batch, prediction_length, num_channels)."""

  def __init__(self, *, num_channels: int = 7, context_length: int = 336, prediction_length: int = 96,
               patch_length: int = 16, stride: int = 8, padding_patch: str | None = "end", d_model: int = 128,
               num_heads: int = 16, d_ff: int = 256, num_layers: int = 3, dropout: float = 0.2,
               attn_drop: float = 0.0, head_drop: float = 0.0, norm: str = "batchnorm", pre_norm: bool = False,
               residual_attention: bool = True, revin: bool = True, revin_affine: bool = False, dtype=None,
               param_dtype=jnp.float32, rngs: nnx.Rngs):
    if padding_patch not in ("end", None, ""):
      raise ConfigError(f"padding_patch={padding_patch!r}; choose 'end' (the paper) or None")
    if context_length < patch_length:
      raise ConfigError(f"context_length={context_length} is shorter than patch_length={patch_length}")
    self.num_channels, self.context_length, self.prediction_length = num_channels, context_length, prediction_length
    self.patch_length, self.stride, self.padding_patch = patch_length, stride, padding_patch or None
    self.num_patches = num_patches(context_length, patch_length, stride, self.padding_patch)
    self.revin = RevIN(num_channels, affine=revin_affine, rngs=rngs) if revin else None
    self.encoder = PatchTSTEncoder(
        patch_length=patch_length, num_patches=self.num_patches, d_model=d_model, num_heads=num_heads, d_ff=d_ff,
        num_layers=num_layers, dropout=dropout, attn_drop=attn_drop, norm=norm, pre_norm=pre_norm,
        residual_attention=residual_attention, dtype=dtype, param_dtype=param_dtype, rngs=rngs)
    self.head = Dense(self.num_patches * d_model, prediction_length, axes=("embed", None), dtype=dtype,
                      param_dtype=param_dtype, rngs=rngs)
    self.head_drop = Dropout(head_drop)

  def __call__(self, x, *, train: bool = False, rngs: nnx.Rngs | None = None):
    if x.shape[1:] != (self.context_length, self.num_channels):
      raise ValueError(f"PatchTST takes (batch, {self.context_length}, {self.num_channels}), got {x.shape}")
    stats = None
    if self.revin is not None:
      x, stats = self.revin.normalize(x)
    z = self.encoder(patchify(x, self.patch_length, self.stride, self.padding_patch), train=train, rngs=rngs)
    y = self.head(z.reshape(z.shape[0], z.shape[1], -1))  # (batch, C, H)
    y = jnp.swapaxes(self.head_drop(y, deterministic=not train, rngs=rngs), 1, 2)
    return y if stats is None else self.revin.denormalize(y, stats)


def random_patch_mask(key, shape, mask_ratio: float):
  """Boolean (batch, C, N) mask, True = masked: per (example, channel), the int(N · (1 − ratio)) patches
  of smallest uniform noise are kept (HF's and the official code's argsort of noise)."""
  n = shape[-1]
  keep = int(n * (1 - mask_ratio))
  ranks = jnp.argsort(jnp.argsort(jax.random.uniform(key, shape), axis=-1), axis=-1)
  return ranks >= keep


class PatchTSTForPretraining(nnx.Module):
  """Masked-patch pre-training: returns (reconstructed patches, target patches, mask), each (batch, C, N, P)
  but the mask (batch, C, N). Pass `mask` to fix it, else `rng` draws one at `mask_ratio`."""

  def __init__(self, *, num_channels: int = 7, context_length: int = 512, patch_length: int = 12,
               stride: int = 12, d_model: int = 128, num_heads: int = 16, d_ff: int = 512, num_layers: int = 3,
               dropout: float = 0.2, attn_drop: float = 0.0, head_drop: float = 0.2, norm: str = "batchnorm",
               pre_norm: bool = False, residual_attention: bool = True, revin: bool = True,
               mask_ratio: float = 0.4, prediction_length: int = 0, dtype=None, param_dtype=jnp.float32,
               rngs: nnx.Rngs):
    del prediction_length  # the forecast task passes it to every model; pre-training forecasts nothing
    self.num_channels, self.context_length, self.mask_ratio = num_channels, context_length, mask_ratio
    self.patch_length, self.stride, self.revin = patch_length, stride, revin
    self.num_patches = num_patches(context_length, patch_length, stride, None)
    self.encoder = PatchTSTEncoder(
        patch_length=patch_length, num_patches=self.num_patches, d_model=d_model, num_heads=num_heads, d_ff=d_ff,
        num_layers=num_layers, dropout=dropout, attn_drop=attn_drop, norm=norm, pre_norm=pre_norm,
        residual_attention=residual_attention, dtype=dtype, param_dtype=param_dtype, rngs=rngs)
    self.head_drop = Dropout(head_drop)
    self.head = Dense(d_model, patch_length, axes=("embed", None), dtype=dtype, param_dtype=param_dtype, rngs=rngs)

  def __call__(self, x, *, mask=None, rng=None, train: bool = False, rngs: nnx.Rngs | None = None):
    if self.revin:
      x, _, _ = revin_normalize(x)
    patches = patchify(x, self.patch_length, self.stride, None)
    if mask is None:
      if rng is None:
        raise ValueError("PatchTSTForPretraining needs `mask` or `rng`")
      mask = random_patch_mask(rng, patches.shape[:3], self.mask_ratio)
    z = self.encoder(jnp.where(mask[..., None], 0.0, patches).astype(patches.dtype), train=train, rngs=rngs)
    pred = self.head(self.head_drop(z, deterministic=not train, rngs=rngs))
    return pred, patches, mask


def masked_patch_mse(pred, target, mask):
  """Mean squared error per patch, averaged over the masked patches (HF's `masked_loss`)."""
  per_patch = jnp.square(pred.astype(jnp.float32) - target.astype(jnp.float32)).mean(-1)
  mask = mask.astype(jnp.float32)
  return (per_patch * mask).sum() / (mask.sum() + 1e-10)


def forward_flops(model) -> float:
  """Matmul FLOPs of one forward pass per example (2 per multiply-add), every channel: the patch embedding,
  per layer the q/k/v/output projections, QKᵀ and the attention-weighted values, the feed-forward, then the
  head (the flatten head, or the pre-training head on every patch). Residual attention's score sum and
  RevIN are elementwise and not counted."""
  enc = model.encoder
  p, d = enc.embed.kernel.shape
  n = enc.pos_embed.shape[0]
  flops = 2 * n * p * d
  for layer in enc.layers:
    f = layer.fc1.kernel.shape[1]
    flops += 4 * 2 * n * d * d + 2 * 2 * n * n * d + 2 * 2 * n * d * f
  flops += 2 * math.prod(model.head.kernel.shape) * (n if isinstance(model, PatchTSTForPretraining) else 1)
  return float(model.num_channels * flops)


# Parameters models.embedding_params counts as embeddings: the patch projection and the position table.
EMBEDDINGS = ("encoder.embed", "encoder.pos_embed")


# name: (class, settings). Sizes from §4.1 / appendix A.1.4 and the official scripts.
BASE = dict(num_layers=3, num_heads=16, d_model=128, d_ff=256, dropout=0.2, patch_length=16, stride=8)
SMALL = dict(num_layers=3, num_heads=4, d_model=16, d_ff=128, dropout=0.3, patch_length=16, stride=8)
VARIANTS = {
    "patchtst_42": (PatchTST, dict(BASE, context_length=336)),
    "patchtst_64": (PatchTST, dict(BASE, context_length=512)),
    "patchtst_42_small": (PatchTST, dict(SMALL, context_length=336)),
    "patchtst_64_small": (PatchTST, dict(SMALL, context_length=512)),
    "patchtst_pretrain": (PatchTSTForPretraining, dict(
        context_length=512, patch_length=12, stride=12, num_layers=3, num_heads=16, d_model=128, d_ff=512,
        dropout=0.2, mask_ratio=0.4)),
}
for _name, (_cls, _settings) in VARIANTS.items():
  register(_name, _cls, **_settings)
