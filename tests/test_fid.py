"""FID (evaluators/fid.py): our Fréchet distance against the scipy.linalg.sqrtm formula of the reference
implementations, and the digits feature extractor: accurate, and scoring held-out digits far
closer to the train split than the Gaussian-noise baseline."""

import numpy as np
import pytest
import scipy.linalg

from papers_jax.evaluators import fid as fid_lib


def _scipy_frechet(mu1, s1, mu2, s2):
  """pytorch-fid's formula: ‖μ1 − μ2‖² + tr(Σ1) + tr(Σ2) − 2 tr(sqrtm(Σ1 Σ2)), real part."""
  covmean = scipy.linalg.sqrtm(s1 @ s2)
  return float(np.sum((mu1 - mu2) ** 2) + np.trace(s1) + np.trace(s2) - 2 * np.trace(np.real(covmean)))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_frechet_distance_matches_scipy_sqrtm(seed):
  rng = np.random.default_rng(seed)
  a = rng.normal(size=(400, 12)) @ rng.normal(size=(12, 12))
  b = rng.normal(size=(300, 12)) @ rng.normal(size=(12, 12)) + rng.normal(size=12)
  mu_a, cov_a = a.mean(0), np.cov(a, rowvar=False)
  mu_b, cov_b = b.mean(0), np.cov(b, rowvar=False)
  want = _scipy_frechet(mu_a, cov_a, mu_b, cov_b)
  assert fid_lib.frechet_distance(mu_a, cov_a, mu_b, cov_b) == pytest.approx(want, rel=1e-6)
  assert fid_lib.fid(a, b) == pytest.approx(want, rel=1e-6)


def test_fid_identities():
  rng = np.random.default_rng(3)
  a = rng.normal(size=(200, 5))
  assert abs(fid_lib.fid(a, a)) < 1e-8
  shift = np.array([1.0, -2.0, 0.0, 0.5, 0.0])
  assert fid_lib.fid(a, a + shift) == pytest.approx(np.sum(shift ** 2), rel=1e-6)  # same covariance: ‖Δμ‖²
  # N(0, I) vs N(0, 4I) in d = 5: tr(I + 4I − 2·2I) = 5.
  assert fid_lib.frechet_distance(np.zeros(5), np.eye(5), np.zeros(5), 4 * np.eye(5)) == pytest.approx(5.0)
  with pytest.raises(ValueError, match="N ≥ 2"):
    fid_lib.fid(a[:1], a)


def test_gaussian_baseline_has_the_datas_mean_and_covariance():
  images, _ = fid_lib.digits_images("train", 8)
  noise = fid_lib.gaussian_baseline(images, 20000, seed=0)
  assert noise.shape == (20000, 8, 8, 1) and noise.dtype == np.uint8
  x, y = images.reshape(len(images), -1) / 255.0, noise.reshape(len(noise), -1) / 255.0
  # Clipping to [0, 1] shifts the moments a little: the digits' background sits at 0.
  assert np.abs(x.mean(0) - y.mean(0)).max() < 0.06
  assert np.corrcoef(np.cov(x, rowvar=False).ravel(), np.cov(y, rowvar=False).ravel())[0, 1] > 0.95


def test_digits_extractor_is_accurate_and_separates_real_from_noise():
  again = fid_lib.digits_feature_extractor(16)  # the demo's size; trained once per process (cached)
  assert again.test_accuracy > 0.95
  train, _ = fid_lib.digits_images("train", 16)
  test, test_labels = fid_lib.digits_images("test", 16)
  real = again.features(train)
  held_out = fid_lib.fid(again.features(test), real)
  noise = fid_lib.fid(again.features(fid_lib.gaussian_baseline(train, len(test))), real)
  assert noise > 3 * held_out
  assert fid_lib.class_accuracy(again, test, test_labels) == pytest.approx(again.test_accuracy)
