"""Two-Stream ConvNets' evaluation and fusion (evaluators/two_stream.py) of a trained spatial and temporal run:
test accuracy of each stream alone (one view: the middle position's centre crop; and the paper's 25
positions × 10 crops), and of the fusions by averaging and by a linear SVM on the stacked L2-normalised
scores (Crammer & Singer's multi-class SVM, the paper's [6]; `--svm_multi_class ovr`: one-vs-rest), beside
chance and the majority class. The SVM is fitted on the 25 × 10 scores of `--train_per_class`
training clips a class (20 by default; the paper fits on training data), and, since a stream that overfits
its training clips scores them over-confidently, also by 2-fold cross-fitting on the test clips (each half's
SVM fitted on the other half).

  PYTHONPATH=. python tools/two_stream_eval.py --spatial runs/ts_spatial --temporal runs/ts_temporal

`--spatial_config` / `--temporal_config` default to configs/two_stream/moving_shapes.py with that stream;
`--set key=value` changes both (e.g. the data settings), `--temporal_set` the temporal one (e.g. L = 1:
`--temporal_set two_stream.flow_length=1 --temporal_set model.in_chans=2`).
Writes the table and the numbers (JSON) to `--out` when given.
"""

import argparse
import json
import time
import types

import jax
import numpy as np

from papers_jax import cli
from papers_jax.evaluators import two_stream as ts
from papers_jax.tasks.classification import normalize_images

CONFIG = "configs/two_stream/moving_shapes.py:stream={}"


def stream_scores(config: str, run: str, overrides=(), splits=("train", "test"), train_per_class: int = 0) -> dict:
  """{split: (clip scores (N, K) of 25 × 10 views, one-view softmax scores (N, K), labels (N,))}."""
  trainer, where = cli._restored_trainer(types.SimpleNamespace(config=config, set=list(overrides), checkpoint=run,
                                                               step=None))
  print(f"{config}: {where}", flush=True)
  model, task, t = cli._model(trainer), trainer.task, trainer.config.two_stream

  @jax.jit
  def probs(images):
    return jax.nn.softmax(model(normalize_images(images, task.mean, task.std), train=False), axis=-1)

  out = {}
  for split in splits:
    name = trainer.config.data.train_split if split == "train" else trainer.config.data.eval_split
    source, t0 = task.source(name), time.time()
    scores, single, labels = [], [], np.asarray(source.labels)
    keep = np.arange(len(source))
    if split == "train" and train_per_class:  # the first clips of each class
      keep = np.sort(np.concatenate([keep[labels == c][:train_per_class] for c in np.unique(labels)]))
    for i in keep:
      views = ts.clip_views(source[i]["image"], task.stream, task.length, task.crop)
      p = np.asarray(probs(views))
      scores.append(ts.clip_scores(p))
      single.append(p[ts.NUM_CROPS * (ts.NUM_POSITIONS // 2) + 4])  # the middle position's centre crop
    out[split] = (np.stack(scores), np.stack(single), labels[keep])
    print(f"  {split}: {len(keep)} clips × {len(views)} views in {time.time() - t0:.0f} s", flush=True)
  return out


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  p.add_argument("--spatial", required=True, help="the spatial stream's run directory")
  p.add_argument("--temporal", required=True, help="the temporal stream's run directory")
  p.add_argument("--spatial_config", default=CONFIG.format("spatial"))
  p.add_argument("--temporal_config", default=CONFIG.format("temporal"))
  p.add_argument("--set", action="append", default=[], help="key=value for both configs (repeat)")
  p.add_argument("--temporal_set", action="append", default=[], help="key=value for the temporal config (repeat)")
  p.add_argument("--svm_c", type=float, default=1.0)
  p.add_argument("--svm_multi_class", default="crammer_singer", choices=("crammer_singer", "ovr"),
                 help="the paper's Crammer & Singer SVM, or one-vs-rest (docs/two_stream.md's numbers)")
  p.add_argument("--train_per_class", type=int, default=20, help="training clips a class for the SVM (0: all)")
  p.add_argument("--out", default="")
  args = p.parse_args(argv)
  s = stream_scores(args.spatial_config, args.spatial, args.set, train_per_class=args.train_per_class)
  t = stream_scores(args.temporal_config, args.temporal, args.set + args.temporal_set,
                    train_per_class=args.train_per_class)
  labels = s["test"][2]
  if not (np.array_equal(labels, t["test"][2]) and np.array_equal(s["train"][2], t["train"][2])):
    raise SystemExit("the two runs' clips differ: give both streams the same data settings")
  counts = np.bincount(labels)
  svm = ts.fuse_svm(s["train"][0], t["train"][0], s["train"][2], s["test"][0], t["test"][0], c=args.svm_c,
                    multi_class=args.svm_multi_class)
  rows = {
      "chance": 1 / len(counts),
      "majority class": counts.max() / len(labels),
      "spatial, 1 view": ts.accuracy(s["test"][1], labels),
      "spatial, 25 × 10 views": ts.accuracy(s["test"][0], labels),
      "temporal, 1 view": ts.accuracy(t["test"][1], labels),
      "temporal, 25 × 10 views": ts.accuracy(t["test"][0], labels),
      "fusion by averaging": ts.accuracy(ts.fuse_average(s["test"][0], t["test"][0]), labels),
      "fusion by SVM (fitted on training clips)": ts.accuracy(svm, labels),
      "fusion by SVM (2-fold on test clips)": ts.accuracy(
          ts.fuse_svm_crossfit(s["test"][0], t["test"][0], labels, c=args.svm_c,
                               multi_class=args.svm_multi_class), labels),
  }
  table = "| test clips ({}) | top-1 % |\n|---|---|\n".format(len(labels))
  table += "".join(f"| {k} | {100 * v:.1f} |\n" for k, v in rows.items())
  train = {"spatial train, 25 × 10": ts.accuracy(s["train"][0], s["train"][2]),
           "temporal train, 25 × 10": ts.accuracy(t["train"][0], t["train"][2])}
  print(table + "".join(f"({k}: {100 * v:.1f}%)\n" for k, v in train.items()), flush=True)
  if args.out:
    with open(args.out, "w") as f:
      json.dump({"test": rows, "train": train, "table": table}, f, indent=1)


if __name__ == "__main__":
  main()
