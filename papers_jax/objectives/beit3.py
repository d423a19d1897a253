"""BEiT-3's masked data modelling (Wang et al., 2023, §2.2) and its NLVR2 loss.

  block_mask        BEiT's block-wise masking of image patches (Bao et al., 2022, Algorithm 1), on the host:
                    rectangles of at least `min_patches` patches and aspect ratio in [min_aspect,
                    1/min_aspect], each adding no more patches than the budget left, until `count` patches
                    (40% in BEiT-3) are masked or ten tries in a row add none;
  masked_token_loss cross-entropy of the logits at the masked positions against their targets (visual
                    tokens for images, word pieces for texts), averaged over the masked positions of the
                    batch; returns the loss, the accuracy and the number of targets;
  nlvr_loss         2-way cross-entropy of the NLVR head's logits (true / false) per example.
Texts are masked by data/mlm.py's `mask_tokens` (15% of a text alone, 50% of a pair's text).
"""

import math

import jax.numpy as jnp
import numpy as np

from papers_jax.objectives.lm import token_cross_entropy


def block_mask(grid: tuple[int, int], count: int, rng: np.random.Generator, *, min_patches: int = 16,
               max_patches: int | None = None, min_aspect: float = 0.3) -> np.ndarray:
  """(h, w) bool mask with at most `count` True patches, grown by random rectangles (see the module docstring)."""
  h, w = grid
  mask = np.zeros((h, w), bool)
  max_patches = count if max_patches is None else max_patches
  log_aspect = (math.log(min_aspect), math.log(1 / min_aspect))
  masked = 0
  while masked < count:
    budget = min(count - masked, max_patches)
    delta = 0
    for _ in range(10):
      area = rng.uniform(min(min_patches, budget), budget)
      aspect = math.exp(rng.uniform(*log_aspect))
      bh, bw = int(round(math.sqrt(area * aspect))), int(round(math.sqrt(area / aspect)))
      if 0 < bh < h and 0 < bw < w:
        top, left = int(rng.integers(0, h - bh + 1)), int(rng.integers(0, w - bw + 1))
        new = bh * bw - int(mask[top:top + bh, left:left + bw].sum())
        if 0 < new <= budget:
          mask[top:top + bh, left:left + bw] = True
          delta = new
          break
    if delta == 0:
      break
    masked += delta
  return mask


def masked_token_loss(logits, targets, weights):
  """logits (B, P, V), targets (B, P) int, weights (B, P) 1 on masked positions → (mean loss over the
  masked positions, their accuracy, their count); float32."""
  weights = weights.astype(jnp.float32)
  losses = token_cross_entropy(logits, targets)
  count = jnp.maximum(weights.sum(), 1.0)
  correct = (jnp.argmax(logits, -1) == targets).astype(jnp.float32)
  return (losses * weights).sum() / count, (correct * weights).sum() / count, weights.sum()


def nlvr_loss(logits, labels):
  """(B, 2) logits, (B,) labels (1 = the statement is true) → (B,) cross-entropies."""
  return token_cross_entropy(logits, labels)
