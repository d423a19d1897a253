"""Overfit ALBEF's ITM alone on N fixed training scenes with easy negatives (docs/vision_language.md, "Why ITM
did not learn"): each caption (the scene's first) with its own image (1) and with the previous scene's image (0),
so neither input alone predicts the label. Adam on the ITM loss only; prints loss, accuracy and gradient norms.

  PYTHONPATH=. python tools/albef_itm_overfit.py --pairs 32 --steps 151                   # the demo's init
  PYTHONPATH=. python tools/albef_itm_overfit.py --pairs 32 --steps 151 --cross-init 0.02 # BERT's std everywhere
  PYTHONPATH=. python tools/albef_itm_overfit.py --pairs 32 --steps 150 --init 0.125 --mean-pool
  PYTHONPATH=. python tools/albef_itm_overfit.py --checkpoint runs/albef_pretrain/checkpoints/700/state --new-fusion

Before and after training it also prints how much the fused [CLS] and the ITM match log-odds depend on the
pairing: each of the first 16 captions is fused with each of the first 16 images, and the (caption × image) grid
of outputs is split as in a two-way ANOVA into caption effect + image effect + interaction. Only the
interaction can tell a matching image from another (the labels here are balanced over both), so its share of
the variance is the signal ITM has to work with; "own image ahead" is how often a caption's own image gets
higher log-odds than the mean of the other images. `--steps 0` only reports.
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
from papers_jax.tasks.albef import ALBEFTask
from papers_jax.tasks.classification import normalize_images


def itm_pairs(config, pairs: int):
  """The task, the model split (graphdef, params, rest) and the first `pairs` training scenes (first captions):
  normalised images, ids and attention masks."""
  task = ALBEFTask(config)
  source, preprocess = task.source("train"), task.preprocess(train=False)
  examples = [preprocess(source[i], np.random.default_rng(i)) for i in range(pairs)]
  batch = {k: np.stack([e[k] for e in examples]) for k in examples[0]}
  split = nnx.split(task.build_model(nnx.Rngs(0)), nnx.Param, ...)
  images = normalize_images(jnp.asarray(batch["image"]), task.mean, task.std)
  return task, split, images, jnp.asarray(batch["input_ids"]), jnp.asarray(batch["attention_mask"])


def overfit(graphdef, params, rest, images, ids, mask, *, steps: int, lr: float, log=None):
  """Adam on the ITM loss alone: each caption with its own image (1) and the previous scene's (0).
  Returns the params and the last step's (loss, accuracy); `log(step, loss, accuracy, grad_norms)` every 25."""
  pairs = len(ids)
  labels = jnp.concatenate([jnp.ones(pairs, jnp.int32), jnp.zeros(pairs, jnp.int32)])
  optimizer = optax.adam(lr)

  def loss_fn(params):
    model = nnx.merge(graphdef, params, rest)
    image_embeds, _ = model.encode_image(images, train=True)
    text_embeds, _ = model.encode_text(ids, mask, train=True)
    pair_mask = jnp.concatenate([mask, mask])
    fused = model.fuse(jnp.concatenate([text_embeds, text_embeds]), pair_mask,
                       jnp.concatenate([image_embeds, jnp.roll(image_embeds, 1, axis=0)]), train=True)
    logits = model.itm_logits(fused, pair_mask)
    return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean(), \
        jnp.mean(jnp.argmax(logits, -1) == labels)

  @jax.jit
  def step(params, opt_state):
    (loss, accuracy), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
    norms = {k: optax.global_norm(grads[k]) for k in ("visual_encoder", "text_encoder", "itm_head")}
    updates, opt_state = optimizer.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, loss, accuracy, norms

  opt_state, loss, accuracy = optimizer.init(params), np.nan, np.nan
  for s in range(steps):
    params, opt_state, loss, accuracy, norms = step(params, opt_state)
    if log and (s % 25 == 0 or s == steps - 1):
      log(s, float(loss), float(accuracy), norms)
  return params, (float(loss), float(accuracy))


def main():
  parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--pairs", type=int, default=64)
  parser.add_argument("--steps", type=int, default=300)
  parser.add_argument("--lr", type=float, default=1e-3)
  parser.add_argument("--init", type=float, default=0.02, help="the text side's initialisation std")
  parser.add_argument("--cross-init", type=float, default=0.125,
                      help="the fusion layers' cross-attention initialisation std (the config's 0.125; 0.02 as BERT)")
  parser.add_argument("--mean-pool", action="store_true", help="ITM head on the mean of the fused tokens")
  parser.add_argument("--checkpoint", default="", help="start from a scenes_pretrain run's params checkpoint")
  parser.add_argument("--new-fusion", action="store_true", help="with --checkpoint: new fusion layers and ITM head")
  parser.add_argument("--qk-scale", type=float, default=1.0, help="scale the cross-attention query and key kernels")
  parser.add_argument("--vo-scale", type=float, default=1.0, help="scale the cross-attention value and output kernels")
  args = parser.parse_args()

  config = load(f"configs/albef/scenes_pretrain.py:init={args.init},cross_init={args.cross_init}").unlock()
  if args.mean_pool:
    config.model.itm_pool = "mean"
  _, (graphdef, params, rest), images, ids, mask = itm_pairs(config, args.pairs)
  if args.checkpoint:
    loaded, _ = init_params_from_checkpoint(args.checkpoint, nnx.to_pure_dict(params), skip=())
    if args.new_fusion:
      fresh = nnx.to_pure_dict(params)
      loaded["text_encoder"]["fusion_layers"] = fresh["text_encoder"]["fusion_layers"]
      loaded["itm_head"] = fresh["itm_head"]
    nnx.replace_by_pure_dict(params, loaded)
  pure = nnx.to_pure_dict(params)
  for layer in pure["text_encoder"]["fusion_layers"].values():
    cross = layer["cross_attn"]
    cross["q"]["kernel"] = cross["q"]["kernel"] * args.qk_scale
    cross["kv"]["kernel"] = cross["kv"]["kernel"] * jnp.asarray([args.qk_scale, args.vo_scale])[:, None, None]
    cross["proj"]["kernel"] = cross["proj"]["kernel"] * args.vo_scale
  nnx.replace_by_pure_dict(params, pure)

  grid = min(16, args.pairs)
  pairs_t, pairs_i = np.repeat(np.arange(grid), grid), np.tile(np.arange(grid), grid)

  @jax.jit
  def grid_outputs(params):
    model = nnx.merge(graphdef, params, rest)
    image_embeds, _ = model.encode_image(images[:grid])
    text_embeds, _ = model.encode_text(ids[:grid], mask[:grid])
    fused = model.fuse(text_embeds[pairs_t], mask[pairs_t], image_embeds[pairs_i])
    logits = model.itm_logits(fused, mask[pairs_t])
    return fused[:, 0], logits[:, 1] - logits[:, 0]

  def report(params, when: str):
    cls, odds = (np.asarray(x, np.float64).reshape(grid, grid, -1) for x in grid_outputs(params))
    line = [when]
    for name, x in (("fused [CLS]", cls), ("ITM log-odds", odds)):
      mean = x.mean((0, 1), keepdims=True)
      caption, image = x.mean(1, keepdims=True) - mean, x.mean(0, keepdims=True) - mean
      total = ((x - mean) ** 2).sum()
      shares = [((e + 0 * x) ** 2).sum() / total for e in (caption, image, x - mean - caption - image)]
      line.append(f"{name}: caption {shares[0]:.1%}, image {shares[1]:.1%}, interaction {100 * shares[2]:.2g}%")
    d = odds[..., 0]
    ahead = np.mean([d[i, i] > np.delete(d[i], i).mean() for i in range(grid)])
    print("; ".join(line) + f"; own image ahead {ahead:.0%} of {grid} captions", flush=True)

  start = time.time()

  def log(s, loss, accuracy, norms):
    grads = " ".join(f"{k} {float(v):.2e}" for k, v in norms.items())
    print(f"step {s}: loss {loss:.4f} accuracy {accuracy:.3f} grad norms: {grads} ({time.time() - start:.0f} s)",
          flush=True)

  report(params, "before training")
  params, _ = overfit(graphdef, params, rest, images, ids, mask, steps=args.steps, lr=args.lr, log=log)
  if args.steps:
    report(params, "after training")


if __name__ == "__main__":
  main()
