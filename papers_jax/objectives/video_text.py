"""Video-text matching losses: CLIP4Clip's symmetric InfoNCE and ActionCLIP's KL divergence to soft targets.

  symmetric_info_nce(logits)                  CLIP4Clip §3.3 (its `CrossEn` on the similarity matrix and its
                                              transpose): the mean of the video→text and text→video
                                              cross-entropies of an N×N logit matrix whose diagonal holds the
                                              positive pairs. Any logits: scaled cosines, or the tight
                                              calculator's scores.
  multi_positive_kl(logits, labels)           ActionCLIP §3.2: with label names as texts, several videos of a
                                              batch share a class, so every same-class entry is a positive.
                                              Targets: softmax(scale · [y_i = y_j]) per row (the reference's
                                              `gen_label` and `KLLoss`, scale 10: ≈ 1/m on each of the m
                                              positives); the loss is KL(target ‖ softmax(row)) summed over
                                              the matrix and divided by N (torch's KLDivLoss, mean over the
                                              N² entries, times N), averaged over the two directions.
Both take (N_video, N_text) logits and return float32 scalars; `valid` (N,) masks padded rows and
columns out (evaluation batches).
"""

import jax
import jax.numpy as jnp


def _masked(logits, valid):
  if valid is None:
    return logits.astype(jnp.float32), jnp.ones(logits.shape[0], bool)
  keep = (valid[None, :] & valid[:, None]) | jnp.eye(len(valid), dtype=bool)  # an invalid row keeps only itself
  return jnp.where(keep, logits.astype(jnp.float32), -jnp.inf), valid


def symmetric_info_nce(logits, valid=None):
  """Mean over valid pairs of ½ (−log softmax_row(i)[i] − log softmax_col(i)[i])."""
  logits, valid = _masked(logits, valid)
  diag = jnp.diagonal(logits)
  losses = 0.5 * (jax.nn.logsumexp(logits, axis=1) + jax.nn.logsumexp(logits, axis=0)) - diag
  return jnp.sum(jnp.where(valid, losses, 0.0)) / jnp.maximum(valid.sum(), 1)


def soft_targets(labels, scale: float = 10.0, valid=None):
  """Row-wise softmax(scale · [labels_i == labels_j]) over the valid columns."""
  same = (labels[:, None] == labels[None, :]).astype(jnp.float32) * scale
  if valid is not None:
    same = jnp.where(valid[None, :], same, -jnp.inf)
  return jax.nn.softmax(same, axis=1)


def _kl_rows(logits, targets):
  log_p = jax.nn.log_softmax(logits, axis=1)
  terms = jnp.where(targets > 0, targets * (jnp.log(jnp.where(targets > 0, targets, 1.0)) - log_p), 0.0)
  return terms.sum(axis=1)


def multi_positive_kl(logits, labels, *, scale: float = 10.0, valid=None):
  """½ (KL over rows of video→text + KL over rows of text→video), each summed and divided by N."""
  logits, valid = _masked(logits, valid)
  targets = soft_targets(labels, scale, valid)
  n = jnp.maximum(valid.sum(), 1)
  per_dir = [jnp.sum(jnp.where(valid, _kl_rows(l, targets), 0.0)) / n for l in (logits, logits.T)]
  return 0.5 * (per_dir[0] + per_dir[1])
