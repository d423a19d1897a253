"""The self-supervised demos on scikit-learn's digits (CPU, a few minutes per method).

  python tools/ssl_demo.py [--methods swav,dino] [--workdir runs/ssl_digits] [--docs docs]

For each method, trains `configs/ssl/<method>.py:digits` with the normal trainer and measures the
weighted k-NN top-1 (k = 20, cosine, T = 0.07) and a linear probe of the online backbone's frozen
features on the 360 held-out digits (the config's k-NN monitor and its `evals.linear_probe`), once
at random init (every evaluation of the config before any step) and once after pre-training. Results
accumulate in <workdir>/results.json, so a `--methods` subset updates its rows (`--methods ""` only
rewrites the table); ssl_digits.md is rewritten from all of them, in the workdir unless `--docs DIR`
is given (`--docs docs` publishes it to the repository's docs/), so that a partial run never
overwrites the published table. Every number in the table is measured by the command in its row.
"""

import argparse
import importlib.util
import json
import os
import shutil
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)


def config_module(method: str):
  path = os.path.join(ROOT, "configs", "ssl", f"{method}.py")
  spec = importlib.util.spec_from_file_location(f"ssl_{method}_config", path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def load_config(method: str, arg: str):
  return config_module(method).get_config(arg)


LINEAR = "eval/linear_probe/linear_probe_top1"  # the recipe's config.evals.linear_probe


def run_method(method: str, workdir: str) -> dict:
  """Trains one method's digits demo; returns its row (probes at init and after, wall seconds)."""
  from papers_jax.core import loop
  shutil.rmtree(workdir, ignore_errors=True)
  config = load_config(method, "digits")
  trainer = loop.Trainer(config, workdir)
  at_init = trainer.evaluate(0)  # the online backbone at its random init: k-NN monitor and linear probe
  load = os.getloadavg()[0]  # other jobs on the machine inflate the run time
  t0 = time.time()
  summary = trainer.run()
  wall = time.time() - t0
  k = f"eval/knn_top1_k{config.ssl.knn_k[0]}"
  return dict(method=method, steps=summary["steps"], batch=config.batch_size, knn_init=at_init[k],
              knn_after=summary[k], linear_init=at_init[LINEAR], linear_after=summary[LINEAR],
              loss=summary.get("train/loss"), wall_s=wall, load_avg=load, date=time.strftime("%Y-%m-%d"),
              command=f"python tools/ssl_demo.py --methods {method}")


def write_docs(results: dict, docs: str) -> str:
  import jax
  from papers_jax.tasks.ssl import METHODS
  pct = lambda x: f"{100 * x:.1f}%"  # noqa: E731
  device = f"{jax.devices()[0].device_kind} ({os.cpu_count()} cores)"
  rows = [results[m] for m in METHODS if m in results]

  def row(r):
    load = f"{r['load_avg']:.1f}" if "load_avg" in r else "—"
    cells = [r["method"], f"{r['steps']} × {r['batch']}", pct(r["knn_init"]), pct(r["knn_after"]),
             pct(r["linear_init"]), pct(r["linear_after"]), f"{r['loss']:.4f}", f"{r['wall_s']:.0f} s", load, r["date"],
             f"`{r['command']}`"]
    return "| " + " | ".join(cells) + " |"

  text = [
      "# Self-supervised methods on scikit-learn digits (embedded demos)", "",
      f"Measured by `tools/ssl_demo.py` on {device}: each method pre-trains `configs/ssl/<method>.py:digits`",
      "(the small ViT of configs/vit/digits.py on 16×16 digits, on-device views) with the normal trainer.",
      "k-NN: top-1 of a weighted k-NN (k = 20, cosine, T = 0.07) on the online backbone's frozen features,",
      "1437 training digits → the 360 held-out digits; linear probe: softmax regression on the same",
      "standardised features (papers_jax/evaluators). \"init\" is the same backbone at its random init,",
      "before the first step. Run time: the whole `trainer.run()` (compilation, training and the",
      "k-NN evaluations every 100 steps), wall clock, one run, one seed; load: the machine's 1-minute load",
      "average when the run started (2 cores; the previous method's run still counts in it). A method whose",
      "k-NN falls below its init did not learn in this setting; its config file says what was tried.", "",
      "| method | steps × batch | k-NN top-1 at init | k-NN top-1 after | linear probe at init | linear probe after "
      "| final train loss | run time | load | date | command |",
      "|---|---|---|---|---|---|---|---|---|---|---|",
      *[row(r) for r in rows], "",
      "Every demo shares the digits recipe of `papers_jax.tasks.ssl.recipe` (AdamW lr 1e-3, weight decay",
      "0.05, 300 steps of 256, projections ≤ 64-d, crops of 40–100%). On top of it, each config's `DEMO`",
      "sets (the config file says why, with the settings tried before):", "",
      *[f"- {m}: " + (", ".join(f"`{k}={v}`" for k, v in getattr(config_module(m), "DEMO", {}).items()) or "nothing")
        for m in METHODS if m in results], "",
      "Gaussian blur, where a recipe has it, does nothing at these sizes (its kernel is 10% of the side:",
      "one tap at 16 px), and grayscale / saturation / hue leave one-channel digits unchanged, so the",
      "views differ by crop, flip, brightness, contrast and (BYOL, DINO) solarisation.", "",
  ]
  os.makedirs(docs, exist_ok=True)
  with open(os.path.join(docs, "ssl_digits.md"), "w") as f:
    f.write("\n".join(text))
  return "\n".join(text)


def main(argv=None):
  from papers_jax.tasks.ssl import METHODS
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--methods", default=",".join(METHODS), help="comma-separated subset of " + ",".join(METHODS))
  parser.add_argument("--workdir", default="runs/ssl_digits")
  parser.add_argument("--docs", default=None,
                      help="where ssl_digits.md goes (default: the workdir; `docs` publishes it)")
  args = parser.parse_args(argv)
  methods = [m.strip() for m in args.methods.split(",") if m.strip()]
  unknown = sorted(set(methods) - set(METHODS))
  if unknown:
    parser.error(f"unknown methods {unknown}; choose from {list(METHODS)}")
  import logging
  logging.basicConfig(level=logging.WARNING)
  workdir = os.path.abspath(args.workdir)
  os.makedirs(workdir, exist_ok=True)
  results_path = os.path.join(workdir, "results.json")
  results = json.load(open(results_path)) if os.path.exists(results_path) else {}
  for method in methods:
    results[method] = run_method(method, os.path.join(workdir, method))
    print(json.dumps(results[method]), flush=True)
    with open(results_path, "w") as f:
      json.dump(results, f, indent=2)
  print(write_docs(results, args.docs or workdir))
  return 0


if __name__ == "__main__":
  from papers_jax.core import platform_setup
  platform_setup.setup_entry_point()
  sys.exit(main())
