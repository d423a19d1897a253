"""Swin Transformer (Liu et al., 2021, "Hierarchical Vision Transformer using Shifted Windows").

Parameter names follow timm's `SwinTransformer` (patch_embed.{proj,norm}, layers.S.downsample,
layers.S.blocks.N.{norm1,attn,norm2,mlp}, norm, head) so converted weights map one to one; the
paper's 4×4 patch partition + linear embedding is `patch_embed` (+ `patch_norm`, timm's
patch_embed.norm). Four stages; stage S > 0 starts with patch merging (2×2 neighbours
concatenated in timm's channel order, LayerNorm, linear 4C → 2C), then alternates W-MSA and
SW-MSA blocks. Attention runs in M×M windows through `papers_jax.nn.dot_product_attention` with
the per-head relative-position bias B (a learned ((2M-1)², heads) table gathered by a fixed
index) and, in shifted blocks, a boolean mask that keeps tokens of different pre-shift regions
apart. LayerNorm eps 1e-5, exact GELU, DropPath rising linearly over all blocks.

Constant structure is numpy, built once per distinct shape when the module is built
(`relative_position_index`, `shifted_window_mask`, both `functools.lru_cache`d): never a param,
never recomputed per call; under jit it enters the program as a constant.

Window geometry per stage follows timm: a side no longer than the window becomes one unshifted
window. A side the window does not divide is zero-padded (after norm1) to a multiple of it, the
mask is built on the padded grid and the output is cropped. With `pad_before_shift=True` (the
default, as in the paper's detection / segmentation code) the grid is padded and then cyclically
shifted, so a token reaches exactly the tokens of its shifted window. timm 1.0.31 shifts first and
pads after (`pad_before_shift=False`, bit-for-bit its behaviour): there tokens wrapped around by
the shift can share a window region with the far side of the image. On grids the window divides
(every registered variant at its own resolution) the two are identical. Padding tokens are not
masked as keys, in either order (as in timm and the paper's code).

Initialisation follows the paper's code: N(0, 0.02) linear kernels and bias tables (its
`trunc_normal_(std=.02)` cuts at ±2, i.e. 100σ: a plain normal), zero biases, LayerNorm (1, 0).
"""

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from papers_jax.core import sharding
from papers_jax.errors import ConfigError
from papers_jax.models import intermediates
from papers_jax.models.registry import IMAGENET_MEAN, IMAGENET_STD, Preprocessing, register
from papers_jax.models.vit import patch_embed_flops
from papers_jax.nn import Attention, DropPath, Dropout, LayerNorm, Mlp, PatchEmbed, gradient_barrier, param
from papers_jax.nn.linear import Dense

# The paper's Table 7 architectures (C, layer numbers, heads); window M and resolution per name.
WIDTHS = {
    "tiny": dict(embed_dim=96, depths=(2, 2, 6, 2), num_heads=(3, 6, 12, 24)),
    "small": dict(embed_dim=96, depths=(2, 2, 18, 2), num_heads=(3, 6, 12, 24)),
    "base": dict(embed_dim=128, depths=(2, 2, 18, 2), num_heads=(4, 8, 16, 32)),
    "large": dict(embed_dim=192, depths=(2, 2, 18, 2), num_heads=(6, 12, 24, 48)),
}

# Registered (width, window, resolution) triples: the names timm ships.
VARIANTS = (
    ("tiny", 7, 224), ("small", 7, 224), ("base", 7, 224), ("large", 7, 224),
    ("base", 12, 384), ("large", 12, 384),
)

NORM_EPS = 1e-5  # torch nn.LayerNorm's default, which Swin uses
NORMAL_INIT = nnx.initializers.normal(0.02)


def _pair(x) -> tuple[int, int]:
  return tuple(int(v) for v in x) if isinstance(x, (tuple, list)) else (int(x), int(x))


# ------------------------------------------------------------------------- constants (numpy)


@functools.lru_cache(maxsize=None)
def relative_position_index(window: tuple[int, int]) -> np.ndarray:
  """(N, N) int32 rows of the bias table, N = wh*ww: query i, key j → offset (dy, dx) = pos_i - pos_j.

  Offsets are shifted to start at 0 and flattened row-major over the (2wh-1, 2ww-1) offset grid.
  """
  wh, ww = window
  coords = np.stack(np.meshgrid(np.arange(wh), np.arange(ww), indexing="ij")).reshape(2, -1)
  rel = coords[:, :, None] - coords[:, None, :]
  index = ((rel[0] + wh - 1) * (2 * ww - 1) + rel[1] + ww - 1).astype(np.int32)
  index.setflags(write=False)
  return index


def _regions(size: int, window: int, shift: int) -> np.ndarray:
  """Per-row region of a shifted, padded grid: the paper's slices (0:-M), (-M:-s), (-s:) → 0, 1, 2."""
  labels = np.zeros(size, np.int32)
  if shift:
    labels[size - window:size - shift] = 1
    labels[size - shift:] = 2
  return labels


@functools.lru_cache(maxsize=None)
def shifted_window_mask(grid: tuple[int, int], window: tuple[int, int], shift: tuple[int, int]) -> np.ndarray:
  """(num_windows, N, N) bool: True where query i and key j of a window came from the same region.

  `grid` is the padded grid (a multiple of `window`); windows in `window_partition` order.
  """
  label = _regions(grid[0], window[0], shift[0])[:, None] * 3 + _regions(grid[1], window[1], shift[1])[None, :]
  windows = window_partition(label[None, :, :, None], window)[..., 0]
  mask = windows[:, :, None] == windows[:, None, :]
  mask.setflags(write=False)
  return mask


def window_partition(x, window: tuple[int, int]):
  """(B, H, W, C) → (B * num_windows, wh * ww, C); windows in row-major order. numpy or jax."""
  b, h, w, c = x.shape
  wh, ww = window
  x = x.reshape(b, h // wh, wh, w // ww, ww, c).transpose(0, 1, 3, 2, 4, 5)
  return x.reshape(b * (h // wh) * (w // ww), wh * ww, c)


def window_reverse(windows, window: tuple[int, int], grid: tuple[int, int]):
  """Inverse of `window_partition`: (B * num_windows, wh * ww, C) → (B, H, W, C)."""
  (h, w), (wh, ww) = grid, window
  c = windows.shape[-1]
  x = windows.reshape(-1, h // wh, w // ww, wh, ww, c).transpose(0, 1, 3, 2, 4, 5)
  return x.reshape(-1, h, w, c)


def stage_resolutions(grid: tuple[int, int], num_stages: int) -> list[tuple[int, int]]:
  """Token grid of each stage: patch merging halves it, padding odd sides first."""
  out = [tuple(grid)]
  for _ in range(num_stages - 1):
    out.append(tuple((r + 1) // 2 for r in out[-1]))
  return out


def window_geometry(resolution, window, shifted: bool):
  """(window, shift, padded grid) of a block, timm's rule: a side ≤ M is one unshifted window."""
  win = tuple(min(r, w) for r, w in zip(resolution, window))
  shift = tuple(w // 2 if shifted and r > w else 0 for r, w in zip(resolution, window))
  padded = tuple(-(-r // w) * w for r, w in zip(resolution, win))
  return win, shift, padded


# ----------------------------------------------------------------- bias-table resampling


def _timm_positions(src: int, dst: int) -> tuple[np.ndarray, np.ndarray]:
  """timm's (BEiT's) sample positions: source offsets spaced by a geometric progression that spans
  the destination's offsets, and the destination's integer offsets."""
  n = src // 2
  left, right, q = 1.01, 1.5, 1.01
  while right - left > 1e-6:  # bisection for the ratio q with sum_{i<n} q^i ≈ dst // 2
    q = (left + right) / 2.0
    if (1.0 - q ** n) / (1.0 - q) > dst // 2:
      right = q
    else:
      left = q
  dis = np.cumsum([1.0] + [q ** (i + 1) for i in range(n - 1)])
  return np.concatenate([-dis[::-1], [0.0], dis]), np.arange(-(dst // 2), dst // 2 + 1, dtype=np.float64)


def _linear_weights(points: np.ndarray, targets: np.ndarray) -> np.ndarray:
  """(len(targets), len(points)) linear-interpolation matrix, clamped at both ends."""
  right = np.clip(np.searchsorted(points, targets, side="left"), 1, len(points) - 1)
  left = right - 1
  t = np.clip((targets - points[left]) / (points[right] - points[left]), 0.0, 1.0)
  weights = np.zeros((len(targets), len(points)))
  weights[np.arange(len(targets)), left] += 1.0 - t
  weights[np.arange(len(targets)), right] += t
  return weights


def resize_relative_position_bias(table, new_window, old_window=None) -> np.ndarray:
  """Resamples a ((2M-1)², heads) bias table to another window, as timm 1.0.31's checkpoint filter.

  timm's `resize_rel_pos_bias_table` (from BEiT): the old table's offsets are placed on a geometric
  progression spanning the new offset range and linearly interpolated at the new integer offsets
  (its scipy-cubic branch needs `scipy.interpolate.interp2d`, gone since SciPy 1.14). The old
  window is taken as square unless given.
  """
  table = np.asarray(table)
  new = _pair(new_window)
  dst = (2 * new[0] - 1, 2 * new[1] - 1)
  if old_window is None:
    side = math.isqrt(table.shape[0])
    if side * side != table.shape[0]:
      raise ValueError(f"cannot infer a square window from a bias table of {table.shape[0]} rows; pass old_window")
    src = (side, side)
  else:
    src = (2 * _pair(old_window)[0] - 1, 2 * _pair(old_window)[1] - 1)
  if src == dst:
    return table
  rows = _linear_weights(*_timm_positions(src[0], dst[0]))
  cols = _linear_weights(*_timm_positions(src[1], dst[1]))
  grid = table.astype(np.float64).reshape(src[0], src[1], -1)
  out = np.einsum("ai,bj,ijh->abh", rows, cols, grid)
  return out.reshape(dst[0] * dst[1], -1).astype(table.dtype)


# ---------------------------------------------------------------------------------- layers


class WindowAttention(Attention):
  """Multi-head attention inside windows with the paper's relative-position bias B (per head)."""

  def __init__(self, dim: int, num_heads: int, window: tuple[int, int], *, qkv_bias: bool = True,
               attn_drop: float = 0.0, proj_drop: float = 0.0, implementation: str | None = None, dtype=None,
               param_dtype=jnp.float32, rngs: nnx.Rngs):
    super().__init__(dim, num_heads, qkv_bias=qkv_bias, attn_drop=attn_drop, proj_drop=proj_drop,
                     implementation=implementation, kernel_init=NORMAL_INIT, dtype=dtype, param_dtype=param_dtype,
                     rngs=rngs)
    self.window = tuple(window)
    wh, ww = self.window
    self.relative_position_bias_table = param(rngs, NORMAL_INIT, ((2 * wh - 1) * (2 * ww - 1), num_heads),
                                              param_dtype, (None, "heads"))
    relative_position_index(self.window)  # built here, once per window shape

  def relative_position_bias(self) -> jax.Array:
    """(1, heads, N, N) float32 bias: the table gathered by the fixed relative-position index."""
    index = relative_position_index(self.window)
    table = self.relative_position_bias_table[...].astype(jnp.float32)
    return table[index].transpose(2, 0, 1)[None]

  def __call__(self, x, *, mask=None, deterministic: bool | None = None, rngs: nnx.Rngs | None = None):
    """x: (windows, N, dim); mask: None or bool (windows, 1, N, N)."""
    bias = self.relative_position_bias()
    if self.implementation == "cudnn":
      bias = bias.astype(x.dtype)
    return super().__call__(x, bias=bias, mask=mask, deterministic=deterministic, rngs=rngs)


class SwinBlock(nnx.Module):
  """x + DropPath((S)W-MSA(LN(x))), then x + DropPath(MLP(LN(x))), on a (B, H, W, C) grid."""

  def __init__(self, dim: int, num_heads: int, resolution: tuple[int, int], window: tuple[int, int], *,
               shifted: bool, pad_before_shift: bool = True, mlp_ratio: float = 4.0, qkv_bias: bool = True,
               proj_drop: float = 0.0, attn_drop: float = 0.0, drop_path: float = 0.0,
               attention_impl: str | None = None, dtype=None, param_dtype=jnp.float32, rngs: nnx.Rngs):
    kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
    self.resolution = tuple(resolution)
    self.window, self.shift, self.padded = window_geometry(resolution, window, shifted)
    self.pad_before_shift = pad_before_shift
    self.norm1 = LayerNorm(dim, eps=NORM_EPS, **kw)
    self.attn = WindowAttention(dim, num_heads, self.window, qkv_bias=qkv_bias, attn_drop=attn_drop,
                                proj_drop=proj_drop, implementation=attention_impl, **kw)
    self.drop_path1 = DropPath(drop_path)
    self.norm2 = LayerNorm(dim, eps=NORM_EPS, **kw)
    self.mlp = Mlp(dim, int(dim * mlp_ratio), drop=proj_drop, kernel_init=NORMAL_INIT,
                   bias_init=nnx.initializers.zeros, **kw)
    self.drop_path2 = DropPath(drop_path)
    if any(self.shift):
      shifted_window_mask(self.padded, self.window, self.shift)  # built here, once per shape

  def _pad(self, x):
    h, w = x.shape[1:3]
    if (h, w) == self.padded:
      return x
    return jnp.pad(x, ((0, 0), (0, self.padded[0] - h), (0, self.padded[1] - w), (0, 0)))

  def window_attention(self, x, *, deterministic=None, rngs=None):
    """(S)W-MSA over a (B, H, W, C) grid: [pad], cyclic shift, [pad], windows, attention, and back."""
    b, h, w, c = x.shape
    if (h, w) != self.resolution:
      raise ValueError(f"block built for a {self.resolution} token grid got {(h, w)}")
    shift = self.shift
    if self.pad_before_shift:
      x = self._pad(x)
    if any(shift):
      x = jnp.roll(x, (-shift[0], -shift[1]), axis=(1, 2))
    x = self._pad(x)
    mask = None
    if any(shift):
      m = shifted_window_mask(self.padded, self.window, self.shift)
      mask = jnp.broadcast_to(m[None, :, None], (b,) + m.shape[:1] + (1,) + m.shape[1:])
      mask = mask.reshape((b * m.shape[0], 1) + m.shape[1:])
    y = self.attn(window_partition(x, self.window), mask=mask, deterministic=deterministic, rngs=rngs)
    y = window_reverse(y, self.window, self.padded)
    if not self.pad_before_shift:
      y = y[:, :h, :w]
    if any(shift):
      y = jnp.roll(y, shift, axis=(1, 2))
    return y[:, :h, :w]

  def __call__(self, x, *, deterministic=None, rngs=None):
    kw = dict(deterministic=deterministic, rngs=rngs)
    b, h, w, c = x.shape
    x = x + self.drop_path1(self.window_attention(self.norm1(x), **kw), **kw)
    x = x.reshape(b, h * w, c)
    x = x + self.drop_path2(self.mlp(self.norm2(x), **kw), **kw)
    return gradient_barrier(sharding.constrain(x.reshape(b, h, w, c), ("act_batch", None, None, "act_emb")))


class PatchMerging(nnx.Module):
  """2×2 neighbours concatenated (C → 4C), LayerNorm, linear 4C → out_dim without bias.

  Channel order is timm's: (column offset, row offset, channel), i.e. the paper's code's
  x0 = (0, 0), x1 = (1, 0), x2 = (0, 1), x3 = (1, 1) as (row, column). Odd sides are zero-padded.
  """

  def __init__(self, dim: int, out_dim: int, *, dtype=None, param_dtype=jnp.float32, rngs: nnx.Rngs):
    kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
    self.norm = LayerNorm(4 * dim, eps=NORM_EPS, **kw)
    self.reduction = Dense(4 * dim, out_dim, axes=(None, "embed"), use_bias=False, kernel_init=NORMAL_INIT, **kw)

  def __call__(self, x):
    b, h, w, c = x.shape
    x = jnp.pad(x, ((0, 0), (0, h % 2), (0, w % 2), (0, 0)))
    h, w = x.shape[1] // 2, x.shape[2] // 2
    x = x.reshape(b, h, 2, w, 2, c).transpose(0, 1, 3, 4, 2, 5).reshape(b, h, w, 4 * c)
    return self.reduction(self.norm(x))


class SwinStage(nnx.Module):
  """[Patch merging] then `depth` blocks alternating W-MSA (even) and SW-MSA (odd)."""

  def __init__(self, dim: int, out_dim: int, resolution: tuple[int, int], depth: int, num_heads: int,
               window: tuple[int, int], *, downsample: bool, drop_path: list[float], pad_before_shift: bool = True,
               mlp_ratio: float = 4.0, qkv_bias: bool = True, proj_drop: float = 0.0, attn_drop: float = 0.0,
               attention_impl: str | None = None, dtype=None, param_dtype=jnp.float32, rngs: nnx.Rngs):
    kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
    self.downsample = PatchMerging(dim, out_dim, **kw) if downsample else None
    self.resolution = tuple(resolution)
    self.blocks = nnx.List([
        SwinBlock(out_dim, num_heads, self.resolution, window, shifted=i % 2 == 1,
                  pad_before_shift=pad_before_shift, mlp_ratio=mlp_ratio, qkv_bias=qkv_bias, proj_drop=proj_drop,
                  attn_drop=attn_drop, drop_path=drop_path[i], attention_impl=attention_impl, **kw)
        for i in range(depth)])

  def __call__(self, x, *, deterministic=None, rngs=None):
    if self.downsample is not None:
      x = self.downsample(x)
    for block in self.blocks:
      x = block(x, deterministic=deterministic, rngs=rngs)
    return x


class SwinTransformer(nnx.Module):
  """Swin classifier. `model(images)` takes NHWC float images and returns logits.

  `forward_intermediates(images)` returns named features (models/intermediates.py): "stem", the
  four stage outputs "stage0" ... "stage3", (B, H/4, W/4, C), (B, H/8, W/8, 2C), ..., for
  dense-prediction heads, then "encoded", "pre_logits" and "logits".
  """

  def __init__(self, *, img_size=224, patch_size=4, in_chans: int = 3, num_classes: int = 1000,
               global_pool: str = "avg", embed_dim: int = 96, depths=(2, 2, 6, 2), num_heads=(3, 6, 12, 24),
               window_size=7, mlp_ratio: float = 4.0, qkv_bias: bool = True, pad_before_shift: bool = True,
               drop_rate: float = 0.0, proj_drop_rate: float = 0.0, attn_drop_rate: float = 0.0,
               drop_path_rate: float = 0.1, attention_impl: str | None = None, dtype=None,
               param_dtype=jnp.float32, rngs: nnx.Rngs):
    if global_pool not in ("avg", "max", ""):
      raise ConfigError(f"global_pool must be 'avg', 'max' or '', got {global_pool!r}")
    depths, num_heads = tuple(depths), tuple(num_heads)
    if len(depths) != len(num_heads):
      raise ConfigError(f"depths {depths} and num_heads {num_heads} must have one entry per stage")
    dims = [embed_dim * 2 ** i for i in range(len(depths))]
    for dim, heads in zip(dims, num_heads):
      if dim % heads:
        raise ConfigError(f"stage width {dim} is not divisible by its {heads} heads; change embed_dim or num_heads")
    window = _pair(window_size)
    if min(window) < 1:
      raise ConfigError(f"window_size must be positive, got {window_size}")
    kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
    self.num_classes = num_classes
    self.global_pool = global_pool
    self.num_features = dims[-1]
    self.window_size = window

    self.patch_embed = PatchEmbed(img_size, patch_size, in_chans, embed_dim, **kw)
    self.patch_norm = LayerNorm(embed_dim, eps=NORM_EPS, **kw)
    resolutions = stage_resolutions(self.patch_embed.grid_size, len(depths))
    rates = [float(r) for r in np.linspace(0.0, drop_path_rate, sum(depths))]
    starts = np.cumsum((0,) + depths)
    self.layers = nnx.List([
        SwinStage(dims[max(i - 1, 0)], dims[i], resolutions[i], depths[i], num_heads[i], window, downsample=i > 0,
                  drop_path=rates[starts[i]:starts[i + 1]], pad_before_shift=pad_before_shift, mlp_ratio=mlp_ratio,
                  qkv_bias=qkv_bias, proj_drop=proj_drop_rate, attn_drop=attn_drop_rate,
                  attention_impl=attention_impl, **kw)
        for i in range(len(depths))])
    self.norm = LayerNorm(self.num_features, eps=NORM_EPS, **kw)
    self.head_drop = Dropout(drop_rate)
    self.head = (Dense(self.num_features, num_classes, axes=("embed", "classes"), kernel_init=NORMAL_INIT, **kw)
                 if num_classes > 0 else None)

  def _stem(self, x):
    x = self.patch_norm(self.patch_embed(x))
    b, (gh, gw) = x.shape[0], self.patch_embed.grid_size
    return sharding.constrain(x.reshape(b, gh, gw, -1), ("act_batch", None, None, "act_emb"))

  def forward_intermediates(self, x, *, indices=None, stop_early: bool = False, train: bool | None = None,
                            rngs=None) -> dict:
    """Named features, NHWC: "stem", "stage{i}" for the stages `indices` picks, then "encoded",
    "pre_logits" and "logits" unless `stop_early` (models/intermediates.py)."""
    deterministic = None if train is None else not train  # as in __call__
    picked = intermediates.select(indices, len(self.layers))
    x = intermediates.tap("stem", self._stem(x))
    out = {"stem": x}
    if stop_early and not picked:
      return out
    for i, stage in enumerate(self.layers):
      x = intermediates.tap(f"stage{i}", stage(x, deterministic=deterministic, rngs=rngs))
      if i in picked:
        out[f"stage{i}"] = x
      if stop_early and i == picked[-1]:
        return out
    return intermediates.add_head_outputs(out, self, self.norm(x), deterministic=deterministic, rngs=rngs)

  def forward_features(self, x, *, deterministic=None, rngs=None):
    """Images (B, H, W, C) → normalised last-stage features (B, H/32, W/32, 8C)."""
    x = self._stem(x)
    for stage in self.layers:
      x = stage(x, deterministic=deterministic, rngs=rngs)
    return self.norm(x)

  def forward_head(self, x, *, pre_logits: bool = False, deterministic=None, rngs=None):
    if self.global_pool == "avg":
      x = x.mean(axis=(1, 2))
    elif self.global_pool == "max":
      x = x.max(axis=(1, 2))
    x = self.head_drop(x, deterministic=deterministic, rngs=rngs)
    if pre_logits or self.head is None:
      return x
    return self.head(x).astype(jnp.float32)

  def __call__(self, x, *, train: bool | None = None, rngs: nnx.Rngs | None = None):
    """Logits (float32). `train` overrides the mode set by `model.train()` / `model.eval()`."""
    deterministic = None if train is None else not train
    x = self.forward_features(x, deterministic=deterministic, rngs=rngs)
    return self.forward_head(x, deterministic=deterministic, rngs=rngs)


for _width, _window, _img in VARIANTS:
  register(f"swin_{_width}_patch4_window{_window}_{_img}", SwinTransformer, **WIDTHS[_width], patch_size=4,
           window_size=_window, img_size=_img,  # timm's pretrained_cfg of Microsoft's checkpoints
           preprocessing=Preprocessing(_img, IMAGENET_MEAN, IMAGENET_STD, crop_pct=0.9 if _img < 384 else 1.0))


def forward_flops(model) -> float:
  """Matmul FLOPs of one Swin forward pass per example (2 per multiply-add; the paper's "FLOPs"
  count multiply-adds). Attention runs on the window-padded grid; linear in H·W for a fixed window."""
  flops = patch_embed_flops(model.patch_embed)
  for stage in model.layers:
    if stage.downsample is not None:
      d_in, d_out = stage.downsample.reduction.kernel.shape
      flops += 2 * stage.resolution[0] * stage.resolution[1] * d_in * d_out
    for block in stage.blocks:
      d = block.norm1.scale.shape[0]
      hidden = block.mlp.fc1.kernel.shape[1]
      padded = block.padded[0] * block.padded[1]
      n = block.window[0] * block.window[1]
      flops += 2 * padded * d * 3 * d                                   # qkv
      flops += 2 * 2 * padded * n * d                                  # q·k and p·v in each window
      flops += 2 * padded * d * d                                       # output projection
      flops += 2 * 2 * block.resolution[0] * block.resolution[1] * d * hidden  # mlp
  if model.head is not None:
    flops += 2 * model.num_features * model.num_classes
  return float(flops)


# The embedding parameters (models.embedding_params): the patch projection (Swin has no absolute position
# embedding; the relative position bias tables belong to the attention layers).
EMBEDDINGS = ("patch_embed.proj",)
