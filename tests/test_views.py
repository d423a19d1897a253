"""On-device SSL augmentations: definitions, per-example randomness, and the recipes' shapes."""

import colorsys
import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import NamedSharding, PartitionSpec as P

from papers_jax.data import views

RNG = np.random.default_rng(0)
IMAGES = jnp.asarray(RNG.uniform(size=(8, 32, 32, 3)).astype(np.float32))
KEY = jax.random.key(0)


def test_crop_of_the_whole_image_is_a_resize():
  out = views.random_resized_crop(IMAGES, KEY, 16, scale=(1.0, 1.0), ratio=(1.0, 1.0))
  expected = jax.image.resize(IMAGES, (8, 16, 16, 3), "linear", antialias=True)
  np.testing.assert_allclose(np.asarray(out), np.asarray(expected), atol=1e-5)


def test_crops_are_drawn_per_example_within_the_scale_range():
  # An image whose pixel value encodes its coordinates shows which box each crop took.
  yy, xx = np.meshgrid(np.arange(64), np.arange(64), indexing="ij")
  coords = jnp.asarray(np.stack([yy, xx, np.zeros_like(yy)], -1)[None].repeat(16, 0).astype(np.float32))
  out = np.asarray(views.random_resized_crop(coords, KEY, 8, scale=(0.1, 0.5)))
  heights = out[:, -1, :, 0].mean(1) - out[:, 0, :, 0].mean(1)
  widths = out[:, :, -1, 1].mean(1) - out[:, :, 0, 1].mean(1)
  area = (heights * 8 / 7) * (widths * 8 / 7) / 64 ** 2  # box side ≈ span of the sample centres × 8/7
  assert len(np.unique(np.round(out[:, 0, 0, :2]), axis=0)) > 8  # different boxes per example
  assert (area > 0.05).all() and (area < 0.65).all()


def test_flip_mirrors_exactly_the_chosen_examples():
  out = np.asarray(views.random_flip(IMAGES, KEY, p=0.5))
  flipped = [np.array_equal(o, np.asarray(i)[:, ::-1]) for o, i in zip(out, IMAGES)]
  kept = [np.array_equal(o, np.asarray(i)) for o, i in zip(out, IMAGES)]
  assert all(f or k for f, k in zip(flipped, kept)) and any(flipped) and any(kept)


def test_colour_ops_follow_torchvision_definitions():
  image = IMAGES[0]
  gray = np.asarray(views.grayscale(image))
  np.testing.assert_allclose(gray[..., 0], np.asarray(image) @ np.array([0.299, 0.587, 0.114]), rtol=1e-5)
  assert np.array_equal(gray[..., 0], gray[..., 2])
  np.testing.assert_allclose(np.asarray(views.adjust_brightness(image, 0.5)), np.asarray(image) * 0.5, rtol=1e-6)
  mean = gray.mean()
  np.testing.assert_allclose(np.asarray(views.adjust_contrast(image, 1.5)),
                             np.clip(1.5 * np.asarray(image) - 0.5 * mean, 0, 1), atol=1e-5)
  shifted = np.asarray(views.adjust_hue(image, 0.25))
  for y, x in [(0, 0), (5, 7), (31, 31)]:
    h, s, v = colorsys.rgb_to_hsv(*np.asarray(image[y, x]))
    np.testing.assert_allclose(shifted[y, x], colorsys.hsv_to_rgb((h + 0.25) % 1.0, s, v), atol=1e-5)


def test_jitter_of_zero_strength_is_the_identity_and_solarize_inverts_bright_pixels():
  out = views.color_jitter(IMAGES, KEY, brightness=0, contrast=0, saturation=0, hue=0, p=1.0)
  np.testing.assert_allclose(np.asarray(out), np.asarray(IMAGES), atol=1e-5)
  sol = np.asarray(views.random_solarize(IMAGES, KEY, p=1.0))
  np.testing.assert_allclose(sol, np.where(np.asarray(IMAGES) < 0.5, IMAGES, 1 - np.asarray(IMAGES)))


def test_blur_keeps_the_mean_of_a_constant_image_and_smooths_noise():
  flat = jnp.full((2, 32, 32, 3), 0.3)
  np.testing.assert_allclose(np.asarray(views.gaussian_blur(flat, KEY, p=1.0)), 0.3, atol=1e-6)
  blurred = np.asarray(views.gaussian_blur(IMAGES, KEY, p=1.0, sigma=(1.5, 2.0)))
  assert blurred.std() < 0.5 * np.asarray(IMAGES).std()


# Quantised like decoded photos (ties between channels) with a grey patch (no hue): the cases where
# HSV formulas differ most.
PHOTOS = jnp.asarray(np.concatenate([np.full((1, 32, 32, 3), 128), RNG.integers(0, 256, (7, 32, 32, 3))])
                     .astype(np.float32) / 255)


def _draws(key, n, p):
  """The per-example (apply, sub-key) draws of `views._per_example` ops: bernoulli(p) on split keys."""
  keys = jax.random.split(key, n)
  return keys, [bool(jax.random.bernoulli(k, p)) for k in keys]


def test_flip_solarise_hue_and_blur_match_their_references():
  # The hand-written ops and dm_pix's both pass (data/views.py's docstring says which ones run): the
  # same keys give the same draws, and the pixels match these references.
  x = np.asarray(PHOTOS)
  _, flips = _draws(KEY, 8, 0.5)
  np.testing.assert_array_equal(np.asarray(views.random_flip(PHOTOS, KEY, p=0.5)),
                                [xi[:, ::-1] if f else xi for xi, f in zip(x, flips)])
  _, solar = _draws(KEY, 8, 0.3)
  np.testing.assert_array_equal(np.asarray(views.random_solarize(PHOTOS, KEY, p=0.3)),
                                [np.where(xi < 0.5, xi, 1 - xi) if f else xi for xi, f in zip(x, solar)])
  assert 0 < sum(flips) < 8 and 0 < sum(solar) < 8
  for shift in (-0.45, 0.1, 0.25):  # every pixel against Python's colorsys, in float64
    want = np.array([colorsys.hsv_to_rgb((h + shift) % 1.0, s, v) for h, s, v in
                     (colorsys.rgb_to_hsv(*px) for px in x[:3].reshape(-1, 3).astype(np.float64))])
    np.testing.assert_allclose(np.asarray(jax.vmap(lambda im, d=shift: views.adjust_hue(im, d))(PHOTOS[:3])),
                               want.reshape(3, 32, 32, 3), atol=2e-6)
  keys, blurs = _draws(KEY, 8, 0.5)
  out = np.asarray(views.gaussian_blur(PHOTOS, KEY, p=0.5, sigma=(0.5, 2.0), kernel_size=7))
  for xi, k, o in zip(x.astype(np.float64), keys, out):  # reflect padding, separable taps, σ ~ U[0.5, 2]
    k_apply, k_sigma = jax.random.split(k)
    if not jax.random.bernoulli(k_apply, 0.5):
      np.testing.assert_array_equal(o, xi.astype(np.float32))
      continue
    sigma = float(jax.random.uniform(k_sigma, minval=0.5, maxval=2.0))
    taps = np.exp(-0.5 * (np.arange(-3, 4) / sigma) ** 2)
    taps /= taps.sum()
    padded = np.pad(xi, ((3, 3), (3, 3), (0, 0)), mode="reflect")
    rows = sum(t * padded[i:i + 32] for i, t in enumerate(taps))
    np.testing.assert_allclose(o, sum(t * rows[:, i:i + 32] for i, t in enumerate(taps)), atol=1e-6)
  assert 0 < sum(blurs) < 8


def test_recipes_make_the_papers_crops_on_a_sharded_batch():
  mesh = jax.make_mesh((8,), ("data",), axis_types=(jax.sharding.AxisType.Auto,), devices=jax.devices()[:8])
  images = jax.device_put(jnp.asarray(RNG.uniform(size=(8, 48, 48, 3)).astype(np.float32)),
                          NamedSharding(mesh, P("data")))
  make = jax.jit(lambda x, k: views.make_views(x, k, views.multi_crop(32, 16, num_local=1)))
  crops = make(images, KEY)
  assert [c.shape for c in crops] == [(8, 32, 32, 3)] * 2 + [(8, 16, 16, 3)]
  assert all(0.0 <= float(c.min()) and float(c.max()) <= 1.0 for c in crops)
  assert len(crops[0].sharding.device_set) == 8
  assert not np.allclose(np.asarray(crops[0]), np.asarray(crops[1]))  # two different views of each image
  np.testing.assert_array_equal(np.asarray(make(images, KEY)[0]), np.asarray(crops[0]))  # same key, same views


def recipe(size, scale, jitter, jitter_p, grayscale_p, blur_p, solarize_p, flip=0.5):
  """Every field spelled out, so a changed default shows up here too."""
  return views.ViewRecipe(size=size, scale=scale, flip=flip, jitter=jitter, jitter_p=jitter_p,
                          grayscale_p=grayscale_p, blur_p=blur_p, solarize_p=solarize_p)


STRONG = (0.8, 0.8, 0.8, 0.2)  # SimCLR's colour distortion at strength 1 (brightness, contrast, saturation, hue)
BYOL_JITTER = (0.4, 0.4, 0.2, 0.1)
# The papers' (and their reference code's) pipelines: crop scale, jitter (strength, probability),
# grayscale, blur and solarisation probabilities; every recipe flips with probability 0.5.
PAPER_RECIPES = {
    # SimCLR, Chen et al. 2020, Appendix A: crop 8–100%, jitter strength 1 with p 0.8, gray 0.2, blur 0.5.
    "simclr": (lambda: views.simclr(24), [recipe(24, (0.08, 1.0), STRONG, 0.8, 0.2, 0.5, 0.0)] * 2),
    # MoCo v2, Chen et al. 2020 (main_moco.py --aug-plus): crop 20–100%, jitter (0.4, 0.4, 0.4, 0.1) p 0.8, blur 0.5.
    "moco_v2": (lambda: views.moco_v2(24), [recipe(24, (0.2, 1.0), (0.4, 0.4, 0.4, 0.1), 0.8, 0.2, 0.5, 0.0)] * 2),
    # MoCo v1 (main_moco.py): crop 20–100%, gray 0.2, ColorJitter(0.4, 0.4, 0.4, 0.4) always, no blur.
    "moco_v1": (lambda: views.moco_v1(24), [recipe(24, (0.2, 1.0), (0.4,) * 4, 1.0, 0.2, 0.0, 0.0)] * 2),
    # BYOL, Grill et al. 2020, Table 6: asymmetric blur 1.0 / 0.1 and solarisation 0.0 / 0.2, saturation 0.2.
    "byol": (lambda: views.byol(24), [recipe(24, (0.08, 1.0), BYOL_JITTER, 0.8, 0.2, 1.0, 0.0),
                                      recipe(24, (0.08, 1.0), BYOL_JITTER, 0.8, 0.2, 0.1, 0.2)]),
    # DINO (main_dino.py DataAugmentationDINO): global 40–100% (blur 1.0; blur 0.1 + solarise 0.2), 8 local
    # 96-pixel crops of 5–40% with blur 0.5.
    "dino": (lambda: views.multi_crop(24, 12, num_local=8),
             [recipe(24, (0.4, 1.0), BYOL_JITTER, 0.8, 0.2, 1.0, 0.0),
              recipe(24, (0.4, 1.0), BYOL_JITTER, 0.8, 0.2, 0.1, 0.2)]
             + [recipe(12, (0.05, 0.4), BYOL_JITTER, 0.8, 0.2, 0.5, 0.0)] * 8),
    # SwAV, Caron et al. 2020: 2 global crops of 14–100% and 6 local of 5–14%, SimCLR's distortion, blur 0.5.
    "swav": (lambda: views.swav_multi_crop(24, 12),
             [recipe(24, (0.14, 1.0), STRONG, 0.8, 0.2, 0.5, 0.0)] * 2
             + [recipe(12, (0.05, 0.14), STRONG, 0.8, 0.2, 0.5, 0.0)] * 6),
    # InstDisc (lemniscate main.py): crop 20–100%, gray 0.2, ColorJitter(0.4, 0.4, 0.4, 0.4) always.
    "instdisc": (lambda: views.instdisc(24), [recipe(24, (0.2, 1.0), (0.4,) * 4, 1.0, 0.2, 0.0, 0.0)]),
    # CMC (Lab views): crop 8–100% and a flip, nothing photometric.
    "cmc": (lambda: views.cmc(24), [recipe(24, (0.08, 1.0), (0.4, 0.4, 0.4, 0.1), 0.0, 0.0, 0.0, 0.0)]),
}


@pytest.mark.parametrize("name", PAPER_RECIPES)
def test_recipes_carry_the_papers_parameters(name):
  make, expected = PAPER_RECIPES[name]
  assert make() == expected


def test_byol_views_blur_and_solarise_with_their_asymmetric_probabilities():
  """Over 512 images, view 1 is blurred (almost) always and never solarised, view 2 blurred about
  10% and solarised about 20% of the time (BYOL Table 6). Jitter and grayscale are switched off so
  both effects can be read off the output: pixels in [0.6, 1] stay there under crops and blur, and
  solarising maps them below 0.5; blur is whatever differs from the same view made without it
  (each op draws from its own key, so the crop and flip are the same)."""
  n = 512
  images = jnp.asarray(np.random.default_rng(1).uniform(0.6, 1.0, size=(n, 32, 32, 3)).astype(np.float32))
  for i, r in enumerate(views.byol(32)):
    r = dataclasses.replace(r, jitter_p=0.0, grayscale_p=0.0)
    key = jax.random.key(10 + i)
    out = np.asarray(jax.jit(lambda x: views.make_view(x, key, r))(images))
    without = dataclasses.replace(r, blur_p=0.0, solarize_p=0.0)
    plain = np.asarray(jax.jit(lambda x: views.make_view(x, key, without))(images))
    solarised = out.mean(axis=(1, 2, 3)) < 0.5
    assert ((out < 0.5).all(axis=(1, 2, 3)) == solarised).all()  # whole images, never a part of one
    unsolarised = np.where(solarised[:, None, None, None], 1.0 - out, out)
    blurred = np.abs(unsolarised - plain).max(axis=(1, 2, 3)) > 1e-4
    # σ ~ U[0.1, 2], and σ below about 0.25 leaves a 3-tap kernel the identity: 85–100% of blurs are visible.
    for observed, low, high in [(blurred.mean(), 0.85 * r.blur_p, r.blur_p), (solarised.mean(),) + (r.solarize_p,) * 2]:
      slack = 4 * np.sqrt(max(high * (1 - high), 0.01) / n)
      assert low - slack <= observed <= high + slack, (i, observed, low, high)


def np_rgb_to_lab(rgb):
  """CIE 1976 L*a*b* of sRGB (IEC 61966-2-1) under D65, from the standards' exact constants."""
  rgb = np.asarray(rgb, np.float64)
  linear = np.where(rgb <= 0.04045, rgb / 12.92, ((rgb + 0.055) / 1.055) ** 2.4)
  m = np.array([[0.4124564, 0.3575761, 0.1804375], [0.2126729, 0.7151522, 0.0721750],
                [0.0193339, 0.1191920, 0.9503041]])
  xyz = linear @ m.T / np.array([0.95047, 1.0, 1.08883])
  eps, kappa = 216 / 24389, 24389 / 27
  f = np.where(xyz > eps, np.cbrt(xyz), (kappa * xyz + 16) / 116)
  return np.stack([116 * f[..., 1] - 16, 500 * (f[..., 0] - f[..., 1]), 200 * (f[..., 1] - f[..., 2])], -1)


def test_rgb_to_lab_follows_the_cie_formulas():
  pixels = np.concatenate([RNG.uniform(size=(500, 3)), RNG.uniform(0, 0.03, size=(100, 3)),  # dark: linear branch
                           np.eye(3), np.zeros((1, 3)), np.ones((1, 3))]).astype(np.float32)
  out = np.asarray(views.rgb_to_lab(jnp.asarray(pixels)))
  np.testing.assert_allclose(out, np_rgb_to_lab(pixels), atol=2e-2)  # 4-digit vs exact matrix constants
  np.testing.assert_allclose(out[-1], [100.0, 0.0, 0.0], atol=1e-2)  # white
  np.testing.assert_allclose(out[-2], [0.0, 0.0, 0.0], atol=1e-4)  # black
  np.testing.assert_allclose(out[-5], [53.24, 80.09, 67.20], atol=0.05)  # sRGB red
  assert out.shape == pixels.shape
