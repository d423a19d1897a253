"""The embedded MAE demo on scikit-learn's digits (CPU, minutes), and the mask-ratio sweep.

  python tools/mae_demo.py [--workdir runs/mae_digits] [--docs docs]
  python tools/mae_demo.py sweep [--ratios 0.25,0.5,0.6,0.75,0.9] [--steps 800] [--docs docs]

The tables and pictures go to the workdir unless `--docs DIR` is given (`--docs docs` publishes
them to the repository's docs/), so that a partial or trial run never overwrites published results.

demo: (1) pre-trains the MAE of configs/mae/digits.py; (2) probes its frozen encoder (class token)
with a weighted k-NN and a linear probe on extracted features, next to the same encoder at its
random init; (3) fine-tunes it (classification task with init_from); (4) trains the same ViT from
scratch for as long as pre-training + fine-tuning took together (wall clock, measured in this run).
Writes mae_digits.md (the table and the command) and the last reconstruction PNG.

sweep: pre-trains one MAE per mask ratio for the same number of steps and reports the
reconstruction loss and the k-NN / linear-probe accuracy of each; writes mae_mask_ratio.md
and mae_mask_ratio.png. All numbers are measured by the command that writes them.
"""

import argparse
import glob
import json
import os
import shutil
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)


def load_config(arg: str):
  from papers_jax.core import config as config_lib
  return config_lib.load(os.path.join(ROOT, "configs", "mae", "digits.py") + f":{arg}")


def encoder_features(trainer):
  """Class-token features of the train and test splits through the trainer's current MAE encoder."""
  import jax
  from papers_jax.core import sharding
  from papers_jax.evaluators import features

  encode = trainer.task._fn(trainer, "encode")
  apply = lambda images: encode(trainer.state.params, trainer.state.model_state, images)  # noqa: E731
  fn = trainer.task.preprocess(train=False)
  with sharding.use_mesh(trainer.mesh, trainer.rules):
    train = features.extract(apply, trainer.train_source, fn)
    test = features.extract(apply, trainer.eval_source, fn)
  jax.block_until_ready(train[0])
  return train, test


def probe(train, test) -> dict:
  from papers_jax.evaluators import knn, linear_probe
  out = knn.knn_accuracy(*train, *test, ks=(20, 200))
  out |= linear_probe.fit_and_evaluate(*train, *test)
  return out


def pretrain(workdir: str, arg: str):
  """(summary, probes of the random-init encoder, probes of the trained encoder, wall seconds)."""
  from papers_jax.core import loop
  shutil.rmtree(workdir, ignore_errors=True)
  t0 = time.time()
  trainer = loop.Trainer(load_config(arg), workdir)
  at_init = probe(*encoder_features(trainer))
  t0 = time.time()
  summary = trainer.run()
  wall = time.time() - t0
  trained = probe(*encoder_features(trainer))
  return summary, at_init, trained, wall


def classify(workdir: str, arg: str, **overrides):
  from papers_jax.core import loop
  shutil.rmtree(workdir, ignore_errors=True)
  config = load_config(arg).unlock()
  for k, v in overrides.items():
    config[k] = v
  t0 = time.time()
  summary = loop.train(config.lock(), workdir)
  return summary, time.time() - t0


def demo(args):
  import jax
  run = os.path.abspath(args.workdir)
  pre_summary, at_init, trained, t_pre = pretrain(os.path.join(run, "pretrain"), "stage=pretrain")
  ckpt = sorted(glob.glob(os.path.join(run, "pretrain", "checkpoints", "*", "state")),
                key=lambda p: int(p.split(os.sep)[-2]))[-1]
  ft_summary, t_ft = classify(os.path.join(run, "finetune"), "stage=finetune", init_from=ckpt)
  ft_steps = load_config("stage=finetune").num_steps
  scratch_steps = int(round(ft_steps * (t_pre + t_ft) / t_ft))
  sc_summary, t_sc = classify(os.path.join(run, "scratch"), f"stage=scratch,steps={scratch_steps}")
  sc_same_summary, t_sc_same = classify(os.path.join(run, "scratch_same_steps"), f"stage=scratch,steps={ft_steps}")

  os.makedirs(args.docs, exist_ok=True)
  pngs = sorted(glob.glob(os.path.join(run, "pretrain", "reconstructions", "*.png")))
  if pngs:
    shutil.copy(pngs[-1], os.path.join(args.docs, "mae_digits_reconstructions.png"))
  pct = lambda x: f"{100 * x:.1f}%"  # noqa: E731
  rows = [
      ("MAE encoder, random init (no training)", "—", pct(at_init["knn_top1_k20"]), pct(at_init["knn_top1_k200"]),
       pct(at_init["linear_probe_top1"]), "—", "—"),
      (f"MAE pre-trained, {pre_summary['steps']} steps × 256", f"{t_pre:.0f} s", pct(trained["knn_top1_k20"]),
       pct(trained["knn_top1_k200"]), pct(trained["linear_probe_top1"]),
       f"{pct(ft_summary['eval/accuracy'])} ({ft_steps} steps, {t_ft:.0f} s)", f"{t_pre + t_ft:.0f} s"),
      (f"same ViT from scratch, {scratch_steps} steps (time-matched)", "—", "—", "—", "—",
       pct(sc_summary["eval/accuracy"]), f"{t_sc:.0f} s"),
      (f"same ViT from scratch, {ft_steps} steps (step-matched to fine-tuning)", "—", "—", "—", "—",
       pct(sc_same_summary["eval/accuracy"]), f"{t_sc_same:.0f} s"),
  ]
  device = f"{jax.devices()[0].device_kind} ({os.cpu_count()} cores)"
  text = [
      "# MAE on scikit-learn digits (embedded demo)", "",
      f"Measured by `python tools/mae_demo.py --workdir {args.workdir} --docs {args.docs}` on {device},",
      f"{time.strftime('%Y-%m-%d')}; configs/mae/digits.py. Held-out top-1 on the fixed 360-image test split.",
      "k-NN: cosine, temperature 0.07, weighted vote; linear probe: softmax regression on standardised",
      "class-token features (papers_jax/evaluators). Pre-training eval loss (norm_pix_loss, masked patches): "
      f"{pre_summary.get('eval/loss', float('nan')):.4f}.", "",
      "| encoder | pre-training time | k-NN k=20 | k-NN k=200 | linear probe | fine-tune / supervised top-1 | total time |",
      "|---|---|---|---|---|---|---|",
      *["| " + " | ".join(r) + " |" for r in rows], "",
      "Reconstructions of the test images after pre-training (honest view: removed patches de-normalised",
      "with the visible patches' statistics): `mae_digits_reconstructions.png`.", "",
  ]
  with open(os.path.join(args.docs, "mae_digits.md"), "w") as f:
    f.write("\n".join(text))
  result = dict(pretrain=pre_summary, at_init=at_init, trained=trained, t_pre=t_pre, finetune=ft_summary, t_ft=t_ft,
                scratch=sc_summary, t_scratch=t_sc, scratch_steps=scratch_steps, scratch_same_steps=sc_same_summary)
  with open(os.path.join(run, "demo.json"), "w") as f:
    json.dump(result, f, indent=2, default=str)
  print("\n".join(text))


def sweep(args):
  import jax
  ratios = [float(r) for r in args.ratios.split(",")]
  rows = []
  for r in ratios:
    summary, at_init, probes, wall = pretrain(os.path.join(args.workdir, f"sweep_{r}"),
                                              f"stage=pretrain,mask_ratio={r},steps={args.steps}")
    rows.append(dict(ratio=r, loss=summary.get("eval/loss"), wall=wall, **probes))
    print(rows[-1], flush=True)
  # Every run starts from the same seed, so the same encoder: one random-init reference.
  os.makedirs(args.docs, exist_ok=True)
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  fig, ax = plt.subplots(figsize=(5, 3.5))
  xs = [row["ratio"] for row in rows]
  for key, label in (("knn_top1_k20", "k-NN (k=20)"), ("linear_probe_top1", "linear probe")):
    line, = ax.plot(xs, [100 * row[key] for row in rows], "o-", label=label)
    ax.axhline(100 * at_init[key], color=line.get_color(), ls=":", label=f"{label}, random init")
  ax.set_xlabel("mask ratio")
  ax.set_ylabel("held-out top-1 (%)")
  ax.set_title(f"MAE on digits, {args.steps} pre-training steps")
  ax.grid(alpha=0.3)
  ax.legend()
  fig.tight_layout()
  fig.savefig(os.path.join(args.docs, "mae_mask_ratio.png"), dpi=120)
  device = f"{jax.devices()[0].device_kind} ({os.cpu_count()} cores)"
  text = [
      "# MAE mask-ratio sweep on digits", "",
      f"Measured by `python tools/mae_demo.py sweep --ratios {args.ratios} --steps {args.steps}` on {device},",
      f"{time.strftime('%Y-%m-%d')}: one pre-training per ratio (configs/mae/digits.py, {args.steps} steps × 256),",
      "then k-NN and a linear probe on the frozen class-token features (360 held-out test images).",
      "The eval loss is on removed patches only, so it is not comparable across ratios.", "",
      "| mask ratio | visible patches (of 16) | eval loss | k-NN k=20 | k-NN k=200 | linear probe | pre-training time |",
      "|---|---|---|---|---|---|---|",
      f"| random init (no pre-training) | 16 | — | {100 * at_init['knn_top1_k20']:.1f}% | "
      f"{100 * at_init['knn_top1_k200']:.1f}% | {100 * at_init['linear_probe_top1']:.1f}% | — |",
      *[f"| {row['ratio']} | {int(16 * (1 - row['ratio']))} | {row['loss']:.4f} | {100 * row['knn_top1_k20']:.1f}% | "
        f"{100 * row['knn_top1_k200']:.1f}% | {100 * row['linear_probe_top1']:.1f}% | {row['wall']:.0f} s |"
        for row in rows], "",
      "![accuracy vs mask ratio](mae_mask_ratio.png)", "",
  ]
  with open(os.path.join(args.docs, "mae_mask_ratio.md"), "w") as f:
    f.write("\n".join(text))
  print("\n".join(text))


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("command", nargs="?", default="demo", choices=("demo", "sweep"))
  parser.add_argument("--workdir", default="runs/mae_digits")
  parser.add_argument("--docs", default=None,
                      help="where the tables and pictures go (default: the workdir; `docs` publishes them)")
  parser.add_argument("--ratios", default="0.25,0.5,0.6,0.75,0.9")
  parser.add_argument("--steps", type=int, default=800)
  args = parser.parse_args(argv)
  args.docs = args.docs or args.workdir
  import logging
  logging.basicConfig(level=logging.WARNING)
  (sweep if args.command == "sweep" else demo)(args)
  return 0


if __name__ == "__main__":
  from papers_jax.core import platform_setup
  platform_setup.setup_entry_point()
  sys.exit(main())
