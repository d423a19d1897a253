"""SwAV (Caron et al. 2020): swapped prediction of Sinkhorn codes over prototypes, multi-crop."""

import jax
import jax.numpy as jnp
from flax import nnx

from papers_jax.data import views
from papers_jax.objectives import contrastive, self_distill
from papers_jax.tasks.ssl.common import encode_crops


def loss(task, model, images, batch, rng):
  """SwAV: codes of the two global crops (Sinkhorn over the global batch, with the queue once it
  is full) predicted from every other crop's softmax over the prototypes."""
  c = task.c
  k_views, k_drop = jax.random.split(rng)
  crops = [task._normalize(v) for v in views.make_views(images, k_views, task.recipes)]
  frozen = model.iteration[...] < c.freeze_last_layer_steps
  z = encode_crops(model.backbone, lambda f: contrastive.l2_normalize(model.projector(f, train=True)), crops,
                   rngs=nnx.Rngs(dropout=k_drop))  # (V, B, D), unit rows
  prototypes = model.prototypes.weight(frozen)  # (D, K), unit columns
  scores = z @ prototypes
  kwargs = dict(temperature=c.temperature, epsilon=c.sinkhorn_epsilon, iterations=c.sinkhorn_iterations,
                crops_for_assign=(0, 1))
  metrics = {"embedding_std": jnp.std(z[0], axis=0).mean()}
  if model.swav_queue is None:
    loss = self_distill.swav_loss(scores, **kwargs).mean()
  else:
    queue = model.swav_queue[...]
    full = jnp.all(jnp.any(queue[:, -1] != 0, axis=-1))  # the reference uses it once its last row is filled
    queue_scores = queue @ jax.lax.stop_gradient(prototypes)
    loss = jax.lax.cond(full, lambda: self_distill.swav_loss(scores, queue_scores=queue_scores, **kwargs).mean(),
                        lambda: self_distill.swav_loss(scores, **kwargs).mean())
    shifted = jnp.concatenate([jax.lax.stop_gradient(z[:2]), queue], axis=1)[:, :queue.shape[1]]
    model.swav_queue[...] = jnp.where(model.iteration[...] >= c.queue_start_steps, shifted, queue)
    metrics["queue_in_use"] = full.astype(jnp.float32)
  return loss, metrics
