"""Robustness probes of "Intriguing Properties of Vision Transformers" for a trained classifier: accuracy on
the evaluation split under random patch drop, patch shuffling and a centred occlusion
(papers_jax/evaluators/robustness.py), as a markdown table.

  PYTHONPATH=. python tools/robustness.py --config configs/vit/digits.py --checkpoint runs/vit_digits \\
      --patch 4 --name ViT

`--patch`: the cell size of the patch drop (the ViT's patch size, for every model compared); the shuffle
grids are `--grids` cells per side. Every model sees the same corrupted images (fixed keys per batch).
"""

import argparse
import types

from papers_jax import cli
from papers_jax.core.loop import preprocess_fn
from papers_jax.evaluators import robustness
from papers_jax.tasks.classification import normalize_images


def probe_table(config, checkpoint, *, patch: int, fractions, grids, occlusions, seed: int = 0) -> dict:
  trainer, _ = cli._restored_trainer(types.SimpleNamespace(config=config, set=[], checkpoint=checkpoint,
                                                           step=None))
  model = cli._model(trainer)
  task = trainer.task
  source = trainer.eval_source
  preprocess = preprocess_fn(trainer.config, task, train=False)

  def normalize(images):
    return normalize_images(images, task.mean, task.std)

  def logits(images):
    return model(images, train=False)

  run = lambda probe, **kw: robustness.probe_accuracy(logits, source, preprocess, normalize, probe,  # noqa: E731
                                                      seed=seed, **kw)
  table = {"clean": run("drop", patch=patch, fraction=0.0)}
  table |= {f"drop {f:.0%}": run("drop", patch=patch, fraction=f) for f in fractions}
  table |= {f"shuffle {g}x{g}": run("shuffle", cells=g) for g in grids}
  table |= {f"occlude {f:.0%}": run("occlude", fraction=f) for f in occlusions}
  return table


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  p.add_argument("--config", action="append", required=True, help="config of each model (repeat)")
  p.add_argument("--checkpoint", action="append", required=True, help="its run directory (repeat)")
  p.add_argument("--name", action="append", help="its name in the table (repeat)")
  p.add_argument("--patch", type=int, required=True)
  p.add_argument("--fractions", type=float, nargs="+", default=[0.25, 0.5, 0.75])
  p.add_argument("--grids", type=int, nargs="+", default=[2, 4])
  p.add_argument("--occlusions", type=float, nargs="+", default=[0.25])
  args = p.parse_args(argv)
  names = args.name or args.config
  tables = [probe_table(c, k, patch=args.patch, fractions=args.fractions, grids=args.grids,
                        occlusions=args.occlusions) for c, k in zip(args.config, args.checkpoint)]
  rows = list(tables[0])
  print("| probe | " + " | ".join(names) + " |")
  print("|---|" + "---|" * len(names))
  for row in rows:
    print(f"| {row} | " + " | ".join(f"{t[row]:.1%}" for t in tables) + " |")


if __name__ == "__main__":
  main()
