"""The masked-image-modelling baselines of the MAE paper against MAE, by linear probe on scikit-learn's digits.

  python tools/mim_demo.py [--workdir runs/mim_digits] [--steps 300] [--docs docs]

(1) trains BEiT's visual tokenizer, the VQ-VAE of configs/vqvae/digits.py (`ema=1`); (2) pre-trains each method
for the same number of steps with configs/mae/digits.py's recipe: MAE, BEiT (configs/beit/digits.py), iGPT
autoregressive and BERT (configs/igpt/digits.py), the denoising autoencoder (configs/mae/digits_dae.py) and the
ViT paper's masked patch prediction (configs/vit/digits_mpp.py, its own recipe); (3) fits the linear probe of
evaluators/linear_probe.py on each task's frozen features of the 1,437 training digits and tests it on the 360
test digits, at the random initialisation (the trivial baseline: the same encoder untrained) and after
pre-training; and a probe on the raw pixels. Writes <workdir>/results.json after every method and the table
mim_digits.md to the workdir, or to `--docs DIR`. Every number is measured by the command that writes it;
`--reuse OTHER/results.json` takes the methods this run lacks from an earlier run of the same settings, and
the table then names each row's run.
"""

import argparse
import glob
import json
import os
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

# name → (config spec, what it is)
METHODS = {
    "mae": ("mae/digits.py:stage=pretrain", "MAE: 75% of the patches removed, their pixels reconstructed"),
    "beit": ("beit/digits.py", "BEiT: 40% of the patches masked block-wise, their VQ-VAE tokens predicted"),
    "igpt_ar": ("igpt/digits.py:objective=autoregressive", "iGPT, autoregressive: next grey level (8-colour palette)"),
    "igpt_bert": ("igpt/digits.py:objective=bert", "iGPT, BERT: 15% of the pixels masked, their grey level predicted"),
    "dae": ("mae/digits_dae.py", "denoising autoencoder: noise + 25% of the pixels dropped, all pixels reconstructed"),
    "mpp": ("vit/digits_mpp.py", "ViT masked patch prediction: 50% corrupted, mean grey level (3 bits) predicted"),
}


def load(spec: str, **overrides):
  from papers_jax.core import config as config_lib
  path, _, arg = spec.partition(":")
  config = config_lib.load(os.path.join(ROOT, "configs", path) + (f":{arg}" if arg else "")).unlock()
  for key, value in overrides.items():
    config_lib.set_path(config, key, value)
  return config.lock()


def tokenizer(workdir: str, steps: int) -> tuple[str, float]:
  from papers_jax.core import loop
  t0 = time.time()
  loop.train(load(f"vqvae/digits.py:ema=1,steps={steps}"), workdir)
  return sorted(glob.glob(os.path.join(workdir, "checkpoints", "*", "state")),
                key=lambda p: int(p.split(os.sep)[-2]))[-1], time.time() - t0


def probe(trainer) -> float:
  from papers_jax.core import evals
  spec = evals.Eval("linear_probe", "linear_probe", trainer.config.data.eval_split, 0,
                    train_split=trainer.config.data.train_split)
  return float(trainer.run_eval(spec, 0)["eval/linear_probe/linear_probe_top1"])


def pretrain(name: str, workdir: str, steps: int, tokenizer_path: str | None) -> dict:
  from papers_jax.core import loop
  spec = METHODS[name][0]
  overrides = {"num_steps": steps, "schedule.warmup_steps": max(steps // 10, 1), "checkpoint_every": steps,
               "eval_every": steps}
  config = load(spec, **overrides).unlock()
  config.evals = {}
  if name == "beit":
    config.beit.tokenizer = tokenizer_path
  trainer = loop.Trainer(config.lock(), workdir)
  at_init = probe(trainer)
  t0 = time.time()
  summary = trainer.run()
  wall = time.time() - t0
  if summary["steps"] < steps:  # stopped early (SIGTERM: a preemption checkpoint): nothing to record
    sys.exit(f"{name} stopped at step {summary['steps']} of {steps}; rerun the command to resume it")
  return dict(spec=spec, steps=steps, at_init=at_init, trained=probe(trainer), pretrain_s=wall,
              eval_loss=summary.get("eval/loss"), summary={k: v for k, v in summary.items() if k.startswith("eval/")})


def igpt_layers(name: str, workdir: str, steps: int) -> list[float]:
  """The linear probe on each block's feature of a finished iGPT run: the paper's probe-by-depth curve."""
  from papers_jax.core import evals, loop, sharding
  config = load(METHODS[name][0], num_steps=steps, **{"schedule.warmup_steps": max(steps // 10, 1)}).unlock()
  config.evals = {}
  trainer = loop.Trainer(config.lock(), workdir)
  trainer.run()  # restores the finished run's last checkpoint (no steps left); the constructor alone holds the init
  spec = evals.Eval("linear_probe", "linear_probe", config.data.eval_split, 0, train_split=config.data.train_split)
  out = []
  for layer in range(trainer.task.depth):
    features_fn, preprocess = trainer.task.features(trainer, layer)
    with sharding.use_mesh(trainer.mesh, trainer.rules):
      metrics = evals.feature_metrics(spec, features_fn, trainer.eval_sources[spec.train_split],
                                      trainer.eval_sources[spec.split], preprocess)
    out.append(float(metrics["linear_probe_top1"]))
  return out


def pixel_probe() -> float:
  """The linear probe on the raw 16×16 pixels (the evaluation preprocessing of configs/mae/digits.py)."""
  import numpy as np
  from papers_jax.core.loop import preprocess_fn
  from papers_jax.data import sources
  from papers_jax.evaluators import linear_probe
  from papers_jax.tasks import get_task
  config = load("mae/digits.py:stage=pretrain")
  fn = preprocess_fn(config, get_task(config), train=False)

  def read(split):
    source = sources.get_source(config.data, split)
    examples = [fn(dict(source[i]), None) for i in range(len(source))]
    return (np.stack([e["image"].reshape(-1) for e in examples]).astype(np.float32) / 255.0,
            np.asarray([e["label"] for e in examples]))
  return linear_probe.fit_and_evaluate(*read("train"), *read("test"))["linear_probe_top1"]


def table(results: dict, args, device: str) -> str:
  pct = lambda x: f"{100 * x:.1f}%"  # noqa: E731
  runs = sorted({results[name].get("run", args.workdir) for name in METHODS if name in results})
  run_column = len(runs) > 1
  label = lambda r: f" {chr(ord('A') + runs.index(r.get('run', args.workdir)))} |" if run_column else ""  # noqa: E731
  rows = [f"| raw pixels (16×16 = 256 features) | — | — | {pct(results['pixels'])} | — |"
          + " — |" * run_column]
  for name in METHODS:
    r = results.get(name)
    if r is None:
      continue
    rows.append(f"| {METHODS[name][1]} (`configs/{r['spec']}`) | {pct(r['at_init'])} | {pct(r['trained'])} | "
                f"{100 * (r['trained'] - r['at_init']):+.1f} | {r['pretrain_s']:.0f} s |" + label(r))
  return "\n".join([
      "# Masked image modelling baselines against MAE, by linear probe on digits", "",
      f"Measured by `python tools/mim_demo.py {' '.join(sys.argv[1:])}` on {device}, {time.strftime('%Y-%m-%d')}:"
      " every method",
      f"pre-trained for {args.steps} steps of batch 256 on the 1,437 training digits (no labels), then a linear",
      "probe (evaluators/linear_probe.py: softmax regression on standardised frozen features) fitted on the",
      "training digits and tested on the fixed 360-image test split. \"random init\" is the same encoder before",
      "pre-training (the trivial baseline each method must beat).",
      *([f"BEiT's tokenizer: the VQ-VAE of configs/vqvae/digits.py (`ema=1`), {results['tokenizer_steps']} steps "
         f"({results['tokenizer_s']:.0f} s)."] if "tokenizer" in results else []),
      *([""] + [f"Run {chr(ord('A') + i)}: `{run}`." for i, run in enumerate(runs)] if run_column else []),
      "", "| method | probe, random init | probe, pre-trained | gain (points) | pre-training time |"
      + " run |" * run_column, "|---|---|---|---|---|" + "---|" * run_column, *rows, "",
      *[f"iGPT's probe by block ({label}; blocks 0-3 of 4, the table's row is block 2): "
        + ", ".join(pct(x) for x in results[name]["layers"]) + "." for name, label in
        (("igpt_ar", "autoregressive"), ("igpt_bert", "BERT")) if "layers" in results.get(name, {})], "",
  ])


def main():
  parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--workdir", default="runs/mim_digits")
  parser.add_argument("--steps", type=int, default=300)
  parser.add_argument("--tokenizer-steps", type=int, default=1000)
  parser.add_argument("--methods", default=",".join(METHODS))
  parser.add_argument("--docs", default="")
  parser.add_argument("--reuse", default="", help="an earlier run's results.json: the methods this run lacks")
  parser.add_argument("--skip-layers", action="store_true", help="no probe-by-block curve of the iGPT runs")
  args = parser.parse_args()
  import jax
  run = os.path.abspath(args.workdir)
  os.makedirs(run, exist_ok=True)
  path = os.path.join(run, "results.json")
  results = json.load(open(path)) if os.path.exists(path) else {}
  device = f"{jax.devices()[0].device_kind} ({os.cpu_count()} cores, shared with other jobs)"
  if args.reuse:
    for name, r in json.load(open(args.reuse)).items():
      if name in METHODS and name not in results:
        results[name] = r | {"run": r.get("run", os.path.dirname(os.path.abspath(args.reuse)))}
        if name == "beit":  # the tokenizer that run's BEiT read
          results.update({k: v for k, v in json.load(open(args.reuse)).items() if k.startswith("tokenizer")})
  if "pixels" not in results:
    results["pixels"] = pixel_probe()
  for name in args.methods.split(","):
    if name in results:
      continue
    if name == "beit" and "tokenizer" not in results:  # only BEiT reads the tokenizer
      results["tokenizer"], results["tokenizer_s"] = tokenizer(os.path.join(run, "tokenizer"), args.tokenizer_steps)
      results["tokenizer_steps"] = args.tokenizer_steps
    results[name] = pretrain(name, os.path.join(run, name), args.steps, results.get("tokenizer"))
    json.dump(results, open(path, "w"), indent=2, default=str)
    print(name, {k: results[name][k] for k in ("at_init", "trained", "pretrain_s")}, flush=True)
  for name in ("igpt_ar", "igpt_bert"):
    if name in results and "layers" not in results[name] and "run" not in results[name] and not args.skip_layers:
      results[name]["layers"] = igpt_layers(name, os.path.join(run, name), args.steps)
      json.dump(results, open(path, "w"), indent=2, default=str)
  text = table(results, args, device)
  out_dir = args.docs or run
  os.makedirs(out_dir, exist_ok=True)
  with open(os.path.join(out_dir, "mim_digits.md"), "w") as f:
    f.write(text)
  json.dump(results, open(path, "w"), indent=2, default=str)
  print(text)


if __name__ == "__main__":
  main()
