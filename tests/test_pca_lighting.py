"""AlexNet's PCA lighting noise (§4.1) against a numpy reference written from the paper's formula, and its
place in the training pipeline (training only)."""

import numpy as np
import pytest

from papers_jax.data import pipeline, preprocess


def test_pca_lighting_adds_the_papers_per_image_offset():
  image = np.random.default_rng(0).integers(0, 256, (5, 6, 3), dtype=np.uint8)
  out = preprocess.pca_lighting(image, np.random.default_rng(1), 0.1)
  alpha = np.random.default_rng(1).normal(0.0, 0.1, 3)  # the same draw
  # [p1, p2, p3][α1 λ1, α2 λ2, α3 λ3]ᵀ added to every RGB pixel (pixels in [0, 1], so × 255 for uint8).
  offset = sum(alpha[i] * preprocess.IMAGENET_PCA_EIGVAL[i] * preprocess.IMAGENET_PCA_EIGVEC[:, i] for i in range(3))
  expected = np.clip(np.rint(image + 255 * offset), 0, 255).astype(np.uint8)
  np.testing.assert_array_equal(out, expected)
  assert not np.array_equal(out, image)


def test_pca_lighting_offsets_have_the_papers_covariance():
  rng = np.random.default_rng(2)
  grey = np.full((1, 1, 3), 128, np.uint8)
  offsets = np.stack([preprocess.pca_lighting(grey, rng, 0.1)[0, 0].astype(float) - 128 for _ in range(4000)])
  v, lam = preprocess.IMAGENET_PCA_EIGVEC, preprocess.IMAGENET_PCA_EIGVAL
  expected = 255 ** 2 * v @ np.diag((0.1 * lam) ** 2) @ v.T  # Cov[Σ α_i λ_i p_i] with α ~ N(0, 0.1²)
  np.testing.assert_allclose(np.cov(offsets.T), expected, atol=0.1 * expected.max())


def test_pipeline_applies_lighting_in_training_only_and_needs_rgb():
  example = {"image": np.full((8, 8, 3), 100, np.uint8), "label": 0}
  train = pipeline.image_preprocess("none", 8, train=True, pca_lighting=1.0)  # offsets of tens of levels
  evaluate = pipeline.image_preprocess("none", 8, train=False, pca_lighting=1.0)
  assert not np.array_equal(train(example, np.random.default_rng(0))["image"], example["image"])
  np.testing.assert_array_equal(evaluate(example, np.random.default_rng(0))["image"], example["image"])
  with pytest.raises(ValueError, match="RGB"):
    train({"image": np.zeros((8, 8, 1), np.uint8), "label": 0}, np.random.default_rng(0))
