"""ViLD (models/vild.py, objectives/vild.py, ops/roi_align.py, tasks/vild.py) against numpy references."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from papers_jax.data import vqa_scenes
from papers_jax.models import vild as vild_model
from papers_jax.objectives import vild as objective
from papers_jax.ops import roi_align as roi_ops
from papers_jax.tasks import vild as task_lib


# ---------------------------------------------------------------- numpy references, written from the papers
def np_bilinear(feat, y, x):
  """torchvision's roi_align bilinear_interpolate for one point (feat (H, W, C))."""
  height, width = feat.shape[:2]
  if y < -1.0 or y > height or x < -1.0 or x > width:
    return np.zeros(feat.shape[2])
  y, x = max(y, 0.0), max(x, 0.0)
  y_low, x_low = int(y), int(x)
  if y_low >= height - 1:
    y_high = y_low = height - 1
    y = float(y_low)
  else:
    y_high = y_low + 1
  if x_low >= width - 1:
    x_high = x_low = width - 1
    x = float(x_low)
  else:
    x_high = x_low + 1
  ly, lx = y - y_low, x - x_low
  hy, hx = 1 - ly, 1 - lx
  return (hy * hx * feat[y_low, x_low] + hy * lx * feat[y_low, x_high] + ly * hx * feat[y_high, x_low]
          + ly * lx * feat[y_high, x_high])


def np_roi_align(feat, boxes, out, scale, sr):
  """RoIAlign with aligned=True, loop by loop (Mask R-CNN §3; torchvision's kernel)."""
  res = np.zeros((len(boxes), out, out, feat.shape[2]))
  for n, (x0, y0, x1, y1) in enumerate(boxes):
    x0, y0, x1, y1 = x0 * scale - 0.5, y0 * scale - 0.5, x1 * scale - 0.5, y1 * scale - 0.5
    bin_h, bin_w = (y1 - y0) / out, (x1 - x0) / out
    for i in range(out):
      for j in range(out):
        acc = 0
        for iy in range(sr):
          for ix in range(sr):
            acc = acc + np_bilinear(feat, y0 + i * bin_h + (iy + 0.5) * bin_h / sr,
                                    x0 + j * bin_w + (ix + 0.5) * bin_w / sr)
        res[n, i, j] = acc / sr / sr
  return res


def np_log_softmax(z):
  z = z - z.max(-1, keepdims=True)
  return z - np.log(np.exp(z).sum(-1, keepdims=True))


def np_iou(a, b):
  out = np.zeros((len(a), len(b)))
  for i, p in enumerate(a):
    for j, q in enumerate(b):
      iw = max(0.0, min(p[2], q[2]) - max(p[0], q[0]))
      ih = max(0.0, min(p[3], q[3]) - max(p[1], q[1]))
      inter = iw * ih
      union = (p[2] - p[0]) * (p[3] - p[1]) + (q[2] - q[0]) * (q[3] - q[1]) - inter
      out[i, j] = inter / union
  return out


def np_encode(box, ref, weights=(1.0, 1.0, 1.0, 1.0)):
  """Faster R-CNN's (tx, ty, tw, th) of one box against one reference box."""
  rw, rh = ref[2] - ref[0], ref[3] - ref[1]
  bw, bh = box[2] - box[0], box[3] - box[1]
  return np.array([weights[0] * ((box[0] + box[2]) / 2 - (ref[0] + ref[2]) / 2) / rw,
                   weights[1] * ((box[1] + box[3]) / 2 - (ref[1] + ref[3]) / 2) / rh,
                   weights[2] * np.log(bw / rw), weights[3] * np.log(bh / rh)])


def random_boxes(rng, n, size, lo=2.0, hi=20.0):
  xy = rng.uniform(-3, size - 2, (n, 2))
  wh = rng.uniform(lo, hi, (n, 2))
  return np.concatenate([xy, xy + wh], -1).astype(np.float32)


# ---------------------------------------------------------------- RoIAlign and the box coder
def test_roi_align_matches_numpy_loops():
  rng = np.random.default_rng(0)
  feat = rng.normal(size=(7, 9, 3)).astype(np.float32)
  boxes = np.concatenate([random_boxes(rng, 12, 36), [[30.0, 20.0, 44.0, 34.0], [0.0, 0.0, 1.0, 1.0]]]).astype(
      np.float32)  # two reach past the map's edge
  got = np.asarray(roi_ops.roi_align(jnp.asarray(feat), jnp.asarray(boxes), output_size=3, spatial_scale=0.25,
                                     sampling_ratio=2))
  np.testing.assert_allclose(got, np_roi_align(feat, boxes, 3, 0.25, 2), atol=1e-5)


def test_box_coder_round_trip_and_known_case():
  rng = np.random.default_rng(1)
  ref, box = random_boxes(rng, 20, 64), random_boxes(rng, 20, 64)
  d = roi_ops.encode_boxes(jnp.asarray(box), jnp.asarray(ref), (10.0, 10.0, 5.0, 5.0))
  np.testing.assert_allclose(np.asarray(roi_ops.decode_boxes(d, jnp.asarray(ref), (10.0, 10.0, 5.0, 5.0))), box,
                             atol=1e-4)
  np.testing.assert_allclose(np.asarray(d)[3], np_encode(box[3], ref[3], (10.0, 10.0, 5.0, 5.0)), rtol=1e-5)
  # A box shifted by half its width and twice as tall: (0.5, 0, 0, log 2).
  d = roi_ops.encode_boxes(jnp.asarray([[5.0, -5.0, 15.0, 15.0]]), jnp.asarray([[0.0, 0.0, 10.0, 10.0]]))
  np.testing.assert_allclose(np.asarray(d)[0], [0.5, 0.0, 0.0, math.log(2)], atol=1e-6)


# ---------------------------------------------------------------- the region-embedding head
@pytest.fixture(scope="module")
def tiny_detector():
  return vild_model.ViLDDetector(embed_dim=8, widths=(8, 8), strides=(2, 2), anchor_sizes=(6.0, 10.0), img_size=16,
                                 roi_size=2, sampling_ratio=2, head_width=16, pre_nms=20, num_proposals=5,
                                 rngs=nnx.Rngs(0))


def test_region_heads_match_numpy(tiny_detector):
  model = tiny_detector
  rng = np.random.default_rng(2)
  # Perturb every parameter so that no zero bias or unit scale hides a mistake.
  for path, p in nnx.iter_graph(model):
    if isinstance(p, nnx.Param):
      p[...] = p[...] + 0.1 * jnp.asarray(rng.normal(size=p[...].shape), p[...].dtype)
  features = rng.normal(size=(2, 4, 4, 8)).astype(np.float32)
  rois = np.stack([random_boxes(rng, 3, 16, 2, 9) for _ in range(2)])
  text, image, deltas = nnx.jit(lambda m, f, r: m.region_heads(f, r))(model, jnp.asarray(features),
                                                                       jnp.asarray(rois))
  for b in range(2):
    pooled = np_roi_align(features[b], rois[b], 2, 1 / 4, 2).reshape(3, -1)
    h = np.maximum(pooled @ np.asarray(model.fc1.kernel[...]) + np.asarray(model.fc1.bias[...]), 0)
    h = np.maximum(h @ np.asarray(model.fc2.kernel[...]) + np.asarray(model.fc2.bias[...]), 0)
    for got, layer, norm in ((text, model.text_projection, True), (image, model.image_projection, True),
                             (deltas, model.box_deltas, False)):
      want = h @ np.asarray(layer.kernel[...]) + np.asarray(layer.bias[...])
      if norm:
        want = want / np.linalg.norm(want, axis=-1, keepdims=True)
      np.testing.assert_allclose(np.asarray(got[b]), want, atol=1e-5)
  bg = np.asarray(model.background[...])
  np.testing.assert_allclose(np.asarray(model.background_embedding()), bg / np.linalg.norm(bg), atol=1e-6)


def test_detector_forward_shapes_and_proposals(tiny_detector):
  images = jnp.asarray(np.random.default_rng(3).normal(size=(2, 16, 16, 3)), jnp.float32)
  extra = jnp.asarray([[[1.0, 1.0, 6.0, 6.0]], [[2.0, 3.0, 9.0, 12.0]]])
  out = nnx.jit(lambda m, x, r: m(x, r))(tiny_detector, images, extra)
  assert out["rpn_logits"].shape == (2, 32)  # 4×4 cells × 2 anchors
  assert out["proposals"].shape == (2, 5, 4) and out["rois"].shape == (2, 6, 4)
  np.testing.assert_array_equal(np.asarray(out["rois"][:, 5]), np.asarray(extra[:, 0]))
  for b in range(2):
    props = np.asarray(out["proposals"][b])[np.asarray(out["proposal_valid"][b])]
    assert len(props) and (props >= 0).all() and (props <= 16).all()
    iou = np_iou(props, props)
    np.fill_diagonal(iou, 0)
    assert iou.max() <= 0.7 + 1e-5  # the RPN's NMS


# ---------------------------------------------------------------- the losses and the score
def test_vild_text_and_image_losses_match_numpy():
  rng = np.random.default_rng(4)
  b, r, d, k, tau = 2, 5, 6, 4, 0.01
  region = rng.normal(size=(b, r, d))
  region /= np.linalg.norm(region, axis=-1, keepdims=True)
  classes = rng.normal(size=(k, d))
  bg = rng.normal(size=d)
  bg /= np.linalg.norm(bg)
  labels = rng.integers(0, k + 1, (b, r))
  valid = rng.random((b, r)) < 0.7
  logits = objective.region_logits(jnp.asarray(region), jnp.asarray(classes), jnp.asarray(bg), tau)
  # eq. 1: cos(e_r, e_bg) / τ, then cos(e_r, t_k) / τ for each class.
  want_logits = np.zeros((b, r, k + 1))
  for i in range(b):
    for j in range(r):
      want_logits[i, j, 0] = region[i, j] @ bg / tau
      for c in range(k):
        want_logits[i, j, c + 1] = region[i, j] @ classes[c] / np.linalg.norm(classes[c]) / tau
  np.testing.assert_allclose(np.asarray(logits), want_logits, rtol=1e-5, atol=1e-3)
  ce = [-np_log_softmax(want_logits[i, j])[labels[i, j]] for i in range(b) for j in range(r) if valid[i, j]]
  np.testing.assert_allclose(float(objective.vild_text_loss(logits, jnp.asarray(labels), jnp.asarray(valid))),
                             np.mean(ce), rtol=1e-5)
  clip = rng.normal(size=(b, r, d))
  clip /= np.linalg.norm(clip, axis=-1, keepdims=True)
  l1 = [np.abs(clip[i, j] - region[i, j]).sum() for i in range(b) for j in range(r) if valid[i, j]]
  np.testing.assert_allclose(float(objective.vild_image_loss(jnp.asarray(region), jnp.asarray(clip),
                                                             jnp.asarray(valid))), np.mean(l1), rtol=1e-5)


def test_ensemble_score_weights_base_and_novel():
  rng = np.random.default_rng(5)
  pt, pi = rng.random((3, 4)), rng.random((3, 4))
  novel = np.array([False, True, False, True])
  got = np.asarray(objective.ensemble_scores(jnp.asarray(pt), jnp.asarray(pi), jnp.asarray(novel), 2 / 3))
  want = np.where(novel, pt ** (1 / 3) * pi ** (2 / 3), pt ** (2 / 3) * pi ** (1 / 3))
  np.testing.assert_allclose(got, want, rtol=1e-5)


def test_rpn_and_box_losses_match_numpy():
  rng = np.random.default_rng(6)
  anchors = vild_model.anchor_grid(16, 4, (6.0, 10.0))
  gt = np.stack([random_boxes(rng, 3, 16, 4, 9), random_boxes(rng, 3, 16, 4, 9)])
  gt_valid = np.array([[True, True, False], [True, False, False]])
  logits = rng.normal(size=(2, len(anchors))).astype(np.float32)
  deltas = 0.1 * rng.normal(size=(2, len(anchors), 4)).astype(np.float32)
  obj, box = jax.jit(objective.rpn_loss)(jnp.asarray(logits), jnp.asarray(deltas), jnp.asarray(anchors),
                                         jnp.asarray(gt), jnp.asarray(gt_valid))
  pos_bce, neg_bce, l1 = [], [], []
  for b in range(2):
    g = gt[b][gt_valid[b]]
    iou = np_iou(anchors, g)
    best = iou.max(1)
    lab = np.where(best >= 0.7, 1, np.where(best < 0.3, 0, -1))
    for j in range(len(g)):  # each box's best anchors are positive
      lab[iou[:, j] == iou[:, j].max()] = 1
    for a in range(len(anchors)):
      z = logits[b, a]
      if lab[a] == 1:
        pos_bce.append(np.log1p(np.exp(-z)))
        m = [j for j in range(len(g)) if iou[a, j] == iou[:, j].max()]
        target = g[m[0]] if m else g[iou[a].argmax()]
        t = np_encode(target, anchors[a])
        x = np.abs(deltas[b, a] - t)
        l1.append(np.where(x < 1 / 9, 0.5 * x * x * 9, x - 0.5 / 9).sum())
      elif lab[a] == 0:
        neg_bce.append(np.log1p(np.exp(z)))
  np.testing.assert_allclose(float(obj), np.mean(pos_bce) + np.mean(neg_bce), rtol=1e-4)
  np.testing.assert_allclose(float(box), np.sum(l1) / len(pos_bce), rtol=1e-4)

  rois = random_boxes(rng, 6, 16, 4, 9)
  labels, target = objective.assign_rois(jnp.asarray(rois), jnp.ones(6, bool), jnp.asarray(gt[0]),
                                         jnp.asarray([2, 0, 1]), jnp.asarray(gt_valid[0]))
  iou = np_iou(rois, gt[0][:2])
  want = np.where(iou.max(1) >= 0.5, np.array([2, 0])[iou.argmax(1)] + 1, 0)
  np.testing.assert_array_equal(np.asarray(labels), want)
  d = rng.normal(size=(6, 4)).astype(np.float32)
  got = objective.box_loss(jnp.asarray(d), jnp.asarray(rois), target, labels > 0, (10.0, 10.0, 5.0, 5.0))
  t = np.stack([np_encode(g, q, (10.0, 10.0, 5.0, 5.0)) for g, q in zip(np.asarray(target), rois)])
  x = np.abs(d - t)
  per = np.where(x < 1, 0.5 * x * x, x - 0.5).sum(-1)
  fg = want > 0
  np.testing.assert_allclose(float(got), per[fg].sum() / max(fg.sum(), 1), rtol=1e-5)


# ---------------------------------------------------------------- the task's pieces
def test_bright_regions_find_the_objects_without_labels():
  source = vqa_scenes.DetectionScenesSource("test")
  found = total = 0
  for i in range(20):
    ex = source[i]
    boxes = task_lib.bright_regions(ex["image"], 100, 8)
    found += int((np_iou(ex["boxes"], boxes).max(1) >= 0.5).sum()) if len(boxes) else 0
    total += len(ex["boxes"])
  assert found >= 0.9 * total


def test_in_place_crops_keep_only_the_box():
  rng = np.random.default_rng(7)
  images = jnp.asarray(rng.normal(size=(1, 8, 8, 3)), jnp.float32)
  background = jnp.full((8, 8, 3), -9.0)
  crops = np.asarray(task_lib.in_place_crops(images, jnp.asarray([[[2.0, 1.0, 5.0, 7.0]]]), background))[0, 0]
  inside = np.zeros((8, 8), bool)
  inside[1:7, 2:5] = True  # pixel centres 1.5..6.5 and 2.5..4.5
  np.testing.assert_array_equal(crops[inside], np.asarray(images)[0][inside])
  assert (crops[~inside] == -9.0).all()


def test_training_targets_never_hold_a_novel_class():
  from papers_jax.core.config import base_config
  config = base_config()
  config.task = "vild"
  config.vild = task_lib.default_config()
  config.data.name = "vqa_scenes"
  config.data.image_size = 64
  config.data.mean, config.data.std = vqa_scenes.MEAN, vqa_scenes.STD
  task = task_lib.ViLDTask(config)
  task.distill_targets = {"boxes": np.zeros((500, 8, 4), np.float32), "valid": np.zeros((500, 8), bool),
                          "embed": np.zeros((500, 8, 64), np.float32)}  # not needed here
  source = task.source("test")  # the training transform on the smaller split's scenes
  train_fn, eval_fn = task.preprocess(train=True), task.preprocess(train=False)
  novel_seen = 0
  for i in range(40):
    ex = source[i]
    names = [vqa_scenes.KINDS[k] for k in ex["labels"]]
    tr, ev = train_fn(ex, None), eval_fn(ex, None)
    base = [n for n in names if n not in ("triangle", "4", "8")]
    novel_seen += len(names) - len(base)
    assert int(tr["box_valid"].sum()) == len(base) and int(ev["box_valid"].sum()) == len(names)
    got = [vqa_scenes.KINDS[task.base_ids[k]] for k in tr["labels"][tr["box_valid"]]]
    assert got == base
  assert novel_seen > 0
  # A closed scoring that cannot name a class gives it no detections (so its novel AP is 0, not noise).
  b, s, lab = task_lib.detections(np.array([[0, 0, 5, 5], [0, 0, 5, 6.0]]), np.array([[0.9, 0.0], [0.8, 0.0]]),
                                  np.array([True, True]), nms_iou=0.5, max_detections=10)
  assert set(lab.tolist()) == {0} and len(b) == 1
