"""Detection: DETR's set loss against HF transformers, the generated scenes and their augmentation, COCO mAP
against pycocotools, and the detection task end to end (loss falls, sharded = single-device)."""

import importlib.util

import jax
import numpy as np
import pytest

from papers_jax.objectives import detection as objective

HAS_TORCH = importlib.util.find_spec("torch") is not None and importlib.util.find_spec("transformers") is not None
needs_torch = pytest.mark.skipif(not HAS_TORCH, reason="torch and transformers are needed")


def _random_problem(rng, layers=3, batch=3, queries=7, classes=4, max_targets=5):
  counts = [max_targets, 2, 0][:batch]  # full, partly padded, and an image without objects
  logits = rng.normal(size=(layers, batch, queries, classes + 1)).astype(np.float32)
  centres = rng.uniform(0.2, 0.8, (layers, batch, queries, 2))
  sizes = rng.uniform(0.05, 0.4, (layers, batch, queries, 2))
  pred_boxes = np.concatenate([centres, sizes], -1).astype(np.float32)
  labels = rng.integers(0, classes, (batch, max_targets)).astype(np.int32)
  target_boxes = np.concatenate([rng.uniform(0.2, 0.8, (batch, max_targets, 2)),
                                 rng.uniform(0.05, 0.4, (batch, max_targets, 2))], -1).astype(np.float32)
  valid = np.arange(max_targets)[None, :] < np.array(counts)[:, None]
  return logits, pred_boxes, labels, target_boxes, valid


def _hf_loss(loss_fn, config, logits, pred_boxes, labels, target_boxes, valid):
  import torch
  targets = [{"class_labels": torch.as_tensor(labels[i][valid[i]]).long(),
              "boxes": torch.as_tensor(target_boxes[i][valid[i]])} for i in range(len(labels))]
  logits_t, boxes_t = torch.as_tensor(logits), torch.as_tensor(pred_boxes)
  loss, parts, _ = loss_fn(logits_t[-1], targets, "cpu", boxes_t[-1], config, outputs_class=logits_t,
                           outputs_coord=boxes_t)
  return float(loss), {k: float(v) for k, v in parts.items()}


@needs_torch
@pytest.mark.parametrize("focal", [False, True], ids=["detr", "deformable_detr"])
def test_set_loss_equals_hf(focal):
  from papers_jax.convert.torch_compat import _define_torchvision_ops
  _define_torchvision_ops()  # before transformers' image utilities import torchvision
  from transformers import DeformableDetrConfig, DetrConfig
  from transformers.loss.loss_deformable_detr import DeformableDetrForObjectDetectionLoss
  from transformers.loss.loss_for_object_detection import ForObjectDetectionLoss

  rng = np.random.default_rng(0)
  logits, pred_boxes, labels, target_boxes, valid = _random_problem(rng)
  kwargs = dict(num_labels=4, decoder_layers=3, auxiliary_loss=True, use_timm_backbone=False,
                use_pretrained_backbone=False)
  if focal:  # the sigmoid head has no no-object logit
    logits = logits[..., :-1]
    config, loss_fn = DeformableDetrConfig(**kwargs), DeformableDetrForObjectDetectionLoss
    weights = dict(class_cost=config.class_cost, class_weight=1.0, focal=True, focal_alpha=config.focal_alpha)
  else:
    config, loss_fn = DetrConfig(**kwargs), ForObjectDetectionLoss
    weights = dict(class_cost=config.class_cost, eos_coef=config.eos_coefficient)
  expected, parts = _hf_loss(loss_fn, config, logits, pred_boxes, labels, target_boxes, valid)
  loss, metrics = jax.jit(lambda *a: objective.set_loss(
      *a, bbox_cost=config.bbox_cost, giou_cost=config.giou_cost, bbox_weight=config.bbox_loss_coefficient,
      giou_weight=config.giou_loss_coefficient, **weights))(logits, pred_boxes, labels, target_boxes, valid)
  np.testing.assert_allclose(float(metrics["loss_class"]), parts["loss_ce"], rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(float(metrics["loss_bbox"]), parts["loss_bbox"], rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(float(metrics["loss_giou"]), parts["loss_giou"], rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(float(loss), expected, rtol=1e-5, atol=1e-4)
  assert expected > 1.0  # a real loss, with every term in it


def test_focal_loss_equals_numpy():
  rng = np.random.default_rng(1)
  logits = rng.normal(size=(4, 6)).astype(np.float32) * 3
  targets = (rng.uniform(size=(4, 6)) < 0.3).astype(np.float32)
  p = 1 / (1 + np.exp(-logits.astype(np.float64)))
  p_t = np.where(targets == 1, p, 1 - p)
  alpha_t = np.where(targets == 1, 0.25, 0.75)
  expected = -alpha_t * (1 - p_t) ** 2 * np.log(p_t)
  np.testing.assert_allclose(objective.sigmoid_focal_loss(logits, targets), expected, rtol=1e-4, atol=1e-6)


def test_set_loss_is_differentiable_and_matching_is_not():
  rng = np.random.default_rng(2)
  logits, pred_boxes, labels, target_boxes, valid = _random_problem(rng, layers=2)
  grads = jax.jit(jax.grad(lambda l, b: objective.set_loss(l, b, labels, target_boxes, valid)[0], argnums=(0, 1)))(
      logits, pred_boxes)
  assert all(np.isfinite(g).all() and np.abs(g).max() > 0 for g in grads)
  # Queries matched to no target get box gradient 0 (their boxes enter no term).
  _, metrics = objective.set_loss(logits[-1], pred_boxes[-1], labels, target_boxes, valid)
  unmatched = np.asarray(metrics["target_for_query"]) < 0
  assert unmatched[2].all() and np.all(np.asarray(grads[1])[-1][unmatched] == 0)
