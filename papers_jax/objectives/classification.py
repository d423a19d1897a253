"""Classification losses and metrics (all computed in float32)."""

import jax
import jax.numpy as jnp


def smooth_labels(labels: jax.Array, num_classes: int, smoothing: float = 0.0) -> jax.Array:
  """One-hot targets with label smoothing: the true class gets 1 - s + s/K, every other class s/K."""
  onehot = jax.nn.one_hot(labels, num_classes, dtype=jnp.float32)
  return onehot * (1.0 - smoothing) + smoothing / num_classes


def softmax_cross_entropy(logits: jax.Array, targets: jax.Array) -> jax.Array:
  """Per-example cross-entropy between logits (..., K) and target distributions (..., K)."""
  logp = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)
  return -(targets * logp).sum(-1)


def sigmoid_cross_entropy(logits: jax.Array, targets: jax.Array) -> jax.Array:
  """Per-example binary cross-entropy summed over classes (the ViT paper's upstream loss)."""
  logits = logits.astype(jnp.float32)
  return -(targets * jax.nn.log_sigmoid(logits) + (1 - targets) * jax.nn.log_sigmoid(-logits)).sum(-1)


def correct_top_k(logits: jax.Array, labels: jax.Array, k: int = 1) -> jax.Array:
  """1.0 where the label is among the k highest logits."""
  top = jax.lax.top_k(logits, k)[1]
  return (top == labels[..., None]).any(-1).astype(jnp.float32)
