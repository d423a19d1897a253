"""YOLOv1: the paper's network (parameter count, output grid), the loss against a numpy reference written from
the paper, decoding against a numpy NMS, the FLOP counter against XLA, and the demo config through the loop."""

import glob
import json
import math
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from papers_jax import models
from papers_jax.models import yolo
from papers_jax.objectives import yolo as objective
from timm_parity import FixedKeyRngs, num_params


# ------------------------------------------------------------------ the paper's network

def test_paper_network_parameter_count_and_output():
  """Figure 3: 24 convolutions and 2 FC layers on 448×448 inputs → 7×7×30. The paper states no parameter
  count; the reference is Figure 3's table counted by hand (weights + biases of each layer)."""
  convs = ([(7, 3, 64), (3, 64, 192), (1, 192, 128), (3, 128, 256), (1, 256, 256), (3, 256, 512)]
           + [(1, 512, 256), (3, 256, 512)] * 4 + [(1, 512, 512), (3, 512, 1024)]
           + [(1, 1024, 512), (3, 512, 1024)] * 2 + [(3, 1024, 1024)] * 4)
  expected = sum(k * k * a * b + b for k, a, b in convs) + (7 * 7 * 1024 * 4096 + 4096) + (4096 * 1470 + 1470)
  assert len(convs) == 24 and expected == 271_703_550
  model = nnx.eval_shape(lambda: models.create("yolov1", rngs=FixedKeyRngs()))
  assert num_params(model) == expected and len(model.convs) == 24
  graphdef, state = nnx.split(model)
  out = jax.eval_shape(lambda s, x: nnx.merge(graphdef, s)(x, train=False), state,
                       jax.ShapeDtypeStruct((2, 448, 448, 3), jnp.float32))
  assert out["grid"].shape == (2, 7, 7, 2 * 5 + 20)
  assert model.flat_features == 7 * 7 * 1024


def _xla_flops(model, img_size):
  graphdef, state = nnx.split(model)
  x = jnp.zeros((1, img_size, img_size, model.in_chans), jnp.float32)
  return jax.jit(lambda s, x: nnx.merge(graphdef, s)(x, train=False)).lower(state, x).cost_analysis()["flops"]


@pytest.mark.parametrize("batch_norm", [False, True])
def test_forward_flops_match_xla(batch_norm):
  """A small network of the paper's form (7×7/2, pools, 1×1 and a stride-2 3×3; biases or BatchNorm)."""
  model = yolo.YOLOv1(num_classes=3, grid_size=3, layers=((7, 8, 2), "M", (1, 8, 1), (3, 16, 1), "M", (3, 16, 2)),
                      fc_features=32, batch_norm=batch_norm, img_size=32, rngs=nnx.Rngs(0))
  ratio = _xla_flops(model, 32) / yolo.forward_flops(model, count_padding=False)
  assert abs(ratio - 1) < 0.05, ratio


# ------------------------------------------------------------------ the loss against the paper, in numpy

def _iou(a, b):
  """IoU of two cxcywh boxes."""
  ax0, ay0, ax1, ay1 = a[0] - a[2] / 2, a[1] - a[3] / 2, a[0] + a[2] / 2, a[1] + a[3] / 2
  bx0, by0, bx1, by1 = b[0] - b[2] / 2, b[1] - b[3] / 2, b[0] + b[2] / 2, b[1] + b[3] / 2
  inter = max(0.0, min(ax1, bx1) - max(ax0, bx0)) * max(0.0, min(ay1, by1) - max(ay0, by0))
  return inter / (a[2] * a[3] + b[2] * b[3] - inter)


def yolo_loss_numpy(grid, labels, boxes, valid, num_classes, coord=5.0, noobj=0.5):
  """Eq. 3 of the paper with loops over images, cells and predictors; the mean over images. Returns (loss,
  how many responsible predictors were chosen by IoU and how many by distance, cells with two objects)."""
  grid, boxes = np.asarray(grid, np.float64), np.asarray(boxes, np.float64)
  n_images, s = grid.shape[:2]
  b_count = (grid.shape[-1] - num_classes) // 5
  total, by_iou, by_dist, crowded = 0.0, 0, 0, 0
  for n in range(n_images):
    owner = {}  # cell → the first object whose centre is in it
    for m in range(len(labels[n])):
      if valid[n, m]:
        cell = (min(int(boxes[n, m, 1] * s), s - 1), min(int(boxes[n, m, 0] * s), s - 1))
        crowded += cell in owner
        owner.setdefault(cell, m)
    for i in range(s):
      for j in range(s):
        out = grid[n, i, j]
        if (i, j) not in owner:
          total += sum(noobj * out[5 * b + 4] ** 2 for b in range(b_count))
          continue
        m = owner[(i, j)]
        cx, cy, w, h = boxes[n, m]
        preds = [((j + out[5 * b]) / s, (i + out[5 * b + 1]) / s, out[5 * b + 2] ** 2, out[5 * b + 3] ** 2)
                 for b in range(b_count)]
        ious = [_iou(p, (cx, cy, w, h)) for p in preds]
        if max(ious) > 0:
          best, by_iou = int(np.argmax(ious)), by_iou + 1
        else:
          dists = [sum((p[k] - t) ** 2 for k, t in enumerate((cx, cy, w, h))) for p in preds]
          best, by_dist = int(np.argmin(dists)), by_dist + 1
        for b in range(b_count):
          x, y, sw, sh, conf = out[5 * b:5 * b + 5]
          if b == best:
            total += coord * ((x - (cx * s - j)) ** 2 + (y - (cy * s - i)) ** 2)
            total += coord * ((sw - math.sqrt(w)) ** 2 + (sh - math.sqrt(h)) ** 2)
            total += (conf - ious[b]) ** 2
          else:
            total += noobj * conf ** 2
        for c in range(num_classes):
          total += (out[5 * b_count + c] - (c == labels[n, m])) ** 2
  return total / n_images, by_iou, by_dist, crowded


def _problem(seed=0, n=4, s=4, b=2, c=3, m=5):
  rng = np.random.default_rng(seed)
  boxes = np.concatenate([rng.uniform(0.05, 0.95, (n, m, 2)), rng.uniform(0.05, 0.5, (n, m, 2))], -1)
  boxes[0, 0, :2] = np.floor(boxes[0, 0, :2] * s) / s + 0.3 / s
  boxes[0, 1, :2] = boxes[0, 0, :2] + 0.2 / s  # two objects in one cell (the second is ignored there)
  labels = rng.integers(0, c, (n, m))
  valid = np.arange(m)[None] < np.array([5, 3, 1, 0])[:, None]
  boxes[~valid] = rng.uniform(0, 1, (int((~valid).sum()), 4))  # padding holds junk: it must be ignored
  grid = rng.normal(0, 0.5, (n, s, s, b * 5 + c))
  # Predictors near their cell's object in images 0 and 1 (IoU > 0); image 2's stay random (IoU 0 mostly).
  for k in range(n - 2):
    for j in range(m):
      if valid[k, j]:
        row, col = min(int(boxes[k, j, 1] * s), s - 1), min(int(boxes[k, j, 0] * s), s - 1)
        p = (j + k) % b
        grid[k, row, col, 5 * p:5 * p + 4] = [boxes[k, j, 0] * s - col, boxes[k, j, 1] * s - row,
                                              math.sqrt(boxes[k, j, 2]), math.sqrt(boxes[k, j, 3])]
        grid[k, row, col, 5 * p:5 * p + 4] += rng.normal(0, 0.05, 4)
  grid[2, ..., 0] = grid[2, ..., 5] = -5.0  # boxes far outside the image: IoU 0, the distance decides
  return grid.astype(np.float32), labels.astype(np.int32), boxes.astype(np.float32), valid


# One compile for both loss tests (same shapes): (loss, parts), d loss / d grid.
_loss_and_grad = jax.jit(jax.value_and_grad(
    lambda grid, labels, boxes, valid, coord, noobj: objective.yolo_loss(
        grid, labels, boxes, valid, num_classes=3, coord_weight=coord, noobj_weight=noobj), has_aux=True))


def test_loss_equals_numpy_reference():
  grid, labels, boxes, valid = _problem()
  (loss, parts), _ = _loss_and_grad(grid, labels, boxes, valid, 5.0, 0.5)
  expected, by_iou, by_dist, crowded = yolo_loss_numpy(grid, labels, boxes, valid, 3)
  assert by_iou >= 4 and by_dist >= 1 and crowded >= 1  # both ways of choosing, and a cell with two objects
  np.testing.assert_allclose(float(loss), expected, rtol=1e-5)
  np.testing.assert_allclose(float(sum(parts[k] for k in ("loss_coord", "loss_obj", "loss_noobj", "loss_class"))),
                             expected, rtol=1e-5)
  responsible = np.asarray(parts["responsible"])
  assert responsible.sum() == by_iou + by_dist and responsible.any(-1).sum() == responsible.sum()
  # λcoord and λnoobj are the parts' weights.
  (heavier, _), _ = _loss_and_grad(grid, labels, boxes, valid, 10.0, 1.0)
  np.testing.assert_allclose(float(heavier), float(loss) + float(parts["loss_coord"] + parts["loss_noobj"]),
                             rtol=1e-5)


def test_loss_gradient_flows_to_predictions_not_through_the_iou_target():
  grid, labels, boxes, valid = _problem(seed=1)
  (_, parts), grads = _loss_and_grad(grid, labels, boxes, valid, 5.0, 0.5)
  assert np.all(np.isfinite(grads))
  # A responsible predictor's confidence gradient is 2(C - IoU)/N: the IoU is a target, not differentiated.
  n, i, j, b = np.argwhere(np.asarray(parts["responsible"]))[0]
  x = np.asarray(grid, np.float64)
  pred = ((j + x[n, i, j, 5 * b]) / 4, (i + x[n, i, j, 5 * b + 1]) / 4, x[n, i, j, 5 * b + 2] ** 2,
          x[n, i, j, 5 * b + 3] ** 2)
  owner = [m for m in range(5) if valid[n, m] and min(int(boxes[n, m, 1] * 4), 3) == i
           and min(int(boxes[n, m, 0] * 4), 3) == j][0]
  iou = _iou(pred, boxes[n, owner].astype(np.float64))
  np.testing.assert_allclose(grads[n, i, j, 5 * b + 4], 2 * (x[n, i, j, 5 * b + 4] - iou) / len(grid), rtol=1e-4)


# ------------------------------------------------------------------ decoding

def _nms_numpy(boxes, scores, threshold):
  order, keep = list(np.argsort(-scores, kind="stable")), []
  for i in order:
    if all(_iou_xyxy(boxes[i], boxes[k]) <= threshold for k in keep):
      keep.append(i)
  return keep


def _iou_xyxy(a, b):
  inter = max(0.0, min(a[2], b[2]) - max(a[0], b[0])) * max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
  return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def test_decode_equals_numpy_class_scores_and_nms():
  """Class-specific confidence Pr(class)·confidence for every predictor and class, the threshold, per-class
  greedy NMS, the best `max_detections` over the classes."""
  rng = np.random.default_rng(0)
  n, s, b, c = 2, 3, 2, 3
  grid = np.concatenate([rng.uniform(0, 1, (n, s, s, b, 2)), rng.uniform(0.3, 0.8, (n, s, s, b, 2)),
                         rng.uniform(0, 1, (n, s, s, b, 1))], -1).reshape(n, s, s, b * 5)
  grid = np.concatenate([grid, rng.uniform(0, 1, (n, s, s, c))], -1).astype(np.float32)
  threshold, nms_iou, max_det = 0.1, 0.5, 12
  boxes, scores, labels, keep = jax.jit(lambda g: yolo.decode(g, c, score_threshold=threshold, iou_threshold=nms_iou,
                                                              max_detections=max_det))(grid)
  g = grid.astype(np.float64)
  for k in range(n):
    cand = []  # (score, class, xyxy)
    for i in range(s):
      for j in range(s):
        for p in range(b):
          x, y, sw, sh, conf = g[k, i, j, 5 * p:5 * p + 5]
          cx, cy, w, h = (j + x) / s, (i + y) / s, sw ** 2, sh ** 2
          for cls in range(c):
            cand.append((g[k, i, j, 5 * b + cls] * conf, cls, (cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2)))
    kept = []
    for cls in range(c):
      mine = [e for e in cand if e[1] == cls and e[0] > threshold]
      for i in _nms_numpy(np.array([e[2] for e in mine]), np.array([e[0] for e in mine]), nms_iou):
        kept.append(mine[i])
    kept = sorted(kept, key=lambda e: -e[0])[:max_det]
    assert len(kept) == max_det  # enough survive to fill the output: the cut-off is exercised
    assert keep[k].sum() == len(kept)
    np.testing.assert_allclose(scores[k][keep[k]], [e[0] for e in kept], rtol=1e-5)
    np.testing.assert_array_equal(labels[k][keep[k]], [e[1] for e in kept])
    np.testing.assert_allclose(boxes[k][keep[k]], [e[2] for e in kept], atol=1e-6)
  assert len(set(np.asarray(labels[0][keep[0]]).tolist())) > 1  # the classes interleave in the ranking


def test_decode_drops_everything_under_the_threshold():
  grid = np.zeros((1, 2, 2, 2 * 5 + 2), np.float32)
  grid[0, 1, 0, :5] = [0.5, 0.5, 0.5, 0.5, 0.9]  # one confident box of class 1, centred in cell (1, 0)
  grid[0, 1, 0, 10:] = [0.1, 0.8]
  boxes, scores, labels, keep = jax.jit(lambda g: yolo.decode(g, 2, score_threshold=0.05, max_detections=4))(grid)
  assert keep.tolist() == [[True, True, False, False]]  # class 1 (0.72) and class 0 (0.09)
  np.testing.assert_allclose(scores[0, :2], [0.72, 0.09], rtol=1e-6)
  assert labels[0, :2].tolist() == [1, 0]
  np.testing.assert_allclose(boxes[0, 0], [0.25 - 0.125, 0.75 - 0.125, 0.25 + 0.125, 0.75 + 0.125], atol=1e-7)


# ------------------------------------------------------------------ the task, through the loop

@pytest.mark.skipif(not os.environ.get("PAPERS_JAX_FULL_PARITY"), reason="make test-full trains it")
def test_yolo_run_evaluates_and_draws(tmp_path):
  """configs/yolo/scenes.py in smoke mode through the real loop on 8 devices (tests/test_configs.py leaves it
  to this test): the grid loss trains, the evaluation gives COCO mAP, the PNG and its TensorBoard image."""
  from conftest import load_config
  from papers_jax.core import loop
  from test_configs import check_smoke_run

  config = load_config("yolo/scenes.py", "smoke")
  summary = loop.train(config, str(tmp_path / "run"))
  check_smoke_run(config, summary, str(tmp_path / "run"))
  rows = [json.loads(line) for line in open(tmp_path / "run" / "metrics.jsonl")]
  train = [r for r in rows if "loss_coord" in r]
  assert train and {"loss_obj", "loss_noobj", "loss_class"} <= set(train[0])
  assert summary["eval/count"] == 250 and np.isfinite(summary["eval/loss"])
  assert {"eval/AP", "eval/AP50", "eval/AP75"} <= set(summary) and 0 <= summary["eval/AP50"] <= 1
  assert os.path.isfile(tmp_path / "run" / "detections" / "step_000004.png")
  events = glob.glob(str(tmp_path / "run" / "**" / "events.out.tfevents.*"), recursive=True)
  assert any(b"detection/predictions" in open(e, "rb").read() for e in events)


# ------------------------------------------------------------------ YOLOv1's augmentation

def test_jitter_and_hsv_keep_boxes_consistent():
  from papers_jax.data import scenes
  example = scenes.ShapesScenesSource("train")[3]
  rng = np.random.default_rng(0)
  sizes = set()
  for _ in range(8):
    out = scenes.random_jitter(example, rng, 0.2)
    h, w = out["image"].shape[:2]
    sizes.add((h, w))
    assert 0.6 * 64 <= h <= 1.4 * 64 and 0.6 * 64 <= w <= 1.4 * 64
    assert len(out["boxes"]) == len(out["labels"]) == len(out["instance_masks"])
    for box, mask in zip(out["boxes"], out["instance_masks"]):  # a cut object's box holds its mask's tight box,
      tight = scenes.tight_box(mask)                             # any other's is its tight box
      assert np.all(tight[:2] >= box[:2]) and np.all(tight[2:] <= box[2:])
      if box[0] > 0 and box[1] > 0 and box[2] < w and box[3] < h:
        np.testing.assert_array_equal(box, tight)
  assert len(sizes) == 8  # scaled and shifted differently each time
  padded = scenes.pad(example, 3, 5, 0, 0)  # the grey border, boxes shifted with the content
  assert padded["image"].shape == (67, 69, 3) and np.all(padded["image"][:3] == 127)
  np.testing.assert_allclose(padded["boxes"], example["boxes"] + [5, 3, 5, 3])
  coloured = scenes.random_hsv(example, np.random.default_rng(1), 1.5, 1.5)
  assert coloured["image"].dtype == np.uint8 and not np.array_equal(coloured["image"], example["image"])
  np.testing.assert_array_equal(coloured["boxes"], example["boxes"])
  grey = dict(example, image=np.full((4, 4, 3), 100, np.uint8))  # no saturation to scale: stays grey
  out = scenes.random_hsv(grey, np.random.default_rng(2), 1.5, 1.5)["image"]
  assert np.all(out == out[0, 0, 0]) and 100 / 1.5 - 1 <= out[0, 0, 0] <= 100 * 1.5 + 1
