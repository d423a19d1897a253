"""DepthCLIP (Zhang et al., 2022, "Can Language Understand Depth?"): zero-shot monocular depth from a CLIP.

No depth network and no depth labels: each image patch's CLIP feature is compared with the texts of
K depth words ("this object is giant / extremely close / close / not in distance / a little remote / far /
unseen"), each standing for a bin depth d_k (the paper's [1.00, 1.50, 2.00, 2.25, 2.50, 2.75, 3.00]);
the patch's depth is the softmax-weighted sum of the bin depths,
    depth = Σ_k softmax_k(100 · cos(f, t_k) / τ) · d_k,   τ = 0.1 (the paper's temperature),
and the patch map is bilinearly resized to the image.

Dense features: the paper reads CLIP RN50's attention pool at every position (its value and output
projections applied to each spatial token). With a ViT tower the counterpart used here is every patch
token after the final LayerNorm, through the image projection (`patch_features`).
"""

import jax
import jax.numpy as jnp

from papers_jax.models.pointclip import l2_normalize  # noqa: F401  (used by tasks/depthclip.py too)


def patch_features(clip, images):
  """Normalised images (B, H, W, C) → (B, h, w, D) patch features in the joint space (ViT towers)."""
  if clip.vision != "vit":
    raise ValueError("patch_features reads a ViT image tower's patch tokens")
  tokens = clip.visual.forward_features(images, deterministic=True)[:, clip.visual.num_prefix_tokens:]
  b, n, _ = tokens.shape
  side = int(round(n ** 0.5))
  return clip.visual_projection(tokens).astype(jnp.float32).reshape(b, side, side, -1)


def depth_readout(features, text, bins, temperature: float = 0.1):
  """(..., D) patch features, (K, D) depth-word text features, (K,) bin depths → (...) depth."""
  logits = 100.0 * l2_normalize(features) @ l2_normalize(text).T / temperature
  return jax.nn.softmax(logits, axis=-1) @ jnp.asarray(bins, jnp.float32)


def dense_depth(clip, images, text, bins, temperature: float = 0.1):
  """Normalised images (B, H, W, C) → (B, H, W) depth: the patch readout bilinearly resized to the image."""
  patch = depth_readout(patch_features(clip, images), text, bins, temperature)
  b, h, w = images.shape[:3]
  return jax.image.resize(patch, (b, h, w), "bilinear")
