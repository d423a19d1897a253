"""Patch embedding and position embeddings (learned, 2-D sin-cos, resizing to a new grid)."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from papers_jax.errors import ConfigError
from papers_jax.nn.linear import param


def _pair(x) -> tuple[int, int]:
  return tuple(x) if isinstance(x, (tuple, list)) else (x, x)


class PatchEmbed(nnx.Module):
  """Non-overlapping p×p patches → linear embedding (a stride-p convolution, written as a matmul).

  The kernel keeps the convolution layout (p, p, in_chans, embed) so converted weights and
  checkpoints read naturally.
  """

  def __init__(self, img_size, patch_size, in_chans: int, embed_dim: int, *, bias: bool = True, kernel_init=None,
               dtype=None, param_dtype=jnp.float32, rngs: nnx.Rngs):
    self.img_size = _pair(img_size)
    self.patch_size = _pair(patch_size)
    for size, patch in zip(self.img_size, self.patch_size):
      if size % patch:
        raise ConfigError(f"image size {self.img_size} is not divisible by the patch size {self.patch_size}; "
                          f"choose an image size that is a multiple of {patch} (e.g. {size - size % patch or patch}).")
    self.grid_size = (self.img_size[0] // self.patch_size[0], self.img_size[1] // self.patch_size[1])
    self.num_patches = self.grid_size[0] * self.grid_size[1]
    self.dtype = dtype
    ph, pw = self.patch_size
    fan_in = ph * pw * in_chans
    if kernel_init is None and fan_in:  # LeCun normal over the (p, p, in_chans) fan-in, as a conv
      kernel_init = nnx.initializers.variance_scaling(1.0, "fan_in", "truncated_normal", in_axis=(0, 1, 2),
                                                       out_axis=3)
    self.proj = nnx.Dict(kernel=param(rngs, kernel_init, (ph, pw, in_chans, embed_dim), param_dtype,
                                      (None, None, None, "embed")))
    if bias:
      self.proj["bias"] = param(rngs, nnx.initializers.zeros, (embed_dim,), param_dtype, ("embed",))

  def __call__(self, x: jax.Array) -> jax.Array:
    """(batch, H, W, C) images → (batch, num_patches, embed) tokens in row-major patch order."""
    h, w = x.shape[1:3]
    if (h, w) != self.img_size:
      raise ValueError(f"input images are {h}x{w} but the model was built for {self.img_size[0]}x{self.img_size[1]}"
                       " (create the model with img_size=... to change it)")
    return self.project(x)

  def project(self, x: jax.Array) -> jax.Array:
    """The embedding without the input-size check: (batch, H, W, C) → (batch, H/p · W/p, embed)."""
    b, h, w, c = x.shape
    ph, pw = self.patch_size
    dtype = self.dtype or x.dtype
    x = x.reshape(b, h // ph, ph, w // pw, pw, c).transpose(0, 1, 3, 2, 4, 5)
    x = x.reshape(b, (h // ph) * (w // pw), ph, pw, c).astype(dtype)
    y = jnp.einsum("bnijc,ijcd->bnd", x, self.proj["kernel"][...].astype(dtype))
    if "bias" in self.proj:
      y = y + self.proj["bias"][...].astype(dtype)
    return y


@functools.lru_cache(maxsize=None)
def _sincos_2d(grid_h: int, grid_w: int, dim: int, temperature: float) -> np.ndarray:
  if dim % 4:
    raise ConfigError(f"2-D sin-cos position embeddings need an embed dim divisible by 4, got {dim}")
  y, x = np.mgrid[:grid_h, :grid_w]
  omega = 1.0 / temperature ** (np.arange(dim // 4) / (dim // 4))
  y = y.reshape(-1)[:, None] * omega[None]
  x = x.reshape(-1)[:, None] * omega[None]
  # (sin x, cos x, sin y, cos y): the order of big_vision's posemb_sincos_2d and MAE's reference.
  return np.concatenate([np.sin(x), np.cos(x), np.sin(y), np.cos(y)], axis=1).astype(np.float32)[None]


def sincos_pos_embed_2d(grid_size, dim: int, temperature: float = 10_000.0) -> np.ndarray:
  """Fixed 2-D sin-cos embeddings, shape (1, gh*gw, dim); computed once per shape in numpy."""
  gh, gw = _pair(grid_size)
  return _sincos_2d(gh, gw, dim, temperature)


def resample_pos_embed(pos_embed, new_grid, old_grid=None, num_prefix_tokens: int = 1):
  """Resizes (1, prefix + gh*gw, dim) position embeddings to a new grid; prefix tokens are kept.

  Bicubic with antialiasing, computed in float32, which matches timm's `resample_abs_pos_embed`
  (torch `F.interpolate(..., mode="bicubic", antialias=True)`).
  """
  pos_embed = jnp.asarray(pos_embed)
  dtype = pos_embed.dtype
  prefix, grid = pos_embed[:, :num_prefix_tokens], pos_embed[:, num_prefix_tokens:]
  new_grid = _pair(new_grid)
  if old_grid is None:
    side = int(round(grid.shape[1] ** 0.5))
    if side * side != grid.shape[1]:
      raise ValueError(f"cannot infer a square grid from {grid.shape[1]} position embeddings; pass old_grid")
    old_grid = (side, side)
  old_grid = _pair(old_grid)
  if tuple(old_grid) == tuple(new_grid):
    return pos_embed
  dim = grid.shape[-1]
  grid = grid.reshape(old_grid[0], old_grid[1], dim).astype(jnp.float32)
  grid = jax.image.resize(grid, (new_grid[0], new_grid[1], dim), method="bicubic", antialias=True)
  grid = grid.reshape(1, new_grid[0] * new_grid[1], dim).astype(dtype)
  return jnp.concatenate([prefix, grid], axis=1)
