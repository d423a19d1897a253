"""BLIP's pre-training objectives (Li et al., 2022, §3.2, and the official `blip_pretrain.py`), float32.

  itc_loss        image-text contrastive loss with momentum distillation (ALBEF's): the online features
                  are compared with the momentum encoders' features of the (global) batch, and the
                  targets mix the momentum model's own similarity softmax (weight α = 0.4) with the
                  one-hot ground truth: targets = α·softmax(s_m / τ) + (1 − α)·I;
                  loss = ½ (CE(s_i2t / τ, targets_i2t) + CE(s_t2i / τ, targets_t2i)), soft cross-entropies;
  itm_negatives   hard negatives for image-text matching: for each text an image, and for each image a
                  text, drawn with probability ∝ softmax(similarity) + 1e-4 over the batch, never a
                  positive (its own pair, or a pair whose text is the same string);
  itm_loss        2-way cross-entropy over [positives; text with a negative image; image with a
                  negative text] (labels 1, 0, 0), mean;
  lm_loss         the decoder's next-token cross-entropy with label smoothing 0.1 (torch's
                  `CrossEntropyLoss(label_smoothing=ε)`: target (1 − ε)·one-hot + ε/V), averaged over
                  the real target tokens of the batch.
"""

import jax
import jax.numpy as jnp


def itc_loss(image_feat, text_feat, image_feat_m, text_feat_m, temp, alpha: float = 0.4):
  """Normalised features (B, E) (online and momentum) → (loss, sim_i2t, sim_t2i); sims are the online
  logits (B, B) = feat @ other_momentum_feat.T / temp."""
  sim_i2t = image_feat @ text_feat_m.T / temp
  sim_t2i = text_feat @ image_feat_m.T / temp
  eye = jnp.eye(image_feat.shape[0], dtype=jnp.float32)
  targets_i2t = alpha * jax.nn.softmax(image_feat_m @ text_feat_m.T / temp, axis=1) + (1 - alpha) * eye
  targets_t2i = alpha * jax.nn.softmax(text_feat_m @ image_feat_m.T / temp, axis=1) + (1 - alpha) * eye
  targets_i2t, targets_t2i = jax.lax.stop_gradient(targets_i2t), jax.lax.stop_gradient(targets_t2i)
  loss_i2t = -jnp.sum(jax.nn.log_softmax(sim_i2t, axis=1) * targets_i2t, axis=1).mean()
  loss_t2i = -jnp.sum(jax.nn.log_softmax(sim_t2i, axis=1) * targets_t2i, axis=1).mean()
  return (loss_i2t + loss_t2i) / 2, sim_i2t, sim_t2i


def negative_weights(sim, positive):
  """Sampling weights (B, B) of hard negatives: softmax(sim) + 1e-4 per row, 0 on the positives."""
  w = jax.nn.softmax(jax.lax.stop_gradient(sim).astype(jnp.float32), axis=1) + 1e-4
  return jnp.where(positive, 0.0, w)


def itm_negatives(key, sim_i2t, sim_t2i, positive):
  """(negative image index for each text (B,), negative text index for each image (B,)). `positive`
  (B, B) bool marks pairs that match (the diagonal and equal texts); a row with no negative (every
  text in the batch the same) falls back to the next example."""
  k_image, k_text = jax.random.split(key)
  b = sim_i2t.shape[0]
  fallback = (jnp.arange(b) + 1) % b

  def draw(k, w):
    idx = jax.random.categorical(k, jnp.log(jnp.maximum(w, 1e-30)), axis=1)
    return jnp.where(w.sum(1) > 0, idx, fallback)

  return (draw(k_image, negative_weights(sim_t2i, positive)),
          draw(k_text, negative_weights(sim_i2t, positive.T)))


def itm_loss(logits):
  """(3B, 2) logits of [positives; B negatives; B negatives] → (mean loss, labels (3B,))."""
  b = logits.shape[0] // 3
  labels = jnp.concatenate([jnp.ones((b,), jnp.int32), jnp.zeros((2 * b,), jnp.int32)])
  log_probs = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)
  return -jnp.take_along_axis(log_probs, labels[:, None], axis=1).mean(), labels


def smoothed_token_losses(logits, targets, smoothing: float = 0.1):
  """torch's label-smoothed cross-entropy per position: (..., V), (...) → (...)."""
  log_probs = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)
  nll = -jnp.take_along_axis(log_probs, targets[..., None], axis=-1)[..., 0]
  return (1.0 - smoothing) * nll - smoothing * log_probs.mean(-1)


def lm_loss(logits, input_ids, target_mask, smoothing: float = 0.1):
  """Decoder logits (B, T, V) on input_ids (B, T); the logits at t predict the token at t + 1, which counts
  where target_mask[:, t + 1] is 1. Returns (mean over counted targets, per-example sums (B,), counts (B,))."""
  losses = smoothed_token_losses(logits[:, :-1], input_ids[:, 1:], smoothing)
  weights = target_mask[:, 1:].astype(jnp.float32)
  sums, counts = (losses * weights).sum(1), weights.sum(1)
  return sums.sum() / jnp.maximum(counts.sum(), 1.0), sums, counts
