"""PointCLIP's few-shot loss: cross-entropy against DGCNN's smoothed labels (the reference's `smooth_loss`)."""

import jax
import jax.numpy as jnp


def smooth_cross_entropy(logits, labels, eps: float = 0.2):
  """Per-example −Σ_k q_k log softmax(logits)_k with q = 1 − eps on the label and eps / (K − 1) on each other
  class (DGCNN's smoothing: the eps is spread over the K − 1 wrong classes, not over all K)."""
  k = logits.shape[-1]
  one_hot = jax.nn.one_hot(labels, k, dtype=jnp.float32)
  target = one_hot * (1 - eps) + (1 - one_hot) * eps / (k - 1)
  return -(target * jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)).sum(-1)
