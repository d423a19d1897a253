"""The ViT paper's self-supervised masked patch prediction (Dosovitskiy et al. 2021, §4.6 and Appendix B.1.2):
corrupt half of the patch embeddings and predict each corrupted patch's mean colour, quantised to 3 bits
per channel (512 classes for RGB, 8 for one channel). Float32.
"""

import jax
import jax.numpy as jnp

from papers_jax.objectives.reconstruction import patchify


def mean_colour_classes(images01: jax.Array, patch_size, bits: int = 3) -> jax.Array:
  """(B, H, W, C) images in [0, 1] → (B, N) int32: each patch's mean colour, each channel cut into 2^bits
  equal bins, the bins read as the digits of one number (channel 0 most significant)."""
  c = images01.shape[-1]
  levels = 2 ** bits
  means = patchify(images01.astype(jnp.float32), patch_size).reshape(images01.shape[0], -1, _area(patch_size), c)
  digits = jnp.clip(jnp.floor(means.mean(axis=2) * levels), 0, levels - 1).astype(jnp.int32)
  weights = levels ** jnp.arange(c - 1, -1, -1)
  return (digits * weights).sum(-1)


def _area(patch_size) -> int:
  ph, pw = (patch_size, patch_size) if isinstance(patch_size, int) else patch_size
  return ph * pw


def corruption(key, batch: int, num_patches: int, *, ratio: float = 0.5, mask_prob: float = 0.8,
               random_prob: float = 0.1):
  """(corrupted, replace by the mask token, replace by another patch, that patch's index), each (B, N):
  round(ratio · N) patches per example are corrupted; of those, `mask_prob` take the [mask] embedding,
  `random_prob` the embedding of another patch of the same image, the rest stay as they are."""
  k_pick, k_kind, k_other = jax.random.split(key, 3)
  ranks = jnp.argsort(jnp.argsort(jax.random.uniform(k_pick, (batch, num_patches)), axis=1), axis=1)
  corrupted = ranks < int(round(ratio * num_patches))
  u = jax.random.uniform(k_kind, (batch, num_patches))
  to_mask = corrupted & (u < mask_prob)
  to_other = corrupted & (u >= mask_prob) & (u < mask_prob + random_prob)
  # Another patch: a uniform offset in [1, N) from this one, so never the patch itself.
  offset = jax.random.randint(k_other, (batch, num_patches), 1, max(num_patches, 2))
  other = (jnp.arange(num_patches)[None, :] + offset) % num_patches
  return corrupted, to_mask, to_other, other


def masked_patch_loss(logits: jax.Array, classes: jax.Array, corrupted: jax.Array) -> jax.Array:
  """Per-example mean cross-entropy over the corrupted patches: logits (B, N, K), classes (B, N) int."""
  logp = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)
  nll = -jnp.take_along_axis(logp, classes[..., None], axis=-1)[..., 0]
  weight = corrupted.astype(jnp.float32)
  return (nll * weight).sum(-1) / jnp.maximum(weight.sum(-1), 1.0)
