"""SimSiam (Chen & He 2021): each view's prediction against the stop-gradient projection of the other."""

from papers_jax.objectives import self_distill
from papers_jax.tasks.ssl.common import embedding_std, two_views


def loss(task, model, images, batch, rng):
  v1, v2, drop = two_views(task, images, rng)
  z1, z2 = model.embed(v1, train=True, rngs=drop), model.embed(v2, train=True, rngs=drop)
  p1, p2 = model.predictor(z1, train=True), model.predictor(z2, train=True)
  return self_distill.simsiam_loss(p1, p2, z1, z2).mean(), {"embedding_std": embedding_std(z1)}
