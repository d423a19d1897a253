"""ALBEF's pre-training objectives (Li et al., 2021, §3.2-3.3 and the official models/model_pretrain.py), float32.

  itc_loss              image-text contrastive loss with queues and momentum distillation: each image
                        against [the batch's momentum text features; the text queue] and each text against
                        [the batch's momentum image features; the image queue], similarities / τ; the targets
                        are α · softmax(momentum similarities) + (1 − α) · one-hot (the own pair); the loss is
                        the mean of the two directions' soft cross-entropies (Eq. 1-2 and §3.3's L_itc^mod);
  hard_negative_logits  the in-batch ITM sampling distribution: log-weights ∝ the ITC similarity (the
                        official softmax(sim[:, :B]) with its diagonal zeroed: the own pair is never drawn;
                        optionally other matching pairs left out too);
  sample_hard_negatives one negative text per image and one negative image per text, drawn from those, never a
                        caption equal to the positive's when the task passes `same_text`;
  itm_loss              2-way cross-entropy over the B positive and 2B negative fused pairs;
  mlm_distill_loss      masked LM with the momentum model's soft targets: (1 − α) · CE(labels) +
                        α · CE(softmax(momentum logits)), averaged over the masked tokens.
Every function takes global arrays: under jit with batch-sharded inputs the ITC matrices and the hard
negatives span the whole global batch (as CLIP's loss here; the official code gathers only the queue).
"""

import jax
import jax.numpy as jnp

from papers_jax.objectives.lm import token_cross_entropy


def soft_cross_entropy(logits, targets):
  """−Σ targets · log_softmax(logits) over the last axis."""
  return -jnp.sum(targets * jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1), axis=-1)


def distill_targets(momentum_logits, alpha):
  """α · softmax(momentum logits) + (1 − α) · one-hot(row index), the ITC pseudo-targets (B, B + K)."""
  b, n = momentum_logits.shape
  hard = jnp.eye(b, n, dtype=jnp.float32)
  return jax.lax.stop_gradient(alpha * jax.nn.softmax(momentum_logits.astype(jnp.float32), axis=-1)
                               + (1.0 - alpha) * hard)


def itc_loss(image_feat, text_feat, image_feat_m, text_feat_m, image_queue, text_queue, temperature, alpha):
  """L2-normalised features: online (B, E), momentum (B, E), queues (K, E) (K may be 0).
  Returns (loss, sim_i2t (B, B + K), sim_t2i (B, B + K)); columns :B are the batch's momentum features."""
  image_feat_m, text_feat_m = jax.lax.stop_gradient(image_feat_m), jax.lax.stop_gradient(text_feat_m)
  text_all = jnp.concatenate([text_feat_m, jax.lax.stop_gradient(text_queue)], axis=0).astype(jnp.float32)
  image_all = jnp.concatenate([image_feat_m, jax.lax.stop_gradient(image_queue)], axis=0).astype(jnp.float32)
  sim_i2t = image_feat.astype(jnp.float32) @ text_all.T / temperature
  sim_t2i = text_feat.astype(jnp.float32) @ image_all.T / temperature
  t = jax.lax.stop_gradient(temperature)
  targets_i2t = distill_targets(image_feat_m @ text_all.T / t, alpha)
  targets_t2i = distill_targets(text_feat_m @ image_all.T / t, alpha)
  loss = 0.5 * (soft_cross_entropy(sim_i2t, targets_i2t).mean() + soft_cross_entropy(sim_t2i, targets_t2i).mean())
  return loss, sim_i2t, sim_t2i


def hard_negative_logits(sim, positive=None):
  """(B, B) in-batch similarities → log-weights of the negative draw: the row's softmax less its
  diagonal, renormalised, which is the softmax of the row with the diagonal at −inf. `positive` (B, B)
  bool also leaves out other pairs that match (equal captions, see `sample_hard_negatives`)."""
  b = sim.shape[0]
  excluded = jnp.eye(b, dtype=bool) if positive is None else positive | jnp.eye(b, dtype=bool)
  return jnp.where(excluded, -jnp.inf, jax.lax.stop_gradient(sim[:, :b]).astype(jnp.float32))


def sample_hard_negatives(key, sim_i2t, sim_t2i, same_text=None):
  """(negative text index per image (B,), negative image index per text (B,)), each drawn with
  probability ∝ exp(similarity) among the other examples of the batch. `same_text` (B, B) bool marks the
  pairs of examples with equal captions: a caption of another example that equals the image's own is a
  true match, not a negative, so those are never drawn (a departure: the official code leaves out only the
  pair itself). A row with nothing left to draw takes the next example."""
  k_text, k_image = jax.random.split(key)
  b = sim_i2t.shape[0]
  fallback = (jnp.arange(b) + 1) % b

  def draw(k, logits):
    index = jax.random.categorical(k, logits, axis=-1)
    return jnp.where(jnp.isfinite(logits).any(-1), index, fallback)

  return (draw(k_text, hard_negative_logits(sim_i2t, same_text)),
          draw(k_image, hard_negative_logits(sim_t2i, same_text)))


def itm_labels(batch: int):
  """The official order: B positives (1), then B (text, negative image) and B (negative text, image) pairs (0)."""
  return jnp.concatenate([jnp.ones((batch,), jnp.int32), jnp.zeros((2 * batch,), jnp.int32)])


def itm_loss(logits, labels):
  """(N, 2) logits, (N,) labels → the mean cross-entropy."""
  return token_cross_entropy(logits, labels).mean()


def mlm_distill_loss(logits, labels, weights, momentum_logits, alpha):
  """(B, P, V) logits at the masked positions, (B, P) labels and weights (1 = a masked token),
  (B, P, V) momentum logits: the weighted mean of (1 − α) · CE + α · soft CE."""
  hard = token_cross_entropy(logits, labels)
  soft = soft_cross_entropy(logits, jax.lax.stop_gradient(jax.nn.softmax(momentum_logits.astype(jnp.float32), -1)))
  per_token = (1.0 - alpha) * hard + alpha * soft
  return jnp.sum(per_token * weights) / jnp.maximum(jnp.sum(weights), 1.0)


def distill_alpha(step, alpha: float, warmup_steps: int):
  """The official warm-up: α · min(1, step / warmup_steps) (over the first epoch), then α."""
  if warmup_steps <= 0:
    return jnp.asarray(alpha, jnp.float32)
  return alpha * jnp.minimum(1.0, jnp.asarray(step, jnp.float32) / warmup_steps)
