"""GLIP's losses (Li et al., 2022): the word-region alignment loss and ATSS's box losses.

- `atss_assign`: ATSS (Zhang et al., 2020) on one feature level: each ground-truth box takes the `topk`
  anchors whose centres are nearest its centre as candidates, keeps those whose IoU with it is at least the
  candidates' mean + standard deviation (torch's unbiased std, as the official code) and whose centre lies
  inside it; an anchor claimed by several boxes goes to the one it overlaps most.
- `alignment_loss`: the paper's binary sigmoid focal loss over tokens: the target of region a and token t is 1
  when a is assigned to a box whose phrase contains t (the classes' targets expanded to their phrases' tokens),
  0 otherwise; every (region, real token) pair counts, padding tokens none; summed and divided by the number of
  positive regions (at least 1), as the official `token_sigmoid_binary_focal_loss` / num_pos.
- box regression: 1 - GIoU of the decoded box with its target, weighted by the centerness target and divided
  by their sum; centerness: binary cross-entropy with the target √(min(l, r)/max(l, r) · min(t, b)/max(t, b))
  of the anchor's centre, divided by the number of positives (ATSS's).
"""

import jax
import jax.numpy as jnp
import optax

from papers_jax.ops import boxes as box_ops


def atss_assign(anchor_boxes, gt_boxes, valid, *, topk: int = 9):
  """anchor_boxes (A, 4), gt_boxes (G, 4) xyxy, valid (G,) → the index of each anchor's box (A,), -1 for
  a negative anchor. One image (vmap it over a batch)."""
  num_anchors = anchor_boxes.shape[0]
  k = min(topk, num_anchors)
  anchor_centre = (anchor_boxes[:, :2] + anchor_boxes[:, 2:]) / 2
  gt_centre = (gt_boxes[:, :2] + gt_boxes[:, 2:]) / 2
  distance = jnp.linalg.norm(gt_centre[:, None, :] - anchor_centre[None, :, :], axis=-1)  # (G, A)
  _, candidates = jax.lax.top_k(-distance, k)  # (G, k)
  iou = box_ops.pairwise_iou(gt_boxes, anchor_boxes)  # (G, A)
  candidate_iou = jnp.take_along_axis(iou, candidates, axis=1)
  threshold = candidate_iou.mean(1) + candidate_iou.std(1, ddof=1)
  centre = anchor_centre[candidates]  # (G, k, 2)
  inside = jnp.minimum(
      jnp.minimum(centre[..., 0] - gt_boxes[:, None, 0], centre[..., 1] - gt_boxes[:, None, 1]),
      jnp.minimum(gt_boxes[:, None, 2] - centre[..., 0], gt_boxes[:, None, 3] - centre[..., 1])) > 0.01
  keep = (candidate_iou >= threshold[:, None]) & inside & valid[:, None]
  rows = jnp.broadcast_to(jnp.arange(gt_boxes.shape[0])[:, None], candidates.shape)
  positive = jnp.zeros(iou.shape, bool).at[rows, candidates].max(keep)  # (G, A)
  best = jnp.argmax(jnp.where(positive, iou, -1.0), axis=0)
  return jnp.where(positive.any(0), best, -1).astype(jnp.int32)


def token_targets(matched, positive_map):
  """matched (B, A) box index or -1, positive_map (B, G, T) bool → targets (B, A, T) float32."""
  rows = jnp.take_along_axis(positive_map, jnp.maximum(matched, 0)[..., None], axis=1)
  return jnp.where((matched >= 0)[..., None], rows, False).astype(jnp.float32)


def alignment_loss(logits, targets, text_mask, *, alpha: float = 0.25, gamma: float = 2.0):
  """Sum over regions and real tokens of the sigmoid focal loss of `logits` (B, A, T) against `targets`
  (B, A, T) in {0, 1}; text_mask (B, T) marks the real tokens. Divide by the positives yourself."""
  p = jax.nn.sigmoid(logits)
  ce = optax.sigmoid_binary_cross_entropy(logits, targets)
  p_t = p * targets + (1 - p) * (1 - targets)
  loss = ce * (1 - p_t) ** gamma
  if alpha >= 0:
    loss = (alpha * targets + (1 - alpha) * (1 - targets)) * loss
  return jnp.sum(jnp.where(text_mask[:, None, :], loss, 0.0))


def centerness_target(anchor_boxes, boxes):
  """(..., 4) anchors and their assigned xyxy boxes → ATSS's centerness of each anchor's centre in its box."""
  cx, cy = (anchor_boxes[..., 0] + anchor_boxes[..., 2]) / 2, (anchor_boxes[..., 1] + anchor_boxes[..., 3]) / 2
  left, top = cx - boxes[..., 0], cy - boxes[..., 1]
  right, bottom = boxes[..., 2] - cx, boxes[..., 3] - cy
  lr = jnp.minimum(left, right) / jnp.maximum(jnp.maximum(left, right), 1e-6)
  tb = jnp.minimum(top, bottom) / jnp.maximum(jnp.maximum(top, bottom), 1e-6)
  return jnp.sqrt(jnp.clip(lr * tb, 0.0, 1.0))


def glip_loss(out, anchor_boxes, gt_boxes, valid, positive_map, text_mask, *, topk: int = 9, alpha: float = 0.25,
              gamma: float = 2.0, alignment_weight: float = 1.0, reg_weight: float = 2.0,
              centerness_weight: float = 1.0):
  """The model's outputs (logits (B, A, T), boxes (B, A, 4) xyxy, centerness (B, A)), the anchors (A, 4), the
  targets (B, G, 4) xyxy in the same pixels with their `valid` mask and phrases' `positive_map` (B, G, T), and
  the prompt's text_mask (B, T) → (loss, parts)."""
  matched = jax.vmap(lambda g, v: atss_assign(anchor_boxes, g, v, topk=topk))(gt_boxes, valid)
  positive = matched >= 0
  num_pos = jnp.maximum(positive.sum().astype(jnp.float32), 1.0)
  targets = token_targets(matched, positive_map)
  loss_align = alignment_loss(out["logits"], targets, text_mask, alpha=alpha, gamma=gamma) / num_pos
  target_boxes = jnp.take_along_axis(gt_boxes, jnp.maximum(matched, 0)[..., None], axis=1)  # (B, A, 4)
  anchors_b = jnp.broadcast_to(anchor_boxes, target_boxes.shape)
  ctr_target = jnp.where(positive, centerness_target(anchors_b, target_boxes), 0.0)
  giou = box_ops.elementwise_giou(out["boxes"], target_boxes)
  loss_reg = jnp.sum(jnp.where(positive, (1 - giou) * ctr_target, 0.0)) / jnp.maximum(ctr_target.sum(), 1e-6)
  ce = optax.sigmoid_binary_cross_entropy(out["centerness"], ctr_target)
  loss_ctr = jnp.sum(jnp.where(positive, ce, 0.0)) / num_pos
  loss = alignment_weight * loss_align + reg_weight * loss_reg + centerness_weight * loss_ctr
  return loss, {"loss_align": loss_align, "loss_reg": loss_reg, "loss_centerness": loss_ctr,
                "num_pos": positive.sum(), "matched": matched}
