"""YOLOv1's loss (Redmon et al. 2016, §2.2, eq. 3) on the S×S×(B·5 + C) output grid.

Layout of a cell's B·5 + C outputs: B predictors of (x, y, √w, √h, confidence), then C class
probabilities. x, y are the box centre's offset inside its cell (0–1); √w, √h are square roots of
the width and height as fractions of the image (the paper predicts the square roots so that an error
weighs more on a small box than on a large one; a box's width is the prediction squared). All outputs
are linear, as the paper's last layer.

Targets: the cell that holds an object's centre is responsible for it. The paper detects one object
per cell; when several centres fall in one cell, the first in the annotation order is kept and the
others are ignored there (as Darknet's `fill_truth_region`, which keeps the first object it writes to a
cell). In such a cell the predictor with the highest current IoU with the ground truth is "responsible"
(1^obj_ij); when every predictor's IoU is 0, which the paper leaves open, the one nearest the truth (the
smallest squared distance of (x, y, w, h) in image fractions) is taken, as Darknet's detection layer.

Loss per image, summed over cells i and predictors j (eq. 3), then averaged over the batch:

    λcoord Σ 1^obj_ij [(x - x̂)² + (y - ŷ)²] + λcoord Σ 1^obj_ij [(√w - √ŵ)² + (√h - √ĥ)²]
    + Σ 1^obj_ij (C - Ĉ)² + λnoobj Σ (1 - 1^obj_ij) C² + Σ_i 1^obj_i Σ_c (p(c) - p̂(c))²

with the confidence target Ĉ = IoU(predicted box, truth) for the responsible predictor (a target: no
gradient flows through it) and 0 for all others; λcoord = 5, λnoobj = 0.5.
"""

import jax
import jax.numpy as jnp

from papers_jax.ops import boxes as box_ops


def split_output(grid: jax.Array, num_classes: int):
  """(N, S, S, B·5 + C) → box outputs (N, S, S, B, 5) and class probabilities (N, S, S, C)."""
  depth = grid.shape[-1] - num_classes
  if depth <= 0 or depth % 5:
    raise ValueError(f"a YOLO grid of depth {grid.shape[-1]} does not hold B·5 + {num_classes} outputs")
  return grid[..., :depth].reshape(grid.shape[:-1] + (depth // 5, 5)), grid[..., depth:]


def cell_boxes(box_out: jax.Array) -> jax.Array:
  """Box outputs (N, S, S, B, ≥4) → normalised cxcywh boxes in the image: centre (col + x, row + y) / S,
  size (√w)², (√h)²."""
  s = box_out.shape[1]
  rows = jnp.arange(s, dtype=box_out.dtype)[:, None, None]
  cols = jnp.arange(s, dtype=box_out.dtype)[None, :, None]
  cx = (cols + box_out[..., 0]) / s
  cy = (rows + box_out[..., 1]) / s
  return jnp.stack([cx, cy, box_out[..., 2] ** 2, box_out[..., 3] ** 2], -1)


def encode_targets(labels, boxes, valid, grid_size: int, num_classes: int):
  """Padded targets → per cell: has_obj (N, S, S) bool, the object's cxcywh box (N, S, S, 4) and one-hot
  class (N, S, S, C). labels (N, M), boxes (N, M, 4) normalised cxcywh, valid (N, M). One object per cell:
  the first valid one whose centre falls in it (see the module docstring)."""
  s = grid_size
  col = jnp.clip(jnp.floor(boxes[..., 0] * s), 0, s - 1).astype(jnp.int32)
  row = jnp.clip(jnp.floor(boxes[..., 1] * s), 0, s - 1).astype(jnp.int32)
  cell = row * s + col
  valid = valid.astype(bool)
  m = cell.shape[1]
  earlier = jnp.tril(jnp.ones((m, m), bool), k=-1)  # earlier[a, b]: b comes before a
  taken = jnp.any((cell[:, :, None] == cell[:, None, :]) & valid[:, None, :] & earlier, axis=-1)
  kept = valid & ~taken
  # At most one kept object per cell, so these sums copy it.
  onehot_cell = jax.nn.one_hot(cell, s * s, dtype=boxes.dtype) * kept[..., None]  # (N, M, S·S)
  has_obj = onehot_cell.sum(1) > 0
  cell_box = jnp.einsum("nmc,nmk->nck", onehot_cell, boxes)
  cell_class = jnp.einsum("nmc,nmk->nck", onehot_cell, jax.nn.one_hot(labels, num_classes, dtype=boxes.dtype))
  n = boxes.shape[0]
  return (has_obj.reshape(n, s, s), cell_box.reshape(n, s, s, 4), cell_class.reshape(n, s, s, num_classes))


def yolo_loss(grid, labels, boxes, valid, *, num_classes: int, coord_weight: float = 5.0,
              noobj_weight: float = 0.5):
  """(loss, parts) of eq. 3 (module docstring) for the output grid (N, S, S, B·5 + C) and padded targets
  labels (N, M), boxes (N, M, 4) normalised cxcywh, valid (N, M). Parts: the batch means of loss_coord (the
  weighted x, y, √w, √h terms), loss_obj, loss_noobj (weighted) and loss_class; the loss of each image,
  `per_example` (N,); and `responsible` (N, S, S, B)."""
  grid = grid.astype(jnp.float32)
  box_out, class_out = split_output(grid, num_classes)
  s = grid.shape[1]
  has_obj, truth, truth_class = encode_targets(labels, boxes.astype(jnp.float32), valid, s, num_classes)

  pred = cell_boxes(box_out)  # (N, S, S, B, 4)
  pred_xyxy = box_ops.cxcywh_to_xyxy(pred)
  truth_xyxy = box_ops.cxcywh_to_xyxy(truth)[..., None, :]  # (N, S, S, 1, 4)
  iou = jax.lax.stop_gradient(box_ops.pairwise_iou(pred_xyxy[..., None, :], truth_xyxy[..., None, :])[..., 0, 0])
  dist = jax.lax.stop_gradient(((pred - truth[..., None, :]) ** 2).sum(-1))
  best = jnp.where(iou.max(-1, keepdims=True) > 0, jnp.argmax(iou, -1)[..., None], jnp.argmin(dist, -1)[..., None])
  responsible = (jnp.arange(box_out.shape[3]) == best) & has_obj[..., None]  # (N, S, S, B)
  obj = responsible.astype(jnp.float32)

  # Targets in the output's own terms: the offset inside the cell and the square roots of the size.
  cols = jnp.arange(s, dtype=jnp.float32)[None, None, :]
  rows = jnp.arange(s, dtype=jnp.float32)[None, :, None]
  tx, ty = truth[..., 0] * s - cols, truth[..., 1] * s - rows
  tw, th = jnp.sqrt(jnp.maximum(truth[..., 2], 0)), jnp.sqrt(jnp.maximum(truth[..., 3], 0))
  xy = (box_out[..., 0] - tx[..., None]) ** 2 + (box_out[..., 1] - ty[..., None]) ** 2
  wh = (box_out[..., 2] - tw[..., None]) ** 2 + (box_out[..., 3] - th[..., None]) ** 2
  conf = box_out[..., 4]

  n = grid.shape[0]
  per_image = lambda x: x.reshape(n, -1).sum(-1)  # noqa: E731
  terms = {
      "loss_coord": coord_weight * per_image(obj * (xy + wh)),
      "loss_obj": per_image(obj * (conf - iou) ** 2),
      "loss_noobj": noobj_weight * per_image((1 - obj) * conf ** 2),
      "loss_class": per_image(has_obj[..., None] * (class_out - truth_class) ** 2),
  }
  per_example = sum(terms.values())
  parts = {k: v.mean() for k, v in terms.items()} | {"per_example": per_example, "responsible": responsible}
  return per_example.mean(), parts
