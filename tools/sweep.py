"""Runs, lists, launches and collects a sweep (`configs/sweeps/<name>.py`, see papers_jax/sweep.py).

  python tools/sweep.py run configs/sweeps/vit_digits_sizes.py --workdir runs/sweep [--parallel 2]
  python tools/sweep.py run configs/sweeps/vit_digits_sizes.py --workdir runs/sweep --dry-run
  python tools/sweep.py run configs/sweeps/vit_digits_sizes.py --workdir /shared/sweep --launcher slurm
  python tools/sweep.py collect runs/sweep        # → runs/sweep/results.jsonl and results.md

run: every point trains through `python -m papers_jax.main` in `<workdir>/<point>`. A point whose
summary.json exists is finished and skipped; an interrupted one resumes from its checkpoint (the
trainer does that); a point that fails is reported (`failures.jsonl`, with its error line: a config
error, a train step over `memory_budget_gb`, XLA's RESOURCE_EXHAUSTED, or the signal that killed it)
and the others go on. Set `memory_budget_gb` in a sweep's `fixed` to fail, before training, the
points whose train step needs more memory per device than that. `--parallel N` runs N points at a time (with `--devices-per-point K`, each on its
own K GPUs through CUDA_VISIBLE_DEVICES). `--launcher slurm` writes `sweep.sbatch`, one array task
per point; `--launcher tpu` writes `sweep_tpu.sh`, the pod commands one point after another.
`--dry-run` lists the points, their parameters, analytic FLOPs per example and training compute.
"""

import argparse
import json
import os
import shlex
import signal
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from papers_jax.errors import UserError  # noqa: E402
from papers_jax.sweep import point_name, point_values  # noqa: E402


def load_sweep(path: str):
  from papers_jax.core import config as config_lib
  sweep = config_lib.load_file(path, "get_sweep", what="sweep")()
  names = [point_name(p) for p in sweep.points]
  if len(set(names)) != len(names):
    raise UserError(f"{path} lists some point twice: {sorted(n for n in names if names.count(n) > 1)}")
  return sweep


def command(sweep, point: dict, workdir: str, python: str = sys.executable) -> list[str]:
  args = [python, "-m", "papers_jax.main", f"--config={sweep.config_of(point)}", f"--workdir={workdir}"]
  return args + [f"--config.{k}={v}" for k, v in sweep.overrides(point).items()]


def _config(sweep, point):
  from papers_jax.core import config as config_lib
  config = config_lib.load(sweep.config_of(point)).unlock()
  for key, value in sweep.overrides(point).items():
    config_lib.set_path(config, key, value)
  return config.lock()


def describe(sweep, point: dict) -> dict:
  """Params (all and non-embedding), analytic forward FLOPs per example and training compute of a point,
  without running it (core/flops.py, the trainer's own accounting)."""
  from flax import nnx

  from papers_jax import tasks
  from papers_jax.core import flops as flops_lib
  config = _config(sweep, point)
  task = tasks.get_task(config)
  model = nnx.eval_shape(lambda: task.build_model(nnx.Rngs(params=0)))
  counts = flops_lib.model_counts(model, task)
  flops = counts["forward_flops_per_example"]
  steps = config.num_steps if config.num_epochs <= 0 else None
  compute = flops_lib.train_flops(flops, config.batch_size * steps) if steps and flops else float("nan")
  return {"point": point_name(point), **counts, "forward_flops_per_example": flops if flops else float("nan"),
          "train_flops": compute, "batch_size": config.batch_size, "num_steps": steps}


def _progress(done: int, total: int, started: float, finished_here: int):
  elapsed = time.time() - started
  eta = elapsed / finished_here * (total - done) if finished_here else float("nan")
  print(f"[sweep] {done}/{total} points done, {total - done} left, ETA {eta / 60:.1f} min", flush=True)


def failure_reason(log_lines, returncode: int) -> str:
  """Why a point failed: papers_jax.main's one-line `error:` (e.g. a config error, or a train step over
  memory_budget_gb), else XLA's out-of-memory error, else the signal that killed it, else the last line."""
  lines = [line.strip() for line in log_lines if line.strip()]
  error = next((line for line in reversed(lines) if line.startswith("error:")), None)
  if error:
    return error
  oom = next((line for line in reversed(lines) if "RESOURCE_EXHAUSTED" in line), None)
  if oom:
    return f"error: out of device memory: {oom}"
  if returncode < 0:
    name = signal.Signals(-returncode).name
    why = " (the host's out-of-memory killer sends it too)" if name == "SIGKILL" else ""
    return f"error: killed by {name}{why}"
  return lines[-1] if lines else ""


def run_local(sweep, workdir: str, parallel: int, devices_per_point: int):
  os.makedirs(workdir, exist_ok=True)
  points = [(p, os.path.join(workdir, point_name(p))) for p in sweep.points]
  todo = [(p, d) for p, d in points if not os.path.exists(os.path.join(d, "summary.json"))]
  done, failed, started, finished_here = len(points) - len(todo), [], time.time(), 0
  print(f"[sweep] {len(points)} points, {done} already finished", flush=True)
  running = []  # (process, point, dir, log file, slot)
  free_slots = list(range(parallel))
  while todo or running:
    while todo and free_slots:
      point, pdir = todo.pop(0)
      if os.path.exists(os.path.join(pdir, "summary.json")):  # finished meanwhile (another run of the sweep)
        done += 1
        continue
      slot = free_slots.pop(0)
      os.makedirs(pdir, exist_ok=True)
      env = dict(os.environ)
      if devices_per_point:
        env["CUDA_VISIBLE_DEVICES"] = ",".join(str(slot * devices_per_point + i) for i in range(devices_per_point))
      log = open(os.path.join(pdir, "sweep.log"), "a")
      proc = subprocess.Popen(command(sweep, point, pdir), cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
      running.append((proc, point, pdir, log, slot))
    time.sleep(0.5)
    for item in list(running):
      proc, point, pdir, log, slot = item
      if proc.poll() is None:
        continue
      running.remove(item)
      log.close()
      free_slots.append(slot)
      ok = proc.returncode == 0 and os.path.exists(os.path.join(pdir, "summary.json"))
      if ok:
        done, finished_here = done + 1, finished_here + 1
      else:
        error = failure_reason(open(os.path.join(pdir, "sweep.log"), errors="replace"), proc.returncode)
        failed.append({"point": point_name(point), "exit_code": proc.returncode, "error": error})
        print(f"[sweep] point {point_name(point)} failed (exit {proc.returncode}): {error}", flush=True)
        with open(os.path.join(workdir, "failures.jsonl"), "a") as f:
          f.write(json.dumps(failed[-1]) + "\n")
      _progress(done + len(failed), len(points), started, finished_here)
  names = f": {', '.join(f['point'] for f in failed)} (see {workdir}/failures.jsonl)" if failed else ""
  print(f"[sweep] finished: {done} of {len(points)} points; {len(failed)} failed{names}", flush=True)
  return 0 if not failed else 1


def write_slurm(sweep, workdir: str, sweep_path: str) -> str:
  os.makedirs(workdir, exist_ok=True)
  lines = ["#!/usr/bin/env bash", f"# One array task per point of {sweep_path}; submit with: sbatch {workdir}/sweep.sbatch",
           f"#SBATCH --array=0-{len(sweep.points) - 1}", "#SBATCH --job-name=papers_jax_sweep",
           "#SBATCH --output=slurm-%x-%A_%a.out", "#SBATCH --requeue", "#SBATCH --signal=TERM@120",
           "set -euo pipefail", f"cd {shlex.quote(ROOT)}", 'python=${VENV:-.venv}/bin/python',
           "# The arguments of each point's `python -m papers_jax.main`, one entry per array index.", "points=("]
  for point in sweep.points:
    pdir = os.path.join(workdir, point_name(point))
    lines.append("  " + shlex.quote(shlex.join(command(sweep, point, pdir)[1:])))
  lines += [")", 'eval "$python ${points[$SLURM_ARRAY_TASK_ID]}"', ""]
  path = os.path.join(workdir, "sweep.sbatch")
  with open(path, "w") as f:
    f.write("\n".join(lines))
  return path


def write_tpu(sweep, workdir: str) -> str:
  lines = ["#!/usr/bin/env bash", "# The sweep's points one after another on a TPU pod (launch/tpu_pod.sh); set TPU_NAME, ZONE.",
           "set -euo pipefail"]
  for i, point in enumerate(sweep.points):
    pdir = os.path.join(workdir, point_name(point))
    args = command(sweep, point, pdir)[3:]  # after `python -m papers_jax.main`
    lines.append(f"SETUP={1 if i == 0 else 0} {shlex.quote(os.path.join(ROOT, 'launch', 'tpu_pod.sh'))} "
                 + shlex.join(args))
  path = os.path.join(workdir, "sweep_tpu.sh")
  os.makedirs(workdir, exist_ok=True)
  with open(path, "w") as f:
    f.write("\n".join(lines) + "\n")
  return path


def collect(workdir: str) -> list[dict]:
  """One row per finished point: its values (from its name), compute fields and final metrics."""
  rows = []
  for name in sorted(os.listdir(workdir)):
    summary_path = os.path.join(workdir, name, "summary.json")
    if not os.path.exists(summary_path):
      continue
    summary = json.load(open(summary_path))
    values = {k: v for k, v in point_values(name).items() if k not in summary}
    row = {"point": name, **values, **{k: v for k, v in summary.items() if not isinstance(v, (dict, list))}}
    rows.append(row)
  with open(os.path.join(workdir, "results.jsonl"), "w") as f:
    f.writelines(json.dumps(r) + "\n" for r in rows)
  keys = [k for k in ("point", "params", "non_embedding_params", "forward_flops_per_example", "train_flops",
                      "examples_seen", "tokens_seen", "steps", "train/loss", "eval/loss", "eval/accuracy",
                      "wall_time_s") if any(r.get(k) is not None for r in rows)]
  fmt = lambda v: f"{v:.4g}" if isinstance(v, float) else str(v)  # noqa: E731
  table = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
  table += ["| " + " | ".join(fmt(r.get(k, "")) for k in keys) + " |" for r in rows]
  with open(os.path.join(workdir, "results.md"), "w") as f:
    f.write("\n".join(table) + "\n")
  return rows


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter,
                                   epilog="\n".join(__doc__.split("\n")[1:]))
  sub = parser.add_subparsers(dest="command", required=True)
  p = sub.add_parser("run")
  p.add_argument("sweep")
  p.add_argument("--workdir", required=True)
  p.add_argument("--parallel", type=int, default=1, help="points at a time (local launcher)")
  p.add_argument("--devices-per-point", type=int, default=0, help="GPUs per point with --parallel (0: all visible)")
  p.add_argument("--launcher", default="local", choices=("local", "slurm", "tpu"))
  p.add_argument("--dry-run", action="store_true")
  p = sub.add_parser("collect")
  p.add_argument("workdir")
  args = parser.parse_args(argv)
  try:
    if args.command == "collect":
      rows = collect(args.workdir)
      print(f"{len(rows)} finished points → {args.workdir}/results.jsonl, results.md")
      return 0
    sweep = load_sweep(args.sweep)
    workdir = os.path.abspath(args.workdir)
    if args.dry_run:
      rows = [describe(sweep, p) for p in sweep.points]
      for r in rows:
        n = r["non_embedding_params"]
        non_embedding = "" if n is None else f" ({n / 1e6:.3f}M non-embedding)"
        print(f"{r['point']}: {r['params'] / 1e6:.3f}M params{non_embedding}, "
              f"{r['forward_flops_per_example']:.4g} FLOPs/example "
              f"forward, {r['train_flops']:.4g} training FLOPs ({r['num_steps']} steps × {r['batch_size']})")
      print(f"total: {len(rows)} points, {sum(r['train_flops'] for r in rows):.4g} training FLOPs")
      return 0
    if args.launcher == "slurm":
      print(f"wrote {write_slurm(sweep, workdir, args.sweep)}")
      return 0
    if args.launcher == "tpu":
      print(f"wrote {write_tpu(sweep, workdir)}")
      return 0
    return run_local(sweep, workdir, max(1, args.parallel), args.devices_per_point)
  except UserError as e:
    print(f"error: {e}", file=sys.stderr)
    return 2


if __name__ == "__main__":
  sys.exit(main())
