"""DDPM's variational bound in bits per dimension (Ho et al. 2020, eq. 5 and Table 2's NLL), measured on a checkpoint.

  python -m papers_jax.main --config configs/ddpm/digits.py --workdir runs/ddpm_digits
  PYTHONPATH=. python tools/ddpm_bpd.py --config configs/ddpm/digits.py \
      --checkpoint runs/ddpm_digits/checkpoints/5000/state --json runs/ddpm_digits/bpd.json

For each image of the config's eval split (or its first `--num_examples`), pixels scaled to [−1, 1] as the
paper's (data.mean = data.std = 0.5, so 8-bit values land on the 256-level grid the decoder assumes):
L_vlb = L_T + Σ_t KL(q(x_{t−1} | x_t, x_0) ‖ p_θ(x_{t−1} | x_t)) + L_0, all T terms, one x_t per step and
image (objectives/diffusion.py: vlb_bits_per_dim, as the official code's calc_bpd_loop), with the weights
the run samples with (the weight EMA; `--weights raw` for the raw ones), σ²_t and x̂_0 clipping from the
config's `diffusion` section. Prints (and writes with --json) the mean bits/dim and its standard error over
the images, and the means of the three parts: the prior term L_T, the decoder's L_0 and the sum of the KLs.
A reference point that needs no model: 8 bits/dim is a uniform distribution over the 256 levels.
"""

import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from papers_jax.core import config as config_lib  # noqa: E402
from papers_jax.errors import UserError  # noqa: E402


def bits_per_dim(config_path: str, checkpoint: str, *, weights: str = "ema", num_examples: int = 0,
                 batch: int = 64, seed: int = 0) -> dict:
  import jax
  import numpy as np
  from flax import nnx

  from papers_jax import convert
  from papers_jax.core import loop
  from papers_jax.data.sources import get_source
  from papers_jax.objectives import diffusion
  from papers_jax.tasks.classification import normalize_images
  from papers_jax.tasks.diffusion import DiffusionTask

  config = config_lib.load(config_path)
  if config.task != "diffusion":
    raise UserError(f"{config_path} is not a diffusion config (task {config.task!r})")
  config_lib.resolve_image_preprocessing(config)
  if set(config.data.mean) != {0.5} or set(config.data.std) != {0.5}:
    raise UserError(f"the bound's decoder assumes pixels scaled to [−1, 1] (data.mean = data.std = 0.5); "
                    f"{config_path} has mean {tuple(config.data.mean)}, std {tuple(config.data.std)}")
  task = DiffusionTask(config)
  abstract = nnx.eval_shape(lambda: task.build_model(nnx.Rngs(params=0)))
  graphdef, params, rest = nnx.split(abstract, nnx.Param, ...)
  template = jax.tree.map(lambda v: jax.ShapeDtypeStruct(v.shape, v.dtype), nnx.to_pure_dict(params))
  if weights == "ema":
    # The run's weight EMA lives in the state's `extra` (core/step.py); its tree is the params'.
    extra = convert._restore_params_numpy(os.path.abspath(checkpoint), "extra", required=False) or {}
    if "ema_params" not in extra:
      raise UserError(f"{checkpoint} holds no weight EMA (config.ema_decay was 0); use --weights raw")
    ema = convert._flatten(extra["ema_params"])  # checkpoint keys are strings; the model's may be ints
    loaded = convert._map_with_path(lambda path, t: np.asarray(ema[path], t.dtype), template)
  else:
    loaded, _ = convert.init_params_from_checkpoint(checkpoint, template, skip=())
  nnx.replace_by_pure_dict(params, loaded)
  model = nnx.merge(graphdef, params, rest)

  source = get_source(config.data, config.data.eval_split)
  fn = loop.preprocess_fn(config, task, train=False)
  count = min(num_examples or len(source), len(source))
  images = np.stack([fn(dict(source[i]), None)["image"] for i in range(count)])
  d = config.diffusion

  @jax.jit
  def bound(model, images, key):
    x0 = normalize_images(images, task.mean, task.std)
    return diffusion.vlb_bits_per_dim(lambda x, t: model(x, t), task.schedule, x0, key,
                                      variance=d.variance, clip_x0=bool(d.clip_x0))

  parts = {"total": [], "prior": [], "decoder": [], "kl": []}
  start_time = time.time()
  for start in range(0, count, batch):
    out = bound(model, images[start:start + batch], jax.random.fold_in(jax.random.key(seed), start))
    for name in parts:
      parts[name].append(np.asarray(out[name], np.float64))
  values = {name: np.concatenate(v) for name, v in parts.items()}
  total = values["total"]
  return {"checkpoint": os.path.abspath(checkpoint), "weights": weights, "split": config.data.eval_split,
          "examples": int(count), "num_timesteps": task.schedule.num_steps, "variance": d.variance,
          "clip_x0": bool(d.clip_x0), "bits_per_dim": float(total.mean()),
          "bits_per_dim_stderr": float(total.std(ddof=1) / np.sqrt(len(total))) if len(total) > 1 else None,
          **{f"{name}_bpd": float(values[name].mean()) for name in ("prior", "decoder", "kl")},
          "wall_time_s": round(time.time() - start_time, 1)}


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--config", required=True, help="the run's diffusion config")
  parser.add_argument("--checkpoint", required=True, help="a run's checkpoints/<step>/state")
  parser.add_argument("--weights", default="ema", choices=("ema", "raw"))
  parser.add_argument("--num_examples", type=int, default=0, help="the first N eval images (0: all)")
  parser.add_argument("--batch", type=int, default=64)
  parser.add_argument("--seed", type=int, default=0, help="the noise of the x_t (per batch: fold_in(seed, start))")
  parser.add_argument("--json", default=None, help="write the numbers here")
  args = parser.parse_args(argv)
  try:
    summary = bits_per_dim(args.config, args.checkpoint, weights=args.weights, num_examples=args.num_examples,
                           batch=args.batch, seed=args.seed)
  except UserError as e:
    print(f"error: {e}", file=sys.stderr)
    return 2
  print(json.dumps(summary, indent=1))
  if args.json:
    with open(args.json, "w") as f:
      json.dump(summary, f, indent=1)
  return 0


if __name__ == "__main__":
  sys.exit(main())
