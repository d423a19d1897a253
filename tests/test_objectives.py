"""Classification losses against numpy references."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from papers_jax.objectives import classification as cls


def np_log_softmax(x):
  x = x - x.max(-1, keepdims=True)
  return x - np.log(np.exp(x).sum(-1, keepdims=True))


@pytest.mark.parametrize("smoothing", [0.0, 0.1])
def test_softmax_cross_entropy_with_label_smoothing(smoothing):
  rng = np.random.default_rng(0)
  logits = rng.normal(size=(6, 5)).astype(np.float32) * 3
  labels = rng.integers(0, 5, 6)
  targets = np.full((6, 5), smoothing / 5)
  targets[np.arange(6), labels] = 1 - smoothing + smoothing / 5  # the true class gets 1 - s + s/K
  expected = -(targets * np_log_softmax(logits.astype(np.float64))).sum(-1)
  got = cls.softmax_cross_entropy(jnp.asarray(logits), cls.smooth_labels(jnp.asarray(labels), 5, smoothing))
  np.testing.assert_allclose(got, expected, rtol=1e-5)
  np.testing.assert_allclose(cls.smooth_labels(jnp.asarray(labels), 5, smoothing).sum(-1), 1.0, rtol=1e-6)


def test_softmax_cross_entropy_is_stable_for_large_logits():
  logits = jnp.array([[1000.0, 0.0, -1000.0]], jnp.bfloat16)
  loss = cls.softmax_cross_entropy(logits, cls.smooth_labels(jnp.array([1]), 3))
  assert loss.dtype == jnp.float32 and np.isclose(float(loss[0]), 1000.0)


def test_sigmoid_cross_entropy():
  rng = np.random.default_rng(1)
  logits = rng.normal(size=(4, 3)).astype(np.float32)
  targets = rng.uniform(size=(4, 3)).astype(np.float32)
  p = 1 / (1 + np.exp(-logits.astype(np.float64)))
  expected = -(targets * np.log(p) + (1 - targets) * np.log(1 - p)).sum(-1)
  np.testing.assert_allclose(cls.sigmoid_cross_entropy(logits, targets), expected, rtol=1e-5)


def test_correct_top_k():
  logits = jnp.array([[0.1, 0.5, 0.4], [0.9, 0.05, 0.05]])
  labels = jnp.array([2, 0])
  np.testing.assert_array_equal(cls.correct_top_k(logits, labels, 1), [0.0, 1.0])
  np.testing.assert_array_equal(cls.correct_top_k(logits, labels, 2), [1.0, 1.0])


def test_gradient_matches_numpy():
  rng = np.random.default_rng(2)
  logits = rng.normal(size=(3, 4)).astype(np.float32)
  targets = np.asarray(cls.smooth_labels(jnp.array([0, 3, 1]), 4, 0.1))
  grad = jax.grad(lambda l: cls.softmax_cross_entropy(l, targets).sum())(jnp.asarray(logits))
  softmax = np.exp(np_log_softmax(logits.astype(np.float64)))
  np.testing.assert_allclose(grad, softmax - targets, rtol=1e-5, atol=1e-7)
