"""Masked-image reconstruction (MAE, He et al. 2022): patchify, per-patch target normalisation,
and the MSE over masked patches only. Everything is computed in float32.

Patches are flattened in (row, column, channel) order inside the patch, and patches are numbered
row-major over the grid, the layout of the MAE reference code and HF's `ViTMAEForPreTraining`.
"""

import jax
import jax.numpy as jnp


def _pair(x) -> tuple[int, int]:
  return tuple(x) if isinstance(x, (tuple, list)) else (x, x)


def patchify(images: jax.Array, patch_size) -> jax.Array:
  """(B, H, W, C) images → (B, N, ph*pw*C) patches, N = (H/ph)(W/pw) in row-major order."""
  b, h, w, c = images.shape
  ph, pw = _pair(patch_size)
  if h % ph or w % pw:
    raise ValueError(f"images {h}x{w} are not divisible by the patch size {ph}x{pw}")
  x = images.reshape(b, h // ph, ph, w // pw, pw, c).transpose(0, 1, 3, 2, 4, 5)
  return x.reshape(b, (h // ph) * (w // pw), ph * pw * c)


def unpatchify(patches: jax.Array, patch_size, grid_size, channels: int) -> jax.Array:
  """The inverse of `patchify`: (B, gh*gw, ph*pw*C) → (B, gh*ph, gw*pw, C)."""
  b, n, _ = patches.shape
  ph, pw = _pair(patch_size)
  gh, gw = _pair(grid_size)
  if n != gh * gw:
    raise ValueError(f"{n} patches do not fill a {gh}x{gw} grid")
  x = patches.reshape(b, gh, gw, ph, pw, channels).transpose(0, 1, 3, 2, 4, 5)
  return x.reshape(b, gh * ph, gw * pw, channels)


def patch_stats(patches: jax.Array, eps: float = 1e-6) -> tuple[jax.Array, jax.Array]:
  """Per-patch mean and std over the pixel axis: std = sqrt(var + eps) with the unbiased variance
  (N - 1), as `torch.Tensor.var` computes it in the MAE reference code."""
  patches = patches.astype(jnp.float32)
  mean = patches.mean(-1, keepdims=True)
  var = jnp.square(patches - mean).sum(-1, keepdims=True) / (patches.shape[-1] - 1)
  return mean, jnp.sqrt(var + eps)


def normalize_patches(patches: jax.Array, eps: float = 1e-6) -> jax.Array:
  """The `norm_pix_loss` target: each patch shifted to mean 0 and scaled to (about) variance 1."""
  mean, std = patch_stats(patches, eps)
  return (patches.astype(jnp.float32) - mean) / std


def masked_mse(pred: jax.Array, target: jax.Array, mask: jax.Array) -> jax.Array:
  """Per-example loss: the squared error averaged over pixels, then over the masked patches only.

  pred, target: (B, N, P); mask: (B, N), 1 where a patch was removed (its loss counts), 0 where the
  encoder saw it (its loss is ignored). With the same number of masked patches in every example
  (MAE's static mask ratio) the batch mean of this equals the reference code's
  sum(loss * mask) / sum(mask).
  """
  per_patch = jnp.square(pred.astype(jnp.float32) - target.astype(jnp.float32)).mean(-1)
  mask = mask.astype(jnp.float32)
  return (per_patch * mask).sum(-1) / jnp.maximum(mask.sum(-1), 1.0)


def mae_loss(pred: jax.Array, images: jax.Array, mask: jax.Array, patch_size, *, norm_pix_loss: bool = False,
             eps: float = 1e-6) -> jax.Array:
  """Per-example MAE loss of predicted patches (B, N, P) against the images (B, H, W, C)."""
  target = patchify(images.astype(jnp.float32), patch_size)
  if norm_pix_loss:
    target = normalize_patches(target, eps)
  return masked_mse(pred, jax.lax.stop_gradient(target), mask)
