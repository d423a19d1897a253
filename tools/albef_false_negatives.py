"""How often ALBEF's ITM hard negatives, drawn as the official code draws them (only the pair itself left out),
are true matches on the generated scenes (docs/vision_language.md, "Why ITM did not learn"): for 8 training
batches of 64 (a random caption per scene), the fraction of hard negative captions that describe the image
(`vqa_scenes.caption_holds`), that equal its own caption, of hard negative images that fit the caption, and
of random other captions that describe the image.

  PYTHONPATH=. python tools/albef_false_negatives.py --checkpoint runs/albef_pretrain/checkpoints/700/state
"""

import argparse

import jax
import numpy as np
from flax import nnx

from papers_jax.convert import init_params_from_checkpoint
from papers_jax.core.config import load
from papers_jax.data import vqa_scenes
from papers_jax.objectives import albef as objective
from papers_jax.tasks.albef import ALBEFTask
from papers_jax.tasks.classification import normalize_images


def main():
  parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--checkpoint", required=True, help="a scenes_pretrain run's params checkpoint")
  parser.add_argument("--batches", type=int, default=8)
  args = parser.parse_args()
  task = ALBEFTask(load("configs/albef/scenes_pretrain.py"))
  source = task.source("train")
  graphdef, params, rest = nnx.split(task.build_model(nnx.Rngs(0)), nnx.Param, ...)
  loaded, _ = init_params_from_checkpoint(args.checkpoint, nnx.to_pure_dict(params), skip=())
  nnx.replace_by_pure_dict(params, loaded)
  model = nnx.merge(graphdef, params, rest)

  @jax.jit
  def similarities(images, ids, mask):
    _, image_feat = model.encode_image(normalize_images(images, task.mean, task.std))
    _, text_feat = model.encode_text(ids, mask)
    return image_feat @ text_feat.T / model.temperature()

  rng = np.random.default_rng(0)
  counts = {"hard negative caption describes the image": [], "hard negative caption equals the own": [],
            "hard negative image fits the caption": [], "random other caption describes the image": []}
  for b in range(args.batches):
    scenes = rng.choice(len(source), 64, replace=False)
    texts = [source.scenes[s]["captions"][int(rng.integers(len(source.scenes[s]["captions"])))] for s in scenes]
    objects = [source.scenes[s]["objects"] for s in scenes]
    ids, mask = task.encode_texts(texts)
    sim = similarities(np.stack([source.image(int(s)) for s in scenes]), ids, mask)
    neg_text, neg_image = map(np.asarray, objective.sample_hard_negatives(jax.random.key(b), sim, sim.T))
    holds = vqa_scenes.caption_holds
    for i in range(64):
      counts["hard negative caption describes the image"].append(holds(objects[i], texts[neg_text[i]]))
      counts["hard negative caption equals the own"].append(texts[neg_text[i]] == texts[i])
      counts["hard negative image fits the caption"].append(holds(objects[neg_image[i]], texts[i]))
      other = (i + 1 + int(rng.integers(63))) % 64
      counts["random other caption describes the image"].append(holds(objects[i], texts[other]))
  for name, values in counts.items():
    print(f"{name}: {np.mean(values):.3f} of {len(values)}")


if __name__ == "__main__":
  main()
