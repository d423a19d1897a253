"""Fréchet distance between feature distributions (FID, Heusel et al. 2017) on features of a small
classifier trained on the same data, for generative models of the bundled digits.

  extractor = digits_feature_extractor(image_size=16)    # trained once per process, deterministic
  score = fid(extractor.features(samples), extractor.features(real_images))

`fid(a, b)` fits a Gaussian to each (N, D) feature set (mean, unbiased covariance, float64) and returns
‖μ_a − μ_b‖² + tr(Σ_a + Σ_b − 2 (Σ_a Σ_b)^{1/2}). The trace of the matrix square root is computed from
the eigenvalues of the symmetric PSD matrix Σ_a^{1/2} Σ_b Σ_a^{1/2} (the same eigenvalues as Σ_a Σ_b),
so no complex parts or scipy's `sqrtm` warnings arise; tests/test_fid.py checks it against the
scipy.linalg.sqrtm formula of the reference implementations.

What this FID can be compared with: only other numbers from the same extractor (same image size, same
seed, same reference split and similar sample counts: FID is biased upwards at small N). It is NOT the
Inception-v3 FID of the papers (no pretrained Inception can be loaded here) and is not comparable with
any published number. `gaussian_baseline` gives the floor every model must beat: Gaussian noise with the
data's pixel mean and covariance.

The extractor: scikit-learn's MLPClassifier (two hidden ReLU layers, 128 and 64 units, Adam, fixed
seed, one BLAS thread) on the digits train split resized to `image_size` (the data pipeline's resize), pixels in [0, 1].
Its features are the 64 activations of the last hidden layer; `predict` gives its class, for the
accuracy of class-conditional samples (`class_accuracy`).
"""

import dataclasses
import functools

import numpy as np

from papers_jax.data import preprocess
from papers_jax.errors import ConfigError


def frechet_distance(mu_a, cov_a, mu_b, cov_b) -> float:
  """d² between N(mu_a, cov_a) and N(mu_b, cov_b) (float64)."""
  mu_a, mu_b = np.asarray(mu_a, np.float64), np.asarray(mu_b, np.float64)
  cov_a, cov_b = np.asarray(cov_a, np.float64), np.asarray(cov_b, np.float64)
  w, v = np.linalg.eigh((cov_a + cov_a.T) / 2)
  sqrt_a = (v * np.sqrt(np.clip(w, 0, None))) @ v.T
  middle = sqrt_a @ cov_b @ sqrt_a
  tr_sqrt = np.sqrt(np.clip(np.linalg.eigvalsh((middle + middle.T) / 2), 0, None)).sum()
  return float(np.sum((mu_a - mu_b) ** 2) + np.trace(cov_a) + np.trace(cov_b) - 2.0 * tr_sqrt)


def gaussian_stats(features) -> tuple[np.ndarray, np.ndarray]:
  f = np.asarray(features, np.float64)
  if f.ndim != 2 or len(f) < 2:
    raise ValueError(f"FID takes (N, D) features with N ≥ 2, got shape {f.shape}")
  return f.mean(axis=0), np.cov(f, rowvar=False)


def fid(features_a, features_b) -> float:
  """The Fréchet distance between Gaussians fitted to two (N, D) feature sets."""
  return frechet_distance(*gaussian_stats(features_a), *gaussian_stats(features_b))


def _pixels(images) -> np.ndarray:
  """uint8 (N, H, W[, 1]) images → (N, H·W) float64 in [0, 1]; float images are taken as [0, 1]."""
  x = np.asarray(images)
  x = x.astype(np.float64) / 255.0 if x.dtype == np.uint8 else x.astype(np.float64)
  return x.reshape(len(x), -1)


def digits_images(split: str, image_size: int) -> tuple[np.ndarray, np.ndarray]:
  """The digits split resized as the data pipeline resizes it: (uint8 (N, S, S, 1), labels (N,))."""
  from papers_jax.data.sources import DigitsSource
  source = DigitsSource(split)
  images = np.stack([preprocess.resize(source[i]["image"], image_size) for i in range(len(source))])
  labels = np.array([source[i]["label"] for i in range(len(source))])
  return images.reshape(len(images), image_size, image_size, 1), labels


@dataclasses.dataclass
class DigitsClassifier:
  """A trained MLP over the digits' pixels; `features` (N, 64) and `predict` (N,) take uint8 images."""
  image_size: int
  mlp: object
  test_accuracy: float

  def features(self, images) -> np.ndarray:
    h = _pixels(images)
    for w, b in zip(self.mlp.coefs_[:-1], self.mlp.intercepts_[:-1]):
      h = np.maximum(h @ w + b, 0.0)
    return h

  def predict(self, images) -> np.ndarray:
    return self.mlp.predict(_pixels(images))


@functools.lru_cache(maxsize=4)
def digits_feature_extractor(image_size: int = 16, seed: int = 0) -> DigitsClassifier:
  """The digits classifier for `image_size`, trained on the train split (a few seconds; cached)."""
  import warnings

  from sklearn.exceptions import ConvergenceWarning
  from sklearn.neural_network import MLPClassifier
  from threadpoolctl import threadpool_limits
  train, train_labels = digits_images("train", image_size)
  test, test_labels = digits_images("test", image_size)
  mlp = MLPClassifier(hidden_layer_sizes=(128, 64), alpha=1e-3, max_iter=200, random_state=seed)
  # One BLAS thread: these small matmuls ran 100× slower with threads on a busy 2-core machine.
  with warnings.catch_warnings(), threadpool_limits(1):
    warnings.simplefilter("ignore", ConvergenceWarning)
    mlp.fit(_pixels(train), train_labels)
  accuracy = float((mlp.predict(_pixels(test)) == test_labels).mean())
  return DigitsClassifier(image_size, mlp, accuracy)


def class_accuracy(classifier: DigitsClassifier, images, labels) -> float:
  """The fraction of class-conditional samples the classifier assigns to the class they were asked for."""
  return float((classifier.predict(images) == np.asarray(labels)).mean())


def gaussian_baseline(images, num: int, seed: int = 0) -> np.ndarray:
  """`num` uint8 images drawn from N(mean, covariance) of `images`' pixels, clipped to [0, 255]: the
  trivial model a generative model must beat."""
  x = _pixels(images)
  rng = np.random.default_rng(seed)
  draws = rng.multivariate_normal(x.mean(axis=0), np.cov(x, rowvar=False), size=num, method="eigh")
  return np.round(np.clip(draws, 0, 1) * 255).astype(np.uint8).reshape((num,) + np.shape(images)[1:])


def binarize(images, threshold: float) -> np.ndarray:
  """uint8 images → uint8 images of 0 and 255: pixel / 255 > threshold (the VAE's binarised digits)."""
  return np.where(np.asarray(images) / 255.0 > threshold, 255, 0).astype(np.uint8)


@functools.lru_cache(maxsize=8)
def _digits_references(image_size: int, split: str, num: int, seed: int, threshold: float | None):
  """(extractor, features of `split`, {reference name: FID}) for `num` samples; cached per process."""
  extractor = digits_feature_extractor(image_size)
  real, _ = digits_images(split, image_size)
  test, _ = digits_images("test", image_size)
  if threshold is not None:
    real, test = binarize(real, threshold), binarize(test, threshold)
  real_features = extractor.features(real)
  refs = {"fid_gaussian": fid(extractor.features(gaussian_baseline(real, num, seed=seed)), real_features)}
  if split != "test":
    refs["fid_test_split"] = fid(extractor.features(test), real_features)
  return extractor, real_features, refs


def digits_sample_metrics(samples, image_size: int, *, split: str = "train", seed: int = 0,
                          threshold: float | None = None) -> dict:
  """The evaluation of a set of uint8 digit samples (N, S, S, 1), the same for every generative task:
    fid                   the samples against the digits `split` at `image_size`;
    fid_gaussian          `gaussian_baseline` draws (as many as samples, from `seed`) against the same split:
                          the floor a model must beat;
    fid_test_split        the held-out test split (real digits) against it, when `split` is not "test";
    sample_class_entropy  the entropy of the classifier's labels of the samples (ln 10 = 2.303: an even spread
                          over the ten classes; near 0: one class, mode collapse).
  `threshold`: the data is the digits binarised at it (`binarize`), as the VAE's Bernoulli demo models them;
  the references are then binarised too (the extractor stays the grey digits' one)."""
  if len(samples) < 2:
    raise ValueError(f"FID needs at least 2 samples, got {len(samples)}")
  extractor, real_features, refs = _digits_references(image_size, split, len(samples), seed, threshold)
  counts = np.bincount(extractor.predict(samples), minlength=10) / len(samples)
  entropy = float(-(counts[counts > 0] * np.log(counts[counts > 0])).sum())
  return {"fid": fid(extractor.features(samples), real_features), **refs, "sample_class_entropy": entropy}


def check_fid_samples(config, section: str) -> int:
  """`config.<section>.fid_samples` (0 when unset), checked: the FID here needs the digits data and ≥ 2 samples."""
  num = int(config[section].get("fid_samples", 0))
  if num and config.data.name != "digits":
    raise ConfigError(f"{section}.fid_samples needs the digits' feature extractor (evaluators/fid.py); the data "
                      f"{config.data.name!r} has none here. Set --config.{section}.fid_samples=0.")
  if num == 1:
    raise ConfigError(f"{section}.fid_samples=1: a covariance needs at least 2 samples")
  return num
