"""Does ViLT's output depend on the image, and can its ITM head learn? (docs/vision_language.md)

On N training scenes (each with its first caption), prints:
  - how much swapping the images within the batch (scene i gets scene i + 1's) changes the pooled output and
    the ITM logits (relative L2), and how much swapping the captions does;
  - ITM on the N own pairs and the N swapped ones: loss (chance ln 2), accuracy, and the pair ranking (how
    often the own image gets the higher match log-odds; chance 50%, whatever the head's bias);
and with --steps > 0 trains the ITM loss alone (Adam) on those 2N pairs, printing the same every 25 steps.

  PYTHONPATH=$PWD python tools/vilt_image_check.py                                    # at initialisation
  PYTHONPATH=$PWD python tools/vilt_image_check.py --checkpoint runs/vilt_pretrain/checkpoints/1000/state
  PYTHONPATH=$PWD python tools/vilt_image_check.py --pairs 32 --steps 200             # overfit ITM alone
"""

import argparse
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from papers_jax.convert import init_params_from_checkpoint
from papers_jax.core.config import load
from papers_jax.tasks.classification import normalize_images
from papers_jax.tasks.vision_language import VisionLanguageTask


def relative_change(a, b):
  return jnp.linalg.norm(a - b) / jnp.maximum(jnp.linalg.norm(a), 1e-12)


def main():
  parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--config", default="configs/vilt/scenes_pretrain.py")
  parser.add_argument("--checkpoint", default="", help="a pre-training run's params checkpoint")
  parser.add_argument("--pairs", type=int, default=64)
  parser.add_argument("--steps", type=int, default=0)
  parser.add_argument("--lr", type=float, default=1e-3)
  parser.add_argument("--mean", type=float, default=None, help="normalise with this mean and std 0.5 instead")
  args = parser.parse_args()

  config = load(args.config).unlock()
  if args.mean is not None:
    config.data.mean, config.data.std = (args.mean,) * 3, (0.5,) * 3
  task = VisionLanguageTask(config)
  source, preprocess = task.source("train"), task.preprocess(train=False)
  examples = [preprocess(source[i], np.random.default_rng(i)) for i in range(args.pairs)]
  batch = {k: np.stack([e[k] for e in examples]) for k in examples[0]}
  graphdef, params, rest = nnx.split(task.build_model(nnx.Rngs(0)), nnx.Param, ...)
  if args.checkpoint:
    loaded, _ = init_params_from_checkpoint(args.checkpoint, nnx.to_pure_dict(params), skip=())
    nnx.replace_by_pure_dict(params, loaded)
  images = normalize_images(jnp.asarray(batch["image"]), task.mean, task.std)
  ids, mask = jnp.asarray(batch["input_ids"]), jnp.asarray(batch["attention_mask"])
  n = args.pairs
  labels = jnp.concatenate([jnp.ones(n, jnp.int32), jnp.zeros(n, jnp.int32)])

  def itm_logits(params, ids, mask, images, train=False):
    model = nnx.merge(graphdef, params, rest)
    _, pooled = model.encode(ids, images, mask, train=train)
    return pooled, model.itm_head(pooled).astype(jnp.float32)

  @jax.jit
  def report(params):
    pooled, logits = itm_logits(params, ids, mask, images)
    pooled_i, logits_i = itm_logits(params, ids, mask, jnp.roll(images, 1, axis=0))
    pooled_t, _ = itm_logits(params, jnp.roll(ids, 1, axis=0), jnp.roll(mask, 1, axis=0), images)
    both = jnp.concatenate([logits, logits_i])
    loss = optax.softmax_cross_entropy_with_integer_labels(both, labels).mean()
    odds = both[:, 1] - both[:, 0]
    return dict(image_swap_pooled=relative_change(pooled, pooled_i),
                image_swap_logits=relative_change(logits, logits_i),
                text_swap_pooled=relative_change(pooled, pooled_t),
                itm_loss=loss, itm_accuracy=jnp.mean(jnp.argmax(both, -1) == labels),
                pair_ranking=jnp.mean(odds[:n] > odds[n:]))

  def show(prefix, params):
    print(prefix + " ".join(f"{k} {float(v):.4f}" for k, v in report(params).items()), flush=True)

  show("start: ", params)
  if args.steps <= 0:
    return
  optimizer = optax.adam(args.lr)

  def loss_fn(params):
    _, logits = itm_logits(params, jnp.concatenate([ids, ids]), jnp.concatenate([mask, mask]),
                           jnp.concatenate([images, jnp.roll(images, 1, axis=0)]))
    return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()

  @jax.jit
  def step(params, opt_state):
    loss, grads = jax.value_and_grad(loss_fn)(params)
    updates, opt_state = optimizer.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, loss

  opt_state, start = optimizer.init(params), time.time()
  for s in range(1, args.steps + 1):
    params, opt_state, loss = step(params, opt_state)
    if s % 25 == 0 or s == args.steps:
      show(f"step {s} ({time.time() - start:.0f} s): ", params)


if __name__ == "__main__":
  main()
