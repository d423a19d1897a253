"""Do a BEiT-3 pre-training run's image features say which colours a scene holds?

  PYTHONPATH=. python tools/beit3_colour_probe.py --checkpoint runs/beit3/pretrain/checkpoints/250/state

Encodes the train and test scenes of data/vqa_scenes.py alone (no text) with the checkpoint's model
(configs/beit3/scenes_pretrain.py), takes the mean of the final patch outputs, and fits one logistic
regression per colour on the train scenes ("the scene has a {colour} object"); prints the test accuracy of
each beside the majority answer's, and the same probe on the raw pixels' mean colour of each patch.
"""

import argparse
import os
import sys

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument("--checkpoint", required=True)
  parser.add_argument("--train_scenes", type=int, default=2000)
  args = parser.parse_args()
  import jax
  from flax import nnx
  from sklearn.linear_model import LogisticRegression
  from papers_jax.convert import init_params_from_checkpoint
  from papers_jax.core import config as config_lib
  from papers_jax.core.state import merge_model
  from papers_jax.data import vqa_scenes
  from papers_jax.tasks import get_task
  from papers_jax.tasks.classification import normalize_images
  config = config_lib.load(os.path.join(ROOT, "configs", "beit3", "scenes_pretrain.py")).unlock()
  config.beit3.visual_tokenizer = "random"  # not used: only the encoder runs
  task = get_task(config)
  model = task.build_model(nnx.Rngs(0))
  graphdef, params, rest = nnx.split(model, nnx.Param, ...)
  params, _ = init_params_from_checkpoint(args.checkpoint, nnx.to_pure_dict(params), skip=())
  model = merge_model(graphdef, params, nnx.to_pure_dict(rest))
  encode = jax.jit(lambda x: model.encode(normalize_images(x, task.mean, task.std))[0][:, 1:].mean(1))

  def features(split, n):
    source = vqa_scenes.VQAScenesSource(split)
    images = np.stack([source.image(i) for i in range(n)])
    feats = np.concatenate([np.asarray(encode(images[s:s + 250])) for s in range(0, n, 250)])
    pixels = images.reshape(n, 4, 16, 4, 16, 3).mean((2, 4)).reshape(n, -1)
    labels = np.array([[any(o["colour"] == c for o in s["objects"]) for c in vqa_scenes.COLOURS]
                       for s in source.scenes[:n]])
    return feats, pixels, labels

  train, test = features("train", args.train_scenes), features("test", 500)
  for k, colour in enumerate(vqa_scenes.COLOURS):
    row = [f"{colour:7s}", f"majority {max(test[2][:, k].mean(), 1 - test[2][:, k].mean()):.3f}"]
    for name, j in (("beit3 patch mean", 0), ("pixel patch means", 1)):
      probe = LogisticRegression(max_iter=2000).fit(train[j], train[2][:, k])
      row.append(f"{name} {probe.score(test[j], test[2][:, k]):.3f}")
    print("  ".join(row))


if __name__ == "__main__":
  main()
