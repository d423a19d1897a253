"""Overfit BLIP's ITM alone on N fixed training scenes with easy negatives (docs/blip.md, "ITM"): each scene's
first caption with its own image (1) and with the previous scene's image (0), so neither input alone predicts the
label. Adam on the ITM loss only, from random weights (configs/blip/scenes_pretrain.py's model, with the
cross-attention's init stds given here); prints the loss and accuracy every 25 steps.

  PYTHONPATH=. python tools/blip_itm_overfit.py --pairs 32 --steps 150 --qk_std 0.02 --vo_std 0.02  # BERT's
  PYTHONPATH=. python tools/blip_itm_overfit.py --pairs 32 --steps 150 --qk_std 0.125 --vo_std 0.02
  PYTHONPATH=. python tools/blip_itm_overfit.py --pairs 32 --steps 150     # the scenes config's (both 0.125)
  PYTHONPATH=. python tools/blip_itm_overfit.py --checkpoint runs/blip_pretrain   # probe a trained run

Before and after training (or for --checkpoint, a pre-training run's workdir, on test scenes) it probes whether the
image reaches ITM: each of 16 captions is read against each of the 16 images, and the (caption × image) grid of
match log-odds is split as a two-way ANOVA into caption effect, image effect and interaction. "image swapped" is
the mean |change| of the log-odds when a caption's own image is replaced by another; only the interaction can tell
the own image from another, and "own image ahead" counts the captions whose own image gets higher log-odds than the
mean of the others.
"""

import argparse
import time
from types import SimpleNamespace

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from papers_jax.core.config import load
from papers_jax.tasks.blip import BLIPTask
from papers_jax.tasks.classification import normalize_images


def probe(model, task, images, ids, mask, grid: int = 16) -> str:
  """The (caption × image) split of the ITM match log-odds of the first `grid` pairs (module docstring)."""
  t, i = np.repeat(np.arange(grid), grid), np.tile(np.arange(grid), grid)
  embeds = model.encode_image(images[:grid])
  logits = model.itm_logits(model.encode_multimodal(ids[t].at[:, 0].set(task.enc_id), mask[t], embeds[i]), mask[t])
  x = np.asarray(logits[:, 1] - logits[:, 0], np.float64).reshape(grid, grid)
  mean = x.mean()
  caption, image = x.mean(1, keepdims=True) - mean, x.mean(0, keepdims=True) - mean
  total = ((x - mean) ** 2).sum()
  shares = [((e + 0 * x) ** 2).sum() / total for e in (caption, image, x - mean - caption - image)]
  own = np.diag(x)
  swapped = np.mean([np.abs(np.delete(x[k], k) - own[k]).mean() for k in range(grid)])
  ahead = sum(own[k] > np.delete(x[k], k).mean() for k in range(grid))
  return (f"log-odds: caption {shares[0]:.1%}, image {shares[1]:.1%}, interaction {shares[2]:.2%}; "
          f"image swapped: mean |change| {swapped:.3g} (log-odds std {x.std():.3g}); own image ahead for {ahead} "
          f"of {grid} captions")


def batch_of(task, split: str, n: int):
  source, preprocess = task.source(split), task.preprocess(train=False)
  examples = [preprocess(source[i], np.random.default_rng(i)) for i in range(n)]
  batch = {k: jnp.asarray(np.stack([e[k] for e in examples])) for k in examples[0]}
  return normalize_images(batch["image"], task.mean, task.std), batch["input_ids"], batch["attention_mask"]


def main():
  parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--pairs", type=int, default=32)
  parser.add_argument("--steps", type=int, default=150)
  parser.add_argument("--lr", type=float, default=1e-3)
  parser.add_argument("--qk_std", type=float, default=0.125, help="the cross-attention query and key init std")
  parser.add_argument("--vo_std", type=float, default=0.125, help="the cross-attention value and output init std")
  parser.add_argument("--itm_pool", default=None, help="'mean': the ITM head on the mean of the fused tokens")
  parser.add_argument("--checkpoint", default="", help="probe a pre-training run (its workdir) on test scenes")
  parser.add_argument("--config", default="configs/blip/scenes_pretrain.py")
  parser.add_argument("--set", action="append", default=[], help="config override key=value (with --checkpoint)")
  args = parser.parse_args()
  if args.checkpoint:
    from papers_jax import cli
    from papers_jax.core.state import merge_model
    trainer, what = cli._restored_trainer(SimpleNamespace(config=args.config, set=args.set,
                                                          checkpoint=args.checkpoint, step=None))
    task = trainer.task
    model = merge_model(trainer.graphdef, trainer.state.params, trainer.state.model_state)
    for split in ("train", "test"):
      print(f"{what}, {split} scenes: {probe(model, task, *batch_of(task, split, 16))}", flush=True)
    return
  config = load(args.config).unlock()
  config.model.update(cross_attention_qk_std=args.qk_std, cross_attention_vo_std=args.vo_std)
  if args.itm_pool:
    config.model.itm_pool = args.itm_pool
  task = BLIPTask(config.lock())
  images, ids, mask = batch_of(task, "train", args.pairs)
  graphdef, params, rest = nnx.split(task.build_model(nnx.Rngs(0)), nnx.Param, ...)
  ids2 = jnp.concatenate([ids] * 2).at[:, 0].set(task.enc_id)
  mask2 = jnp.concatenate([mask] * 2)
  previous = jnp.roll(jnp.arange(args.pairs), 1)
  labels = jnp.concatenate([jnp.ones(args.pairs, jnp.int32), jnp.zeros(args.pairs, jnp.int32)])

  def loss_fn(params):
    model = nnx.merge(graphdef, params, rest)
    embeds = model.encode_image(images)
    logits = model.itm_logits(model.encode_multimodal(ids2, mask2, jnp.concatenate([embeds, embeds[previous]])), mask2)
    loss = -jnp.take_along_axis(jax.nn.log_softmax(logits, -1), labels[:, None], 1).mean()
    return loss, (jnp.argmax(logits, -1) == labels).mean()

  tx = optax.adam(args.lr)

  @jax.jit
  def step(params, opt_state):
    (loss, accuracy), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
    updates, opt_state = tx.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, loss, accuracy

  grid = min(16, args.pairs)
  print("before training:", probe(nnx.merge(graphdef, params, rest), task, images, ids, mask, grid), flush=True)
  opt_state, start = tx.init(params), time.time()
  for i in range(args.steps + 1):  # the loss printed at step i is before the i-th update
    params, opt_state, loss, accuracy = step(params, opt_state)
    if i % 25 == 0:
      print(f"step {i}: ITM loss {float(loss):.4f} accuracy {float(accuracy):.3f} ({time.time() - start:.0f} s)",
            flush=True)
  if args.steps:
    print("after training:", probe(nnx.merge(graphdef, params, rest), task, images, ids, mask, grid), flush=True)


if __name__ == "__main__":
  main()
