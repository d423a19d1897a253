"""Pictures from a checkpoint.

  python tools/visualize.py mae --config configs/mae/digits.py:stage=pretrain \
      --checkpoint runs/mae_digits/pretrain/checkpoints/800/state --out recon.png [--mode visible] [--examples 8]

mae: the first `--examples` images of the config's eval split, their masked versions and the
reconstructions (evaluators/reconstruction.py). With norm_pix_loss the default `--mode visible`
de-normalises the predicted patches with the visible patches' statistics; `normalized` shows the
normalised target and prediction; `target` uses each removed patch's own statistics, which leaks
information the model never saw (the picture's caption says so). `--checkpoint` is a run's
`checkpoints/<step>/state` directory or any params checkpoint of the same model.
"""

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from papers_jax.core import config as config_lib  # noqa: E402
from papers_jax.errors import UserError  # noqa: E402


def checkpoint_label(path: str) -> str:
  """'runs/x/checkpoints/800/state' → 'step 800'; any other path → its last component."""
  parts = os.path.normpath(path).split(os.sep)
  if len(parts) >= 2 and parts[-1] == "state" and parts[-2].isdigit():
    return f"step {parts[-2]}"
  return parts[-1]


def mae(args) -> str:
  import jax
  import numpy as np
  from flax import nnx

  from papers_jax import convert, models
  from papers_jax.data.sources import get_source
  from papers_jax.evaluators import reconstruction as vis
  from papers_jax.tasks.classification import normalize_images
  from papers_jax.tasks.mae import MAETask

  config = config_lib.load(args.config)
  if config.task != "mae":
    raise UserError(f"{args.config} is a {config.task!r} config; `visualize.py mae` needs an MAE pre-training config")
  task = MAETask(config)
  abstract = nnx.eval_shape(lambda: task.build_model(nnx.Rngs(params=0)))
  graphdef, params, rest = nnx.split(abstract, nnx.Param, ...)
  template = jax.tree.map(lambda v: jax.ShapeDtypeStruct(v.shape, v.dtype), nnx.to_pure_dict(params))
  loaded, _ = convert.init_params_from_checkpoint(args.checkpoint, template, skip=())
  nnx.replace_by_pure_dict(params, loaded)
  model = nnx.merge(graphdef, params, rest)

  split = config.data.eval_split or config.data.train_split
  source = get_source(config.data, split)
  fn = task.preprocess(train=False)
  images = np.stack([fn(dict(source[i]), None)["image"] for i in range(min(args.examples, len(source)))])
  pred, mask = jax.jit(lambda m, x, k: m(normalize_images(x, task.mean, task.std), rng=k, train=False))(
      model, images, jax.random.key(args.seed))
  ratio = (models.model_config(config.model.name) | dict(config.model)).get("mask_ratio", 0.75)
  picture, caption = vis.render(images, np.asarray(pred), np.asarray(mask), patch_size=model.patch_size,
                                mean=task.mean, std=task.std, norm_pix_loss=bool(config.mae.norm_pix_loss),
                                mode=args.mode,
                                title=f"{checkpoint_label(args.checkpoint)}, mask ratio {ratio}: ")
  vis.save_png(picture, args.out)
  return f"wrote {os.path.abspath(args.out)} ({split} split)\n{caption}"


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("kind", choices=("mae",))
  parser.add_argument("--config", required=True, help="config file[:args] the checkpoint was trained with")
  parser.add_argument("--checkpoint", required=True, help="a run's checkpoints/<step>/state or a params checkpoint")
  parser.add_argument("--out", default="reconstructions.png")
  parser.add_argument("--mode", default="visible", choices=("visible", "normalized", "target"))
  parser.add_argument("--examples", type=int, default=8)
  parser.add_argument("--seed", type=int, default=0, help="seed of the masks")
  args = parser.parse_args(argv)
  try:
    print(mae(args))
  except UserError as e:
    print(f"error: {e}", file=sys.stderr)
    return 2
  return 0


if __name__ == "__main__":
  sys.exit(main())
