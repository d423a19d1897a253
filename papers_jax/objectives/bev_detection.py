"""BEVFormer's 3-D set loss (the official head's `loss`, after DETR3D).

Targets (x, y, z, w, l, h, yaw) are encoded as the head's code (x, y, log w, log l, z, log h, sin yaw,
cos yaw): `encode_boxes` (the official `normalize_bbox`, without velocity). Each decoder layer's
predictions are matched one-to-one to the padded targets of their sample by the Hungarian algorithm
(ops/matching.py) on the cost
    class_cost · focal cost + reg_cost · Σ_c |code_c - target_c|,
the focal cost α(1 - p)^γ(-log p) - (1 - α)p^γ(-log(1 - p)) at the target's class (the official
HungarianAssigner3D: FocalLossCost 2.0, BBox3DL1Cost 0.25 over the 8 box numbers, IoU cost 0). Given the
matching, a layer's loss is
    class_weight · Σ focal / N + bbox_weight · Σ_matched Σ_c code_weight_c |code_c - target_c| / N,
with N the number of real targets in the batch (at least 1); the total sums the layers. Defaults are the
official ones (focal α 0.25, γ 2, loss weights 2.0 and 0.25, code weights 1).

Shapes: logits (L, B, Q, K) sigmoid; codes (L, B, Q, C) with C ≥ 8 (the first 8 are compared; velocity
is not simulated); labels (B, T) int; boxes (B, T, 7); valid (B, T) bool.
"""

import jax
import jax.numpy as jnp

from papers_jax.objectives.detection import sigmoid_focal_loss
from papers_jax.ops import matching

CODE = 8


def encode_boxes(boxes):
  """(…, 7) (x, y, z, w, l, h, yaw) → (…, 8) (x, y, log w, log l, z, log h, sin yaw, cos yaw)."""
  x, y, z, w, l, h, yaw = (boxes[..., i] for i in range(7))
  return jnp.stack([x, y, jnp.log(w), jnp.log(l), z, jnp.log(h), jnp.sin(yaw), jnp.cos(yaw)], -1)


def decode_codes(codes):
  """(…, ≥ 8) head codes → (…, 7) boxes (x, y, z, w, l, h, yaw)."""
  c = codes[..., :CODE]
  return jnp.stack([c[..., 0], c[..., 1], c[..., 4], jnp.exp(c[..., 2]), jnp.exp(c[..., 3]), jnp.exp(c[..., 5]),
                    jnp.arctan2(c[..., 6], c[..., 7])], -1)


def matching_cost(logits, codes, labels, targets, *, class_cost=2.0, reg_cost=0.25, alpha=0.25, gamma=2.0):
  """The (B, Q, T) cost; `targets` are encoded (B, T, 8)."""
  prob = jax.nn.sigmoid(logits.astype(jnp.float32))
  eps = 1e-12
  neg = (1 - alpha) * prob ** gamma * -jnp.log(1 - prob + eps)
  pos = alpha * (1 - prob) ** gamma * -jnp.log(prob + eps)
  per_class = pos - neg  # (B, Q, K)
  c_class = jnp.take_along_axis(per_class, jnp.broadcast_to(labels[:, None, :], per_class.shape[:2] + labels.shape[1:]),
                                axis=-1)
  c_reg = jnp.abs(codes[:, :, None, :CODE].astype(jnp.float32) - targets[:, None, :, :CODE]).sum(-1)
  return class_cost * c_class + reg_cost * c_reg


def set_loss(logits, codes, labels, boxes, valid, *, class_cost=2.0, reg_cost=0.25, class_weight=2.0,
             bbox_weight=0.25, alpha=0.25, gamma=2.0, code_weights=None):
  """The summed loss over the decoder layers, and {"loss_class", "loss_bbox"} of the last layer."""
  if logits.ndim == 3:
    logits, codes = logits[None], codes[None]
  num_classes = logits.shape[-1]
  targets = encode_boxes(jnp.where(valid[..., None], boxes.astype(jnp.float32), 1.0))
  num_boxes = jnp.maximum(valid.sum().astype(jnp.float32), 1.0)
  weights = jnp.ones((CODE,), jnp.float32) if code_weights is None else jnp.asarray(code_weights, jnp.float32)[:CODE]
  total, parts = 0.0, {}
  for layer in range(logits.shape[0]):
    lg, cd = logits[layer].astype(jnp.float32), codes[layer].astype(jnp.float32)
    cost = matching_cost(lg, cd, labels, targets, class_cost=class_cost, reg_cost=reg_cost, alpha=alpha, gamma=gamma)
    target_for_query, _ = matching.match_queries(jax.lax.stop_gradient(cost), valid)
    matched = target_for_query >= 0
    index = jnp.maximum(target_for_query, 0)
    target_class = jnp.where(matched, jnp.take_along_axis(labels, index, axis=1), num_classes)
    onehot = jax.nn.one_hot(target_class, num_classes + 1, dtype=jnp.float32)[..., :-1]
    loss_class = sigmoid_focal_loss(lg, onehot, alpha, gamma).sum() / num_boxes
    matched_targets = jnp.take_along_axis(targets, index[..., None], axis=1)
    l1 = (jnp.abs(cd[..., :CODE] - matched_targets) * weights).sum(-1)
    loss_bbox = jnp.where(matched, l1, 0.0).sum() / num_boxes
    total = total + class_weight * loss_class + bbox_weight * loss_bbox
    parts = {"loss_class": loss_class, "loss_bbox": loss_bbox}
  return total, parts
