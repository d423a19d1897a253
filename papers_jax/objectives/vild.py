"""ViLD's losses and scores (Gu et al., ICLR 2022), and the two-stage detector's RPN and box losses.

- ViLD-text (eq. 1-2): a region's logits are its cosine similarities with [e_bg, the base classes' text
  embeddings], divided by the temperature τ; cross-entropy against the region's class (0 = background).
- ViLD-image (eq. 3): (1/M) Σ_r ||V(crop(I, r)) − e_r||_1 over the M precomputed proposals r, with V the frozen
  CLIP image encoder's normalised embedding of the proposal's crops and e_r the region embedding.
- The total (eq. 4): L_ViLD-text + w · L_ViLD-image (+ the detector's RPN and box-regression losses).
- ViLD-ensemble's score (§3.4): p = p_text^λ · p_image^(1−λ) for base classes, p_text^(1−λ) · p_image^λ for
  novel ones.

The RPN's: anchors with IoU ≥ fg_iou with a ground-truth box, or the best anchor of a box, are positive, below
bg_iou negative, others ignored; binary cross-entropy (the positives' mean and the negatives' mean, summed,
in place of sampling 256 anchors at 1:1) and smooth L1 on the positives' deltas. The RoI head's regression:
smooth L1 on the foreground RoIs' deltas (Detectron's weights 10, 10, 5, 5).
"""

import jax
import jax.numpy as jnp
import optax

from papers_jax.ops import boxes as box_ops
from papers_jax.ops.roi_align import encode_boxes


def region_logits(region_embed, class_embed, background, temperature: float):
  """Normalised region embeddings (..., D), class text embeddings (K, D), background (D,) → logits
  (..., 1 + K), background first: cosine / τ."""
  classes = class_embed / jnp.linalg.norm(class_embed, axis=-1, keepdims=True)
  table = jnp.concatenate([background[None], classes], axis=0)
  return region_embed @ table.T / temperature


def vild_text_loss(logits, labels, valid):
  """Cross-entropy of region logits (B, R, 1 + K) against labels (B, R) (0 = background), mean over valid RoIs."""
  ce = optax.softmax_cross_entropy_with_integer_labels(logits, labels)
  return jnp.sum(jnp.where(valid, ce, 0.0)) / jnp.maximum(jnp.sum(valid), 1)


def vild_image_loss(region_embed, clip_embed, valid):
  """L1 distance of region embeddings (B, M, D) to the CLIP embeddings of the same proposals' crops (B, M, D),
  both normalised, averaged over the valid proposals (the paper's eq. 3)."""
  l1 = jnp.sum(jnp.abs(region_embed - clip_embed), axis=-1)
  return jnp.sum(jnp.where(valid, l1, 0.0)) / jnp.maximum(jnp.sum(valid), 1)


def ensemble_scores(p_text, p_image, novel, weight: float = 2.0 / 3.0):
  """ViLD-ensemble: per class (last axis), the geometric mean weighted towards the text head for base classes
  and towards the image head for novel ones (`novel` (K,) bool)."""
  text_power = jnp.where(novel, 1.0 - weight, weight)
  return p_text ** text_power * p_image ** (1.0 - text_power)


def smooth_l1(x, beta: float):
  ax = jnp.abs(x)
  return jnp.where(ax < beta, 0.5 * x * x / beta, ax - 0.5 * beta)


def anchor_labels(anchors, gt_boxes, gt_valid, *, fg_iou: float = 0.7, bg_iou: float = 0.3):
  """One image: anchors (A, 4), gt (G, 4), gt_valid (G,) → (labels (A,) 1 / 0 / -1 ignored, matched gt (A,))."""
  iou = jnp.where(gt_valid[None], box_ops.pairwise_iou(anchors, gt_boxes), -1.0)  # (A, G)
  best = iou.max(axis=1)
  matched = iou.argmax(axis=1)
  labels = jnp.where(best >= fg_iou, 1, jnp.where(best < bg_iou, 0, -1))
  # Every box's best anchors (ties included) are positive, however low the IoU (Faster R-CNN).
  per_gt = iou.max(axis=0)
  is_best = (iou == per_gt[None]) & gt_valid[None] & (per_gt[None] > 0)
  labels = jnp.where(is_best.any(axis=1), 1, labels)
  matched = jnp.where(is_best.any(axis=1), jnp.argmax(is_best, axis=1), matched)
  return labels, matched


def rpn_loss(logits, deltas, anchors, gt_boxes, gt_valid, *, fg_iou: float = 0.7, bg_iou: float = 0.3,
             beta: float = 1.0 / 9.0):
  """RPN objectness + box loss over a batch: logits (B, A), deltas (B, A, 4), anchors (A, 4), gt (B, G, 4)."""
  labels, matched = jax.vmap(lambda g, v: anchor_labels(anchors, g, v, fg_iou=fg_iou, bg_iou=bg_iou))(gt_boxes,
                                                                                                      gt_valid)
  pos, neg = labels == 1, labels == 0
  bce = optax.sigmoid_binary_cross_entropy(logits, pos.astype(jnp.float32))
  objectness = (jnp.sum(jnp.where(pos, bce, 0.0)) / jnp.maximum(pos.sum(), 1)
                + jnp.sum(jnp.where(neg, bce, 0.0)) / jnp.maximum(neg.sum(), 1))
  targets = encode_boxes(jnp.take_along_axis(gt_boxes, matched[..., None], axis=1), jnp.broadcast_to(anchors,
                                                                                                     deltas.shape))
  box = jnp.sum(jnp.where(pos[..., None], smooth_l1(deltas - targets, beta), 0.0)) / jnp.maximum(pos.sum(), 1)
  return objectness, box


def assign_rois(rois, roi_valid, gt_boxes, gt_labels, gt_valid, *, fg_iou: float = 0.5):
  """One image: each RoI's class (0 background, 1 + the label of its best-overlapping box at IoU ≥ fg_iou) and
  that box (R, 4)."""
  iou = jnp.where(gt_valid[None], box_ops.pairwise_iou(rois, gt_boxes), -1.0)
  matched = iou.argmax(axis=1)
  fg = (iou.max(axis=1) >= fg_iou) & roi_valid
  return jnp.where(fg, gt_labels[matched] + 1, 0), gt_boxes[matched]


def box_loss(deltas, rois, target_boxes, foreground, weights, beta: float = 1.0):
  """The RoI head's class-agnostic smooth L1 on the foreground RoIs, mean over them."""
  targets = encode_boxes(target_boxes, rois, weights)
  per_roi = jnp.sum(smooth_l1(deltas - targets, beta), axis=-1)
  return jnp.sum(jnp.where(foreground, per_roi, 0.0)) / jnp.maximum(foreground.sum(), 1)
