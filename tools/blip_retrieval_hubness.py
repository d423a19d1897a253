"""Why BLIP's text→image retrieval can fall below the nearest-caption baseline while image→text beats it
(docs/blip.md, "Text→image"): ITC retrieval over the first 100 test scenes and all of their captions, as the
task's evaluation, with the online and the momentum encoders, and how the top-1 picks spread: "t2i top-1 image
histogram" lists how many captions pick each image first (largest first; one image first for many captions is a
hub), and the mean of the L2-normalised features (its norm near 1: every feature points the same way).

  PYTHONPATH=. python tools/blip_retrieval_hubness.py --checkpoint runs/blip_pretrain \\
      --config configs/blip/scenes_pretrain.py
"""

import argparse
from types import SimpleNamespace

import jax.numpy as jnp
import numpy as np

from papers_jax import cli
from papers_jax.core.state import merge_model
from papers_jax.evaluators import retrieval
from papers_jax.tasks.classification import normalize_images


def main():
  parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--checkpoint", required=True, help="a pre-training run's workdir")
  parser.add_argument("--config", default="configs/blip/scenes_pretrain.py")
  parser.add_argument("--set", action="append", default=[], help="config override key=value")
  parser.add_argument("--images", type=int, default=100)
  args = parser.parse_args()
  trainer, what = cli._restored_trainer(SimpleNamespace(config=args.config, set=args.set,
                                                        checkpoint=args.checkpoint, step=None))
  task, state = trainer.task, trainer.state
  source = task.source(trainer.config.data.eval_split)
  examples = [source[i] for i in range(args.images)]
  texts = [t for e in examples for t in e["texts"]]
  image_ids = np.arange(len(examples))
  text_ids = np.repeat(image_ids, [len(e["texts"]) for e in examples])
  ids, mask = (jnp.asarray(a) for a in task.encode_texts(texts))
  model = merge_model(trainer.graphdef, state.params, state.model_state)
  images = normalize_images(jnp.asarray(np.stack([e["image"] for e in examples])), task.mean, task.std)
  print(f"{what}: {len(examples)} images, {len(texts)} captions")
  for momentum in (False, True):
    image_feat = np.asarray(model.image_feature(model.encode_image(images, momentum=momentum), momentum=momentum))
    text_feat = np.asarray(model.text_feature(model.encode_text(ids, mask, momentum=momentum), mask,
                                              momentum=momentum))
    scores = image_feat @ text_feat.T
    recall = retrieval.recall_from_scores(scores, image_ids, text_ids)
    print("momentum" if momentum else "online", {k: round(v, 3) for k, v in recall.items()})
    hist = np.sort(np.bincount(np.argmax(scores, 0), minlength=len(examples)))[::-1]
    print("  t2i top-1 image histogram (largest 8):", hist[:8].tolist())
    print(f"  norm of the mean feature: image {np.linalg.norm(image_feat.mean(0)):.2f}, "
          f"text {np.linalg.norm(text_feat.mean(0)):.2f}")


if __name__ == "__main__":
  main()
