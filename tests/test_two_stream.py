"""Two-Stream ConvNets: the paper nets' parameter counts against a hand computation from Fig. 1, the flow
inputs (mean-flow subtraction, stacking, the uint8 store, mirroring), the test protocol (25 positions,
10 crops) and the fusions against numpy written out by hand."""

import math
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from papers_jax import models
from papers_jax.data import clips, flow_clips
from papers_jax.evaluators import two_stream as ts
from papers_jax.models import two_stream

FULL = bool(os.environ.get("PAPERS_JAX_FULL_PARITY"))


def num_params(model) -> int:
  return sum(math.prod(v.shape) for v in jax.tree.leaves(nnx.state(model, nnx.Param)))


def test_paper_nets_have_fig1_parameter_counts():
  """The paper prints no count. By hand (224 px, pool5 6×6, UCF-101's 101 classes), weights + biases:
  conv1 7·7·3·96 + 96 = 14,208 (spatial) or 7·7·20·96 + 96 = 94,176 (temporal, L = 10);
  conv2 5·5·96·256 + 256 = 614,656; conv3 3·3·256·512 + 512 = 1,180,160; conv4 = conv5 = 2,359,808;
  full6 18,432·4,096 + 4,096 = 75,501,568; full7 4,096·2,048 + 2,048 = 8,390,656; full8 2,048·101 + 101
  = 206,949."""
  rest = 614_656 + 1_180_160 + 2 * 2_359_808 + 75_501_568 + 8_390_656 + 206_949
  assert two_stream.paper_param_count(3) == 14_208 + rest == 90_627_813
  assert two_stream.paper_param_count(20) == 94_176 + rest == 90_707_781
  for name, count in (("two_stream_spatial", 90_627_813), ("two_stream_temporal", 90_707_781)):
    model = nnx.eval_shape(lambda n=name: models.create(n, rngs=nnx.Rngs(0)))
    assert model.flat_features == 6 * 6 * 512
    assert num_params(model) == count
  temporal = nnx.eval_shape(lambda: models.create("two_stream_temporal", rngs=nnx.Rngs(0)))
  assert temporal.lrn == (True, False) and temporal.in_chans == 20  # no LRN after conv2 (§5)


def test_paper_pooling_is_3x3_stride_2_rounded_up():
  """§5: max-pooling over 3×3 windows at stride 2; Caffe rounds the output size up, so 224 px crops still end
  at 6×6 after pool5 (109 → 54, 26 → 13, 13 → 6). Checked on a narrow net of the paper's strides and against
  numpy windows (the last window of a 26 map hangs over the edge by one)."""
  model = nnx.eval_shape(lambda: two_stream.TwoStreamConvNet(channels=(4,) * 5, fc_features=(8, 8), num_classes=3,
                                                             rngs=nnx.Rngs(0)))
  assert model.pool_window == 3 and model.pool_ceil and model.flat_features == 6 * 6 * 4
  shape = nnx.eval_shape(lambda m, x: m.forward_features(x), model,
                         jax.ShapeDtypeStruct((1, 224, 224, 3), jnp.float32)).shape
  assert shape == (1, 6, 6, 4)
  x = np.random.default_rng(0).normal(size=(1, 26, 26, 2)).astype(np.float32)
  out = np.asarray(two_stream.max_pool(jnp.asarray(x), 3, 2, padding=0, ceil_mode=True))
  want = np.array([[[x[0, 2 * i:2 * i + 3, 2 * j:2 * j + 3, c].max() for c in range(2)] for j in range(13)]
                   for i in range(13)])
  np.testing.assert_array_equal(out[0], want)


def test_demo_net_forward():
  model = models.create("two_stream_temporal_demo", rngs=nnx.Rngs(0))
  assert model.flat_features == 1 * 1 * 64
  assert num_params(model) == 281_448  # docs/two_stream.md
  out = model(jnp.ones((2, 28, 28, 20)), train=False)
  assert out.shape == (2, 12) and bool(jnp.all(jnp.isfinite(out)))


def test_mean_flow_subtraction_by_hand():
  rng = np.random.default_rng(0)
  flow = rng.normal(size=(3, 4, 5, 2)).astype(np.float32) + np.array([2.0, -1.0], np.float32)
  out = flow_clips.subtract_mean_flow(flow)
  for t in range(3):
    for c in range(2):
      mean = sum(flow[t, y, x, c] for y in range(4) for x in range(5)) / 20
      np.testing.assert_allclose(out[t, :, :, c], flow[t, :, :, c] - mean, atol=1e-5)


def test_flow_stacking_store_and_mirror_by_hand():
  rng = np.random.default_rng(1)
  flow = rng.uniform(-3, 3, size=(6, 4, 5, 2)).astype(np.float32)
  stack = flow_clips.stack_flow(flow, 2, 3)
  assert stack.shape == (4, 5, 6)
  for k in range(3):  # channels 2k, 2k+1: d^x and d^y of field start + k (plain stacking, §3.1)
    np.testing.assert_array_equal(stack[..., 2 * k], flow[2 + k, ..., 0])
    np.testing.assert_array_equal(stack[..., 2 * k + 1], flow[2 + k, ..., 1])
  with pytest.raises(Exception):
    flow_clips.stack_flow(flow, 4, 3)
  q = flow_clips.quantize_flow(flow)
  np.testing.assert_allclose(flow_clips.dequantize_flow(q), flow, atol=0.5 / 16 + 1e-6)
  assert flow_clips.quantize_flow(np.array([100.0, -100.0])).tolist() == [255, 1]
  mirrored = flow_clips.dequantize_flow(flow_clips.hflip(flow_clips.stack_flow(q, 0, 6), "temporal"))
  plain = flow_clips.dequantize_flow(flow_clips.stack_flow(q, 0, 6))[:, ::-1]
  np.testing.assert_array_equal(mirrored[..., 0::2], -plain[..., 0::2])  # d^x changes sign
  np.testing.assert_array_equal(mirrored[..., 1::2], plain[..., 1::2])
  frame = rng.integers(0, 255, size=(4, 5, 3)).astype(np.uint8)
  np.testing.assert_array_equal(flow_clips.hflip(frame, "spatial"), frame[:, ::-1])


def test_flip_label_mirrors_each_motion():
  flip = flow_clips.FLIP_LABEL
  np.testing.assert_array_equal(flip[flip], np.arange(len(clips.MOTIONS)))
  for k, (dx, dy) in clips._DIRECTIONS.items():  # noqa: SLF001
    assert clips._DIRECTIONS[int(flip[k])] == (-dx, dy)  # noqa: SLF001
  names = clips.MOTIONS
  assert [names[flip[k]] for k in (8, 9, 10, 11)] == ["growing", "shrinking", "rotating anticlockwise",
                                                       "rotating clockwise"]


@pytest.mark.skipif(not FULL, reason="make test-full (PAPERS_JAX_FULL_PARITY=1): imports skimage's registration")
def test_tvl1_flow_sign_convention():
  """A textured frame shifted 1 px right and 1 px down: d^x ≈ d^y ≈ +1 inside (skimage returns (v, u))."""
  rng = np.random.default_rng(0)
  base = rng.uniform(0, 255, (24, 24))
  base = (base + np.roll(base, 1, 0) + np.roll(base, 1, 1) + np.roll(base, (1, 1), (0, 1))) / 4  # smoother
  frames = np.stack([base, np.roll(base, (1, 1), axis=(0, 1))])[..., None].repeat(3, -1).astype(np.uint8)
  flow = flow_clips.tvl1_flow(frames)
  assert flow.shape == (1, 24, 24, 2)
  inner = flow[0, 4:-4, 4:-4]
  np.testing.assert_allclose(inner.mean(axis=(0, 1)), [1.0, 1.0], atol=0.15)


def test_evenly_spaced_positions_and_ten_crops_by_hand():
  np.testing.assert_array_equal(flow_clips.evenly_spaced(5, 9), [0, 2, 4, 6, 8])
  pos = flow_clips.evenly_spaced(25, 6)
  assert len(pos) == 25 and pos[0] == 0 and pos[-1] == 5 and set(pos) == set(range(6))
  image = np.arange(5 * 6 * 1).reshape(5, 6, 1)
  crops = flow_clips.ten_crops(image, 3, "spatial")
  hand = [image[0:3, 0:3], image[0:3, 3:6], image[2:5, 0:3], image[2:5, 3:6], image[1:4, 1:4]]
  np.testing.assert_array_equal(crops[:5], np.stack(hand))
  np.testing.assert_array_equal(crops[5:], np.stack([h[:, ::-1] for h in hand]))


def test_clip_views_and_scores_by_hand():
  rng = np.random.default_rng(2)
  frames = rng.integers(0, 255, size=(16, 32, 32, 3)).astype(np.uint8)
  views = ts.clip_views(frames, "spatial", 10, 28)
  assert views.shape == (250, 28, 28, 3)
  positions = flow_clips.evenly_spaced(25, 16)
  np.testing.assert_array_equal(views[10 * 7 + 4], frames[positions[7], 2:30, 2:30])  # a centre crop
  flow = rng.integers(1, 256, size=(15, 32, 32, 2)).astype(np.uint8)
  fviews = ts.clip_views(flow, "temporal", 10, 28)
  assert fviews.shape == (250, 28, 28, 20)
  np.testing.assert_array_equal(fviews[-10], flow_clips.stack_flow(flow, 5, 10)[:28, :28])  # last start: 5
  probs = rng.dirichlet(np.ones(12), size=250)
  expected = np.zeros(12)
  for v in range(250):
    mirrored = v % 10 >= 5
    for k in range(12):  # a mirrored view's score for class k is its score for the mirror of k
      expected[k] += probs[v, flow_clips.FLIP_LABEL[k] if mirrored else k] / 250
  np.testing.assert_allclose(ts.clip_scores(probs), expected, atol=1e-12)


def test_fusions_by_hand():
  spatial = np.array([[0.6, 0.3, 0.1], [0.2, 0.2, 0.6]])
  temporal = np.array([[0.1, 0.1, 0.8], [0.3, 0.4, 0.3]])
  np.testing.assert_allclose(ts.fuse_average(spatial, temporal), [[0.35, 0.2, 0.45], [0.25, 0.3, 0.45]])
  feats = ts.svm_features(spatial, temporal)
  n0, n1 = math.sqrt(0.36 + 0.09 + 0.01), math.sqrt(0.01 + 0.01 + 0.64)
  np.testing.assert_allclose(feats[0], [0.6 / n0, 0.3 / n0, 0.1 / n0, 0.1 / n1, 0.1 / n1, 0.8 / n1])
  assert ts.accuracy(ts.fuse_average(spatial, temporal), np.array([2, 2])) == 1.0


@pytest.mark.skipif(not FULL, reason="make test-full (PAPERS_JAX_FULL_PARITY=1): imports sklearn")
def test_svm_fusion_learns_to_trust_the_informative_stream():
  """Spatial scores are noise, temporal scores carry the class: the SVM must beat averaging's mistakes."""
  rng = np.random.default_rng(3)
  def scores(labels, informative):
    s = rng.dirichlet(np.ones(4), size=len(labels))
    if informative:
      s[np.arange(len(labels)), labels] += 1.0
    return s / s.sum(-1, keepdims=True)
  train_y, test_y = np.arange(200) % 4, np.arange(100) % 4
  train, test = (scores(train_y, False), scores(train_y, True)), (scores(test_y, False), scores(test_y, True))
  fused = ts.fuse_svm(*train, train_y, *test)  # Crammer & Singer's multi-class SVM, the paper's [6]
  assert fused.shape == (100, 4) and ts.accuracy(fused, test_y) > 0.8
  ovr = ts.fuse_svm(*train, train_y, *test, multi_class="ovr")
  assert ts.accuracy(ovr, test_y) > 0.8 and not np.allclose(ovr, fused)  # the option reaches sklearn
  crossfit = ts.fuse_svm_crossfit(scores(test_y, False), scores(test_y, True), test_y)
  assert crossfit.shape == (100, 4) and ts.accuracy(crossfit, test_y) > 0.8
