"""DepthCLIP: the depth readout against numpy, the metrics, and the depth scenes' pinhole geometry and captions."""

import jax.numpy as jnp
import numpy as np
import pytest

from papers_jax.data import depth_scenes
from papers_jax.models import depthclip
from papers_jax.tasks.depthclip import depth_metrics


def numpy_readout(features, text, bins, temperature):
  f = features / np.linalg.norm(features, axis=-1, keepdims=True)
  t = text / np.linalg.norm(text, axis=-1, keepdims=True)
  logits = 100.0 * f @ t.T / temperature
  p = np.exp(logits - logits.max(-1, keepdims=True))
  return (p / p.sum(-1, keepdims=True)) @ np.asarray(bins)


def test_depth_readout_matches_numpy_and_stays_within_the_bins():
  rng = np.random.default_rng(0)
  features, text = rng.normal(size=(2, 3, 3, 8)).astype(np.float32), rng.normal(size=(7, 8)).astype(np.float32)
  for temperature in (0.1, 10.0):  # the paper's (nearly an argmax) and a soft one
    ours = np.asarray(depthclip.depth_readout(jnp.asarray(features), jnp.asarray(text), depth_scenes.BINS,
                                              temperature))
    np.testing.assert_allclose(ours, numpy_readout(features, text, depth_scenes.BINS, temperature), rtol=1e-5)
    assert ours.min() >= 1.0 - 1e-6 and ours.max() <= 3.0 + 1e-6
  # A patch whose feature is a word's text reads that word's bin depth.
  ours = depthclip.depth_readout(jnp.asarray(text[2:3] * 5), jnp.asarray(text), depth_scenes.BINS, 0.1)
  assert float(ours[0]) == pytest.approx(depth_scenes.BINS[2], abs=1e-3)


def test_depth_metrics():
  depth = np.array([[1.0, 2.0], [3.0, 0.0]])
  pred = np.array([[1.1, 2.0], [2.0, 9.0]])
  mask = depth > 0
  m = depth_metrics(pred, depth, mask)
  assert m["abs_rel"] == pytest.approx((0.1 + 0 + 1 / 3) / 3)
  assert m["rmse"] == pytest.approx(np.sqrt((0.01 + 0 + 1) / 3))
  assert m["delta1"] == pytest.approx(2 / 3)


def test_depth_scenes_follow_the_pinhole_camera():
  src = depth_scenes.DepthScenesSource("test", limit=40)
  again = depth_scenes.DepthScenesSource("test", limit=40)
  np.testing.assert_array_equal(src[3]["image"], again[3]["image"])  # fixed seeds
  checked = 0
  for i in range(len(src)):
    example = src[i]
    for obj in src.layouts[i]:
      rows = np.nonzero((example["depth"] == np.float32(obj["z"])).any(axis=1))[0]
      if obj["kind"] != "square" or not len(rows):
        continue
      # A square of world size S at depth z: f·S/z pixels tall, its base f·h/z below the horizon.
      height = depth_scenes.FOCAL * depth_scenes.CAMERA_HEIGHT / obj["z"]
      assert abs(rows.max() + 1 - (depth_scenes.HORIZON + height)) <= 1
      assert 0.9 * depth_scenes.FOCAL * depth_scenes.OBJECT_SIZE / obj["z"] - 1 <= len(rows) \
          <= 1.1 * depth_scenes.FOCAL * depth_scenes.OBJECT_SIZE / obj["z"] + 1
      assert f"is {depth_scenes.depth_word(obj['z'])}." in " ".join(example["texts"])
      checked += 1
  assert checked >= 5
  assert depth_scenes.depth_word(1.2) == "giant" and depth_scenes.depth_word(2.9) == "unseen"
