"""Stand-alone self-attention and Axial-ResNet against the convolutional ResNet of the same layout, on digits.

  PYTHONPATH=. python tools/attention_resnets_digits.py [--steps 450] [--batch-size 256] [--workdir DIR]

Trains, one after the other through the one trainer (`loop.train`), configs/sasa/digits.py:conv=True (the
bottleneck ResNet with its 3×3 convolutions), configs/sasa/digits.py (those convolutions replaced by 7×7 local
self-attention) and configs/axial/digits.py (an Axial-ResNet with the same stage widths), and prints a markdown
table: parameters, forward FLOPs per example, held-out top-1 on the 360 test digits, wall time of each run on
this machine.
"""

import argparse
import json
import os
import shutil
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

RUNS = {  # name: (config, argument)
    "resnet_conv": ("sasa/digits.py", "conv=True"),
    "sasa": ("sasa/digits.py", ""),
    "axial": ("axial/digits.py", ""),
}


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--steps", type=int, default=0, help="override the configs' 450 steps")
  parser.add_argument("--batch-size", type=int, default=0, help="override the configs' batch of 256")
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument("--workdir", default=os.path.join(ROOT, "runs", "attention_resnets_digits"))
  parser.add_argument("--only", default="", help="comma-separated names from " + ", ".join(RUNS))
  args = parser.parse_args(argv)
  import logging
  logging.basicConfig(level=logging.WARNING)
  from papers_jax.core import config as config_lib
  from papers_jax.core import loop

  rows = []
  for name, (path, arg) in RUNS.items():
    if args.only and name not in args.only.split(","):
      continue
    config = config_lib.load(os.path.join(ROOT, "configs", path) + (":" + arg if arg else "")).unlock()
    config.seed = args.seed
    if args.steps:
      config.num_steps = config.checkpoint_every = args.steps
      config.eval_every = max(args.steps // 3, 1)
      config.schedule.warmup_steps = min(config.schedule.warmup_steps, args.steps // 10)
    if args.batch_size:
      config.batch_size = args.batch_size
    workdir = os.path.join(args.workdir, name)
    shutil.rmtree(workdir, ignore_errors=True)  # a fresh run, never a resumed one
    start = time.time()
    loop.train(config.lock(), workdir)
    wall = time.time() - start
    summary = json.load(open(os.path.join(workdir, "summary.json")))
    rows.append((name, config.model.name, summary, wall))
    print(f"{name}: {wall:.0f} s, top-1 {summary.get('eval/accuracy')}", flush=True)
  print("\n| network | params | forward FLOPs / example | held-out top-1 (360) | wall time |")
  print("|---|---|---|---|---|")
  for name, model, s, wall in rows:
    acc = s.get("eval/accuracy", float("nan"))
    print(f"| {name} (`{model}` overrides) | {s.get('params', 0):,} | {s.get('forward_flops_per_example', 0):.3g} "
          f"| {100 * acc:.2f}% ({round(acc * 360)}/360) | {wall:.0f} s |")
  return 0


if __name__ == "__main__":
  sys.exit(main())
