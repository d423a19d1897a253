"""DETR's set prediction loss (Carion et al., 2020) and Deformable DETR's focal variant (Zhu et al., 2021).

Each decoder layer's predictions are matched one-to-one to the padded targets of their image by the
Hungarian algorithm (ops/matching.py, inside the jitted step) on the cost
    class_cost · C_class + bbox_cost · ||b - b̂||₁ - giou_cost · GIoU(b, b̂),
with C_class = -p̂(c) for the softmax head (DETR) or the focal cost α(1-p)^γ(-log p) - (1-α)p^γ(-log(1-p))
for the sigmoid head (Deformable DETR). Given the matching, the loss of a layer is
    class_weight · L_class + bbox_weight · L1 / N + giou_weight · (1 - GIoU) / N,
with N the number of real target boxes in the (global) batch, at least 1. L_class is DETR's
cross-entropy over queries with the no-object class weighted `eos_coef`, averaged by the weights
(PyTorch's weighted mean, as the official code), or the sigmoid focal loss summed over queries and
classes and divided by N (Deformable DETR). The total sums the layers: auxiliary decoding losses at every
decoder layer, each with its own matching. The defaults are DETR's (costs 1/5/2, weights 1/5/2,
eos 0.1); Deformable DETR uses the focal head with class cost and weight 2.

Shapes: logits (L, B, Q, K) and boxes (L, B, Q, 4), layers first and the last layer the final output
(a 3-D input is one layer); boxes are normalised (cx, cy, w, h). Targets: labels (B, T) int, boxes
(B, T, 4) normalised cxcywh, valid (B, T) bool; the softmax head has K = num_classes + 1 with the
no-object class last, the focal head K = num_classes.
"""

import jax
import jax.numpy as jnp

from papers_jax.ops import boxes as box_ops
from papers_jax.ops import matching


def sigmoid_focal_loss(logits: jax.Array, targets: jax.Array, alpha: float = 0.25, gamma: float = 2.0) -> jax.Array:
  """Elementwise focal loss (RetinaNet): α_t (1 - p_t)^γ · BCE(logits, targets); α < 0 turns α_t off."""
  logits = logits.astype(jnp.float32)
  prob = jax.nn.sigmoid(logits)
  bce = -(targets * jax.nn.log_sigmoid(logits) + (1 - targets) * jax.nn.log_sigmoid(-logits))
  p_t = prob * targets + (1 - prob) * (1 - targets)
  loss = bce * (1 - p_t) ** gamma
  if alpha >= 0:
    loss = (alpha * targets + (1 - alpha) * (1 - targets)) * loss
  return loss


def matching_cost(logits, pred_boxes, labels, target_boxes, *, class_cost=1.0, bbox_cost=5.0, giou_cost=2.0,
                  focal=False, focal_alpha=0.25, focal_gamma=2.0):
  """The (B, Q, T) cost of assigning each query to each target of its image."""
  logits = logits.astype(jnp.float32)
  if focal:
    prob = jax.nn.sigmoid(logits)
    neg = (1 - focal_alpha) * prob ** focal_gamma * -jnp.log(1 - prob + 1e-8)
    pos = focal_alpha * (1 - prob) ** focal_gamma * -jnp.log(prob + 1e-8)
    per_class = pos - neg
  else:
    per_class = -jax.nn.softmax(logits, axis=-1)
  c_class = jnp.take_along_axis(per_class, jnp.broadcast_to(labels[:, None, :], per_class.shape[:2] + labels.shape[1:]),
                                axis=-1)
  pred_boxes, target_boxes = pred_boxes.astype(jnp.float32), target_boxes.astype(jnp.float32)
  c_bbox = jnp.abs(pred_boxes[:, :, None, :] - target_boxes[:, None, :, :]).sum(-1)
  c_giou = -box_ops.pairwise_giou(box_ops.cxcywh_to_xyxy(pred_boxes), box_ops.cxcywh_to_xyxy(target_boxes))
  return class_cost * c_class + bbox_cost * c_bbox + giou_cost * c_giou


def _layer_losses(logits, pred_boxes, labels, target_boxes, valid, num_boxes, *, costs, eos_coef, focal,
                  focal_alpha, focal_gamma):
  cost = matching_cost(logits, pred_boxes, labels, target_boxes, focal=focal, focal_alpha=focal_alpha,
                       focal_gamma=focal_gamma, **costs)
  target_for_query, _ = matching.match_queries(jax.lax.stop_gradient(cost), valid)
  matched = target_for_query >= 0
  index = jnp.maximum(target_for_query, 0)
  num_classes = logits.shape[-1] - (0 if focal else 1)
  target_class = jnp.where(matched, jnp.take_along_axis(labels, index, axis=1), num_classes)  # no-object: last
  logits = logits.astype(jnp.float32)
  if focal:
    onehot = jax.nn.one_hot(target_class, num_classes + 1, dtype=jnp.float32)[..., :-1]
    loss_class = sigmoid_focal_loss(logits, onehot, focal_alpha, focal_gamma).sum() / num_boxes
  else:
    ce = -jnp.take_along_axis(jax.nn.log_softmax(logits, -1), target_class[..., None], axis=-1)[..., 0]
    weight = jnp.where(matched, 1.0, eos_coef)
    loss_class = (weight * ce).sum() / weight.sum()
  matched_boxes = jnp.take_along_axis(target_boxes.astype(jnp.float32), index[..., None], axis=1)
  pred_boxes = pred_boxes.astype(jnp.float32)
  l1 = jnp.where(matched, jnp.abs(pred_boxes - matched_boxes).sum(-1), 0.0).sum() / num_boxes
  giou = box_ops.elementwise_giou(box_ops.cxcywh_to_xyxy(pred_boxes), box_ops.cxcywh_to_xyxy(matched_boxes))
  loss_giou = jnp.where(matched, 1.0 - giou, 0.0).sum() / num_boxes
  return {"loss_class": loss_class, "loss_bbox": l1, "loss_giou": loss_giou}, target_for_query


def set_loss(logits, pred_boxes, labels, target_boxes, valid, *, class_cost=1.0, bbox_cost=5.0, giou_cost=2.0,
             class_weight=1.0, bbox_weight=5.0, giou_weight=2.0, eos_coef=0.1, focal=False, focal_alpha=0.25,
             focal_gamma=2.0):
  """(total loss, metrics) of DETR's set loss summed over decoder layers (see the module docstring).

  Metrics: the final layer's loss_class / loss_bbox / loss_giou and its `target_for_query` matching
  (B, Q), plus `aux_loss` (the weighted sum of the other layers).
  """
  if logits.ndim == 3:
    logits, pred_boxes = logits[None], pred_boxes[None]
  valid = valid.astype(bool)
  num_boxes = jnp.maximum(valid.sum().astype(jnp.float32), 1.0)
  costs = dict(class_cost=class_cost, bbox_cost=bbox_cost, giou_cost=giou_cost)
  per_layer, matches = [], []
  for layer in range(logits.shape[0]):
    parts, target_for_query = _layer_losses(logits[layer], pred_boxes[layer], labels, target_boxes, valid, num_boxes,
                                            costs=costs, eos_coef=eos_coef, focal=focal, focal_alpha=focal_alpha,
                                            focal_gamma=focal_gamma)
    total = class_weight * parts["loss_class"] + bbox_weight * parts["loss_bbox"] + giou_weight * parts["loss_giou"]
    per_layer.append((total, parts))
    matches.append(target_for_query)
  loss = sum(total for total, _ in per_layer)
  metrics = dict(per_layer[-1][1]) | {"aux_loss": loss - per_layer[-1][0], "target_for_query": matches[-1]}
  return loss, metrics
