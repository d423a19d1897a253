"""Self-training from one command: the labelled-only teacher, then `--iterations` noised students, each
trained on the labelled part and its teacher's pseudo-labels and then becoming the next teacher
(papers_jax/tasks/self_training.py; configs/self_training/digits.py).

  python tools/self_training.py [--iterations 2] [--widths 64,64,96] [--arg labels=hard,threshold=0.9]
                                [--student-steps 900] [--teacher-run runs/self_training]
                                [--workdir runs/self_training]

Iteration 0 is the labelled-only baseline (the config without a teacher). Iteration k's model is the
config's with embed_dim = the k-th of `--widths` (num_heads = width / 16), so students are equal to or
larger than their teachers. Each iteration is one normal trainer run in <workdir>/iteration<k>; its
teacher is the previous run's last checkpoint. `--teacher-run DIR` reuses DIR's iteration 0 (a variant's
students then start from the same labelled-only teacher); `--student-steps` trains the students longer. Prints and writes <workdir>/results.json and table.md: test
accuracy per iteration, how many unlabelled digits the teacher labelled and how many of those labels were
right (read for the table only; the student never sees the true labels of the unlabelled part).
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


def load_config(path: str, arg: str | None):
  import importlib.util
  spec = importlib.util.spec_from_file_location("self_training_config", path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config(arg)


def last_checkpoint(workdir: str) -> str:
  steps = sorted(int(os.path.basename(p)) for p in glob.glob(os.path.join(workdir, "checkpoints", "*"))
                 if os.path.basename(p).isdigit())
  if not steps:
    raise SystemExit(f"{workdir} has no checkpoint")
  return os.path.join(workdir, "checkpoints", str(steps[-1]), "state")


def run(args) -> list[dict]:
  from papers_jax.core import loop
  widths = [int(w) for w in args.widths.split(",")]
  if len(widths) < args.iterations + 1 or any(b < a for a, b in zip(widths, widths[1:])):
    raise SystemExit(f"--widths needs {args.iterations + 1} non-decreasing widths (teacher, then each student)")
  rows, teacher = [], None
  if args.teacher_run:  # iteration 0 from an earlier run of this tool
    first = os.path.join(os.path.abspath(args.teacher_run), "iteration0")
    rows.append(json.load(open(os.path.join(first, "row.json"))))
    model = json.load(open(os.path.join(first, "config.json")))["config"]["model"]
    model.pop("num_classes", None)
    teacher = (last_checkpoint(first), model)
  for k in range(len(rows), args.iterations + 1):
    config = load_config(args.config, args.arg).unlock()
    config.model.update(embed_dim=widths[k], num_heads=max(1, widths[k] // 16))
    if teacher is not None:
      config.self_training.teacher, config.self_training.teacher_model = teacher
    if k and args.student_steps:
      config.num_steps = args.student_steps
      config.checkpoint_every = args.student_steps
    config.lock()
    workdir = os.path.join(args.workdir, f"iteration{k}")
    shutil.rmtree(workdir, ignore_errors=True)
    load, t0 = os.getloadavg()[0], time.time()
    trainer = loop.Trainer(config, workdir)
    summary = trainer.run()
    stats = trainer.task.stats
    rows.append(dict(iteration=k, width=widths[k], role="labelled only" if k == 0 else "student",
                     train_examples=len(trainer.train_source), **stats,
                     test_accuracy=summary["eval/accuracy"],
                     steps=summary["steps"], batch=config.batch_size, wall_s=time.time() - t0, load_avg=load,
                     date=time.strftime("%Y-%m-%d")))
    print(json.dumps(rows[-1]), flush=True)
    with open(os.path.join(workdir, "row.json"), "w") as f:
      json.dump(rows[-1], f)
    model = dict(config.model)
    model.pop("num_classes", None)
    teacher = (last_checkpoint(workdir), model)
  return rows


def table(rows, command: str) -> str:
  pct = lambda x: f"{100 * x:.1f}%"  # noqa: E731
  lines = ["| iteration | model width | trained on | teacher's labels right | test accuracy | steps × batch "
           "| run time | load | date |", "|---|---|---|---|---|---|---|---|---|"]
  for r in rows:
    on = f"{r['labelled']} labelled" + (f" + {r['pseudo_labelled']} pseudo-labelled" if r["iteration"] else "")
    right = pct(r["pseudo_label_accuracy"]) if r["iteration"] else "—"
    lines.append(f"| {r['iteration']} ({r['role']}) | {r['width']} | {on} | {right} | {pct(r['test_accuracy'])} | "
                 f"{r['steps']} × {r['batch']} | {r['wall_s']:.0f} s | {r['load_avg']:.1f} | {r['date']} |")
  return "\n".join(lines) + f"\n\nCommand: `{command}`"


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--config", default=os.path.join(ROOT, "configs", "self_training", "digits.py"))
  parser.add_argument("--arg", default=None, help="the config's argument, e.g. labels=hard,threshold=0.9")
  parser.add_argument("--iterations", type=int, default=2)
  parser.add_argument("--widths", default="64,64,96")
  parser.add_argument("--student-steps", type=int, default=0, help="the students' steps (0: the config's)")
  parser.add_argument("--teacher-run", default="", help="reuse this earlier workdir's iteration 0")
  parser.add_argument("--workdir", default="runs/self_training")
  args = parser.parse_args(argv)
  import logging
  logging.basicConfig(level=logging.WARNING)
  args.workdir = os.path.abspath(args.workdir)
  os.makedirs(args.workdir, exist_ok=True)
  rows = run(args)
  with open(os.path.join(args.workdir, "results.json"), "w") as f:
    json.dump(rows, f, indent=2)
  text = table(rows, "python tools/self_training.py " + " ".join(argv if argv is not None else sys.argv[1:]))
  with open(os.path.join(args.workdir, "table.md"), "w") as f:
    f.write(text + "\n")
  print(text)
  return 0


if __name__ == "__main__":
  from papers_jax.core import platform_setup
  platform_setup.setup_entry_point()
  sys.exit(main())
