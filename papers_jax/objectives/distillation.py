"""DeiT's distillation objectives (Touvron et al. 2021, §4): the student's class head learns from the
targets, its distillation head from a frozen teacher, mixed as
  (1 − α) · CE(class logits, targets) + α · D(distillation logits, teacher logits)
with D the teacher's hard decision (CE against argmax of the teacher, "hard distillation", α = ½ in the
paper) or the temperature-softened KL of Hinton et al. (τ² · KL(softmax(teacher/τ) ‖ softmax(student/τ)),
"soft distillation", α = λ = 0.1 and τ = 3 in the paper). A student without a distillation token passes its
class logits as both. Per-example losses, float32.

The official code divides the soft term's summed KL by the number of logits (batch × classes) rather than
by the batch, which scales it down by the number of classes; these functions follow the paper's equation
(a per-example KL, averaged over the batch by the caller).
"""

import jax
import jax.numpy as jnp

from papers_jax.objectives.classification import softmax_cross_entropy

KINDS = ("hard", "soft")


def hard_distillation(cls_logits, dist_logits, targets, teacher_logits, *, alpha: float = 0.5):
  """(1 − α) CE(cls, targets) + α CE(dist, one-hot argmax teacher)."""
  teacher_labels = jax.nn.one_hot(jnp.argmax(teacher_logits, axis=-1), teacher_logits.shape[-1])
  return ((1.0 - alpha) * softmax_cross_entropy(cls_logits, targets)
          + alpha * softmax_cross_entropy(dist_logits, teacher_labels))


def soft_distillation(cls_logits, dist_logits, targets, teacher_logits, *, alpha: float = 0.1, tau: float = 3.0):
  """(1 − α) CE(cls, targets) + α τ² KL(softmax(teacher/τ) ‖ softmax(dist/τ))."""
  log_teacher = jax.nn.log_softmax(teacher_logits.astype(jnp.float32) / tau, axis=-1)
  log_student = jax.nn.log_softmax(dist_logits.astype(jnp.float32) / tau, axis=-1)
  kl = (jnp.exp(log_teacher) * (log_teacher - log_student)).sum(-1)
  return (1.0 - alpha) * softmax_cross_entropy(cls_logits, targets) + alpha * tau ** 2 * kl


def distillation_loss(kind: str, cls_logits, dist_logits, targets, teacher_logits, *, alpha: float, tau: float):
  if kind == "hard":
    return hard_distillation(cls_logits, dist_logits, targets, teacher_logits, alpha=alpha)
  if kind == "soft":
    return soft_distillation(cls_logits, dist_logits, targets, teacher_logits, alpha=alpha, tau=tau)
  raise ValueError(f"unknown distillation {kind!r}; choose from {KINDS}")
