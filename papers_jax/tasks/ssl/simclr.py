"""SimCLR (Chen et al. 2020): NT-Xent between the two views' projections over the global batch."""

from papers_jax.objectives import contrastive
from papers_jax.tasks.ssl.common import embedding_std, two_views


def loss(task, model, images, batch, rng):
  v1, v2, drop = two_views(task, images, rng)
  z1, z2 = model.embed(v1, train=True, rngs=drop), model.embed(v2, train=True, rngs=drop)
  return contrastive.nt_xent(z1, z2, task.c.temperature).mean(), {"embedding_std": embedding_std(z1)}
