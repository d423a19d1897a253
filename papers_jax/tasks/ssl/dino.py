"""DINO (Caron et al. 2021): self-distillation from an EMA teacher with centring and sharpening."""

import jax
import jax.numpy as jnp
from flax import nnx

from papers_jax.data import views
from papers_jax.objectives import self_distill
from papers_jax.tasks.ssl.common import encode_crops


def teacher_temperature(c, iteration):
  """The teacher's temperature: linear warm-up from `warmup_teacher_temperature` to `teacher_temperature`."""
  if not c.warmup_teacher_temperature_steps:
    return jnp.asarray(c.teacher_temperature, jnp.float32)
  progress = jnp.clip(jnp.asarray(iteration, jnp.float32) / c.warmup_teacher_temperature_steps, 0.0, 1.0)
  return c.warmup_teacher_temperature + progress * (c.teacher_temperature - c.warmup_teacher_temperature)


def loss(task, model, images, batch, rng):
  """DINO: the EMA teacher sees the 2 global crops, the student every crop; the teacher's
  outputs are centred and sharpened (a low temperature lowers their entropy)."""
  c = task.c
  k_views, k_drop = jax.random.split(rng)
  crops = [task._normalize(v) for v in views.make_views(images, k_views, task.recipes)]
  iteration = model.iteration[...]
  frozen = iteration < c.freeze_last_layer_steps
  student = encode_crops(model.backbone, lambda f: model.projector(f, train=True, freeze_last_layer=frozen),
                         crops, rngs=nnx.Rngs(dropout=k_drop))
  teacher = jax.lax.stop_gradient(
      encode_crops(model.target_backbone, lambda f: model.target_projector(f, train=True), crops[:2]))
  center, tau = model.center[...], teacher_temperature(c, iteration)
  loss = self_distill.dino_loss(student, teacher, center, student_temperature=c.temperature,
                                teacher_temperature=tau).mean()
  model.center[...] = self_distill.update_center(center, teacher, c.center_momentum)
  # Collapse monitor: CE(P_t, P_s) = H(P_t) + KL(P_t ‖ P_s), averaged over the same pairs.
  log_p = jax.nn.log_softmax((teacher.astype(jnp.float32) - center) / tau, axis=-1)
  entropy = -jnp.sum(jnp.exp(log_p) * log_p, axis=-1).mean()
  return loss, {"teacher_entropy": entropy, "teacher_student_kl": loss - entropy,
                "center_norm": jnp.linalg.norm(center), "teacher_temperature": tau}
