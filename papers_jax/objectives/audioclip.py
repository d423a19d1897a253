"""AudioCLIP's loss (Guzhov et al., 2022): the three pairwise contrastive losses of audio, image and text.

For each pair of modalities present (audio-image, audio-text, image-text) the logits are its temperature times
the cosine similarities of the batch's embeddings, and the pair's loss is the cross-entropy of the matching
example summed over both directions, CE(logits, diag) + CE(logitsᵀ, diag), each a batch mean. The total, as
the official code computes it (model/audioclip.py `loss_fn`), divides their sum by n! for n pairs present:
with all three pairs, the mean of the six cross-entropies. In-batch duplicates of a class are negatives,
as there.
"""

import math

import jax.numpy as jnp

from papers_jax.objectives.contrastive import clip_loss

PAIRS = ("audio_image", "audio_text", "image_text")


def audioclip_loss(audio, image, text, scales, pairs=PAIRS):
  """(total loss, {pair: its CE + CEᵀ}) for embeddings (B, D) each (None where absent) and the pairs' temperatures
  `scales` = (audio-image, audio-text, image-text). `pairs` picks the terms (an ablation drops one)."""
  embeddings = {"audio": audio, "image": image, "text": text}
  terms = {}
  for pair, scale in zip(PAIRS, scales):
    a, b = pair.split("_")
    if pair in pairs and embeddings[a] is not None and embeddings[b] is not None:
      terms[pair] = 2.0 * clip_loss(embeddings[a], embeddings[b], scale)  # clip_loss is the two directions' mean
  if not terms:
    raise ValueError(f"audioclip_loss: no pair of {pairs} has both embeddings")
  return sum(terms.values()) / math.factorial(len(terms)), terms


def zero_shot_logits(audio, class_text):
  """Cosine similarities (B, K) of audio embeddings with the classes' (normalised) text embeddings."""
  a = audio / jnp.linalg.norm(audio, axis=-1, keepdims=True)
  return a @ class_text.T
