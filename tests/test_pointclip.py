"""PointCLIP: the point clouds, the depth-map projection and the inter-view adapter against numpy
references, the few-shot loss, the zero-shot readout and view-weight search, the parameter counts."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from papers_jax import models
from papers_jax.data import point_clouds
from papers_jax.models import pointclip as pc
from papers_jax.models import vit
from papers_jax.nn.frozen import freeze
from papers_jax.objectives.pointclip import smooth_cross_entropy
from papers_jax.tasks import pointclip as task_lib


def numpy_depth_maps(points, views, size, camera_distance, focal, splat):
  """A loop over points: each view's perspective projection, a z-buffer of the nearest depth."""
  far = camera_distance + 1.0
  out = np.zeros((len(points), len(views), size, size), np.float32)
  for b, cloud in enumerate(points):
    for m, rot in enumerate(views):
      zbuf = np.full((size, size), np.inf)
      for x, y, z in cloud @ rot.T:
        d = camera_distance - z
        col = math.floor((focal * x / d + 1) / 2 * size)
        row = math.floor((1 - focal * y / d) / 2 * size)
        for dr in range(splat):
          for dc in range(splat):
            r, c = row + dr, col + dc
            if 0 <= r < size and 0 <= c < size:
              zbuf[r, c] = min(zbuf[r, c], d)
      out[b, m] = np.where(np.isinf(zbuf), 0.0, zbuf / far)
  return out


def test_depth_maps_match_a_numpy_z_buffer():
  rng = np.random.default_rng(0)
  points = rng.uniform(-1.3, 1.3, size=(2, 60, 3)).astype(np.float32)  # some fall off the image
  ours = np.asarray(pc.depth_maps(jnp.asarray(points), size=12, camera_distance=2.0, focal=1.5, splat=2))
  ref = numpy_depth_maps(points, pc.VIEWS, 12, 2.0, 1.5, 2)
  np.testing.assert_allclose(ours, ref, atol=1e-6)
  assert (ref > 0).mean() > 0.1  # the check compares filled pixels, not only background
  # The six views are what their names say: the top view sees +y nearest, the front view +z.
  up = np.array([[[0.0, 0.9, 0.0], [0.0, -0.9, 0.0]]], np.float32)
  top, bottom = np.asarray(pc.depth_maps(jnp.asarray(up), size=8, splat=1))[0, 4:6]
  assert top[top > 0].min() == pytest.approx(1.1 / 3) and bottom[bottom > 0].min() == pytest.approx(1.1 / 3)


def numpy_adapter(x, p, ratio):
  """The paper's adapter in evaluation mode (BatchNorm on running statistics, no dropout)."""
  bn = lambda v, s: (v - s["mean"]) / np.sqrt(s["var"] + 1e-5) * s["scale"] + s["bias"]  # noqa: E731
  b, m, c = x.shape
  g = bn(x * p["fusion_ratio"][None, :, None], p["norm_views"]).reshape(b, m * c)
  g = np.maximum(bn(g @ p["global_fc"]["kernel"] + p["global_fc"]["bias"], p["norm_global"]), 0)
  h = np.maximum(g @ p["view_fc1"]["kernel"] + p["view_fc1"]["bias"], 0)
  adapted = np.maximum(h @ p["view_fc2"]["kernel"] + p["view_fc2"]["bias"], 0)
  return ratio * adapted + (1 - ratio) * x.reshape(b, m * c)


@pytest.fixture(scope="module")
def adapter():
  """A small adapter with every tensor perturbed (running statistics and fusion ratios included)."""
  module = pc.InterViewAdapter(8, 3, residual_ratio=0.6, dropout=0.0, rngs=nnx.Rngs(0))
  state = nnx.state(module)
  leaves, treedef = jax.tree.flatten(state)
  rng = np.random.default_rng(1)
  leaves = [jnp.asarray(np.abs(rng.normal(1, 0.3, size=l.shape)) if l.ndim and l.shape[-1] == 8 and l.ndim == 1
                        else rng.normal(0, 0.5, size=l.shape), jnp.float32) for l in leaves]
  nnx.update(module, jax.tree.unflatten(treedef, leaves))
  return module


def test_adapter_matches_numpy_in_evaluation(adapter):
  x = np.random.default_rng(2).normal(size=(5, 3, 8)).astype(np.float32)
  params = jax.tree.map(np.asarray, nnx.to_pure_dict(nnx.state(adapter)))
  np.testing.assert_allclose(np.asarray(adapter(jnp.asarray(x), train=False)), numpy_adapter(x, params, 0.6),
                             rtol=1e-4, atol=1e-4)


def test_adapter_trains_on_batch_statistics_and_only_the_head_is_trained(adapter):
  x = np.random.default_rng(3).normal(size=(6, 3, 8)).astype(np.float32)
  params = jax.tree.map(np.asarray, nnx.to_pure_dict(nnx.state(adapter)))
  for name in ("norm_views", "norm_global"):  # the statistics of this batch, as the reference's training mode
    params[name] = dict(params[name])
  v = (x * params["fusion_ratio"][None, :, None]).reshape(-1, 8)
  params["norm_views"] |= {"mean": v.mean(0), "var": v.var(0)}
  g = ((v - v.mean(0)) / np.sqrt(v.var(0) + 1e-5) * params["norm_views"]["scale"] + params["norm_views"]["bias"])
  h = g.reshape(6, 24) @ params["global_fc"]["kernel"] + params["global_fc"]["bias"]
  params["norm_global"] |= {"mean": h.mean(0), "var": h.var(0)}
  trained = pc.InterViewAdapter(8, 3, dropout=0.0, rngs=nnx.Rngs(0))
  nnx.update(trained, nnx.state(adapter))
  np.testing.assert_allclose(np.asarray(trained(jnp.asarray(x), train=True)), numpy_adapter(x, params, 0.6),
                             rtol=1e-4, atol=1e-4)


def paper_adapter_params(c: int, m: int) -> int:
  """The reference adapter's layers: M fusion ratios, BatchNorm(C), Linear(M·C → C), BatchNorm(C),
  Linear(C → C), Linear(C → M·C)."""
  return m + 2 * c + (m * c * c + c) + 2 * c + (c * c + c) + (c * m * c + m * c)


def test_parameter_counts_and_the_frozen_clip():
  count = lambda module: sum(x.size for x in jax.tree.leaves(nnx.state(module, nnx.Param)))  # noqa: E731
  # The paper's setting: CLIP RN50 features (C = 1,024), six views; and the demo's (C = 64).
  paper = nnx.eval_shape(lambda: pc.InterViewAdapter(1024, 6, rngs=nnx.Rngs(0)))
  assert count(paper) == paper_adapter_params(1024, 6) == 13_643_782
  demo = nnx.eval_shape(lambda: pc.InterViewAdapter(64, 6, rngs=nnx.Rngs(0)))
  assert count(demo) == paper_adapter_params(64, 6) == 54_022
  # In the whole model only the head is a parameter: the CLIP is frozen (model state, no gradient).
  model = nnx.eval_shape(lambda: pc.PointCLIP(freeze(models.create(
      "clip_vit_base_patch32", rngs=nnx.Rngs(0), embed_dim=16, img_size=16, patch_size=8, vision_width=16,
      vision_layers=1, vision_heads=2, text_width=16, text_layers=1, text_heads=2, context_length=8, vocab_size=20)),
      num_classes=6, img_size=16, rngs=nnx.Rngs(0)))
  assert count(model) == paper_adapter_params(16, 6)
  assert models.forward_flops(model) > 6 * vit.forward_flops(model.clip.visual) > 0


def test_smooth_loss_matches_numpy():
  rng = np.random.default_rng(4)
  logits, labels = rng.normal(size=(7, 6)).astype(np.float32), rng.integers(6, size=7)
  logp = logits - np.log(np.exp(logits).sum(1, keepdims=True))
  q = np.full((7, 6), 0.2 / 5)
  q[np.arange(7), labels] = 0.8
  np.testing.assert_allclose(np.asarray(smooth_cross_entropy(jnp.asarray(logits), jnp.asarray(labels), 0.2)),
                             -(q * logp).sum(1), rtol=1e-5)


def test_zero_shot_readout_and_view_weight_search():
  rng = np.random.default_rng(5)
  text = task_lib.zs.l2_normalize(rng.normal(size=(3, 4)))
  feats = rng.normal(size=(9, 2, 4)).astype(np.float32)
  w = np.array([0.25, 1.0], np.float32)
  ref = np.stack([[100 * sum(w[i] * f[i] @ t / np.linalg.norm(f[i]) for i in range(2)) for t in text] for f in feats])
  np.testing.assert_allclose(task_lib.zero_shot_logits_np(feats, text, w), ref, rtol=1e-4)
  np.testing.assert_allclose(np.asarray(pc.zero_shot_logits(jnp.asarray(feats), jnp.asarray(text), w)), ref,
                             rtol=1e-4)
  # View 0 carries the class, view 1 a confusing other class: the search keeps view 0 alone.
  labels = np.arange(9) % 3
  feats = np.stack([text[labels] * 2, text[(labels + 1) % 3] * 3], axis=1)
  weights = task_lib.search_view_weights(feats, labels, text, grid=(0.0, 0.5, 1.0))
  assert weights[1] == 0 and weights[0] > 0


def test_point_clouds_lie_on_their_shapes_and_splits_are_fixed():
  rng = np.random.default_rng(6)
  p = point_clouds.sample_surface("sphere", 200, rng)
  np.testing.assert_allclose(np.linalg.norm(p, axis=1), 1, atol=1e-6)
  p = point_clouds.sample_surface("cube", 200, rng)
  np.testing.assert_allclose(np.abs(p).max(1), 1, atol=1e-6)
  p = point_clouds.sample_surface("torus", 200, rng)
  big, small = point_clouds.TORUS_RADII
  np.testing.assert_allclose(np.hypot(np.hypot(p[:, 0], p[:, 2]) - big, p[:, 1]), small, atol=1e-6)
  p = point_clouds.sample_surface("cone", 400, rng)
  side = p[:, 1] > -1 + 1e-9
  np.testing.assert_allclose(np.hypot(p[side, 0], p[side, 2]), (1 - p[side, 1]) / 2, atol=1e-6)
  assert 0.6 < side.mean() < 0.8  # side area π√5 of π(√5 + 1): 0.69
  a = point_clouds.PointCloudSource("train", num_points=64, per_class=3)
  b = point_clouds.PointCloudSource("train", num_points=64, shots=2, per_class=3)
  test = point_clouds.PointCloudSource("test", num_points=64, per_class=3)
  np.testing.assert_array_equal(a.points[:12], b.points)  # k shots: the first k clouds of each class
  assert list(b.labels) == [0, 1, 2, 3, 4, 5] * 2 and not np.allclose(a.points[0], test.points[0])
  np.testing.assert_allclose(np.linalg.norm(a.points, axis=2).max(1), 1, atol=1e-6)  # in the unit sphere


def test_a_clip_run_that_does_not_fit_is_refused_before_training(tmp_path):
  import json

  from papers_jax.core.config import load
  from papers_jax.errors import CheckpointError, ConfigError
  from papers_jax.tasks import get_task
  config = load("configs/pointclip/shapes.py").unlock()
  config.pointclip.clip_run = str(tmp_path)
  with pytest.raises(CheckpointError, match="not a finished CLIP run"):
    get_task(config)
  (tmp_path / "checkpoints" / "5").mkdir(parents=True)
  (tmp_path / "tokenizer.json").write_text("{}")
  run = {"model": dict(config.model) | {"vision_width": 32}, "data": {"mean": [0.5] * 3, "std": [0.5] * 3}}
  (tmp_path / "config.json").write_text(json.dumps({"config": run}))
  with pytest.raises(ConfigError, match="vision_width"):
    get_task(config)
  run["model"]["vision_width"] = config.model.vision_width
  run["data"]["mean"] = [0.1] * 3
  (tmp_path / "config.json").write_text(json.dumps({"config": run}))
  with pytest.raises(ConfigError, match="normalise the depth maps"):
    get_task(config)
