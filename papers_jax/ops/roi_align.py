"""RoIAlign (Mask R-CNN, He et al. 2017) in JAX, and the Faster R-CNN box coder.

`roi_align` follows torchvision's `roi_align(aligned=True)`: each output bin averages `sampling_ratio` ×
`sampling_ratio` bilinear samples at regularly spaced points, pixel centres at +0.5 (the half-pixel shift),
a sample more than one pixel outside the map reads 0 and one within a pixel of the border reads the border.
Bilinear interpolation is separable, so each box's samples are two small interpolation matrices (rows and
columns) applied to the feature map: no gather, and gradients reach the features by matmuls.
"""

import jax.numpy as jnp
import numpy as np

BBOX_CLIP = float(np.log(1000.0 / 16))  # Detectron's clamp on predicted log-scale changes


def _interp_matrix(coords, size: int):
  """coords (..., S) sample positions in pixels (centres at i + 0.5 already shifted to i) → (..., S, size)
  bilinear weights, torchvision's border rule."""
  valid = (coords >= -1.0) & (coords <= size)
  c = jnp.maximum(coords, 0.0)
  low = jnp.floor(c)
  at_end = low >= size - 1
  low = jnp.where(at_end, size - 1, low)
  high = jnp.where(at_end, size - 1, low + 1)
  frac = jnp.where(at_end, 0.0, c - low)
  grid = jnp.arange(size, dtype=coords.dtype)
  w = (1 - frac)[..., None] * (grid == low[..., None]) + frac[..., None] * (grid == high[..., None])
  return w * valid[..., None]


def roi_align(features, boxes, *, output_size: int, spatial_scale: float, sampling_ratio: int = 2):
  """features (H, W, C), boxes (N, 4) xyxy in image pixels → (N, output_size, output_size, C)."""
  height, width = features.shape[:2]
  boxes = boxes.astype(jnp.float32) * spatial_scale - 0.5
  x0, y0, x1, y1 = (boxes[:, k] for k in range(4))
  # Sample offsets inside the box, as fractions of its side: bin j, sample i at (j + (i + 0.5) / sr) / S.
  steps = (np.arange(output_size)[:, None] + (np.arange(sampling_ratio)[None] + 0.5) / sampling_ratio) / output_size
  steps = jnp.asarray(steps.reshape(-1), jnp.float32)  # (S·sr,)
  ys = y0[:, None] + (y1 - y0)[:, None] * steps
  xs = x0[:, None] + (x1 - x0)[:, None] * steps
  wy, wx = _interp_matrix(ys, height), _interp_matrix(xs, width)  # (N, S·sr, H), (N, S·sr, W)
  samples = jnp.einsum("nah,hwc,nbw->nabc", wy, features.astype(jnp.float32), wx)
  n, c = boxes.shape[0], features.shape[-1]
  samples = samples.reshape(n, output_size, sampling_ratio, output_size, sampling_ratio, c)
  return samples.mean(axis=(2, 4)).astype(features.dtype)


def encode_boxes(boxes, reference, weights=(1.0, 1.0, 1.0, 1.0)):
  """Faster R-CNN's regression targets of xyxy `boxes` relative to xyxy `reference` boxes (same shape)."""
  rw, rh = reference[..., 2] - reference[..., 0], reference[..., 3] - reference[..., 1]
  rx, ry = reference[..., 0] + 0.5 * rw, reference[..., 1] + 0.5 * rh
  bw, bh = boxes[..., 2] - boxes[..., 0], boxes[..., 3] - boxes[..., 1]
  bx, by = boxes[..., 0] + 0.5 * bw, boxes[..., 1] + 0.5 * bh
  wx, wy, ww, wh = weights
  rw, rh = jnp.maximum(rw, 1e-3), jnp.maximum(rh, 1e-3)
  return jnp.stack([wx * (bx - rx) / rw, wy * (by - ry) / rh, ww * jnp.log(jnp.maximum(bw, 1e-3) / rw),
                    wh * jnp.log(jnp.maximum(bh, 1e-3) / rh)], -1)


def decode_boxes(deltas, reference, weights=(1.0, 1.0, 1.0, 1.0)):
  """The inverse of `encode_boxes`: deltas (..., 4) applied to xyxy `reference` boxes → xyxy boxes."""
  rw, rh = reference[..., 2] - reference[..., 0], reference[..., 3] - reference[..., 1]
  rx, ry = reference[..., 0] + 0.5 * rw, reference[..., 1] + 0.5 * rh
  wx, wy, ww, wh = weights
  cx, cy = rx + deltas[..., 0] / wx * rw, ry + deltas[..., 1] / wy * rh
  w = rw * jnp.exp(jnp.minimum(deltas[..., 2] / ww, BBOX_CLIP))
  h = rh * jnp.exp(jnp.minimum(deltas[..., 3] / wh, BBOX_CLIP))
  return jnp.stack([cx - 0.5 * w, cy - 0.5 * h, cx + 0.5 * w, cy + 0.5 * h], -1)
