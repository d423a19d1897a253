"""Box ops (papers_jax/ops/boxes.py): conversions, IoU / GIoU values and gradients, NMS against numpy."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from papers_jax.ops import boxes as box_ops


def _random_xyxy(rng, n, size=1.0):
  corners = rng.uniform(0, size, (n, 2, 2))
  lo, hi = corners.min(1), corners.max(1) + 0.01 * size
  return np.concatenate([lo, hi], -1).astype(np.float32)


def _np_iou_giou(a, b):
  """Loops over pairs: the GIoU paper's Algorithm 1, as written."""
  iou = np.zeros((len(a), len(b)))
  giou = np.zeros((len(a), len(b)))
  for i, p in enumerate(a):
    for j, g in enumerate(b):
      area_p = (p[2] - p[0]) * (p[3] - p[1])
      area_g = (g[2] - g[0]) * (g[3] - g[1])
      iw = max(0.0, min(p[2], g[2]) - max(p[0], g[0]))
      ih = max(0.0, min(p[3], g[3]) - max(p[1], g[1]))
      inter = iw * ih
      union = area_p + area_g - inter
      enclosing = (max(p[2], g[2]) - min(p[0], g[0])) * (max(p[3], g[3]) - min(p[1], g[1]))
      iou[i, j] = inter / union
      giou[i, j] = inter / union - (enclosing - union) / enclosing
  return iou, giou


def test_conversions_round_trip_and_area():
  rng = np.random.default_rng(0)
  xyxy = _random_xyxy(rng, 7)
  cxcywh = box_ops.xyxy_to_cxcywh(xyxy)
  np.testing.assert_allclose(box_ops.cxcywh_to_xyxy(cxcywh), xyxy, atol=1e-6)
  np.testing.assert_allclose(cxcywh[:, 2:], xyxy[:, 2:] - xyxy[:, :2], atol=1e-6)
  np.testing.assert_allclose(box_ops.cxcywh_to_xyxy(np.array([0.5, 0.5, 0.2, 0.4])), [0.4, 0.3, 0.6, 0.7], atol=1e-6)
  np.testing.assert_allclose(box_ops.area(xyxy), (xyxy[:, 2] - xyxy[:, 0]) * (xyxy[:, 3] - xyxy[:, 1]), rtol=1e-6)


def test_iou_and_giou_equal_the_papers_algorithm():
  rng = np.random.default_rng(1)
  a, b = _random_xyxy(rng, 6), _random_xyxy(rng, 5)
  b[0] = a[0]  # identical boxes: IoU = GIoU = 1
  b[1] = [2.0, 2.0, 3.0, 3.0]  # far from everything: IoU 0, GIoU < 0
  iou, giou = _np_iou_giou(a, b)
  np.testing.assert_allclose(box_ops.pairwise_iou(a, b), iou, atol=1e-6)
  np.testing.assert_allclose(box_ops.pairwise_giou(a, b), giou, atol=1e-6)
  assert abs(float(box_ops.pairwise_giou(a, b)[0, 0]) - 1) < 1e-6 and np.all(giou[:, 1] < 0)
  np.testing.assert_allclose(box_ops.elementwise_giou(a[:5], b), np.diag(giou), atol=1e-6)


def test_giou_gradient_is_exact():
  # Two overlapping boxes: IoU = I/U and GIoU = I/U - (C - U)/C with I, U, C polynomials in the corners.
  # Analytic case: p = (0, 0, x, 1) against g = (0.5, 0, 2, 1), 0.5 < x < 2: I = x - 0.5, U = 1.5 + 0.5,
  # C = 2, so GIoU = (x - 0.5)/2 - 0 and d GIoU / dx = 0.5 (U = x + 1.5 - (x - 0.5) = 2).
  g = jnp.array([0.5, 0.0, 2.0, 1.0])
  f = lambda x: box_ops.elementwise_giou(jnp.array([0.0, 0.0, x, 1.0]), g)
  np.testing.assert_allclose(jax.grad(f)(1.2), 0.5, rtol=1e-6)
  # Random boxes in every corner coordinate against central finite differences (float64 in numpy).
  rng = np.random.default_rng(2)
  a, b = _random_xyxy(rng, 4), _random_xyxy(rng, 4)
  grad = np.asarray(jax.grad(lambda p: box_ops.elementwise_giou(p, b).sum())(a))
  h, numeric = 1e-6, np.zeros_like(grad, dtype=np.float64)
  for i in range(4):
    for k in range(4):
      up, down = a.astype(np.float64), a.astype(np.float64)
      up[i, k] += h
      down[i, k] -= h
      numeric[i, k] = (np.diag(_np_iou_giou(up, b)[1])[i] - np.diag(_np_iou_giou(down, b)[1])[i]) / (2 * h)
  np.testing.assert_allclose(grad, numeric, atol=2e-3)
  assert np.abs(grad).max() > 0.05  # the case has real gradients


def _np_nms(boxes, scores, threshold, max_outputs):
  order = np.argsort(-scores, kind="stable")
  keep = []
  for i in order:
    if all(_np_iou_giou(boxes[i:i + 1], boxes[j:j + 1])[0][0, 0] <= threshold for j in keep):
      keep.append(i)
  keep = keep[:max_outputs]
  return np.array(keep + [-1] * (max_outputs - len(keep)))


@pytest.mark.parametrize("threshold", [0.3, 0.5])
def test_batched_nms_equals_numpy(threshold):
  rng = np.random.default_rng(3)
  # Clusters of jittered boxes, so that suppression happens often.
  centres = rng.uniform(0, 1, (2, 5, 1, 2))
  xy = (centres + rng.normal(0, 0.03, (2, 5, 6, 2))).reshape(2, 30, 2)
  wh = rng.uniform(0.15, 0.25, (2, 30, 2))
  boxes = np.concatenate([xy, xy + wh], -1).astype(np.float32)
  scores = rng.uniform(0, 1, (2, 30)).astype(np.float32)
  scores[0, 3] = scores[0, 4]  # a tie: the lower index first
  for max_outputs in (20, 4):  # room to spare (padded with -1), and cut short
    fn = jax.jit(lambda b, s: box_ops.batched_nms(b, s, iou_threshold=threshold, max_outputs=max_outputs))
    indices, keep = fn(boxes, scores)
    for i in range(2):
      expected = _np_nms(boxes[i], scores[i], threshold, max_outputs)
      np.testing.assert_array_equal(indices[i], expected)
      np.testing.assert_array_equal(keep[i], expected >= 0)
    if max_outputs == 20:
      assert np.all((keep.sum(1) > 0) & (keep.sum(1) < 20))  # something kept, over a third suppressed


def test_nms_valid_mask_per_class_and_padding():
  boxes = np.array([[0, 0, 1, 1], [0, 0, 1, 1.05], [0, 0, 1, 1], [5, 5, 6, 6]], np.float32)
  scores = np.array([0.9, 0.8, 0.7, 0.6], np.float32)
  nms = jax.jit(box_ops.nms, static_argnames=("iou_threshold", "max_outputs"))  # one compile per output size
  indices, keep = nms(boxes, scores, iou_threshold=0.5, max_outputs=6)
  np.testing.assert_array_equal(indices, [0, 3, -1, -1, -1, -1])
  np.testing.assert_array_equal(keep, [1, 1, 0, 0, 0, 0])
  indices, _ = nms(boxes, scores, max_outputs=2, valid=np.array([False, True, True, True]))
  np.testing.assert_array_equal(indices, [1, 3])
  # Per class: box 1 is another class than box 0, so it survives; box 2 (class 0) does not.
  indices, _ = jax.jit(box_ops.batched_nms, static_argnames="max_outputs")(boxes[None], scores[None],
                                                                           np.array([[0, 1, 0, 0]]), max_outputs=4)
  np.testing.assert_array_equal(indices[0], [0, 1, 3, -1])
