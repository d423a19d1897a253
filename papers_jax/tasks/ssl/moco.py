"""MoCo v1/v2 (He et al. 2020; Chen et al. 2020): InfoNCE of view 1's queries against the key of
view 2 and a queue of earlier keys, with shuffle-BN; MoCo v3 (Chen, Xie, He 2021): symmetric in-batch
InfoNCE with a predictor."""

import jax

from papers_jax.models import resnet
from papers_jax.objectives import contrastive, memory
from papers_jax.tasks.ssl.common import embedding_std, two_views


def shuffle_key(rng):
  """The key of MoCo's shuffle-BN permutation, derived from the step's rng."""
  return jax.random.fold_in(rng, 1)


def shuffled_keys(model, images, key):
  """MoCo v1/v2's keys with shuffle-BN: the key encoder sees the global batch in a random order,
  so each BatchNorm group (`ssl.bn_group_size`: one GPU's 32 images in the paper) holds other
  groups' images than the query encoder's, then the keys are put back in the batch's order. Without
  it, a query and its key share their group's statistics, a cue the model can use to find the
  positive (the paper's Sec. 3.3)."""
  shuffled, perm = resnet.shuffle_batch(images, key)
  return resnet.unshuffle_batch(model.embed_target(shuffled), perm)


def queue_loss(task, model, images, batch, rng):
  """MoCo v1/v2: one direction, queries of view 1 and keys of view 2 (no online pass on view 2);
  the keys then enter the queue."""
  c = task.c
  v1, v2, drop = two_views(task, images, rng)
  q = model.embed(v1, train=True, rngs=drop)
  k = shuffled_keys(model, v2, shuffle_key(rng))
  loss = contrastive.info_nce(q, k, model.queue[...], c.temperature).mean()
  model.queue[...], model.queue_pointer[...] = memory.enqueue(
      model.queue[...], model.queue_pointer[...], contrastive.l2_normalize(k))
  return loss, {"embedding_std": embedding_std(q)}


def v3_loss(task, model, images, batch, rng):
  """MoCo v3: each view's prediction against the momentum encoder's projection of the other."""
  v1, v2, drop = two_views(task, images, rng)
  z1, z2 = model.embed(v1, train=True, rngs=drop), model.embed(v2, train=True, rngs=drop)
  q1, q2 = model.predictor(z1, train=True), model.predictor(z2, train=True)
  loss = contrastive.moco_v3_loss(q1, q2, model.embed_target(v1), model.embed_target(v2), task.c.temperature)
  return loss.mean(), {"embedding_std": embedding_std(z1)}
