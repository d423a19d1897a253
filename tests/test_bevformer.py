"""BEVFormer (models/bevformer.py): spatial cross-attention (pillar projection, hit views, averaging) and temporal
self-attention against numpy loops, the ego-motion alignment against numpy and a hand case, the dense
deformable sampling against the gather one, the official configurations' parameter counts counted by hand
from the official modules; the 3-D set loss against numpy with scipy's assignment; the nuScenes-style mAP on
hand cases; the simulator's calibration against its own rays."""

import math
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from papers_jax import models
from papers_jax.data import bev_scenes
from papers_jax.evaluators import bev_map
from papers_jax.models import bevformer as bev
from papers_jax.models import deformable_detr as ddetr
from papers_jax.objectives import bev_detection as objective

FULL = bool(os.environ.get("PAPERS_JAX_FULL_PARITY"))
full = pytest.mark.skipif(not FULL, reason="make test-full (PAPERS_JAX_FULL_PARITY=1): the gather sampler's eager "
                          "numpy comparison (CI time; the dense one runs in make test)")


def randomise(module, seed):
  """Every parameter drawn at random (the zero-initialised offset and weight kernels included)."""
  rng = np.random.RandomState(seed)
  state = nnx.state(module, nnx.Param)
  nnx.update(module, jax.tree.map(lambda p: jnp.asarray(rng.randn(*p.shape) * 0.5, p.dtype), state))


def dense(layer, x):
  """numpy x · W + b of a Dense layer, its output flattened."""
  k = np.asarray(layer.kernel[...], np.float64)
  k = k.reshape(x.shape[-1], -1)
  return x @ k + np.asarray(layer.bias[...], np.float64).reshape(-1)


def np_bilinear(v, x, y):
  """v (h, w, c) at normalised (x, y): grid_sample(align_corners=False, zero padding), by its four taps."""
  h, w, _ = v.shape
  px, py = x * w - 0.5, y * h - 0.5
  x0, y0 = math.floor(px), math.floor(py)
  out = np.zeros(v.shape[-1])
  for xi in (x0, x0 + 1):
    for yi in (y0, y0 + 1):
      if 0 <= xi < w and 0 <= yi < h:
        out += (1 - abs(px - xi)) * (1 - abs(py - yi)) * v[yi, xi]
  return out


def softmax(z):
  z = np.exp(z - z.max(-1, keepdims=True))
  return z / z.sum(-1, keepdims=True)


def np_project(pc_range, bev_h, bev_w, pillar, l2i, image_hw):
  """Pillar points, their projections and masks, by loops: (N, Q, P, 2) normalised, (N, Q, P) bool."""
  n = len(l2i)
  ref = np.zeros((n, bev_h * bev_w, pillar, 2))
  mask = np.zeros((n, bev_h * bev_w, pillar), bool)
  for i in range(bev_h):
    for j in range(bev_w):
      for k in range(pillar):
        point = np.array([pc_range[0] + (j + 0.5) / bev_w * (pc_range[3] - pc_range[0]),
                          pc_range[1] + (i + 0.5) / bev_h * (pc_range[4] - pc_range[1]),
                          pc_range[2] + (k + 0.5) / pillar * (pc_range[5] - pc_range[2]), 1.0])
        for c in range(n):
          u, v, d, _ = l2i[c] @ point
          x, y = u / max(d, 1e-5) / image_hw[1], v / max(d, 1e-5) / image_hw[0]
          ref[c, i * bev_w + j, k] = x, y
          mask[c, i * bev_w + j, k] = d > 1e-5 and 0 < x < 1 and 0 < y < 1
  return ref, mask


# ------------------------------------------------------------------------------------------ geometry
def test_projection_hand_case_and_simulator_rays():
  l2i = bev_scenes.lidar2img()
  ahead = jnp.asarray([[[10.0, 0.0, bev_scenes.CAMERA_HEIGHT]]])  # straight ahead at the cameras' height
  xy, mask = bev.project_pillars(ahead, jnp.asarray(l2i)[None], (bev_scenes.IMAGE, bev_scenes.IMAGE))
  np.testing.assert_allclose(np.asarray(xy[0, 0, 0, 0]), [0.5, 0.5], atol=1e-6)  # the front camera's centre
  assert np.asarray(mask[0, :, 0, 0]).tolist() == [True, False, False, False]  # behind the back camera
  # A point along any pixel's rendering ray projects back onto that pixel's centre.
  rng = np.random.RandomState(0)
  for _ in range(5):
    c, r, col = rng.randint(4), rng.randint(bev_scenes.IMAGE), rng.randint(bev_scenes.IMAGE)
    point = bev_scenes.ORIGINS[c] + rng.uniform(1, 20) * bev_scenes.RAYS[c, r, col]
    u, v, d, _ = l2i[c].astype(np.float64) @ np.append(point, 1.0)
    np.testing.assert_allclose([u / d, v / d], [col + 0.5, r + 0.5], atol=1e-3)


def test_alignment_matches_numpy_and_a_one_cell_shift():
  bev_h, bev_w, pc = 4, 5, (-5.0, -4.0, -1.0, 5.0, 4.0, 3.0)  # 2 m cells in x and y
  rng = np.random.RandomState(1)
  prev = rng.randn(2, bev_h * bev_w, 3).astype(np.float32)
  motion = np.array([[2.0, 0.0, 0.0], [0.7, -1.3, 0.4]], np.float32)
  got = np.asarray(bev.align_previous_bev(jnp.asarray(prev), jnp.asarray(motion), bev_h, bev_w, pc))
  # The previous pose 2 m (one cell) ahead in x, no turn: a current point p was at p - (2, 0) in the previous
  # frame, so current cell (i, j) reads previous cell (i, j - 1), and column 0 (outside the old grid) reads 0.
  grid = prev[0].reshape(bev_h, bev_w, 3)
  want = np.zeros_like(grid)
  want[:, 1:] = grid[:, :-1]
  np.testing.assert_allclose(got[0].reshape(bev_h, bev_w, 3), want, atol=1e-5)
  for i in range(bev_h):
    for j in range(bev_w):
      p = np.array([pc[0] + (j + 0.5) * 2.0, pc[1] + (i + 0.5) * 2.0])
      q = bev_scenes.to_frame(p, motion[1].astype(np.float64))  # the simulator's own convention
      x, y = (q[0] - pc[0]) / (pc[3] - pc[0]), (q[1] - pc[1]) / (pc[4] - pc[1])
      np.testing.assert_allclose(got[1, i * bev_w + j], np_bilinear(prev[1].reshape(bev_h, bev_w, 3), x, y),
                                 atol=1e-5)


@full
def test_dense_sampling_equals_gather_sampling():
  rng = np.random.RandomState(2)
  shapes = [(4, 5), (2, 3)]
  value = jnp.asarray(rng.randn(2, 26, 3, 4), jnp.float32)
  locations = jnp.asarray(rng.uniform(-0.3, 1.3, (2, 7, 3, 2, 5, 2)), jnp.float32)  # taps outside included
  weights = jnp.asarray(softmax(rng.randn(2, 7, 3, 10)).reshape(2, 7, 3, 2, 5), jnp.float32)
  np.testing.assert_allclose(np.asarray(ddetr.ms_deform_attn_dense(value, shapes, locations, weights)),
                             np.asarray(ddetr.ms_deform_attn(value, shapes, locations, weights)), atol=1e-5)


# ------------------------------------------------------------------------------------------ attention
@pytest.mark.parametrize("dense_sampling", [pytest.param(False, marks=full), True])
def test_spatial_cross_attention_matches_numpy(dense_sampling):
  dim, heads, levels, points, pillar = 8, 2, 2, 4, 2
  bev_h, bev_w, pc = 3, 4, (-6.0, -6.0, 5.0, 6.0, 6.0, 9.0)  # high pillars: some cells hit no view
  shapes, image_hw = [(4, 5), (2, 3)], (48, 48)
  sca = bev.SpatialCrossAttention(dim, heads, levels, points, 0.0, dense_sampling=dense_sampling, rngs=nnx.Rngs(0))
  randomise(sca, 3)
  rng = np.random.RandomState(4)
  l2i = bev_scenes.lidar2img()
  n, q = len(l2i), bev_h * bev_w
  query, pos = rng.randn(1, q, dim), rng.randn(1, q, dim)
  value = rng.randn(1, n, 26, dim)
  ref, mask = np_project(pc, bev_h, bev_w, pillar, l2i.astype(np.float64), image_hw)
  hit = mask.any(-1)
  assert {0, 1, 2} <= set(hit.sum(0).tolist())  # cells seen by no camera, one, and two
  got_ref, got_mask = bev.project_pillars(jnp.asarray(bev.pillar_points(bev_h, bev_w, pillar, pc)),
                                          jnp.asarray(l2i)[None], image_hw)
  np.testing.assert_allclose(np.asarray(got_ref[0]), ref, rtol=1e-5, atol=1e-4)  # behind a camera: ~1e5
  assert (np.asarray(got_mask[0]) == mask).all()
  call = nnx.jit(lambda m, *a: m(a[0], a[1], a[2], shapes, a[3], a[4], deterministic=True))  # one compile
  got = call(sca, jnp.asarray(query, jnp.float32), jnp.asarray(pos, jnp.float32), jnp.asarray(value, jnp.float32),
             got_ref, jnp.asarray(hit)[None])

  x = query[0] + pos[0]
  offsets = dense(sca.sampling_offsets, x).reshape(q, heads, levels, points, 2)
  weights = softmax(dense(sca.attention_weights, x).reshape(q, heads, levels * points)).reshape(q, heads, levels,
                                                                                                   points)
  want = np.zeros((q, dim))
  for c in range(n):
    v = dense(sca.value_proj, value[0, c]).reshape(26, heads, dim // heads)
    maps = [v[:20].reshape(4, 5, heads, -1), v[20:].reshape(2, 3, heads, -1)]
    for i in range(q):
      if not hit[c, i]:
        continue
      for h in range(heads):
        for lv, (lh, lw) in enumerate(shapes):
          for p in range(points):
            x0, y0 = ref[c, i, p % pillar] + offsets[i, h, lv, p] / [lw, lh]
            want[i, h * (dim // heads):(h + 1) * (dim // heads)] += (
                weights[i, h, lv, p] * np_bilinear(maps[lv][:, :, h], x0, y0))
  want = want / np.maximum(hit.sum(0), 1)[:, None]
  want = query[0] + dense(sca.output_proj, want)
  np.testing.assert_allclose(np.asarray(got[0]), want, atol=1e-4)


@pytest.mark.parametrize("dense_sampling", [pytest.param(False, marks=full), True])
def test_temporal_self_attention_matches_numpy(dense_sampling):
  dim, heads, points, bev_h, bev_w = 8, 2, 3, 3, 4
  tsa = bev.TemporalSelfAttention(dim, heads, points, 0.0, dense_sampling=dense_sampling, rngs=nnx.Rngs(0))
  randomise(tsa, 5)
  rng = np.random.RandomState(6)
  q = bev_h * bev_w
  query, pos, maps = rng.randn(1, q, dim), rng.randn(1, q, dim), rng.randn(1, 2, q, dim)
  ref = bev.bev_reference_2d(bev_h, bev_w)
  call = nnx.jit(lambda m, *a: m(*a, (bev_h, bev_w), deterministic=True))
  got = call(tsa, jnp.asarray(query, jnp.float32), jnp.asarray(pos, jnp.float32), jnp.asarray(maps, jnp.float32),
             jnp.asarray(ref))
  x = np.concatenate([maps[0, 0], query[0] + pos[0]], -1)  # [the first map, the query with its position]
  offsets = dense(tsa.sampling_offsets, x).reshape(q, heads, 2, points, 2)
  weights = softmax(dense(tsa.attention_weights, x).reshape(q, heads, 2, points))
  want = np.zeros((q, dim))
  hd = dim // heads
  for m in range(2):
    v = dense(tsa.value_proj, maps[0, m]).reshape(bev_h, bev_w, heads, hd)
    for i in range(q):
      for h in range(heads):
        for p in range(points):
          x0, y0 = ref[i] + offsets[i, h, m, p] / [bev_w, bev_h]
          want[i, h * hd:(h + 1) * hd] += weights[i, h, m, p] * np_bilinear(v[:, :, h], x0, y0) / 2  # mean of 2
  want = query[0] + dense(tsa.output_proj, want)
  np.testing.assert_allclose(np.asarray(got[0]), want, atol=1e-4)


# ------------------------------------------------------------------------------------------ parameter counts
def official_count(*, bev_h, bev_w, encoder_layers, levels, d=256, ffn=512, heads=8, decoder_layers=6, queries=900,
                   classes=10, code=10, cams=6, can_bus=18, sca_points=8, tsa_points=4, decoder_points=4, fcs=2):
  """Encoder + decoder + head of the official BEVFormer, backbone and FPN apart, counted from its modules."""
  linear = lambda i, o: i * o + o
  ln, ffn_p = 2 * d, linear(d, ffn) + linear(ffn, d)
  tsa = linear(2 * d, 2 * heads * tsa_points * 2) + linear(2 * d, 2 * heads * tsa_points) + 2 * linear(d, d)
  sca = linear(d, heads * levels * sca_points * 2) + linear(d, heads * levels * sca_points) + 2 * linear(d, d)
  mha = 3 * linear(d, d) + linear(d, d)  # in_proj (q, k, v) and out_proj
  cross = linear(d, heads * decoder_points * 2) + linear(d, heads * decoder_points) + 2 * linear(d, d)
  encoder = encoder_layers * (tsa + sca + ffn_p + 3 * ln)
  decoder = decoder_layers * (mha + cross + ffn_p + 3 * ln)
  transformer = levels * d + cams * d + linear(d, 3) + linear(can_bus, d // 2) + linear(d // 2, d) + ln
  head = bev_h * bev_w * d + (bev_h + bev_w) * d // 2 + queries * 2 * d
  branches = decoder_layers * (fcs * (linear(d, d) + ln) + linear(d, classes) + fcs * linear(d, d) + linear(d, code))
  return encoder + decoder + transformer + head + branches


def counted(name, **overrides):
  model = nnx.eval_shape(lambda: models.create(name, rngs=nnx.Rngs(0), **overrides))
  total = lambda m: sum(x.size for x in jax.tree.leaves(nnx.state(m, nnx.Param)))
  return total(model) - total(model.backbone) - total(model.input_proj)


@pytest.mark.skipif(not FULL, reason="make test-full (PAPERS_JAX_FULL_PARITY=1): abstract 12-layer builds (CI time)")
def test_official_configs_parameter_counts():
  # The backbone is left out of the count: a small stem stands in for ResNet here (the count with the
  # registered ResNets is the same, test-full).
  stem = dict(backbone="conv", stem_channels=(8, 8, 8, 8))
  assert official_count(bev_h=200, bev_w=200, encoder_layers=6, levels=4) == 21_451_451
  assert counted("bevformer_base", **stem) == 21_451_451


@pytest.mark.skipif(not FULL, reason="make test-full (PAPERS_JAX_FULL_PARITY=1): abstract ResNet-101/50 (CI time)")
def test_official_configs_with_their_resnets():
  assert counted("bevformer_base") == 21_451_451
  assert official_count(bev_h=50, bev_w=50, encoder_layers=3, levels=1) == 8_897_723
  assert counted("bevformer_small") == official_count(bev_h=150, bev_w=150, encoder_layers=3, levels=1)
  assert counted("bevformer_tiny") == official_count(bev_h=50, bev_w=50, encoder_layers=3, levels=1)


# ------------------------------------------------------------------------------------------ loss
@pytest.mark.skipif(not FULL, reason="make test-full (PAPERS_JAX_FULL_PARITY=1): compiles the matcher (CI time)")
def test_set_loss_matches_numpy():
  from scipy.optimize import linear_sum_assignment
  rng = np.random.RandomState(7)
  layers, b, q, k, t = 2, 2, 5, 3, 3
  logits = rng.randn(layers, b, q, k)
  codes = rng.randn(layers, b, q, 8)
  boxes = np.concatenate([rng.uniform(-5, 5, (b, t, 3)), rng.uniform(0.5, 4, (b, t, 3)),
                          rng.uniform(-3, 3, (b, t, 1))], -1)
  labels = rng.randint(0, k, (b, t))
  valid = np.array([[True, True, False], [True, True, True]])
  got, parts = jax.jit(objective.set_loss)(jnp.asarray(logits, jnp.float32), jnp.asarray(codes, jnp.float32),
                                           jnp.asarray(labels), jnp.asarray(boxes, jnp.float32), jnp.asarray(valid))
  x, y, z, w, l, h, yaw = boxes.transpose(2, 0, 1)
  target = np.stack([x, y, np.log(w), np.log(l), z, np.log(h), np.sin(yaw), np.cos(yaw)], -1)
  num = valid.sum()
  want = 0.0
  for layer in range(layers):
    prob = 1 / (1 + np.exp(-logits[layer]))
    loss_class = loss_bbox = 0.0
    for i in range(b):
      real = np.flatnonzero(valid[i])
      p = prob[i][:, labels[i, real]]
      cost = (2.0 * (0.25 * (1 - p) ** 2 * -np.log(p + 1e-12) - 0.75 * p ** 2 * -np.log(1 - p + 1e-12))
              + 0.25 * np.abs(codes[layer, i][:, None] - target[i, real][None]).sum(-1))
      rows, cols = linear_sum_assignment(cost)
      onehot = np.zeros((q, k))
      onehot[rows, labels[i, real[cols]]] = 1
      bce = -(onehot * np.log(prob[i]) + (1 - onehot) * np.log(1 - prob[i]))
      p_t = prob[i] * onehot + (1 - prob[i]) * (1 - onehot)
      loss_class += ((0.25 * onehot + 0.75 * (1 - onehot)) * (1 - p_t) ** 2 * bce).sum()
      loss_bbox += np.abs(codes[layer, i, rows] - target[i, real[cols]]).sum()
    want += 2.0 * loss_class / num + 0.25 * loss_bbox / num
  np.testing.assert_allclose(float(got), want, rtol=1e-5)
  np.testing.assert_allclose(float(parts["loss_bbox"]), loss_bbox / num, rtol=1e-5)
  decoded = np.asarray(objective.decode_codes(objective.encode_boxes(jnp.asarray(boxes, jnp.float32))))
  np.testing.assert_allclose(decoded, boxes, atol=1e-5)  # the code round trip (yaw within (-π, π])


# ------------------------------------------------------------------------------------------ mAP
def ap_of(gt, preds, threshold=None, **kw):
  """mAP of one class: gt centres per sample, preds (centre, score) per sample."""
  out = bev_map.bev_map([np.asarray(g, float).reshape(-1, 2) for g in gt], [np.zeros(len(g), int) for g in gt],
                        [np.asarray([p[0] for p in ps], float).reshape(-1, 2) for ps in preds],
                        [np.asarray([p[1] for p in ps], float) for ps in preds],
                        [np.zeros(len(ps), int) for ps in preds],
                        num_classes=1, thresholds=(threshold,) if threshold else bev_map.THRESHOLDS, **kw)
  return out["mAP"]


def test_bev_map_hand_cases():
  assert ap_of([[(0, 0)]], [[((0.3, 0), 0.9)]]) == pytest.approx(1.0)  # one hit within every threshold
  # Distance 1.5 m: a false positive at 0.5 and 1 m, a true positive at 2 and 4 m.
  assert ap_of([[(0, 0)]], [[((1.5, 0), 0.9)]]) == pytest.approx(0.5)
  # A false positive above a true positive, two gt boxes: precision = recall = r up to r = 0.5, then 0;
  # the 90 recall points above 0.1 keep r - 0.1 for r = 0.11 … 0.50.
  want = sum(m / 100 for m in range(1, 41)) / 90 / 0.9
  assert ap_of([[(0, 0), (10, 10)]], [[((5, 5), 0.9), ((0, 0), 0.5)]], 1.0) == pytest.approx(want)
  # Greedy by score onto the nearest free box: the best prediction takes the gt at 0.2 m, the second is
  # then 0.6 m from the other gt: a hit at 1 m, a miss at 0.5 m. At 0.5 m the (recall, precision) points are
  # (0.5, 1) and (0.5, 0.5): precision 1 below recall 0.5, 0.5 at it (np.interp takes the last), 0 above.
  gt, preds = [[(0, 0), (0.8, 0)]], [[((0.2, 0), 0.9), ((0.2, 0), 0.8)]]
  assert ap_of(gt, preds, 1.0) == pytest.approx(1.0)
  assert ap_of(gt, preds, 0.5) == pytest.approx((39 * 0.9 + 0.4) / 90 / 0.9)
  # Predictions in a sample without gt are false positives; a class without gt is left out of the mean.
  out = bev_map.bev_map([np.zeros((0, 2)), np.array([[0.0, 0.0]])], [np.zeros(0, int), np.array([0])],
                        [np.array([[0.0, 0.0]]), np.array([[0.0, 0.0]])], [np.array([0.9]), np.array([0.5])],
                        [np.array([0]), np.array([0])], num_classes=2)
  assert set(out) >= {"mAP", "AP_0"} and "AP_1" not in out
  # (recall, precision): (0, 0) then (1, 0.5): precision r / 2 at recall r.
  assert out["mAP"] == pytest.approx(sum(max(r / 200 - 0.1, 0) for r in range(11, 101)) / 90 / 0.9)


# ------------------------------------------------------------------------------------------ data
def test_simulator_is_deterministic_and_consistent():
  src = bev_scenes.BEVScenes("test")
  a, b = src[3], src[3]
  assert all(np.array_equal(a[k], b[k]) for k in a)
  boxes, labels = src.targets(3)
  np.testing.assert_array_equal(boxes, a["boxes"])
  np.testing.assert_array_equal(labels, a["labels"])
  assert a["images"].shape == (2, 4, bev_scenes.IMAGE, bev_scenes.IMAGE, 3) and a["images"].dtype == np.uint8
  assert len(bev_scenes.BEVScenes("train")) == 6000 and len(src) == 300
  # Each box's centre projects, in some camera of the current frame, onto a pixel of its class colour under
  # one of the face shades (a face of the box is in front of its centre).
  l2i = a["lidar2img"][1].astype(np.float64)
  for box, label in zip(boxes, labels):
    seen = False
    for c in range(4):
      u, v, d, _ = l2i[c] @ np.array([box[0], box[1], box[2], 1.0])
      if d > 0 and 0 <= u / d < bev_scenes.IMAGE and 0 <= v / d < bev_scenes.IMAGE:
        pixel = a["images"][1, c, int(v / d), int(u / d)].astype(float)
        seen |= min(np.abs(pixel - s * bev_scenes.COLOURS[label]).max() for s in (0.6, 0.8, 1.0)) < 50
    assert seen, (box, label)
