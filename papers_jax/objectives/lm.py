"""Language-model objectives: causal LM, masked LM, next-sentence prediction, the label-smoothed
cross-entropy of "Attention Is All You Need", and BERT's fine-tuning losses (sequence classification,
span extraction) with the best-span decoding that scores the latter. Each returns per-token (or per-example) losses and
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


def sequence_classification_loss(logits, labels):
  """BERT §4.1 (GLUE): softmax cross-entropy of the classifier on the pooled [CLS] output. logits (B, K),
  labels (B,) → (B,). HF's BertForSequenceClassification loss is its mean."""
  return token_cross_entropy(logits, labels)


def span_extraction_loss(start_logits, end_logits, start_positions, end_positions):
  """BERT §4.2 (SQuAD): P_i = softmax_i(S·T_i) for the start and softmax_i(E·T_i) for the end over the
  tokens; the loss is the mean of the two cross-entropies (B,), as the reference code and HF's
  BertForQuestionAnswering compute it (the paper writes their sum, which only doubles the scale).
  Logits (B, T), positions (B,) inclusive token indices."""
  return 0.5 * (token_cross_entropy(start_logits, start_positions) + token_cross_entropy(end_logits, end_positions))


def best_span(start_logits, end_logits, allowed, max_answer_len: int = 30):
  """The span (start, end) maximising start_logits[start] + end_logits[end] with start <= end,
  end - start < max_answer_len and both where `allowed` (B, T) is True (the context tokens), as
  SQuAD's prediction code chooses. Returns two int32 (B,) arrays."""
  t = start_logits.shape[-1]
  scores = start_logits[:, :, None].astype(jnp.float32) + end_logits[:, None, :].astype(jnp.float32)
  i, j = jnp.arange(t)[:, None], jnp.arange(t)[None, :]
  ok = (j >= i) & (j - i < max_answer_len) & allowed[:, :, None] & allowed[:, None, :]
  flat = jnp.argmax(jnp.where(ok, scores, -jnp.inf).reshape(scores.shape[0], -1), axis=-1)
  return (flat // t).astype(jnp.int32), (flat % t).astype(jnp.int32)


def span_f1(pred_start, pred_end, start, end):
  """SQuAD's F1 counted over token positions (SQuAD counts normalised words): the overlap of the
  predicted and true spans (inclusive) against their lengths, per example (B,)."""
  overlap = jnp.maximum(jnp.minimum(pred_end, end) - jnp.maximum(pred_start, start) + 1, 0).astype(jnp.float32)
  precision = overlap / (pred_end - pred_start + 1).astype(jnp.float32)
  recall = overlap / (end - start + 1).astype(jnp.float32)
  return jnp.where(overlap > 0, 2 * precision * recall / jnp.maximum(precision + recall, 1e-9), 0.0)
