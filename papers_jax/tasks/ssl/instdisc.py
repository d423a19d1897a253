"""InstDisc (Wu et al. 2018): every image its own class, NCE against a memory bank of 128-d features."""

import jax
import jax.numpy as jnp
from flax import nnx

from papers_jax.data import views
from papers_jax.objectives import contrastive, memory
from papers_jax.tasks.ssl.common import nce_normalizer


def loss(task, model, images, batch, rng):
  """InstDisc: NCE of each example's feature against its own bank row and m uniform draws."""
  c = task.c
  k_views, k_drop, k_neg = jax.random.split(rng, 3)
  (view,) = views.make_views(images, k_views, task.recipes)
  z = contrastive.l2_normalize(model.embed(task._normalize(view), train=True, rngs=nnx.Rngs(dropout=k_drop)))
  index, bank = batch["index"], model.bank[...]
  negatives = jax.random.randint(k_neg, (z.shape[0], c.nce_negatives), 0, task.num_data)
  positive, negative = contrastive.bank_logits(z, bank, index, negatives)
  normalizer = nce_normalizer(task, model, 0, lambda: (positive, negative))
  loss = contrastive.nce_loss(positive, negative, temperature=c.temperature, num_data=task.num_data,
                              normalizer=normalizer).mean()
  model.nce_normalizer[...] = normalizer[None]
  model.bank[...] = memory.update_bank(bank, index, z, c.bank_momentum)
  return loss, {"embedding_std": jnp.std(z, axis=0).mean(), "nce_normalizer": normalizer,
                "positive_prob": jnp.mean(jnp.exp(positive / c.temperature) / normalizer)}
