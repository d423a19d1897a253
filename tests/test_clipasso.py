"""CLIPasso: the Bézier rasteriser (a numpy reference and finite differences), the augmentation's geometry,
the losses against numpy, the saliency-based initialisation and one short optimisation on a tiny CLIP."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from papers_jax import models, sketch
from papers_jax.errors import ConfigError
from papers_jax.nn import raster
from papers_jax.objectives import clipasso as objective


def _numpy_render(control, width, h, w, samples, fg, bg):
  """Loops: each pixel centre's distance to each sampled segment, its box-filter coverage, "over" compositing."""
  t = np.linspace(0, 1, samples)
  ink_keep = np.ones((h, w))
  for c in control:
    pts = [((1 - s) ** 3) * c[0] + 3 * (1 - s) ** 2 * s * c[1] + 3 * (1 - s) * s ** 2 * c[2] + s ** 3 * c[3] for s in t]
    for y in range(h):
      for x in range(w):
        p = np.array([x + 0.5, y + 0.5])
        best = np.inf
        for a, b in zip(pts[:-1], pts[1:]):
          ab = b - a
          u = np.clip(np.dot(p - a, ab) / max(np.dot(ab, ab), 1e-12), 0, 1)
          best = min(best, np.linalg.norm(p - (a + u * ab)))
        ink_keep[y, x] *= 1 - np.clip(width / 2 + 0.5 - best, 0, 1)
  ink = 1 - ink_keep
  return np.asarray(bg) + (np.asarray(fg) - np.asarray(bg)) * ink[..., None]


def test_rasteriser_equals_a_numpy_reference():
  rng = np.random.default_rng(0)
  control = rng.uniform(0, 12, (3, 4, 2)).astype(np.float32)
  render = jax.jit(lambda c: raster.render_strokes(c, 1.5, 10, 12, samples=9, stroke_colour=(0.2, 0.9, 0.1),
                                                   background=(1.0, 0.5, 0.0)))
  got = render(jnp.asarray(control))
  want = _numpy_render(control.astype(np.float64), 1.5, 10, 12, 9, (0.2, 0.9, 0.1), (1.0, 0.5, 0.0))
  assert 0.05 < (want[..., 1] != 0.5).mean() < 0.95  # strokes drawn, not everything covered
  np.testing.assert_allclose(np.asarray(got), want, atol=1e-5)


def test_rasteriser_gradients_match_finite_differences():
  """Central differences in float64 of a weighted sum of the pixels, along random directions of the control
  points and the width (the coverage is piecewise linear, so a small step avoids its kinks at most pixels)."""
  with jax.enable_x64(True):
    rng = np.random.default_rng(1)
    control = jnp.asarray(rng.uniform(1, 15, (4, 4, 2)))
    weights = jnp.asarray(rng.normal(size=(16, 16, 3)))

    @jax.jit
    def f(c, width):
      return (raster.render_strokes(c, width, 16, 16, samples=12) * weights).sum()

    gc, gw = jax.jit(jax.grad(f, argnums=(0, 1)))(control, 2.0)
    assert float(jnp.abs(gc).max()) > 0 and abs(float(gw)) > 0
    eps = 1e-5
    for _ in range(3):
      d = jnp.asarray(rng.normal(size=control.shape))
      numeric = (f(control + eps * d, 2.0) - f(control - eps * d, 2.0)) / (2 * eps)
      np.testing.assert_allclose(float((gc * d).sum()), float(numeric), rtol=1e-4, atol=1e-6)
    numeric_w = (f(control, 2.0 + eps) - f(control, 2.0 - eps)) / (2 * eps)
    np.testing.assert_allclose(float(gw), float(numeric_w), rtol=1e-4, atol=1e-6)


def test_augmentation_geometry():
  corners = jnp.array([[0.0, 0.0], [8.0, 0.0], [8.0, 8.0], [0.0, 8.0]])
  moved = corners + jnp.array([[1.0, 2.0], [-1.0, 0.5], [-2.0, -1.0], [0.5, -0.5]])
  h = sketch.homography(corners, moved)
  mapped = jnp.concatenate([corners, jnp.ones((4, 1))], -1) @ h.T
  np.testing.assert_allclose(mapped[:, :2] / mapped[:, 2:], moved, atol=1e-5)
  # No distortion and the whole area: the warp is the identity (bilinear sampling at the pixel centres).
  m = jax.jit(sketch.augmentation_matrix, static_argnums=(1, 2, 3))(jax.random.key(0), 8, 0.0, 1.0)
  np.testing.assert_allclose(m, np.eye(3), atol=1e-5)
  warp = jax.jit(sketch.warp)
  image = jax.random.uniform(jax.random.key(1), (8, 8, 3))
  np.testing.assert_allclose(warp(image, m), image, atol=1e-5)
  # A crop of 1/4 of the area at the origin: output x samples input x at (x + 0.5) / 2 − 0.5 (pixel centres at
  # integers), with zeros beyond the edge (row 4 is inside in y).
  crop = jnp.array([[0.5, 0.0, 0.0], [0.0, 0.5, 0.0], [0.0, 0.0, 1.0]])
  ramp = jnp.broadcast_to(jnp.arange(8.0)[None, :, None], (8, 8, 1))
  np.testing.assert_allclose(warp(ramp, crop)[4, :, 0], np.clip((np.arange(8) + 0.5) / 2 - 0.5, 0, 7), atol=1e-5)


def test_losses_equal_numpy():
  rng = np.random.default_rng(2)
  fs, fi = rng.normal(size=(5, 8)), rng.normal(size=(5, 8))
  ls, li = [rng.normal(size=(5, 4, 6)), rng.normal(size=(5, 3))], [rng.normal(size=(5, 4, 6)), rng.normal(size=(5, 3))]
  cos = (fs * fi).sum(-1) / np.linalg.norm(fs, axis=-1) / np.linalg.norm(fi, axis=-1)
  semantic = np.mean(1 - cos)
  geometric = 0.7 * np.mean(((ls[0] - li[0]) ** 2).mean(axis=(1, 2))) + 1.3 * np.mean(((ls[1] - li[1]) ** 2).mean(1))
  total, s, g = objective.clipasso_loss(fs, fi, ls, li, (0.7, 1.3), semantic_weight=0.1)
  np.testing.assert_allclose([total, s, g], [geometric + 0.1 * semantic, semantic, geometric], rtol=1e-5)


@pytest.fixture(scope="module")
def tiny_clip():
  clip = models.create("clip_vit_base_patch32", rngs=nnx.Rngs(0), embed_dim=16, img_size=16, patch_size=4,
                       vision_width=16, vision_layers=2, vision_heads=2, text_width=16, text_layers=1, text_heads=2,
                       context_length=8, vocab_size=32)
  return clip


def test_initial_strokes_start_where_the_saliency_is():
  config = sketch.SketchConfig(num_strokes=12, temperature=0.05)
  saliency = jnp.zeros((16, 16)).at[2:5, 10:14].set(1.0)  # a hot 3×4 box
  control = sketch.initial_strokes(jax.random.key(0), saliency, config)
  assert control.shape == (12, 4, 2)
  start = np.asarray(control[:, 0])
  inside = (start[:, 0] > 10) & (start[:, 0] < 14) & (start[:, 1] > 2) & (start[:, 1] < 5)
  assert inside.all()  # 12 hot pixels, e^20 more likely than each of the 244 others: all drawn from the box
  steps = np.abs(np.diff(np.asarray(control), axis=1))
  assert steps.max() <= 0.05 * 16 + 1e-5


def test_a_short_optimisation_lowers_the_loss_and_keeps_the_best(tiny_clip):
  config = sketch.SketchConfig(num_strokes=4, width=1.0, iterations=8, lr=0.5, num_augs=1, layers=(0, 1),
                               num_sketches=2, samples=8)
  images = jnp.zeros((2, 16, 16, 3)).at[0, 4:12, 4:12].set(1.0).at[1, 2:6, :].set(1.0)
  out = sketch.sketch_images(tiny_clip, images, jax.random.key(0), config, mean=(0.5,) * 3, std=(0.5,) * 3,
                             log_every=1)
  assert out["final"].shape == (2, 2, 4, 4, 2) and out["loss"].shape == (2, 2)
  np.testing.assert_array_equal(out["best"], out["loss"].argmin(1))
  assert not np.allclose(out["initial"], out["final"])
  assert out["history"][-1, 0] < out["history"][0, 0]  # the mean loss falls over 8 Adam steps
  with pytest.raises(ConfigError, match="layer_weights"):
    sketch.SketchConfig(layers=(1, 2), layer_weights=(1.0,))
