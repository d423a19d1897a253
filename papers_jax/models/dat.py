"""DAT, the Dual Aggregation Transformer for image super-resolution (Chen et al., ICCV 2023, "Dual Aggregation
Transformer for Image Super-Resolution"), after the paper and its official code (zhengchen1999/DAT).

The body is residual groups (RG) of `depth` dual aggregation transformer blocks (DATB) that alternate
- a dual spatial transformer block (even blocks, DSTB): spatial-window self-attention with half of the heads
  in H_sp × W_sp rectangle windows (`split_size`) and the other half in W_sp × H_sp windows, a dynamic
  position bias (an MLP from the 2-D offset to a per-head bias, CrossFormer's), and windows shifted by half
  their sides in every other DSTB (the code's rule: in even groups the blocks 2, 6, 10, ..., in odd groups
  0, 4, 8, ...);
- a dual channel transformer block (odd blocks, DCTB): channel self-attention (XCiT's): per head, the
  channels attend to each other, logits = cos(q_c, k_c') over the tokens × a learned temperature per head;
each with the adaptive interaction module (AIM): a parallel 3×3 depthwise conv branch on V (+ BatchNorm,
GELU) and two gates between the branches: a channel map (global pool, 1×1 conv to C/8, BN, GELU, 1×1 conv)
and a spatial map (1×1 conv to C/16, BN, GELU, 1×1 conv to 1), each through a sigmoid. In a DSTB the channel
map comes from the conv branch and gates the attention, the spatial map from the attention and gates the
conv; in a DCTB the other way round (the spatial map from the conv gates the attention, the channel map from
the attention gates the conv). Then the spatial-gate feed-forward network (SGFN): fc1 → GELU → split the
hidden channels in two halves x1, x2; x1 · DWConv3×3(LayerNorm(x2)); fc2 from the half width.
Pre-norm residuals with DropPath (rising to 0.1), a conv after each group plus its input, and SwinIR's head
and reconstruction (models/sr_common.py).

Variants (the official code's option files; parameters at ×4 as its README reports them):
  dat_s      C 180, 6 groups × 6 blocks, heads 6, split (8, 16), expansion 2, "pixelshuffle", 1conv   11.21M
  dat        C 180, 6 × 6, heads 6, split (8, 32), expansion 4, "pixelshuffle", 1conv                 14.80M
  dat_2      C 180, 6 × 6, heads 6, split (8, 32), expansion 2, "pixelshuffle", 1conv                 11.21M
  dat_light  C 60, 1 group × 18 blocks, heads 6, split (8, 32), expansion 2, "pixelshuffledirect", 3conv 573K
tests/test_super_resolution.py checks our counts against these.

Choices where the paper is silent and its code decides: qkv with bias, the -100 additive mask of the code is
a boolean mask here (the same to float precision), the grid is zero-padded to a multiple of the larger window
side (as the code), and the AIM's BatchNorms use the batch statistics in training and running ones in
evaluation (torch's momentum 0.1).
"""

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from papers_jax.models import sr_common
from papers_jax.models.registry import register
from papers_jax.nn import DropPath, LayerNorm, dot_product_attention
from papers_jax.nn.linear import Dense
from papers_jax.nn.mlp import gelu
from papers_jax.nn.norms import BatchNorm

NORM_EPS = 1e-5

VARIANTS = {
    "dat_s": dict(embed_dim=180, depths=(6,) * 6, num_heads=(6,) * 6, split_size=(8, 16), expansion_factor=2.0,
                  upsampler="pixelshuffle", resi_connection="1conv"),
    "dat": dict(embed_dim=180, depths=(6,) * 6, num_heads=(6,) * 6, split_size=(8, 32), expansion_factor=4.0,
                upsampler="pixelshuffle", resi_connection="1conv"),
    "dat_2": dict(embed_dim=180, depths=(6,) * 6, num_heads=(6,) * 6, split_size=(8, 32), expansion_factor=2.0,
                  upsampler="pixelshuffle", resi_connection="1conv"),
    "dat_light": dict(embed_dim=60, depths=(18,), num_heads=(6,), split_size=(8, 32), expansion_factor=2.0,
                      upsampler="pixelshuffledirect", resi_connection="3conv"),
}
# The official README's parameter counts (×4).
PAPER_PARAMS_X4 = {"dat_s": 11.21e6, "dat": 14.80e6, "dat_2": 11.21e6, "dat_light": 573e3}


def _dense(i, o, use_bias=True, **kw):
  return Dense(i, o, axes=(None, None), use_bias=use_bias, kernel_init=sr_common.NORMAL_INIT, **kw)


def channel_self_attention(q, k, v, temperature):
  """XCiT / DAT channel attention. q, k, v: (B, N, heads, d) tokens; temperature: (heads,).
  Per head, A = softmax_c'(cos(q[:, c], k[:, c']) · t) over the d channels (the cosine over the N tokens), and
  out[:, c] = Σ_c' A[c, c'] v[:, c']. Returns (B, N, heads, d)."""
  qn = q / jnp.maximum(jnp.linalg.norm(q, axis=1, keepdims=True), 1e-12)  # torch F.normalize over the tokens
  kn = k / jnp.maximum(jnp.linalg.norm(k, axis=1, keepdims=True), 1e-12)
  # Channels as the attention's "length" and tokens as its features: (B, d, heads, N).
  qt, kt, vt = (jnp.swapaxes(a, 1, 3) for a in (qn * temperature[None, None, :, None], kn, v))
  out = dot_product_attention(qt, kt, vt, scale=1.0)
  return jnp.swapaxes(out, 1, 3)


class DynamicPosBias(nnx.Module):
  """The offset (dy, dx) → per-head bias MLP: Linear(2, p), 2 × (LN, ReLU, Linear(p, p)), LN, ReLU, Linear(p, heads)."""

  def __init__(self, dim: int, num_heads: int, *, dtype=None, param_dtype=jnp.float32, rngs: nnx.Rngs):
    kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
    p = dim // 4
    self.pos_proj = _dense(2, p, **kw)
    self.norms = nnx.List([LayerNorm(p, eps=NORM_EPS, **kw) for _ in range(3)])
    self.fcs = nnx.List([_dense(p, p, **kw), _dense(p, p, **kw), _dense(p, num_heads, **kw)])

  def __call__(self, offsets):
    x = self.pos_proj(offsets)
    for norm, fc in zip(self.norms, self.fcs):
      x = fc(jax.nn.relu(norm(x)))
    return x


def _offsets_and_index(window: tuple[int, int]):
  """The (2wh−1)(2ww−1) offsets (dy, dx) as floats and the (N, N) index of pair (i, j) into them."""
  wh, ww = window
  dy, dx = np.meshgrid(np.arange(1 - wh, wh), np.arange(1 - ww, ww), indexing="ij")
  offsets = np.stack([dy.ravel(), dx.ravel()], 1).astype(np.float32)
  coords = np.stack(np.meshgrid(np.arange(wh), np.arange(ww), indexing="ij")).reshape(2, -1)
  rel = coords[:, :, None] - coords[:, None, :]
  return offsets, (rel[0] + wh - 1) * (2 * ww - 1) + rel[1] + ww - 1


def _windows(x, window):
  b, h, w, c = x.shape
  wh, ww = window
  x = x.reshape(b, h // wh, wh, w // ww, ww, c).transpose(0, 1, 3, 2, 4, 5)
  return x.reshape(-1, wh * ww, c)


def _unwindows(x, window, grid):
  (h, w), (wh, ww) = grid, window
  x = x.reshape(-1, h // wh, w // ww, wh, ww, x.shape[-1]).transpose(0, 1, 3, 2, 4, 5)
  return x.reshape(-1, h, w, x.shape[-1])


class WindowBranch(nnx.Module):
  """Self-attention of half of the heads in rectangle windows, with the dynamic position bias."""

  def __init__(self, dim: int, num_heads: int, window: tuple[int, int], *, dtype=None, param_dtype=jnp.float32,
               rngs: nnx.Rngs):
    self.window, self.num_heads = tuple(window), num_heads
    self.pos = DynamicPosBias(dim // 4, num_heads, dtype=dtype, param_dtype=param_dtype, rngs=rngs)

  def __call__(self, q, k, v, shift: tuple[int, int] | None):
    """q, k, v: (B, H, W, c) on a grid the window divides → (B, H, W, c)."""
    b, h, w, c = q.shape
    if shift:
      q, k, v = (jnp.roll(a, (-shift[0], -shift[1]), axis=(1, 2)) for a in (q, k, v))
    heads = self.num_heads
    q, k, v = (_windows(a, self.window).reshape(-1, self.window[0] * self.window[1], heads, c // heads)
               for a in (q, k, v))
    offsets, index = _offsets_and_index(self.window)
    bias = self.pos(jnp.asarray(offsets)).astype(jnp.float32)[index].transpose(2, 0, 1)[None]  # (1, heads, N, N)
    mask = None
    if shift:
      m = sr_common.same_region_mask((h, w), self.window, shift)  # (windows, N, N)
      mask = jnp.tile(jnp.asarray(m)[:, None], (b, 1, 1, 1))
    y = dot_product_attention(q, k, v, bias=bias, mask=mask)
    y = _unwindows(y.reshape(y.shape[0], y.shape[1], c), self.window, (h, w))
    if shift:
      y = jnp.roll(y, shift, axis=(1, 2))
    return y


class ConvBranch(nnx.Module):
  """The AIM's parallel branch: 3×3 depthwise conv, BatchNorm, GELU."""

  def __init__(self, dim: int, *, dtype=None, param_dtype=jnp.float32, rngs: nnx.Rngs):
    self.conv = sr_common.conv(dim, dim, groups=dim, dtype=dtype, param_dtype=param_dtype, rngs=rngs)
    self.bn = BatchNorm(dim, dtype=dtype, param_dtype=param_dtype, rngs=rngs)

  def __call__(self, x, *, train: bool):
    return gelu(self.bn(self.conv(x), train=train))


class ChannelMap(nnx.Module):
  """AIM's channel interaction (before the sigmoid): pool, 1×1 conv C → C/8, BN, GELU, 1×1 conv → C."""

  def __init__(self, dim: int, *, dtype=None, param_dtype=jnp.float32, rngs: nnx.Rngs):
    kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
    self.conv1, self.bn = sr_common.conv(dim, dim // 8, 1, **kw), BatchNorm(dim // 8, **kw)
    self.conv2 = sr_common.conv(dim // 8, dim, 1, **kw)

  def __call__(self, x, *, train: bool):
    return self.conv2(gelu(self.bn(self.conv1(x.mean(axis=(1, 2), keepdims=True)), train=train)))


class SpatialMap(nnx.Module):
  """AIM's spatial interaction (before the sigmoid): 1×1 conv C → C/16, BN, GELU, 1×1 conv → 1."""

  def __init__(self, dim: int, *, dtype=None, param_dtype=jnp.float32, rngs: nnx.Rngs):
    kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
    self.conv1, self.bn = sr_common.conv(dim, dim // 16, 1, **kw), BatchNorm(dim // 16, **kw)
    self.conv2 = sr_common.conv(dim // 16, 1, 1, **kw)

  def __call__(self, x, *, train: bool):
    return self.conv2(gelu(self.bn(self.conv1(x), train=train)))


class AdaptiveSpatialAttention(nnx.Module):
  """The DSTB's mixer: two window branches (H_sp × W_sp and W_sp × H_sp) + the conv branch, joined by the AIM."""

  def __init__(self, dim: int, num_heads: int, split_size: tuple[int, int], *, shifted: bool, qkv_bias: bool = True,
               dtype=None, param_dtype=jnp.float32, rngs: nnx.Rngs):
    kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
    s0, s1 = split_size
    self.split_size, self.shifted = (s0, s1), shifted
    self.qkv = _dense(dim, 3 * dim, use_bias=qkv_bias, **kw)
    self.proj = _dense(dim, dim, **kw)
    self.attns = nnx.List([WindowBranch(dim // 2, num_heads // 2, (s0, s1), **kw),
                           WindowBranch(dim // 2, num_heads // 2, (s1, s0), **kw)])
    self.dwconv = ConvBranch(dim, **kw)
    self.channel_interaction = ChannelMap(dim, **kw)
    self.spatial_interaction = SpatialMap(dim, **kw)

  def __call__(self, x, *, train: bool):
    b, h, w, c = x.shape
    q, k, v = jnp.split(self.qkv(x), 3, axis=-1)
    side = max(self.split_size)
    pad = ((0, 0), (0, -h % side), (0, -w % side), (0, 0))  # zeros to a multiple of the larger window side
    qp, kp, vp = (jnp.pad(a, pad) for a in (q, k, v))
    s0, s1 = self.split_size[0] // 2, self.split_size[1] // 2
    halves = []
    for i, (branch, shift) in enumerate(zip(self.attns, ((s0, s1), (s1, s0)))):
      part = slice(i * c // 2, (i + 1) * c // 2)
      halves.append(branch(qp[..., part], kp[..., part], vp[..., part], shift if self.shifted else None))
    attended = jnp.concatenate(halves, -1)[:, :h, :w]
    conv_x = self.dwconv(v, train=train)
    channel = jax.nn.sigmoid(self.channel_interaction(conv_x, train=train))
    spatial = jax.nn.sigmoid(self.spatial_interaction(attended, train=train))
    return self.proj(attended * channel + conv_x * spatial)


class AdaptiveChannelAttention(nnx.Module):
  """The DCTB's mixer: channel self-attention + the conv branch, joined by the AIM."""

  def __init__(self, dim: int, num_heads: int, *, qkv_bias: bool = True, dtype=None, param_dtype=jnp.float32,
               rngs: nnx.Rngs):
    kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
    self.num_heads = num_heads
    self.temperature = nnx.Param(jnp.ones((num_heads,), param_dtype), axes=(None,))
    self.qkv = _dense(dim, 3 * dim, use_bias=qkv_bias, **kw)
    self.proj = _dense(dim, dim, **kw)
    self.dwconv = ConvBranch(dim, **kw)
    self.channel_interaction = ChannelMap(dim, **kw)
    self.spatial_interaction = SpatialMap(dim, **kw)

  def __call__(self, x, *, train: bool):
    b, h, w, c = x.shape
    q, k, v = jnp.split(self.qkv(x), 3, axis=-1)
    heads = self.num_heads
    tokens = lambda a: a.reshape(b, h * w, heads, c // heads)  # noqa: E731
    attended = channel_self_attention(tokens(q), tokens(k), tokens(v), self.temperature[...]).reshape(b, h, w, c)
    conv_x = self.dwconv(v, train=train)
    spatial = jax.nn.sigmoid(self.spatial_interaction(conv_x, train=train))
    channel = jax.nn.sigmoid(self.channel_interaction(attended, train=train))
    return self.proj(attended * spatial + conv_x * channel)


class SpatialGate(nnx.Module):
  """SGFN's gate on the hidden features: x1 · DWConv3×3(LayerNorm(x2)), x1 and x2 the two channel halves."""

  def __init__(self, dim: int, *, dtype=None, param_dtype=jnp.float32, rngs: nnx.Rngs):
    self.norm = LayerNorm(dim, eps=NORM_EPS, dtype=dtype, param_dtype=param_dtype, rngs=rngs)
    self.conv = sr_common.conv(dim, dim, groups=dim, dtype=dtype, param_dtype=param_dtype, rngs=rngs)

  def __call__(self, x):
    x1, x2 = jnp.split(x, 2, axis=-1)
    return x1 * self.conv(self.norm(x2))


class SGFN(nnx.Module):
  def __init__(self, dim: int, hidden: int, *, dtype=None, param_dtype=jnp.float32, rngs: nnx.Rngs):
    kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
    self.fc1, self.sg = _dense(dim, hidden, **kw), SpatialGate(hidden // 2, **kw)
    self.fc2 = _dense(hidden // 2, dim, **kw)

  def __call__(self, x):
    return self.fc2(self.sg(gelu(self.fc1(x))))


def is_shifted(group: int, block: int) -> bool:
  """The official code's shift rule for the DSTBs (even blocks) of residual group `group`."""
  return (group % 2 == 0 and block > 0 and (block - 2) % 4 == 0) or (group % 2 == 1 and block % 4 == 0)


class DATB(nnx.Module):
  def __init__(self, dim: int, num_heads: int, split_size, *, group: int, block: int, expansion_factor: float,
               qkv_bias: bool, drop_path: float, dtype=None, param_dtype=jnp.float32, rngs: nnx.Rngs):
    kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
    self.norm1 = LayerNorm(dim, eps=NORM_EPS, **kw)
    if block % 2 == 0:
      self.attn = AdaptiveSpatialAttention(dim, num_heads, split_size, shifted=is_shifted(group, block),
                                           qkv_bias=qkv_bias, **kw)
    else:
      self.attn = AdaptiveChannelAttention(dim, num_heads, qkv_bias=qkv_bias, **kw)
    self.norm2 = LayerNorm(dim, eps=NORM_EPS, **kw)
    self.ffn = SGFN(dim, int(dim * expansion_factor), **kw)
    self.drop_path = DropPath(drop_path)

  def __call__(self, x, *, train: bool, rngs=None):
    kw = dict(deterministic=not train, rngs=rngs)
    x = x + self.drop_path(self.attn(self.norm1(x), train=train), **kw)
    return x + self.drop_path(self.ffn(self.norm2(x)), **kw)


class ResidualGroup(nnx.Module):
  def __init__(self, dim: int, depth: int, num_heads: int, split_size, *, group: int, expansion_factor: float,
               qkv_bias: bool, drop_path: list[float], resi_connection: str, dtype=None, param_dtype=jnp.float32,
               rngs: nnx.Rngs):
    kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
    self.blocks = nnx.List([
        DATB(dim, num_heads, split_size, group=group, block=i, expansion_factor=expansion_factor, qkv_bias=qkv_bias,
             drop_path=drop_path[i], **kw) for i in range(depth)])
    self.conv = sr_common.ResidualConv(dim, resi_connection, **kw)

  def __call__(self, x, *, train: bool, rngs=None):
    y = x
    for block in self.blocks:
      y = block(y, train=train, rngs=rngs)
    return self.conv(y) + x


class DAT(nnx.Module):
  """DAT (module docstring): (B, h, w, C) normalised LR → (B, h·s, w·s, C)."""

  def __init__(self, *, img_size: int = 64, in_chans: int = 3, upscale: int = 2, embed_dim: int = 180,
               depths=(6,) * 6, num_heads=(6,) * 6, split_size=(8, 32), expansion_factor: float = 4.0,
               qkv_bias: bool = True, drop_path_rate: float = 0.1, upsampler: str = "pixelshuffle",
               resi_connection: str = "1conv", dtype=None, param_dtype=jnp.float32, rngs: nnx.Rngs):
    kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
    if any(h % 2 for h in num_heads):
      raise ValueError(f"num_heads={tuple(num_heads)}: DAT splits the heads of a DSTB in two; use even counts")
    if embed_dim < 32 or embed_dim % 2:
      raise ValueError(f"embed_dim={embed_dim}: DAT needs an even width of at least 32 (its position-bias MLP is "
                       "C/32 wide, the AIM's spatial map C/16)")
    self.img_size, self.in_chans, self.upscale = img_size, in_chans, upscale
    self.conv_first = sr_common.conv(in_chans, embed_dim, **kw)
    self.before_rg = LayerNorm(embed_dim, eps=NORM_EPS, **kw)
    rates = np.linspace(0, drop_path_rate, sum(depths)).tolist()
    starts = np.cumsum((0,) + tuple(depths)).tolist()
    self.layers = nnx.List([
        ResidualGroup(embed_dim, d, h, tuple(split_size), group=i, expansion_factor=expansion_factor,
                      qkv_bias=qkv_bias, drop_path=rates[starts[i]:starts[i + 1]], resi_connection=resi_connection,
                      **kw)
        for i, (d, h) in enumerate(zip(depths, num_heads))])
    self.norm = LayerNorm(embed_dim, eps=NORM_EPS, **kw)
    self.conv_after_body = sr_common.ResidualConv(embed_dim, resi_connection, **kw)
    self.upsample = sr_common.Upsampler(embed_dim, in_chans, upscale, upsampler, **kw)

  def __call__(self, x, *, train: bool = False, rngs: nnx.Rngs | None = None):
    x = self.conv_first(x)
    y = self.before_rg(x)
    for layer in self.layers:
      y = layer(y, train=train, rngs=rngs)
    x = self.conv_after_body(self.norm(y)) + x
    return self.upsample(x).astype(jnp.float32)


def forward_flops(model: DAT, **kw) -> float:
  return sr_common.sr_flops(model, **kw)


for _name, _cfg in VARIANTS.items():
  register(_name, DAT, preprocessing=sr_common.SR_PREPROCESSING, **_cfg)

EMBEDDINGS = ()
