"""ATD, the Adaptive Token Dictionary transformer for image super-resolution (Zhang et al., CVPR 2024,
"Transcending the Limit of Local Window: Advanced Super-Resolution Transformer with Adaptive Token
Dictionary"), after the paper and its official code (LabShuHangGU/Adaptive-Token-Dictionary).

Each ATD layer reads LN(x) through one fused qkv projection and sums three attentions into the residual:
- SW-MSA: Swin window attention (M × M windows, relative-position bias, every other layer shifted by M/2);
- TDCA, token-dictionary cross-attention: the tokens (queries, projected to a reduced width r) attend to a
  dictionary of m learned tokens T (keys projected to r, values to C), with cosine logits scaled per
  dictionary token by 1 + clamp(s_j, 0, 1)·log m (s initialised to ½): `token_dictionary_attention`;
- AC-MSA, adaptive category-based attention: each token's category is the dictionary entry it attends to
  most (argmax of TDCA's map); tokens sorted by category are cut into groups of `category_size` (the last
  group filled up with the mirrored tail) and attend within their group with logits q·k × a learned scale
  (initialised to 10, at most 100): `category_attention`.
Then x + ConvFFN(LN(x)) (fc1, GELU, h + GELU(DWConv_k(h)), fc2). Adaptive dictionary refinement: after every
layer but the last of a group, T ← σ(θ)·T + (1 − σ(θ))·softmax_n(InstanceNorm(Aᵀ))·x (θ per dictionary token,
initialised to 0), so the next layer's dictionary summarises this image; every group starts again from its
own learned T (initialised N(0, 1)). A group (ATDB) ends with a conv plus its input; the head and the
reconstruction are SwinIR's (models/sr_common.py); the input is padded to a multiple of M by mirroring and the
output cropped back, as the code.

Variants (the official option files):
  atd        C 210, 6 groups × 6 layers, heads 6, M 16, category 256, m 128, r 20, ConvFFN k 5, MLP ratio 2,
             "pixelshuffle"
  atd_light  C 48, 4 × 6, heads 4, M 16, category 128, m 64, r 8, ConvFFN k 7, MLP ratio 1, "pixelshuffledirect"
tests/test_super_resolution.py checks our counts against the official code's (counted from its modules).

Choices where paper and code are silent or we differ: the sort by category is stable (torch's
`sort(stable=False)` leaves ties in an unspecified order); the mask of shifted windows is boolean (the code's
-100 is the same to float precision); the code's gradient checkpointing (a memory choice) is not used.
"""

import math

import jax
import jax.numpy as jnp
from flax import nnx

from papers_jax.models import sr_common
from papers_jax.models.registry import register
from papers_jax.models.swin import relative_position_index
from papers_jax.nn import LayerNorm, dot_product_attention, param
from papers_jax.nn.linear import Dense
from papers_jax.nn.mlp import gelu

NORM_EPS = 1e-5

VARIANTS = {
    "atd": dict(embed_dim=210, depths=(6,) * 6, num_heads=(6,) * 6, window_size=16, category_size=256,
                num_tokens=128, reducted_dim=20, convffn_kernel_size=5, mlp_ratio=2.0, upsampler="pixelshuffle"),
    "atd_light": dict(embed_dim=48, depths=(6,) * 4, num_heads=(4,) * 4, window_size=16, category_size=128,
                      num_tokens=64, reducted_dim=8, convffn_kernel_size=7, mlp_ratio=1.0,
                      upsampler="pixelshuffledirect"),
}


def _dense(i, o, use_bias=True, **kw):
  return Dense(i, o, axes=(None, None), use_bias=use_bias, kernel_init=sr_common.NORMAL_INIT, **kw)


def _normalize(x):
  return x / jnp.maximum(jnp.linalg.norm(x, axis=-1, keepdims=True), 1e-12)  # torch's F.normalize


def token_dictionary_attention(q, k, v, scale):
  """TDCA. q: (B, n, r) token queries; k: (B, m, r), v: (B, m, C) of the dictionary; scale: (m,).
  Returns (out (B, n, C), attention (B, n, m)): A = softmax_j(cos(q_i, k_j) · (1 + clamp(s_j, 0, 1) log m))."""
  m = k.shape[1]
  logits = _normalize(q) @ jnp.swapaxes(_normalize(k), 1, 2)
  # The attention map is itself an output (it categorises the tokens and refines the dictionary), and the
  # values are wider than the keys, so this is written out rather than through dot_product_attention.
  attn = jax.nn.softmax((logits * (1 + jnp.clip(scale, 0, 1) * math.log(m))).astype(jnp.float32), axis=-1)
  return (attn.astype(v.dtype) @ v), attn


def category_attention(qkv, sim, num_heads: int, category_size: int, logit_scale):
  """AC-MSA before its output projection. qkv: (B, n, 3C); sim: (B, n, m) TDCA's map; logit_scale: scalar
  (the log of the logits' scale, clamped at log 100). Tokens sorted by argmax_j sim are grouped by
  `category_size` (the last group padded with the mirrored tail) and attend within their group; the result
  returns to the tokens' order. Returns (B, n, C)."""
  b, n, c3 = qkv.shape
  c = c3 // 3
  size = min(n, category_size)
  groups = -(-n // size)
  pad = groups * size - n
  order = jnp.argsort(jnp.argmax(sim, axis=-1), axis=-1, stable=True)  # (B, n)
  sorted_qkv = jnp.take_along_axis(qkv, order[..., None], axis=1)
  if pad:
    sorted_qkv = jnp.concatenate([sorted_qkv, sorted_qkv[:, n - pad:][:, ::-1]], axis=1)
  q, k, v = (a.reshape(b * groups, size, num_heads, c // num_heads) for a in jnp.split(sorted_qkv, 3, axis=-1))
  scale = jnp.exp(jnp.minimum(logit_scale, math.log(100.0)))
  y = dot_product_attention(q * scale.astype(q.dtype), k, v, scale=1.0).reshape(b, groups * size, c)[:, :n]
  inverse = jnp.argsort(order, axis=-1)
  return jnp.take_along_axis(y, inverse[..., None], axis=1)


def instance_norm_tokens(x, weight, bias, eps: float = 1e-5):
  """torch's InstanceNorm1d(m, affine=True) of x (B, m, n): each (b, j) row normalised over n."""
  x32 = x.astype(jnp.float32)
  mean = x32.mean(-1, keepdims=True)
  var = jnp.square(x32 - mean).mean(-1, keepdims=True)
  return (x32 - mean) * jax.lax.rsqrt(var + eps) * weight[:, None] + bias[:, None]


class ATDLayer(nnx.Module):
  """One ATD transformer layer (module docstring): (x, dictionary) → (x, refined dictionary)."""

  def __init__(self, dim: int, num_heads: int, window: int, *, shifted: bool, category_size: int, num_tokens: int,
               reducted_dim: int, convffn_kernel_size: int, mlp_ratio: float, is_last: bool, qkv_bias: bool = True,
               dtype=None, param_dtype=jnp.float32, rngs: nnx.Rngs):
    kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
    self.num_heads, self.window, self.shift = num_heads, window, window // 2 if shifted else 0
    self.category_size, self.is_last = category_size, is_last
    self.norm1 = LayerNorm(dim, eps=NORM_EPS, **kw)
    self.norm2 = LayerNorm(dim, eps=NORM_EPS, **kw)
    if not is_last:
      self.norm3_scale = param(rngs, nnx.initializers.ones, (num_tokens,), param_dtype, (None,))
      self.norm3_bias = param(rngs, nnx.initializers.zeros, (num_tokens,), param_dtype, (None,))
      self.sigma = param(rngs, nnx.initializers.zeros, (num_tokens,), param_dtype, (None,))
    self.wqkv = _dense(dim, 3 * dim, use_bias=qkv_bias, **kw)
    # SW-MSA: the relative-position bias table and the output projection (the qkv is the layer's).
    self.relative_position_bias_table = param(rngs, sr_common.NORMAL_INIT, ((2 * window - 1) ** 2, num_heads),
                                              param_dtype, (None, "heads"))
    self.proj_win = _dense(dim, dim, **kw)
    # TDCA
    self.wq = _dense(dim, reducted_dim, use_bias=qkv_bias, **kw)
    self.wk = _dense(dim, reducted_dim, use_bias=qkv_bias, **kw)
    self.wv = _dense(dim, dim, use_bias=qkv_bias, **kw)
    self.td_scale = param(rngs, nnx.initializers.constant(0.5), (num_tokens,), param_dtype, (None,))
    # AC-MSA
    self.proj_aca = _dense(dim, dim, use_bias=qkv_bias, **kw)
    self.logit_scale = param(rngs, nnx.initializers.constant(math.log(10.0)), (), param_dtype, ())
    # ConvFFN
    hidden = int(dim * mlp_ratio)
    self.fc1 = _dense(dim, hidden, **kw)
    self.dwconv = sr_common.conv(hidden, hidden, convffn_kernel_size, groups=hidden, **kw)
    self.fc2 = _dense(hidden, dim, **kw)

  def window_attention(self, qkv):
    """SW-MSA of (B, H, W, 3C) on a grid the window divides → (B, H, W, C) (before the projection)."""
    b, h, w, c3 = qkv.shape
    c, m, s = c3 // 3, self.window, self.shift
    if s:
      qkv = jnp.roll(qkv, (-s, -s), axis=(1, 2))
    win = qkv.reshape(b, h // m, m, w // m, m, c3).transpose(0, 1, 3, 2, 4, 5).reshape(-1, m * m, c3)
    q, k, v = (a.reshape(a.shape[0], m * m, self.num_heads, c // self.num_heads) for a in jnp.split(win, 3, -1))
    bias = self.relative_position_bias_table[...].astype(jnp.float32)[relative_position_index((m, m))]
    mask = None
    if s:
      regions = jnp.asarray(sr_common.same_region_mask((h, w), (m, m), (s, s)))
      mask = jnp.tile(regions[:, None], (b, 1, 1, 1))
    y = dot_product_attention(q, k, v, bias=bias.transpose(2, 0, 1)[None], mask=mask)
    y = y.reshape(b, h // m, w // m, m, m, c).transpose(0, 1, 3, 2, 4, 5).reshape(b, h, w, c)
    return jnp.roll(y, (s, s), axis=(1, 2)) if s else y

  def __call__(self, x, td):
    b, h, w, c = x.shape
    tokens = x.reshape(b, h * w, c)
    normed = self.norm1(tokens)
    qkv = self.wqkv(normed)
    x_atd, sim = token_dictionary_attention(self.wq(normed), self.wk(td), self.wv(td), self.td_scale[...])
    x_aca = self.proj_aca(category_attention(qkv, sim, self.num_heads, self.category_size, self.logit_scale[...]))
    x_win = self.proj_win(self.window_attention(qkv.reshape(b, h, w, 3 * c))).reshape(b, h * w, c)
    tokens = tokens + x_win + x_atd + x_aca
    hidden = gelu(self.fc1(self.norm2(tokens)))
    hidden = hidden + gelu(self.dwconv(hidden.reshape(b, h, w, -1))).reshape(hidden.shape)
    tokens = tokens + self.fc2(hidden)
    if not self.is_last:  # adaptive dictionary refinement
      weights = jax.nn.softmax(instance_norm_tokens(jnp.swapaxes(sim, 1, 2), self.norm3_scale[...],
                                                    self.norm3_bias[...]), axis=-1)  # (B, m, n)
      keep = jax.nn.sigmoid(self.sigma[...])[None, :, None]
      td = keep * td + (1 - keep) * (weights.astype(tokens.dtype) @ tokens)
    return tokens.reshape(b, h, w, c), td


class ATDB(nnx.Module):
  """A residual group: ATD layers sharing one refined dictionary, a conv, plus the group's input."""

  def __init__(self, dim: int, depth: int, num_heads: int, window: int, *, category_size: int, num_tokens: int,
               reducted_dim: int, convffn_kernel_size: int, mlp_ratio: float, resi_connection: str, dtype=None,
               param_dtype=jnp.float32, rngs: nnx.Rngs):
    kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
    self.layers = nnx.List([
        ATDLayer(dim, num_heads, window, shifted=i % 2 == 1, category_size=category_size, num_tokens=num_tokens,
                 reducted_dim=reducted_dim, convffn_kernel_size=convffn_kernel_size, mlp_ratio=mlp_ratio,
                 is_last=i == depth - 1, **kw) for i in range(depth)])
    self.td = param(rngs, nnx.initializers.normal(1.0), (num_tokens, dim), param_dtype, (None, None))
    self.conv = sr_common.ResidualConv(dim, resi_connection, **kw)

  def __call__(self, x):
    td = jnp.broadcast_to(self.td[...].astype(x.dtype), (x.shape[0],) + self.td.shape)
    y = x
    for layer in self.layers:
      y, td = layer(y, td)
    return self.conv(y) + x


class ATD(nnx.Module):
  """ATD (module docstring): (B, h, w, C) normalised LR → (B, h·s, w·s, C)."""

  def __init__(self, *, img_size: int = 64, in_chans: int = 3, upscale: int = 2, embed_dim: int = 210,
               depths=(6,) * 6, num_heads=(6,) * 6, window_size: int = 16, category_size: int = 256,
               num_tokens: int = 128, reducted_dim: int = 20, convffn_kernel_size: int = 5, mlp_ratio: float = 2.0,
               upsampler: str = "pixelshuffle", resi_connection: str = "1conv", dtype=None, param_dtype=jnp.float32,
               rngs: nnx.Rngs):
    kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
    self.img_size, self.in_chans, self.upscale, self.window_size = img_size, in_chans, upscale, window_size
    self.conv_first = sr_common.conv(in_chans, embed_dim, **kw)
    self.patch_norm = LayerNorm(embed_dim, eps=NORM_EPS, **kw)
    self.layers = nnx.List([
        ATDB(embed_dim, d, h, window_size, category_size=category_size, num_tokens=num_tokens,
             reducted_dim=reducted_dim, convffn_kernel_size=convffn_kernel_size, mlp_ratio=mlp_ratio,
             resi_connection=resi_connection, **kw)
        for d, h in zip(depths, num_heads)])
    self.norm = LayerNorm(embed_dim, eps=NORM_EPS, **kw)
    self.conv_after_body = sr_common.ResidualConv(embed_dim, resi_connection, **kw)
    self.upsample = sr_common.Upsampler(embed_dim, in_chans, upscale, upsampler, **kw)

  def __call__(self, x, *, train: bool = False, rngs: nnx.Rngs | None = None):
    del train, rngs  # no dropout or DropPath in ATD
    x, (h, w) = sr_common.reflect_pad_to(x, self.window_size)
    x = self.conv_first(x)
    y = self.patch_norm(x)
    for layer in self.layers:
      y = layer(y)
    x = self.conv_after_body(self.norm(y)) + x
    return self.upsample(x)[:, :h * self.upscale, :w * self.upscale].astype(jnp.float32)


def forward_flops(model: ATD, **kw) -> float:
  return sr_common.sr_flops(model, **kw)


for _name, _cfg in VARIANTS.items():
  register(_name, ATD, preprocessing=sr_common.SR_PREPROCESSING, **_cfg)

EMBEDDINGS = ()

