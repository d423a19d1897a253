"""The kill -9 matrix: SIGKILL a run in every phase, resume it, and compare with an uninterrupted run.

`debug.kill_at="<phase>:<n>[:<ms>]"` makes the run SIGKILL itself <ms> after it reaches a phase for the
n-th time (core/loop.py: KillPoint). One chain of runs in one workdir meets a seeded random point of
each phase in turn (a step before the first checkpoint, start-up, a save, an evaluation, a later step,
the summary), each run resuming the previous one; the last run gets no kill. The mid-step kill comes after
a synchronous save, so the chain always trains on from a committed mid-run checkpoint. The final train state
(params, optimizer state, task state such as MoCo's queue), every metrics row except throughput, and
the summary must equal the uninterrupted run's.

Every run of a task is the same XLA program, so the persistent compilation cache compiles it once.
"""

import json
import os
import signal
import time

import jax
import numpy as np
import orbax.checkpoint as ocp

from conftest import ROOT
from mainrun import RUN_ARGS, SMOKE, comparable, run_main

SOAK = os.environ.get("PAPERS_JAX_SOAK") == "1"

# Both save asynchronously (as real runs do), so a kill can land while a save is being written.
TASKS = {
    "classification": dict(
        config=SMOKE, num_steps=30, checkpoint_every=10,
        args=[*RUN_ARGS, "--config.async_checkpoint=true", "--config.eval_every=10"]),
    # A momentum encoder and a queue in the state; evaluation runs a k-NN monitor.
    "moco_v2": dict(
        config=["--config", os.path.join(ROOT, "configs/ssl/moco_v2.py") + ":smoke"], num_steps=12,
        checkpoint_every=4,
        args=["--config.num_steps=12", "--config.checkpoint_every=4", "--config.log_every=2", "--config.eval_every=6",
              "--config.async_checkpoint=true"]),
    # Two optimizer phases (D then G), each with its own Adam state; samples written at each evaluation.
    "gan": dict(
        config=["--config", os.path.join(ROOT, "configs/gan/dcgan_digits.py") + ":smoke"], num_steps=12,
        checkpoint_every=4,
        args=["--config.num_steps=12", "--config.checkpoint_every=4", "--config.log_every=2", "--config.eval_every=6",
              "--config.async_checkpoint=true"]),
}


def run(task, workdir, *extra, check=True):
  t = TASKS[task]
  return run_main(workdir, *t["args"], *extra, config=t["config"], check=check)


def final_state(workdir, step):
  return ocp.StandardCheckpointer().restore(os.path.join(workdir, "checkpoints", str(step), "state"))


def read_rows(path):
  """metrics.jsonl's rows; any line that is not one complete JSON object fails the test."""
  if not os.path.exists(path):
    return []
  text = open(path).read()
  assert not text or text.endswith("\n"), f"{path} ends in a torn line"
  return [json.loads(line) for line in text.splitlines()]


# Fields measured with the wall clock: they differ between any two runs.
TIMED = ("throughput", "tokens_per_s", "mfu", "compile_s")


def rows_without_throughput(workdir):
  return [{k: v for k, v in r.items() if k not in TIMED} for r in read_rows(os.path.join(workdir, "metrics.jsonl"))]


def assert_same_as_reference(workdir, reference, num_steps):
  jax.tree.map(np.testing.assert_array_equal, final_state(workdir, num_steps), final_state(reference, num_steps))
  assert rows_without_throughput(workdir) == rows_without_throughput(reference)
  summary = json.load(open(os.path.join(workdir, "summary.json")))
  assert comparable(summary) == comparable(json.load(open(os.path.join(reference, "summary.json"))))


def committed_steps(workdir):
  path = os.path.join(workdir, "checkpoints")
  return sorted(int(d) for d in os.listdir(path) if d.isdigit()) if os.path.isdir(path) else []


def kill_plan(rng, checkpoint_every):
  """One seeded point in each phase, in the order the chain of resumed runs meets them."""
  return [
      # At the start of a step before the first checkpoint: nothing to resume from, but rows are logged.
      ("before the first checkpoint", f"step:{rng.integers(2, checkpoint_every)}"),
      ("start-up", f"startup:1:{rng.integers(0, 2000)}"),
      ("mid-save", f"save:1:{rng.integers(0, 150)}"),
      ("mid-eval", f"eval:1:{rng.integers(0, 300)}"),
      # Past this run's first save, which is synchronous here (killed_run): the next run trains on from a committed
      # mid-run checkpoint, so a resume that restored only part of the state (the optimizer's moments, say) shows.
      ("mid-step", f"step:{checkpoint_every + rng.integers(1, checkpoint_every)}:{rng.integers(0, 30)}"),
      ("summary", f"summary:1:{rng.integers(0, 20)}"),
  ]


def killed_run(task, workdir, kill_at, *extra):
  proc = run(task, workdir, f"--config.debug.kill_at={kill_at}", *extra, check=False)
  # A delayed kill fires even after the run's end: the timer thread keeps the process alive until then.
  assert proc.returncode == -signal.SIGKILL, f"kill_at={kill_at} never fired:\n{proc.stderr[-3000:]}"


def kill_in_every_phase(task, reference, workdir, seed=22):
  t = TASKS[task]
  for phase, kill_at in kill_plan(np.random.default_rng(seed), t["checkpoint_every"]):
    killed_run(task, workdir, kill_at, *(["--config.async_checkpoint=false"] if phase == "mid-step" else []))
    if phase == "before the first checkpoint":
      assert committed_steps(workdir) == [] and os.path.getsize(os.path.join(workdir, "metrics.jsonl")), kill_at
    if phase == "mid-step":
      assert 0 < committed_steps(workdir)[-1] < t["num_steps"], (kill_at, committed_steps(workdir))
  run(task, workdir)  # the same command finishes the run
  assert_same_as_reference(workdir, reference, t["num_steps"])


def soak(task, reference, tmp_dir, seed=2022):
  """Rounds (PAPERS_JAX_SOAK_ROUNDS, default 5) of 1–4 kills at random phases, occurrences and delays."""
  t = TASKS[task]
  rng = np.random.default_rng(seed)
  rounds, kills, t0 = int(os.environ.get("PAPERS_JAX_SOAK_ROUNDS", "5")), [], time.time()
  for r in range(rounds):
    workdir = os.path.join(tmp_dir, f"round{r}")
    for _ in range(rng.integers(1, 5)):
      phase = str(rng.choice(["startup", "step", "save", "eval", "summary"]))
      n = int(rng.integers(1, {"step": t["num_steps"], "save": 3, "eval": 2}.get(phase, 2)))
      kill_at = f"{phase}:{n}:{int(rng.integers(0, 500))}"
      proc = run(task, workdir, f"--config.debug.kill_at={kill_at}", check=False)
      kills.append((r, kill_at, proc.returncode, committed_steps(workdir)))
      # 0: the phase was not reached again (e.g. step n after a resume close to the end).
      assert proc.returncode in (-signal.SIGKILL, 0), proc.stderr[-3000:]
    run(task, workdir)
    assert_same_as_reference(workdir, reference, t["num_steps"])
  killed = sum(k[2] == -signal.SIGKILL for k in kills)
  print(f"\nsoak {task} (seed {seed}): {rounds} rounds, {len(kills)} runs with kill_at, {killed} killed, "
        f"all {rounds} resumed runs equal to the uninterrupted one; {time.time() - t0:.0f} s")
  for k in kills:
    print("  round %d kill_at=%s returncode=%d checkpoints after=%s" % k)
