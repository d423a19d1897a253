"""The paper's degradation experiment (He et al. 2016, Fig. 1 / Fig. 6) on the bundled digits.

  PYTHONPATH=. python tools/resnet_degradation.py [--depths 20,56] [--steps 300] [--workdir runs/resnet_degradation]
  PYTHONPATH=. python tools/resnet_degradation.py --report-only    # redraw from the runs' metrics

Trains plain-shallow, plain-deep, ResNet-shallow and ResNet-deep with configs/resnet/digits.py, one
after the other, each through the one trainer (`loop.train`), and reads their metrics.jsonl: the
training error (the mean over each logging window of the training batches' error, BatchNorm in
training mode, as the paper's thin curves) and the error on the 360 held-out digits at every
evaluation. Writes docs/resnet_degradation.png and docs/resnet_degradation.md (the table, the
command, the machine and the wall time of each run, measured by this command), next to the trivial
baseline of always predicting the training set's most frequent class.
"""

import argparse
import json
import os
import re
import shutil
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)


def config_for(depth: int, plain: bool, steps: int | None, warmup_steps: int = 0):
  from papers_jax.core import config as config_lib
  arg = f"variant={depth}" + (",plain" if plain else "")
  config = config_lib.load(os.path.join(ROOT, "configs", "resnet", "digits.py") + ":" + arg).unlock()
  if steps:
    config.num_steps = steps
    config.checkpoint_every = steps
    config.eval_every = max(steps // 3, 1)
  if warmup_steps:  # the paper's ResNet-110 remedy: lr 0.01 first, then 0.1
    config.schedule.update(warmup_steps=warmup_steps, warmup_shape="constant", warmup_lr_ratio=0.1)
  return config.lock()


def read_run(workdir: str) -> dict:
  rows = [json.loads(line) for line in open(os.path.join(workdir, "metrics.jsonl"))]
  train = [(r["step"], 1 - r["accuracy"]) for r in rows if "accuracy" in r and "loss" in r]
  test = [(r["step"], 1 - r["eval/accuracy"]) for r in rows if "eval/accuracy" in r]
  summary = json.load(open(os.path.join(workdir, "summary.json"))) if os.path.exists(
      os.path.join(workdir, "summary.json")) else {}
  return dict(train=train, test=test, summary=summary)


def majority_error() -> tuple[float, float]:
  """Train and test error of always predicting the most frequent training label."""
  import numpy as np
  from papers_jax.data.sources import DigitsSource
  train, test = DigitsSource("train"), DigitsSource("test")
  train_labels = np.array([train[i]["label"] for i in range(len(train))])
  test_labels = np.array([test[i]["label"] for i in range(len(test))])
  top = np.bincount(train_labels).argmax()
  return float((train_labels != top).mean()), float((test_labels != top).mean())


def report(runs: dict, args) -> str:
  import jax
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  base_train, base_test = majority_error()
  fig, axes = plt.subplots(1, 2, figsize=(10, 3.8), sharey=True)
  for ax, kind in zip(axes, ("plain", "resnet")):
    for name, run in runs.items():
      if not name.startswith(kind):
        continue
      line, = ax.plot(*zip(*[(s, 100 * e) for s, e in run["train"]]), label=f"{name}: train")
      if run["test"]:
        ax.plot(*zip(*[(s, 100 * e) for s, e in run["test"]]), "o--", color=line.get_color(), label=f"{name}: test")
    ax.axhline(100 * base_train, color="grey", ls=":", label="most frequent class")
    ax.set_title("plain" if kind == "plain" else "ResNet")
    ax.set_xlabel("step")
    ax.set_ylim(0, 100)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
  axes[0].set_ylabel("error (%)")
  warm = f", lr 0.01 for the first {args.warmup_steps} steps" if args.warmup_steps else ""
  fig.suptitle(f"Degradation on digits (16×16{warm}): training error (lines) and held-out error (dots)")
  fig.tight_layout()
  os.makedirs(args.docs, exist_ok=True)
  stem = "resnet_degradation" + (f"_warmup{args.warmup_steps}" if args.warmup_steps else "")
  fig.savefig(os.path.join(args.docs, stem + ".png"), dpi=110)

  def last_window(run, frac=0.1):  # mean training error over the last 10% of logged steps
    errs = [e for _, e in run["train"]]
    k = max(1, int(len(errs) * frac))
    return sum(errs[-k:]) / k

  device = f"{jax.devices()[0].device_kind}, {os.cpu_count()} cores"
  cmd = "PYTHONPATH=. python tools/resnet_degradation.py" + (f" --depths {args.depths}" if args.depths != "20,56" else "") \
      + (f" --steps {args.steps}" if args.steps else "") \
      + (f" --warmup-steps {args.warmup_steps}" if args.warmup_steps else "")
  lines = [
      "| network | layers | train error, last 10% of steps | held-out error (360 digits) | run wall time | "
      "train examples/s |",
      "|---|---|---|---|---|---|",
      f"| most frequent class (trivial baseline) | — | {100 * base_train:.1f}% | {100 * base_test:.1f}% | — | — |",
  ]
  for name, run in runs.items():
    test = f"{100 * run['test'][-1][1]:.1f}%" if run["test"] else "—"
    wall, rate = run["summary"].get("wall_time_s"), run["summary"].get("examples_per_s")
    layers = re.search(r"\d+", name).group()
    lines.append(f"| {name} | {layers} | {100 * last_window(run):.2f}% | {test} | "
                 f"{f'{wall:.0f} s' if wall else '—'} | {f'{rate:.0f}' if rate else '—'} |")
  text = "\n".join([
      "# ResNet degradation experiment on digits", "",
      f"Measured by `{cmd}` on {device}, {time.strftime('%Y-%m-%d')}: configs/resnet/digits.py "
      "(the paper's CIFAR nets and recipe, shrunk: 16×16 digits, batch 64, lr 0.1 ÷10 at 50% and 75%). "
      "Wall time includes compilation and evaluation; examples/s leaves out the first logging window "
      "(compilation).", "",
      *([f"The first {args.warmup_steps} steps train at lr 0.01 (0.1 × 0.1), then 0.1, as the paper warms up "
         "ResNet-110.", ""] if args.warmup_steps else []),
      *lines, "", f"![training and held-out error]({stem}.png)", ""])
  with open(os.path.join(args.docs, stem + ".md"), "w") as f:
    f.write(text)
  return text


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--depths", default="20,56", help="shallow,deep (from 20, 32, 44, 56, 110)")
  parser.add_argument("--steps", type=int, default=0, help="override the config's 300 steps")
  parser.add_argument("--warmup-steps", type=int, default=0,
                      help="train at lr 0.01 for this many steps first (the paper's ResNet-110 warm-up)")
  parser.add_argument("--workdir", default=os.path.join(ROOT, "runs", "resnet_degradation"))
  parser.add_argument("--docs", default=os.path.join(ROOT, "docs"))
  parser.add_argument("--report-only", action="store_true")
  args = parser.parse_args(argv)
  import logging
  logging.basicConfig(level=logging.WARNING)
  from papers_jax.core import loop

  depths = [int(d) for d in args.depths.split(",")]
  names = [(f"{kind}{d}_cifar", d, kind == "plain") for kind in ("resnet", "plain") for d in depths]
  runs, walls = {}, {}
  for name, depth, plain in names:
    workdir = os.path.join(args.workdir, name)
    if not args.report_only:
      shutil.rmtree(workdir, ignore_errors=True)  # a fresh run, never a resumed one
      start = time.time()
      loop.train(config_for(depth, plain, args.steps, args.warmup_steps), workdir)
      walls[name] = time.time() - start
      print(f"{name}: {walls[name]:.0f} s", flush=True)
    if os.path.exists(os.path.join(workdir, "metrics.jsonl")):
      runs[name] = read_run(workdir)
  print(report(runs, args))
  return 0


if __name__ == "__main__":
  sys.exit(main())
