"""Where does an LSeg run on the scenes go wrong: finding the objects, their colour, or their kind?

  PYTHONPATH=. python tools/lseg_diagnose.py --run runs/lseg_scenes --clip_run runs/clip_scenes [--scenes 200]

Loads the run's last checkpoint with configs/lseg/scenes.py and, on the first `--scenes` test scenes, prints for
the 53-way prediction (background + every pair, held-out pairs included) and for the zero-shot colour label set
(background + the 4 colours, as eval/colour_miou): the object pixels called background, the background pixels
called an object, among object pixels called an object how often the colour / the kind is right, and whether
the pixels called an object would sit better on a transposed or shifted scene (a misalignment). Also the colour
mIoU of the 53-way prediction with each pair read as its colour (colour from the trained label set, not
zero-shot), beside all background.
"""

import argparse
import os
import sys

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument("--run", required=True)
  parser.add_argument("--clip_run", required=True)
  parser.add_argument("--scenes", type=int, default=200)
  parser.add_argument("--config", default=os.path.join(ROOT, "configs", "lseg", "scenes.py"))
  args = parser.parse_args()
  import jax
  import jax.numpy as jnp
  from flax import nnx
  from papers_jax.convert import init_model_state_from_checkpoint, init_params_from_checkpoint
  from papers_jax.core import config as config_lib
  from papers_jax.core.state import merge_model
  from papers_jax.data import vqa_scenes
  from papers_jax.evaluators import zero_shot
  from papers_jax.tasks import get_task
  from papers_jax.tasks.classification import normalize_images
  from papers_jax.tasks.groupvit import miou

  config = config_lib.load(args.config).unlock()
  config.lseg.clip_run = args.clip_run
  task = get_task(config)
  ckpt_dir = os.path.join(args.run, "checkpoints")
  step = max(int(s) for s in os.listdir(ckpt_dir) if s.isdigit())
  graphdef, params, rest = nnx.split(task.build_model(nnx.Rngs(0)), nnx.Param, ...)
  path = os.path.join(ckpt_dir, str(step), "state")
  params, _ = init_params_from_checkpoint(path, nnx.to_pure_dict(params), skip=())
  rest, _ = init_model_state_from_checkpoint(path, nnx.to_pure_dict(rest))
  model = merge_model(graphdef, params, rest)
  tokenizer, encode = task.text
  colours, kinds = tuple(vqa_scenes.COLOURS), vqa_scenes.KINDS
  colour_rows = zero_shot.classifier_weights(encode, tokenizer, colours, [f"a {{}} {k}." for k in kinds])
  pair_rows = jnp.asarray(task.label_features)
  colour_rows = jnp.asarray(np.concatenate([task.label_features[:1], colour_rows]))

  @jax.jit
  def predict(images):
    x = normalize_images(images, task.mean, task.std)
    return model(x, pair_rows, train=False).argmax(-1), model(x, colour_rows, train=False).argmax(-1)

  images, colour_maps, kind_maps = vqa_scenes.semantic_labels("test", args.scenes)
  outs = [predict(images[s:s + 25]) for s in range(0, len(images), 25)]
  pairs = np.concatenate([np.asarray(o[0]) for o in outs])
  zs_colour = np.concatenate([np.asarray(o[1]) for o in outs])
  # A pair index k ≥ 1 is colour (k - 1) // 13 and kind (k - 1) % 13 (PAIR_CLASSES' order).
  pair_colour = np.where(pairs > 0, 1 + (pairs - 1) // len(kinds), 0)
  pair_kind = np.where(pairs > 0, 1 + (pairs - 1) % len(kinds), 0)
  fg = colour_maps > 0
  print(f"step {step}, {len(images)} test scenes; object pixels {fg.mean():.3f} of all")
  for name, colour_pred, kind_pred in (("53-way pairs", pair_colour, pair_kind),
                                       ("zero-shot colours", zs_colour, None)):
    called = colour_pred > 0
    hit = fg & called
    line = (f"  {name:18s} object pixels called background {np.mean(~called[fg]):.3f}, background pixels called an "
            f"object {np.mean(called[~fg]):.3f}; of object pixels called an object: colour right "
            f"{np.mean(colour_pred[hit] == colour_maps[hit]):.3f}")
    if kind_pred is not None:
      line += f", kind right {np.mean(kind_pred[hit] == kind_maps[hit]):.3f}"
    print(line)
    # A misaligned prediction (rows and columns swapped, or shifted) would hit the objects of a moved scene.
    print(f"  {'':18s} of the pixels called an object: on an object {np.mean(fg[called]):.3f}; on an object of the "
          f"transposed scene {np.mean(fg.transpose(0, 2, 1)[called]):.3f}, of the scene shifted 4 px right "
          f"{np.mean(np.roll(fg, 4, axis=2)[called]):.3f}, 4 px down {np.mean(np.roll(fg, 4, axis=1)[called]):.3f}")
  background = np.zeros_like(colour_maps)
  print(f"  colour mIoU: zero-shot colour prompts {miou(zs_colour, colour_maps, 5):.3f}; 53-way pairs read as "
        f"their colour {miou(pair_colour, colour_maps, 5):.3f}; all background {miou(background, colour_maps, 5):.3f}")
  print(f"  kind mIoU: 53-way pairs read as their kind {miou(pair_kind, kind_maps, len(kinds) + 1):.3f}; "
        f"all background {miou(background, kind_maps, len(kinds) + 1):.3f}")


if __name__ == "__main__":
  main()
