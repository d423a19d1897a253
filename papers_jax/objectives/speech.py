"""Self-supervised speech objectives: wav2vec 2.0's contrastive, diversity and feature-penalty terms, and
CPC's InfoNCE over future frames. Pure functions of arrays; numpy references in tests/test_wav2vec2.py and
tests/test_cpc.py.

wav2vec 2.0 (Baevski et al., 2020, §3.3). At a masked frame t with context prediction c_t (projected) and
quantised target q_t (projected), with K distractors q̃ drawn from other masked frames of the utterance:
  L_m = −log exp(sim(c_t, q_t)/κ) / Σ_{q̃ ∈ {q_t} ∪ Q_t} exp(sim(c_t, q̃)/κ),   sim = cosine, κ = 0.1.
A distractor identical to the target is excluded (its logit set to −∞), as fairseq and HF do.
  L_d = (GV − perplexity) / GV, the perplexity exp(H(p̄_g)) summed over the G codebooks of the
codeword distribution averaged over the masked frames of the batch;
the total is L_m + α·L_d (α = 0.1) + a feature penalty, the mean square of the feature encoder's output
(fairseq's weight 10).
"""

import jax
import jax.numpy as jnp


def cosine_similarity(a, b, eps: float = 1e-8):
  """torch.cosine_similarity over the last axis: a·b / max(‖a‖·‖b‖, eps)."""
  dot = jnp.sum(a * b, axis=-1)
  return dot / jnp.maximum(jnp.sqrt(jnp.sum(a * a, -1) * jnp.sum(b * b, -1)), eps)


def wav2vec2_contrastive_logits(predicted, targets, negative_indices, temperature: float = 0.1):
  """(B, T, 1 + K) logits sim(c_t, ·)/κ over [q_t, its K distractors]; distractors equal to q_t at −∞.
  `negative_indices` (B, T, K) index the flattened (B·T) frames (models/wav2vec2.sample_negatives)."""
  b, t, d = targets.shape
  predicted, targets = predicted.astype(jnp.float32), targets.astype(jnp.float32)
  negatives = targets.reshape(b * t, d)[negative_indices]  # (B, T, K, D)
  candidates = jnp.concatenate([targets[:, :, None], negatives], axis=2)
  logits = cosine_similarity(predicted[:, :, None], candidates) / temperature
  same = jnp.all(negatives == targets[:, :, None], axis=-1)
  return logits.at[..., 1:].set(jnp.where(same, -jnp.inf, logits[..., 1:]))


def wav2vec2_contrastive_loss(predicted, targets, negative_indices, mask, temperature: float = 0.1):
  """Σ over the masked frames of −log softmax(logits)[target] (HF's and fairseq's sum; divide by
  mask.sum() for the per-frame mean). (B, T, P) predicted / targets, (B, T) bool `mask`."""
  logits = wav2vec2_contrastive_logits(predicted, targets, negative_indices, temperature)
  losses = -jax.nn.log_softmax(logits, axis=-1)[..., 0]
  return jnp.sum(jnp.where(mask, losses, 0.0))


def wav2vec2_diversity_loss(perplexity, num_codevectors: int):
  """(GV − perplexity) / GV (per masked frame; HF's `diversity_loss` multiplies it by their number)."""
  return (num_codevectors - perplexity) / num_codevectors


def feature_penalty(conv_features, frame_mask=None):
  """Mean square of the feature encoder's output over the valid frames (fairseq's `features_pen`)."""
  sq = jnp.square(conv_features.astype(jnp.float32)).mean(-1)
  if frame_mask is None:
    return sq.mean()
  m = frame_mask.astype(jnp.float32)
  return (sq * m).sum() / jnp.maximum(m.sum(), 1.0)


# ----------------------------------------------------------------------------- CPC
def cpc_negative_indices(rng, frame_mask, num_offsets: int, num_negatives: int):
  """(K, B, T, N) frames drawn uniformly from the valid frames of the same sequence, for each offset k,
  sequence b and context position t (collisions with the positive are possible, as in the paper)."""
  b, t = frame_mask.shape
  lengths = jnp.maximum(frame_mask.sum(-1), 1)
  u = jax.random.uniform(rng, (num_offsets, b, t, num_negatives))
  return jnp.floor(u * lengths[None, :, None, None]).astype(jnp.int32)


def cpc_infonce(predictions, z, frame_mask=None, same_indices=None):
  """CPC's InfoNCE (van den Oord et al., 2018, eq. 4) averaged over the offsets k = 1…K.

  predictions (K, B, T, C): W_k c_t, the prediction of z_{t+k} from the context at t; z (B, T, C): the
  encoder's frames; frame_mask (B, T). For each k and each t with t + k valid, the score of a candidate z
  is f = zᵀ W_k c_t and the loss −log softmax at the positive z_{t+k} over the candidates: the frames at
  t + k of every valid sequence of the batch (negatives from other sequences; the positive among them) and,
  with `same_indices` (K, B, T, N; `cpc_negative_indices`), N frames of the same sequence. Returns the
  mean over every (k, b, t) with t + k valid.
  """
  k_max, b, t, _ = predictions.shape
  z = z.astype(jnp.float32)
  predictions = predictions.astype(jnp.float32)
  valid = jnp.ones((b, t), bool) if frame_mask is None else frame_mask
  total, count = 0.0, 0.0
  for k in range(1, k_max + 1):
    pred = predictions[k - 1, :, : t - k]  # (B, T−k, C) at the context positions t
    target = z[:, k:]  # (B, T−k, C): z_{t+k}
    ok = valid[:, k:]
    logits = jnp.einsum("btc,ntc->btn", pred, target)  # every sequence's z_{t+k}; the positive at n = b
    logits = jnp.where(ok.T[None], logits, -jnp.inf)  # padded frames are no candidates
    if same_indices is not None:
      idx = same_indices[k - 1, :, : t - k]  # (B, T−k, N)
      same = jnp.take_along_axis(z[:, None], idx[..., None], axis=2)  # (B, T−k, N, C)
      logits = jnp.concatenate([logits, jnp.einsum("btc,btnc->btn", pred, same)], axis=-1)
    positive = jnp.diagonal(logits[..., :b], axis1=0, axis2=2).T  # (B, T−k)
    losses = jax.nn.logsumexp(logits, axis=-1) - positive
    total = total + jnp.sum(jnp.where(ok, losses, 0.0))
    count = count + ok.sum()
  return total / jnp.maximum(count, 1.0)
