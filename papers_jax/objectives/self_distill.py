"""Objectives without explicit negatives: BYOL, SimSiam, SwAV's swapped prediction, DINO.

Pure functions of global arrays (sums over the batch span every device under `jax.jit`); targets
are stop-gradiented inside, so a caller cannot forget it. Computed in float32.
"""

import jax
import jax.numpy as jnp

from papers_jax.objectives.contrastive import l2_normalize


def normalized_mse(p, z):
  """‖p̄ − z̄‖² = 2 − 2·cos(p, z) per row (BYOL's regression loss)."""
  return 2.0 - 2.0 * jnp.sum(l2_normalize(p) * l2_normalize(z), axis=-1)


def byol_loss(p1, p2, z1_target, z2_target):
  """BYOL (Grill et al. 2020): each view's online prediction regresses the other view's target
  projection, L2-normalised; the two directions are summed. Returns per-example losses (N,)."""
  z1_target, z2_target = jax.lax.stop_gradient(z1_target), jax.lax.stop_gradient(z2_target)
  return normalized_mse(p1, z2_target) + normalized_mse(p2, z1_target)


def negative_cosine(p, z):
  return -jnp.sum(l2_normalize(p) * l2_normalize(jax.lax.stop_gradient(z)), axis=-1)


def simsiam_loss(p1, p2, z1, z2):
  """SimSiam (Chen & He 2021): ½·D(p₁, sg(z₂)) + ½·D(p₂, sg(z₁)), D the negative cosine. (N,)."""
  return 0.5 * negative_cosine(p1, z2) + 0.5 * negative_cosine(p2, z1)


def sinkhorn(scores, *, epsilon: float = 0.05, iterations: int = 3):
  """SwAV's Sinkhorn-Knopp codes: soft assignments of B examples to K prototypes whose
  prototypes are used equally. scores: (B, K) (over the global batch); returns (B, K) rows
  summing to 1, without gradient."""
  q = jnp.exp(jax.lax.stop_gradient(scores).astype(jnp.float32) / epsilon).T  # (K, B)
  k, b = q.shape
  q = q / jnp.sum(q)
  for _ in range(iterations):
    q = q / jnp.sum(q, axis=1, keepdims=True) / k
    q = q / jnp.sum(q, axis=0, keepdims=True) / b
  return (q * b).T


def swav_loss(scores, *, temperature: float = 0.1, epsilon: float = 0.05, iterations: int = 3,
              crops_for_assign=(0, 1), queue_scores=None):
  """SwAV (Caron et al. 2020): swapped prediction over multi-crop views.

  scores: (V, B, K) prototype scores of normalised embeddings for every crop (global crops first).
  For each crop in `crops_for_assign` its codes (Sinkhorn, optionally with the queued scores
  (len(crops_for_assign), Q, K) prepended) are predicted from every other crop's softmax(score/τ).
  Returns per-example losses (B,), averaged over the prediction terms as the reference does.
  """
  num_views, batch = scores.shape[0], scores.shape[1]
  total = 0.0
  for i, crop in enumerate(crops_for_assign):
    assign = scores[crop]
    if queue_scores is not None:
      assign = jnp.concatenate([queue_scores[i], assign], axis=0)
    codes = sinkhorn(assign, epsilon=epsilon, iterations=iterations)[-batch:]
    sub = 0.0
    for v in range(num_views):
      if v != crop:
        sub = sub - jnp.sum(codes * jax.nn.log_softmax(scores[v].astype(jnp.float32) / temperature, axis=-1), axis=-1)
    total = total + sub / (num_views - 1)
  return total / len(crops_for_assign)


def dino_loss(student, teacher, center, *, student_temperature: float = 0.1, teacher_temperature: float = 0.04):
  """DINO (Caron et al. 2021): cross-entropy from the centred, sharpened teacher distribution
  on each global crop to the student's distribution on every other crop.

  student: (V, B, K) outputs for all crops (the 2 global crops first); teacher: (2, B, K) for the
  global crops; center: (K,). A low teacher temperature *sharpens* (lowers the entropy of) the
  targets; centring keeps one dimension from dominating. Returns per-example losses (B,).
  """
  targets = jax.nn.softmax((jax.lax.stop_gradient(teacher).astype(jnp.float32) - center) / teacher_temperature, axis=-1)
  log_student = jax.nn.log_softmax(student.astype(jnp.float32) / student_temperature, axis=-1)
  total, terms = 0.0, 0
  for t in range(targets.shape[0]):
    for v in range(log_student.shape[0]):
      if v != t:
        total = total - jnp.sum(targets[t] * log_student[v], axis=-1)
        terms += 1
  return total / terms


def update_center(center, teacher, momentum: float = 0.9):
  """DINO's centre: an EMA of the teacher outputs' mean over the global batch (and both crops)."""
  batch_mean = jnp.mean(jax.lax.stop_gradient(teacher).astype(jnp.float32).reshape(-1, teacher.shape[-1]), axis=0)
  return center * momentum + batch_mean * (1.0 - momentum)
