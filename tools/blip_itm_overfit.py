"""Overfit BLIP's ITM alone on N fixed training scenes with easy negatives (docs/blip.md, "ITM"): each scene's
first caption with its own image (1) and with the previous scene's image (0), so neither input alone predicts the
label. Adam on the ITM loss only, from random weights (configs/blip/scenes_pretrain.py's model); prints the loss
and accuracy every 25 steps.

  PYTHONPATH=. python tools/blip_itm_overfit.py --pairs 32 --steps 150 --qk_std 0.02    # BERT's init everywhere
  PYTHONPATH=. python tools/blip_itm_overfit.py --pairs 32 --steps 150 --qk_std 0.125   # the scenes config's
"""

import argparse
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from papers_jax.core.config import load
from papers_jax.tasks.blip import BLIPTask
from papers_jax.tasks.classification import normalize_images


def main():
  parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--pairs", type=int, default=32)
  parser.add_argument("--steps", type=int, default=150)
  parser.add_argument("--lr", type=float, default=1e-3)
  parser.add_argument("--qk_std", type=float, default=0.125, help="the cross-attention query and key init std")
  args = parser.parse_args()
  config = load("configs/blip/scenes_pretrain.py").unlock()
  config.model.cross_attention_qk_std = args.qk_std
  task = BLIPTask(config.lock())
  source, preprocess = task.source("train"), task.preprocess(train=False)
  examples = [preprocess(source[i], np.random.default_rng(i)) for i in range(args.pairs)]
  batch = {k: jnp.asarray(np.stack([e[k] for e in examples])) for k in examples[0]}
  graphdef, params, rest = nnx.split(task.build_model(nnx.Rngs(0)), nnx.Param, ...)
  images = normalize_images(batch["image"], task.mean, task.std)
  ids = jnp.concatenate([batch["input_ids"]] * 2).at[:, 0].set(task.enc_id)
  mask = jnp.concatenate([batch["attention_mask"]] * 2)
  previous = jnp.roll(jnp.arange(args.pairs), 1)
  labels = jnp.concatenate([jnp.ones(args.pairs, jnp.int32), jnp.zeros(args.pairs, jnp.int32)])

  def loss_fn(params):
    model = nnx.merge(graphdef, params, rest)
    embeds = model.encode_image(images)
    logits = model.itm_logits(model.encode_multimodal(ids, mask, jnp.concatenate([embeds, embeds[previous]])))
    loss = -jnp.take_along_axis(jax.nn.log_softmax(logits, -1), labels[:, None], 1).mean()
    return loss, (jnp.argmax(logits, -1) == labels).mean()

  tx = optax.adam(args.lr)

  @jax.jit
  def step(params, opt_state):
    (loss, accuracy), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
    updates, opt_state = tx.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, loss, accuracy

  opt_state, start = tx.init(params), time.time()
  for i in range(args.steps + 1):  # the loss printed at step i is before the i-th update
    params, opt_state, loss, accuracy = step(params, opt_state)
    if i % 25 == 0:
      print(f"step {i}: ITM loss {float(loss):.4f} accuracy {float(accuracy):.3f} ({time.time() - start:.0f} s)",
            flush=True)


if __name__ == "__main__":
  main()
