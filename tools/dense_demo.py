"""SETR (Naïve, PUP, MLA) and DPT against the majority class on the generated shape scenes.

  python tools/dense_demo.py [--workdir runs/dense_shapes] [--steps 300] [--only setr_pup,dpt] [--docs docs]

Trains configs/setr/shapes.py (each decoder) and configs/dpt/shapes.py, one after the other, each in
<workdir>/<name>, and reads their final test-split evaluation (512 scenes): mIoU, pixel accuracy and the
per-class IoUs; the majority-class row (background everywhere) is counted on the same test labels. Writes
<workdir>/results.json after every run and the table dense_shapes.md to the workdir, or to `--docs DIR`.
A finished run is read back, not retrained. Every number is measured by the command that writes it.
"""

import argparse
import json
import os
import sys
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

RUNS = {  # name → (config spec, row label); the order they train in
    "setr_pup": ("setr/shapes.py:decoder=pup", "SETR-PUP"),
    "dpt": ("dpt/shapes.py", "DPT"),
    "setr_mla": ("setr/shapes.py:decoder=mla", "SETR-MLA"),
    "setr_naive": ("setr/shapes.py:decoder=naive", "SETR-Naïve"),
}
CLASSES = ("background", "rectangle", "circle", "triangle", "ellipse")


def load(spec: str, steps: int):
  from papers_jax.core import config as config_lib
  path, _, arg = spec.partition(":")
  config = config_lib.load(os.path.join(ROOT, "configs", path) + (f":{arg}" if arg else "")).unlock()
  config.num_steps = steps
  config.eval_every = steps
  config.checkpoint_every = steps
  return config.lock()


def majority_class() -> dict:
  """Background everywhere on the test split: its IoU is the background's pixel share, 0 for the shapes."""
  from papers_jax.data.segmentation import ShapesSegmentationSource
  source = ShapesSegmentationSource("test", image_size=64)
  labels = np.stack([source[i]["label"] for i in range(len(source))])
  share = float((labels == 0).mean())
  return {"miou": share / len(CLASSES), "pixel_accuracy": share,
          **{f"iou/{c}": (share if c == "background" else 0.0) for c in CLASSES}}


def run(name: str, workdir: str, steps: int) -> dict:
  from papers_jax import models
  from papers_jax.core import loop
  spec = RUNS[name][0]
  run_dir = os.path.join(workdir, name)
  summary_path = os.path.join(run_dir, "summary.json")
  t0 = time.time()
  if os.path.exists(summary_path):
    with open(summary_path) as f:
      summary = json.load(f)
  else:
    summary = loop.train(load(spec, steps), run_dir)
  config = load(spec, steps)
  from flax import nnx
  model = nnx.eval_shape(lambda: models.create(config.model.name, rngs=nnx.Rngs(0),
                                               **{k: v for k, v in config.model.items() if k != "name"}))
  params = sum(int(np.prod(v.shape)) for v in __import__("jax").tree.leaves(nnx.state(model, nnx.Param)))
  return dict(spec=spec, steps=summary.get("steps"), params=params, wall_s=summary.get("wall_time_s"),
              examples_per_s=summary.get("examples_per_s"), this_call_s=time.time() - t0,
              **{k[len("eval/"):]: v for k, v in summary.items() if k.startswith("eval/")})


def table(results: dict) -> str:
  head = "| model | params | mIoU | pixel acc. | " + " | ".join(f"IoU {c}" for c in CLASSES) + " |"
  lines = [head, "|" + "---|" * (4 + len(CLASSES))]
  for name, r in results.items():
    label = "majority class (background)" if name == "majority" else RUNS[name][1]
    params = f"{r['params'] / 1e6:.2f}M" if r.get("params") else "-"
    cells = [f"{100 * r.get(k, 0.0):.1f}" for k in ["miou", "pixel_accuracy"] + [f"iou/{c}" for c in CLASSES]]
    lines.append(f"| {label} | {params} | " + " | ".join(cells) + " |")
  return "\n".join(lines) + "\n"


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--workdir", default="runs/dense_shapes")
  parser.add_argument("--steps", type=int, default=300)
  parser.add_argument("--only", default=",".join(RUNS))
  parser.add_argument("--docs", default=None)
  args = parser.parse_args()
  os.makedirs(args.workdir, exist_ok=True)
  results = {"majority": majority_class()}
  out = os.path.join(args.workdir, "results.json")
  for name in args.only.split(","):
    results[name] = run(name, args.workdir, args.steps)
    with open(out, "w") as f:
      json.dump(results, f, indent=1)
    print(name, {k: results[name][k] for k in ("miou", "pixel_accuracy", "wall_s") if k in results[name]}, flush=True)
  with open(os.path.join(args.docs or args.workdir, "dense_shapes.md"), "w") as f:
    f.write(table(results))
  print(table(results))


if __name__ == "__main__":
  main()
