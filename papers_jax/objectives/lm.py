"""Language-model objectives: causal LM, masked LM, next-sentence prediction and the label-smoothed
cross-entropy of "Attention Is All You Need". Each returns per-token (or per-example) losses and
takes a weight/mask so that padding never counts; reduce with `weighted_mean`. float32 throughout.
"""

import jax
import jax.numpy as jnp


def weighted_mean(losses, weights):
  weights = weights.astype(jnp.float32)
  return jnp.sum(losses * weights) / jnp.maximum(jnp.sum(weights), 1.0)


def token_cross_entropy(logits, targets):
  """−log softmax(logits)[target] for every position: (..., V), (...) → (...)."""
  log_probs = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)
  return -jnp.take_along_axis(log_probs, targets[..., None], axis=-1)[..., 0]


def causal_lm_loss(logits, tokens, mask):
  """Next-token prediction: logits at t predict tokens at t+1. logits (B, T, V), tokens and mask
  (B, T) with mask 0 on padding. Returns (losses (B, T−1), weights (B, T−1)); a target counts only
  when it is a real token (the input before it then is one too)."""
  return token_cross_entropy(logits[:, :-1], tokens[:, 1:]), mask[:, 1:].astype(jnp.float32)


def masked_lm_loss(logits, labels, weights):
  """BERT's MLM: cross-entropy at the masked positions only. logits (B, P, V) gathered at the P
  prediction positions (or (B, T, V) over every position), labels the original tokens, weights 1
  where a position was selected for prediction. Returns (losses, weights)."""
  return token_cross_entropy(logits, labels), weights.astype(jnp.float32)


def next_sentence_loss(logits, is_random_next):
  """BERT's NSP: 2-way classification, class 0 = "B follows A", class 1 = "B is random". (B,)."""
  return token_cross_entropy(logits, is_random_next.astype(jnp.int32))


def label_smoothed_cross_entropy(logits, targets, smoothing: float = 0.1):
  """Vaswani et al. (2017), §5.4: the target distribution puts 1 − ε on the true class and spreads
  ε over the other V − 1 classes (the true class gets 0.9 for ε = 0.1). Per-position losses (...).
  The constant entropy of that target is not subtracted: the minimum is −H(target), not 0."""
  v = logits.shape[-1]
  log_probs = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)
  true = jnp.take_along_axis(log_probs, targets[..., None], axis=-1)[..., 0]
  others = jnp.sum(log_probs, axis=-1) - true
  return -((1.0 - smoothing) * true + smoothing / (v - 1) * others)
