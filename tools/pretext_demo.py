"""The pretext-task demos (configs/ssl/{rotation,jigsaw,relative_position,colorization}.py:digits), each
trained with the normal trainer and probed as every SSL demo is (tools/ssl_demo.py): weighted k-NN
(k = 20) and a linear probe of the frozen backbone features, at random init and after pre-training.

  python tools/pretext_demo.py [--methods rotation,jigsaw] [--workdir runs/pretext_digits]

Rotation, jigsaw and relative position pre-train on the digits and are probed on them. Colourisation
pre-trains on the L channel of crops of scikit-image's colour photos (the digits are grey): its config
probes the 8-way photo label, and this tool also probes the same encoder on the grey digits (grey = L).
Results accumulate in <workdir>/results.json; the markdown table is printed and written to
<workdir>/table.md (docs/pretext_selftraining.md quotes it).
"""

import argparse
import json
import os
import shutil
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "tools"))

PRETEXT = ("rotation", "jigsaw", "relative_position", "colorization")
LINEAR = "eval/linear_probe/linear_probe_top1"


def digits_probes(trainer) -> dict:
  """k-NN (k = 20) and linear-probe top-1 of the trainer's backbone features, digits train → test."""
  from papers_jax.core import evals as evals_lib, sharding
  from papers_jax.data import pipeline
  from papers_jax.data.sources import DigitsSource
  apply = trainer.task.feature_fn(trainer)
  preprocess = pipeline.image_preprocess("none", 16, train=False)
  train, test = DigitsSource("train"), DigitsSource("test")
  out = {}
  with sharding.use_mesh(trainer.mesh, trainer.rules):
    for kind in ("knn", "linear_probe"):
      spec = evals_lib.Eval(name="", type=kind, split="test", every=0, k=(20,))
      metrics = evals_lib.feature_metrics(spec, apply, train, test, preprocess)
      out[kind] = metrics["knn_top1_k20" if kind == "knn" else "linear_probe_top1"]
  return out


def run_method(method: str, workdir: str) -> dict:
  from papers_jax.core import loop
  from ssl_demo import load_config
  shutil.rmtree(workdir, ignore_errors=True)
  config = load_config(method, "digits")
  trainer = loop.Trainer(config, workdir)
  at_init = trainer.evaluate(0)
  row = dict(method=method, data=config.data.name, steps=config.num_steps, batch=config.batch_size)
  if config.data.name != "digits":
    row["digits_init"] = digits_probes(trainer)
  load = os.getloadavg()[0]
  t0 = time.time()
  summary = trainer.run()
  wall = time.time() - t0
  if config.data.name != "digits":
    row["digits_after"] = digits_probes(trainer)
  k = f"eval/knn_top1_k{config.ssl.knn_k[0]}"
  return row | dict(knn_init=at_init[k], knn_after=summary[k], linear_init=at_init[LINEAR],
                    linear_after=summary[LINEAR],
                    loss=summary.get("train/loss"), pretext_accuracy=summary.get("train/pretext_accuracy"),
                    wall_s=wall, load_avg=load, date=time.strftime("%Y-%m-%d"),
                    command=f"python tools/pretext_demo.py --methods {method}")


def table(results: dict) -> str:
  pct = lambda x: f"{100 * x:.1f}%"  # noqa: E731
  lines = ["| method | pre-trained on | steps × batch | k-NN at init | k-NN after | linear probe at init "
           "| linear probe after | final pretext accuracy | run time | load | date |",
           "|---|---|---|---|---|---|---|---|---|---|---|"]
  for m in PRETEXT:
    if m not in results:
      continue
    r = results[m]
    acc = "—" if r.get("pretext_accuracy") is None else pct(r["pretext_accuracy"])
    lines.append(f"| {m} | {r['data']} | {r['steps']} × {r['batch']} | {pct(r['knn_init'])} | {pct(r['knn_after'])} | "
                 f"{pct(r['linear_init'])} | {pct(r['linear_after'])} | {acc} | {r['wall_s']:.0f} s | "
                 f"{r['load_avg']:.1f} | {r['date']} |")
    if "digits_after" in r:
      i, a = r["digits_init"], r["digits_after"]
      lines.append(f"| {m}, probed on digits | {r['data']} | (same run) | {pct(i['knn'])} | {pct(a['knn'])} | "
                   f"{pct(i['linear_probe'])} | {pct(a['linear_probe'])} | — | — | — | {r['date']} |")
  return "\n".join(lines)


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--methods", default=",".join(PRETEXT))
  parser.add_argument("--workdir", default="runs/pretext_digits")
  args = parser.parse_args(argv)
  methods = [m.strip() for m in args.methods.split(",") if m.strip()]
  unknown = sorted(set(methods) - set(PRETEXT))
  if unknown:
    parser.error(f"unknown methods {unknown}; choose from {list(PRETEXT)}")
  import logging
  logging.basicConfig(level=logging.WARNING)
  workdir = os.path.abspath(args.workdir)
  os.makedirs(workdir, exist_ok=True)
  path = os.path.join(workdir, "results.json")
  results = json.load(open(path)) if os.path.exists(path) else {}
  for method in methods:
    results[method] = run_method(method, os.path.join(workdir, method))
    print(json.dumps(results[method]), flush=True)
    with open(path, "w") as f:
      json.dump(results, f, indent=2)
  text = table(results)
  with open(os.path.join(workdir, "table.md"), "w") as f:
    f.write(text + "\n")
  print(text)
  return 0


if __name__ == "__main__":
  from papers_jax.core import platform_setup
  platform_setup.setup_entry_point()
  sys.exit(main())
