"""Box operations, all jittable: format conversions, areas, pairwise IoU / GIoU and batched NMS.

Boxes are the last axis of 4. `xyxy` is (x0, y0, x1, y1) corners; `cxcywh` is (centre x, centre y,
width, height), DETR's prediction format. Units are whatever the caller uses (pixels or fractions of
the image size). IoU and GIoU follow the GIoU paper (Rezatofighi et al., 2019) and are differentiable
everywhere a box has positive area; `eps` only guards the divisions of degenerate boxes.
"""

import jax
import jax.numpy as jnp


def cxcywh_to_xyxy(boxes: jax.Array) -> jax.Array:
  cx, cy, w, h = jnp.moveaxis(boxes, -1, 0)
  return jnp.stack([cx - 0.5 * w, cy - 0.5 * h, cx + 0.5 * w, cy + 0.5 * h], axis=-1)


def xyxy_to_cxcywh(boxes: jax.Array) -> jax.Array:
  x0, y0, x1, y1 = jnp.moveaxis(boxes, -1, 0)
  return jnp.stack([0.5 * (x0 + x1), 0.5 * (y0 + y1), x1 - x0, y1 - y0], axis=-1)


def area(boxes: jax.Array) -> jax.Array:
  """Areas of xyxy boxes (..., 4) -> (...); inverted boxes count as 0."""
  return jnp.maximum(boxes[..., 2] - boxes[..., 0], 0) * jnp.maximum(boxes[..., 3] - boxes[..., 1], 0)


def _intersection_union(boxes1, boxes2):
  """Pairwise intersection and union areas of xyxy boxes (..., N, 4) and (..., M, 4) -> (..., N, M)."""
  a, b = boxes1[..., :, None, :], boxes2[..., None, :, :]
  top_left = jnp.maximum(a[..., :2], b[..., :2])
  bottom_right = jnp.minimum(a[..., 2:], b[..., 2:])
  wh = jnp.maximum(bottom_right - top_left, 0)
  inter = wh[..., 0] * wh[..., 1]
  union = area(boxes1)[..., :, None] + area(boxes2)[..., None, :] - inter
  return inter, union


def pairwise_iou(boxes1: jax.Array, boxes2: jax.Array, eps: float = 1e-9) -> jax.Array:
  """IoU of every pair of xyxy boxes: (..., N, 4), (..., M, 4) -> (..., N, M)."""
  inter, union = _intersection_union(boxes1, boxes2)
  return inter / jnp.maximum(union, eps)


def pairwise_giou(boxes1: jax.Array, boxes2: jax.Array, eps: float = 1e-9) -> jax.Array:
  """Generalised IoU of every pair: IoU - (C - U) / C with C the area of the smallest enclosing box."""
  inter, union = _intersection_union(boxes1, boxes2)
  iou = inter / jnp.maximum(union, eps)
  a, b = boxes1[..., :, None, :], boxes2[..., None, :, :]
  wh = jnp.maximum(jnp.maximum(a[..., 2:], b[..., 2:]) - jnp.minimum(a[..., :2], b[..., :2]), 0)
  enclosing = wh[..., 0] * wh[..., 1]
  return iou - (enclosing - union) / jnp.maximum(enclosing, eps)


def elementwise_giou(boxes1: jax.Array, boxes2: jax.Array, eps: float = 1e-9) -> jax.Array:
  """GIoU of matching rows: (..., 4), (..., 4) -> (...) (the diagonal of pairwise_giou, without N×M work)."""
  return pairwise_giou(boxes1[..., None, :], boxes2[..., None, :], eps)[..., 0, 0]


def nms(boxes: jax.Array, scores: jax.Array, *, iou_threshold: float = 0.5, max_outputs: int = 100,
        valid: jax.Array | None = None, score_threshold: float | None = None):
  """Greedy non-maximum suppression with a static output size, for one image.

  boxes (N, 4) xyxy, scores (N,). Visits the boxes from the highest score down and keeps a box unless
  it overlaps a kept one by IoU > iou_threshold. Returns (indices (max_outputs,) int32 into the N boxes,
  in decreasing score, padded with -1; keep mask (max_outputs,) bool). `valid` (N,) drops boxes
  beforehand, as does `score_threshold`. Ties in score keep the lower index first (a stable sort).
  Under jit on any backend: one fori_loop over the sorted boxes with an N×N IoU table.
  """
  n = boxes.shape[0]
  alive = jnp.ones((n,), bool) if valid is None else jnp.asarray(valid, bool)
  if score_threshold is not None:
    alive &= scores > score_threshold
  order = jnp.argsort(-scores, stable=True)
  boxes, alive = boxes[order], alive[order]
  iou = pairwise_iou(boxes, boxes)

  def visit(i, keep):
    suppressed = jnp.any(keep & (iou[i] > iou_threshold))
    return keep.at[i].set(alive[i] & ~suppressed)

  keep = jax.lax.fori_loop(0, n, visit, jnp.zeros((n,), bool))
  # The kept boxes in sorted order first; the rest of the slots padded with -1.
  rank = jnp.where(keep, jnp.arange(n), n + jnp.arange(n))
  slots = jnp.argsort(rank)[:max_outputs]
  if max_outputs > n:
    slots = jnp.concatenate([slots, jnp.zeros((max_outputs - n,), slots.dtype)])
  kept = jnp.take(keep, slots) & (jnp.arange(max_outputs) < n)
  return jnp.where(kept, order[slots], -1).astype(jnp.int32), kept


def batched_nms(boxes: jax.Array, scores: jax.Array, classes: jax.Array | None = None, *,
                iou_threshold: float = 0.5, max_outputs: int = 100, valid: jax.Array | None = None,
                score_threshold: float | None = None):
  """`nms` over a batch: boxes (B, N, 4), scores (B, N) -> indices (B, max_outputs), keep (B, max_outputs).

  With `classes` (B, N) the suppression is per class (boxes of different classes never suppress each
  other), by the usual offset trick: each class's boxes are moved to their own region of the plane.
  """
  if classes is not None:
    span = jnp.max(jnp.abs(boxes)) * 2 + 1
    boxes = boxes + (classes.astype(boxes.dtype) * span)[..., None]
  valid = jnp.ones(scores.shape, bool) if valid is None else valid
  return jax.vmap(lambda b, s, v: nms(b, s, iou_threshold=iou_threshold, max_outputs=max_outputs, valid=v,
                                      score_threshold=score_threshold))(boxes, scores, valid)
