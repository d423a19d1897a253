"""CMC (Tian, Krishnan, Isola 2020): contrastive multiview coding between two encoders' views."""

import jax
import jax.numpy as jnp
from flax import nnx

from papers_jax.objectives import contrastive, memory
from papers_jax.tasks.ssl.common import nce_normalizer


def loss(task, model, images, batch, rng):
  """CMC: each view's features against the other view's bank (NCE), both banks updated."""
  c = task.c
  k_views, k_drop, k_neg = jax.random.split(rng, 3)
  x1, x2 = task._cmc_views(images, k_views)
  drop = nnx.Rngs(dropout=k_drop)
  z1 = contrastive.l2_normalize(model.projector(model.backbone(x1, train=True, rngs=drop), train=True))
  z2 = contrastive.l2_normalize(model.projector2(model.backbone2(x2, train=True, rngs=drop), train=True))
  index, bank1, bank2 = batch["index"], model.bank[...], model.bank2[...]
  negatives = jax.random.randint(k_neg, (z1.shape[0], c.nce_negatives), 0, task.num_data)
  normalizers = (nce_normalizer(task, model, 0, lambda: contrastive.bank_logits(z1, bank2, index, negatives)),
                 nce_normalizer(task, model, 1, lambda: contrastive.bank_logits(z2, bank1, index, negatives)))
  loss = contrastive.cmc_nce_loss(z1, z2, bank1, bank2, index, negatives, temperature=c.temperature,
                                  num_data=task.num_data, normalizers=normalizers).mean()
  model.nce_normalizer[...] = jnp.stack(normalizers)
  model.bank[...] = memory.update_bank(bank1, index, z1, c.bank_momentum)
  model.bank2[...] = memory.update_bank(bank2, index, z2, c.bank_momentum)
  return loss, {"embedding_std": jnp.std(z1, axis=0).mean(), "nce_normalizer": normalizers[0]}
