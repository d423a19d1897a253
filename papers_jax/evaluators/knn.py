"""Weighted k-nearest-neighbour classification on frozen features (Wu et al. 2018, InstDisc; the
monitor of MoCo / DINO): cosine similarity, the k most similar training examples vote with weight
exp(similarity / T). k = 20 and 200 with T = 0.07 are the usual settings.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np


def l2_normalize(x, eps: float = 1e-12):
  x = jnp.asarray(x, jnp.float32)
  return x / jnp.maximum(jnp.linalg.norm(x, axis=-1, keepdims=True), eps)


@functools.partial(jax.jit, static_argnames=("k", "num_classes"))
def knn_scores(train_features, train_labels, test_features, *, k: int, num_classes: int, temperature: float = 0.07):
  """Class scores (n_test, num_classes): Σ over the k nearest training examples of exp(cos / T) · onehot."""
  sim = l2_normalize(test_features) @ l2_normalize(train_features).T  # (n_test, n_train)
  top_sim, top_idx = jax.lax.top_k(sim, k)
  weights = jnp.exp(top_sim / temperature)
  onehot = jax.nn.one_hot(train_labels[top_idx], num_classes, dtype=jnp.float32)  # (n_test, k, classes)
  return jnp.einsum("nk,nkc->nc", weights, onehot)


def knn_accuracy(train_features, train_labels, test_features, test_labels, *, ks=(20, 200),
                 temperature: float = 0.07, num_classes: int | None = None, chunk: int = 1024) -> dict:
  """Top-1 accuracy of the weighted k-NN vote for each k in `ks` ({"knn_top1_k20": ...}).

  k is capped at the number of training examples. Test features are processed in chunks of
  `chunk` so the similarity matrix stays small.
  """
  train_labels = np.asarray(train_labels, np.int32)
  test_labels = np.asarray(test_labels, np.int32)
  num_classes = int(num_classes or max(train_labels.max(), test_labels.max()) + 1)
  out = {}
  for k in ks:
    kk = min(int(k), len(train_labels))
    correct = 0
    for start in range(0, len(test_labels), chunk):
      scores = knn_scores(train_features, train_labels, test_features[start:start + chunk], k=kk,
                          num_classes=num_classes, temperature=temperature)
      correct += int((np.asarray(scores).argmax(-1) == test_labels[start:start + chunk]).sum())
    out[f"knn_top1_k{k}"] = correct / len(test_labels)
  return out
