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
  _, metrics = jax.jit(objective.set_loss)(logits[-1], pred_boxes[-1], labels, target_boxes, valid)
  unmatched = np.asarray(metrics["target_for_query"]) < 0
  assert unmatched[2].all() and np.all(np.asarray(grads[1])[-1][unmatched] == 0)


# ------------------------------------------------------------------ COCO mAP against pycocotools


def _pycocotools_stats(gt_boxes, gt_labels, pred_boxes, pred_scores, pred_labels, num_classes):
  import contextlib
  import io
  from pycocotools.coco import COCO
  from pycocotools.cocoeval import COCOeval
  xywh = lambda b: [float(b[0]), float(b[1]), float(b[2] - b[0]), float(b[3] - b[1])]  # noqa: E731
  images, annotations, results = [], [], []
  for i in range(len(gt_boxes)):
    images.append({"id": i + 1, "height": 300, "width": 300})
    for box, label in zip(gt_boxes[i], gt_labels[i]):
      w, h = box[2] - box[0], box[3] - box[1]
      annotations.append({"id": len(annotations) + 1, "image_id": i + 1, "category_id": int(label) + 1,
                          "bbox": xywh(box), "area": float(w * h), "iscrowd": 0})
    for box, score, label in zip(pred_boxes[i], pred_scores[i], pred_labels[i]):
      results.append({"image_id": i + 1, "category_id": int(label) + 1, "bbox": xywh(box), "score": float(score)})
  with contextlib.redirect_stdout(io.StringIO()):
    gt = COCO()
    gt.dataset = {"images": images, "annotations": annotations,
                  "categories": [{"id": c + 1, "name": str(c)} for c in range(num_classes)]}
    gt.createIndex()
    evaluator = COCOeval(gt, gt.loadRes(results), "bbox")
    evaluator.evaluate()
    evaluator.accumulate()
    evaluator.summarize()
  return dict(zip(["AP", "AP50", "AP75", "APs", "APm", "APl"], evaluator.stats[:6])) | {"AR100": evaluator.stats[8]}


def _generated_detections(rng, num_images=40, num_classes=3):
  """Ground truth of every size range, and predictions that are jittered copies (some with the wrong
  class, some missing), plus false positives; integer-rounded scores make ties."""
  gt_boxes, gt_labels, pred_boxes, pred_scores, pred_labels = [], [], [], [], []
  for _ in range(num_images):
    n = rng.integers(0, 6)
    xy = rng.uniform(0, 200, (n, 2))
    wh = np.exp(rng.uniform(np.log(8), np.log(150), (n, 2)))
    boxes = np.concatenate([xy, xy + wh], -1)
    labels = rng.integers(0, num_classes, n)
    keep = rng.uniform(size=n) < 0.8
    jitter = boxes[keep] + rng.normal(0, 0.08, (keep.sum(), 1)) * np.concatenate([wh[keep], wh[keep]], -1)
    flip = rng.uniform(size=keep.sum()) < 0.15
    det_labels = np.where(flip, rng.integers(0, num_classes, keep.sum()), labels[keep])
    m = rng.integers(0, 4)
    fp_xy = rng.uniform(0, 250, (m, 2))
    fp = np.concatenate([fp_xy, fp_xy + rng.uniform(5, 100, (m, 2))], -1)
    gt_boxes.append(boxes)
    gt_labels.append(labels)
    pred_boxes.append(np.concatenate([jitter, fp]))
    pred_scores.append(np.round(rng.uniform(0, 1, keep.sum() + m), 1))
    pred_labels.append(np.concatenate([det_labels, rng.integers(0, num_classes, m)]))
  return gt_boxes, gt_labels, pred_boxes, pred_scores, pred_labels


@pytest.mark.skipif(importlib.util.find_spec("pycocotools") is None, reason="pycocotools is needed")
@pytest.mark.parametrize("seed", [0, 1])
def test_coco_map_equals_pycocotools(seed):
  from papers_jax.evaluators import coco
  data = _generated_detections(np.random.default_rng(seed))
  expected = _pycocotools_stats(*data, num_classes=3)
  got = coco.coco_map(*data, num_classes=3)
  for key, value in expected.items():
    np.testing.assert_allclose(got[key], value, atol=1e-9, err_msg=key)
  assert 0.2 < got["AP50"] < 0.95 and got["APs"] > -1 and got["APl"] > -1  # a case with something to measure


def test_coco_map_hand_built_cases():
  from papers_jax.evaluators import coco
  gt = [np.array([[0, 0, 10, 10], [20, 20, 40, 40]], float)]
  perfect = coco.coco_map(gt, [np.array([0, 1])], gt, [np.array([0.9, 0.8])], [np.array([0, 1])], num_classes=2)
  assert perfect["AP"] == pytest.approx(1.0) and perfect["APs"] == pytest.approx(1.0) and perfect["APm"] == -1
  # Shifted by 1 px on a 10 px box: IoU 81/119 = 0.68, a hit at 0.50..0.65 only (4 of the 10 thresholds).
  shifted = coco.coco_map(gt[:1], [np.array([0, 1])], [np.array([[1, 1, 11, 11], [20, 20, 40, 40]], float)],
                          [np.array([0.9, 0.8])], [np.array([0, 1])], num_classes=2)
  assert shifted["AP50"] == pytest.approx(1.0) and shifted["AP"] == pytest.approx((0.4 + 1.0) / 2)


def test_mask_iou():
  from papers_jax.evaluators import coco
  a = np.zeros((2, 4, 4), bool)
  b = np.zeros((2, 4, 4), bool)
  a[0, :2], b[0, :, :2] = True, True  # 4 shared of 12 pixels
  np.testing.assert_allclose(coco.mask_iou(a, b), [4 / 12, 1.0])
  assert coco.mean_mask_iou(a, b, valid=[True, False]) == pytest.approx(1 / 3)


# ------------------------------------------------------------------ generated scenes, COCO source, augmentation


@pytest.fixture(scope="module", params=["shapes_scenes", "digits_scenes"])
def scene_source(request):
  from papers_jax.data import scenes
  return {"shapes_scenes": scenes.ShapesScenesSource, "digits_scenes": scenes.DigitsScenesSource}[request.param]


def _assert_boxes_are_the_masks_tight_boxes(example, atol=0.0):
  from papers_jax.data import scenes
  assert len(example["boxes"]) == len(example["labels"]) == len(example["instance_masks"])
  for box, mask in zip(example["boxes"], example["instance_masks"]):
    np.testing.assert_allclose(box, scenes.tight_box(mask), atol=atol)


def test_scenes_are_fixed_and_consistent(scene_source):
  train, test = scene_source("train"), scene_source("test")
  assert (len(train), len(test)) == (2000, 250)
  a, b = train[7], scene_source("train")[7]
  for key in a:
    np.testing.assert_array_equal(a[key], b[key])  # the same scene on every call
  assert not np.array_equal(train[0]["image"], test[0]["image"])
  counts = []
  for i in range(20):
    example = train[i]
    assert example["image"].shape == (64, 64, 3) and example["image"].dtype == np.uint8
    _assert_boxes_are_the_masks_tight_boxes(example)
    masks = example["instance_masks"]
    assert masks.sum(0).max() <= 1  # objects do not overlap
    assert set(example["labels"].tolist()) <= set(range(train.num_classes))
    counts.append(len(example["labels"]))
  assert min(counts) >= 1 and max(counts) >= 3


def test_augmentation_keeps_boxes_and_masks_consistent():
  from papers_jax.data import scenes
  example = scenes.ShapesScenesSource("train")[3]
  flipped = scenes.hflip(example)
  _assert_boxes_are_the_masks_tight_boxes(flipped)
  np.testing.assert_array_equal(scenes.hflip(flipped)["image"], example["image"])
  resized = scenes.resize(example, 128, 96)  # 2× taller, 1.5× wider
  assert resized["image"].shape == (128, 96, 3)
  _assert_boxes_are_the_masks_tight_boxes(resized, atol=1.0)  # nearest masks: within a pixel
  np.testing.assert_allclose(resized["boxes"], example["boxes"] * [1.5, 2, 1.5, 2])
  # A crop through the objects: boxes clipped to the window, objects outside dropped.
  cropped = scenes.crop(example, 10, 20, 30, 40)
  assert cropped["image"].shape == (30, 40, 3)
  _assert_boxes_are_the_masks_tight_boxes(cropped)
  rng = np.random.default_rng(0)
  for _ in range(5):
    _assert_boxes_are_the_masks_tight_boxes(scenes.random_crop(example, rng, 0.3))
  padded = scenes.pad_targets(example, 8)
  n = len(example["labels"])
  assert padded["boxes"].shape == (8, 4) and padded["instance_masks"].shape == (8, 64, 64)
  np.testing.assert_array_equal(padded["box_valid"], np.arange(8) < n)
  np.testing.assert_array_equal(padded["labels"][:n], example["labels"])


def test_coco_source_reads_what_write_coco_wrote(tmp_path):
  from papers_jax.data import scenes
  from papers_jax.errors import DataError
  source = scenes.DigitsScenesSource("test")
  scenes.write_coco(source, str(tmp_path), "val", count=4)
  coco = scenes.CocoSource(str(tmp_path), "val", with_masks=True)
  assert len(coco) == 4 and coco.num_classes == 10 and coco.class_names[3] == "3"
  for i in range(4):
    np.testing.assert_array_equal(coco[i]["image"], source[i]["image"])
    np.testing.assert_allclose(coco[i]["boxes"], source[i]["boxes"])
    np.testing.assert_array_equal(coco[i]["labels"], source[i]["labels"])
    assert coco[i]["instance_masks"].shape == (len(source[i]["labels"]), 64, 64)
  with pytest.raises(DataError, match="instances_train.json"):
    scenes.CocoSource(str(tmp_path), "train")


# ------------------------------------------------------------------ the detection task end to end


def _run_steps(config, devices):
  from papers_jax.core import loop, sharding
  from papers_jax.data import pipeline
  trainer = loop.Trainer(config, "/nonexistent-workdir-unused", devices=devices)
  batches = pipeline.train_batches(trainer.train_source, trainer._preprocess(train=True),
                                   global_batch=config.batch_size, seed=config.seed,
                                   starts=pipeline.batch_starts(0, config.num_steps, config.batch_size))
  losses, state = [], trainer.state
  with sharding.use_mesh(trainer.mesh, trainer.rules):
    for local in batches:
      state, metrics = trainer.train_step(state, sharding.global_batch(local, trainer.mesh, trainer.rules))
      losses.append(float(metrics["loss"]))
  return np.array(losses), jax.device_get(state.params)


def test_detection_run_learns_and_sharded_equals_single_device(tmp_path):
  """The shipped smoke config (tests/test_configs.py leaves it to this test) through the real loop on 8
  devices (checkpoint, evaluation with mAP, the PNG), its per-step losses against the same steps on one
  device, and the loss falling."""
  import json
  import os
  from conftest import load_config
  from papers_jax.core import loop
  from test_configs import check_smoke_run

  config = load_config("detection/scenes_tiny.py", "smoke")
  summary = loop.train(config, str(tmp_path / "run"))
  check_smoke_run(config, summary, str(tmp_path / "run"))
  rows = [json.loads(line) for line in open(tmp_path / "run" / "metrics.jsonl")]
  sharded = np.array([r["loss"] for r in rows if "loss" in r and "eval/loss" not in r])
  assert summary["steps"] == 6 and summary["eval/count"] == 250
  assert {"eval/AP", "eval/AP50", "eval/AP75", "eval/APs", "eval/APm", "eval/APl"} <= set(summary)
  assert 0 <= summary["eval/AP50"] <= 1
  assert os.path.isfile(tmp_path / "run" / "detections" / "step_000006.png")
  assert os.listdir(tmp_path / "run" / "checkpoints")

  single, _ = _run_steps(config, jax.devices()[:1])
  np.testing.assert_allclose(sharded, single, rtol=1e-4)
  assert single[-2:].mean() < 0.8 * single[0]  # the set loss falls within a few steps


def test_task_preprocess_gives_static_normalised_targets():
  from papers_jax.data import scenes
  from papers_jax.tasks.detection import detection_preprocess
  source = scenes.ShapesScenesSource("test")
  example = source[5]
  n = len(example["labels"])
  fn = detection_preprocess(128, 8, train=True, flip_prob=1.0)  # always flipped, resized 2×
  out = fn(dict(example), np.random.default_rng(0))
  assert out["image"].shape == (128, 128, 3) and out["boxes"].shape == (8, 4) and out["box_valid"].sum() == n
  np.testing.assert_array_equal(out["orig_size"], [64, 64])
  x0, y0, x1, y1 = example["boxes"].T
  expected = np.stack([1 - (x0 + x1) / 2 / 64, (y0 + y1) / 2 / 64, (x1 - x0) / 64, (y1 - y0) / 64], -1)  # flipped
  np.testing.assert_allclose(out["boxes"][:n], expected, atol=1e-6)
  assert np.all(out["boxes"][n:] == 0) and np.all(out["labels"][:n] == example["labels"])


def test_task_reads_either_head_and_names_too_few_queries():
  from conftest import load_config
  from papers_jax.errors import ConfigError
  from papers_jax.tasks.detection import DetectionTask
  task = DetectionTask(load_config("detection/scenes_tiny.py", "smoke"))  # shapes: 4 classes, 6 boxes
  rng = np.random.default_rng(3)
  logits, pred_boxes, labels, target_boxes, valid = _random_problem(rng, layers=1, batch=2, queries=7, classes=4,
                                                                    max_targets=6)
  batch = {"labels": labels, "boxes": target_boxes}
  # Under jit, as in the step (eagerly every op would compile on its own).
  softmax = jax.jit(lambda l, b: task._set_loss({"pred_logits": l[0], "pred_boxes": b[0]}, batch, valid)[0])
  reference = jax.jit(lambda l, b, focal: objective.set_loss(l, b, labels, target_boxes, valid, focal=focal)[0],
                      static_argnums=2)
  np.testing.assert_allclose(softmax(logits, pred_boxes), reference(logits, pred_boxes, False), rtol=1e-6)
  focal = jax.jit(lambda l, b: task._set_loss({"logits": l, "boxes": b}, batch, valid)[0])
  np.testing.assert_allclose(focal(logits[..., :-1], pred_boxes), reference(logits[..., :-1], pred_boxes, True),
                             rtol=1e-6)
  with pytest.raises(ConfigError, match="class logits"):
    task._set_loss({"logits": logits[..., :2], "boxes": pred_boxes}, batch, valid)
  with pytest.raises(ConfigError, match="max_boxes=6 is more than the model's 5 queries"):
    task._set_loss({"logits": logits[:, :, :5], "boxes": pred_boxes[:, :, :5]}, batch, valid)
  config = load_config("detection/scenes_tiny.py", "smoke").unlock()
  config.data.augment = "cifar"
  with pytest.raises(ConfigError, match="data.augment='cifar'.*without their boxes"):
    DetectionTask(config.lock())


def test_decode_predictions_of_both_heads():
  from papers_jax.tasks.detection import decode_predictions
  boxes = np.array([[[0.5, 0.5, 0.2, 0.4], [0.25, 0.25, 0.5, 0.5]]])  # (1 image, 2 queries, 4)
  softmax_logits = np.log(np.array([[[0.1, 0.7, 0.2], [0.3, 0.1, 0.6]]]))  # 2 classes + no-object
  (xyxy, scores, labels), = decode_predictions(softmax_logits, boxes, np.array([[100, 200]]), sigmoid=False,
                                               max_detections=100)
  np.testing.assert_allclose(xyxy, [[80, 30, 120, 70], [0, 0, 100, 50]])  # x by the width 200, y by the height 100
  np.testing.assert_allclose(scores, [0.7, 0.3])
  np.testing.assert_array_equal(labels, [1, 0])
  sigmoid_logits = np.array([[[-3.0, 2.0], [1.0, 3.0]]])  # no no-object logit: the best (query, class) pairs
  (xyxy, scores, labels), = decode_predictions(sigmoid_logits, boxes, np.array([[100, 200]]), sigmoid=True,
                                               max_detections=3)
  np.testing.assert_allclose(scores, 1 / (1 + np.exp(-np.array([3.0, 2.0, 1.0]))))
  np.testing.assert_array_equal(labels, [1, 1, 0])
  np.testing.assert_allclose(xyxy[:2], [[0, 0, 100, 50], [80, 30, 120, 70]])
