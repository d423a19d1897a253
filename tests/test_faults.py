"""Faults through `python -m papers_jax.main`: preemption, damaged checkpoints, failed writes, NaN.

Every test ends by checking that no previously complete checkpoint was lost.
"""

import contextlib
import json
import os
import shutil
import subprocess
import sys

import jax
import numpy as np
import pytest

from mainrun import RUN_ARGS, comparable, final_params, run_main, train_rows

BATCH = 32  # the smoke config's global batch
# Runs compared bit for bit must be the same XLA program, and the NaN tests' fault injection adds an
# input to it; so every run here carries that input, poisoning no batch unless the test says so.
ARGS = [*RUN_ARGS, "--config.debug.nan_at_positions=(1000000000,)"]


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp("reference"))
  run_main(workdir, *ARGS)
  return workdir


def copy_run(reference, workdir, keep_steps):
  shutil.copytree(reference, workdir)
  os.remove(os.path.join(workdir, "summary.json"))
  for step in os.listdir(os.path.join(workdir, "checkpoints")):
    if int(step) not in keep_steps:
      shutil.rmtree(os.path.join(workdir, "checkpoints", step))
  return str(workdir)


def assert_same_params(a, b):
  jax.tree.map(np.testing.assert_array_equal, a, b)


def test_sigterm_checkpoints_exits_0_and_resumes_exactly(reference, tmp_path):
  workdir = str(tmp_path / "preempted")
  args = [*ARGS, "--config.async_checkpoint=true", "--config.debug.sigterm_at_step=13"]
  proc = run_main(workdir, *args)
  assert "preempted at step 13" in proc.stdout, proc.stdout + proc.stderr[-2000:]
  assert sorted(os.listdir(os.path.join(workdir, "checkpoints"))) == ["10", "13"]
  meta = json.load(open(os.path.join(workdir, "checkpoints", "13", "meta", "metadata")))
  assert meta["step"] == 13 and meta["data_position"] == 13 * BATCH
  final_params(workdir, 13)  # complete: it restores
  assert not os.path.exists(os.path.join(workdir, "summary.json"))

  run_main(workdir, *args)  # the same command resumes
  summary = json.load(open(os.path.join(workdir, "summary.json")))
  assert summary["resumed_from"] == 13
  assert comparable(summary) == comparable(json.load(open(os.path.join(reference, "summary.json"))))
  assert_same_params(final_params(workdir, 30), final_params(reference, 30))


def test_damaged_latest_checkpoint_is_set_aside_and_the_previous_one_used(reference, tmp_path):
  workdir = copy_run(reference, tmp_path / "truncated", keep_steps=(10, 20, 30))
  for root, _, files in os.walk(os.path.join(workdir, "checkpoints", "30", "state")):
    for f in files:  # truncate every file, as an interrupted copy would
      path = os.path.join(root, f)
      os.truncate(path, os.path.getsize(path) // 2)
  # A save that crashed before orbax's atomic rename leaves only a temporary directory.
  shutil.copytree(os.path.join(workdir, "checkpoints", "20"),
                  os.path.join(workdir, "checkpoints", "25.orbax-checkpoint-tmp-1234"))
  proc = run_main(workdir, *ARGS)
  assert "damaged" in proc.stderr and "checkpoints/30" in proc.stderr, proc.stderr[-3000:]
  summary = json.load(open(os.path.join(workdir, "summary.json")))
  assert summary["resumed_from"] == 20
  assert_same_params(final_params(workdir, 30), final_params(reference, 30))
  assert os.path.isdir(os.path.join(workdir, "checkpoints", "30.damaged"))  # kept for inspection
  assert_same_params(final_params(workdir, 20), final_params(reference, 20))


def test_every_checkpoint_damaged_names_the_fix(reference, tmp_path):
  workdir = copy_run(reference, tmp_path / "damaged", keep_steps=(20, 30))
  for step in ("20", "30"):
    for root, _, files in os.walk(os.path.join(workdir, "checkpoints", step, "state")):
      for f in files:
        if not f.startswith("_"):
          with open(os.path.join(root, f), "wb") as fh:
            fh.write(b"garbage")
  proc = run_main(workdir, *ARGS, check=False)
  assert proc.returncode == 2
  assert "delete" in proc.stderr and "checkpoints/20" in proc.stderr, proc.stderr[-3000:]
  assert "Traceback" not in proc.stderr
  assert not os.path.exists(os.path.join(workdir, "summary.json"))


def test_orbax_abandoned_reads_are_dropped_even_when_the_task_repr_does_not_name_orbax():
  """asyncio logs an abandoned orbax read as 'Task exception was never retrieved'; a finished task's
  repr need not name orbax, but its traceback does (seen in CI under load)."""
  import logging
  from papers_jax.core import checkpoint
  code = compile("def read():\n  raise ValueError('Expecting value: line 1 column 1 (char 0)')\n",
                 os.path.join(os.sep, "site-packages", "orbax", "checkpoint", "store.py"), "exec")
  scope = {}
  exec(code, scope)  # noqa: S102
  try:
    scope["read"]()
  except ValueError:
    exc_info = sys.exc_info()
  message = "Task exception was never retrieved\nfuture: <Task finished name='Task-7' coro=<read() done>>"
  record = logging.LogRecord("asyncio", logging.ERROR, __file__, 1, message, None, exc_info)
  assert not checkpoint._DropOrbaxOrphanedReads().filter(record)
  other = logging.LogRecord("asyncio", logging.ERROR, __file__, 1, message, None, None)
  assert checkpoint._DropOrbaxOrphanedReads().filter(other)  # nothing says orbax: kept
  # A task that awaited a tensorstore future: asyncio's frames only, the spec in the exception's repr.
  wrapped = ("Task exception was never retrieved\nfuture: <Task finished name='Task-9' coro=<_wrap_awaitable() "
             "done, defined at /usr/lib/python3.11/asyncio/tasks.py:687> exception=ValueError('Error opening "
             "\"zarr\" driver: [tensorstore_spec=\\'{\"driver\":\"zarr\",\"recheck_cached_data\":false}\\']')>")
  record = logging.LogRecord("asyncio", logging.ERROR, __file__, 1, wrapped, None, None)
  assert not checkpoint._DropOrbaxOrphanedReads().filter(record)


@contextlib.contextmanager
def read_only(path):
  """A directory nobody can write to: chmod, and for root (whom chmod does not stop) chattr +i."""
  os.chmod(path, 0o555)
  immutable = os.geteuid() == 0 and subprocess.run(["chattr", "+i", path], capture_output=True).returncode == 0
  try:
    probe = os.path.join(path, "probe")
    try:
      open(probe, "w").close()
      os.remove(probe)
      pytest.skip("this machine gives no way to make a directory read-only")
    except OSError:
      pass
    yield
  finally:
    if immutable:
      subprocess.run(["chattr", "-i", path], check=True)
    os.chmod(path, 0o755)


# A full disk, as far as the checkpoint's data files are concerned: writes past 16 KiB fail (EFBIG;
# Python ignores SIGXFSZ). Metrics and event files stay far below that size.
FULL_DISK = ("bash", "-c", 'ulimit -f 16 && exec "$@"', "full_disk")


@pytest.mark.parametrize("fault", ["read_only", "full_disk"])
def test_failed_checkpoint_write_stops_and_keeps_the_previous_one(reference, tmp_path, fault):
  workdir = copy_run(reference, tmp_path / fault, keep_steps=(10,))
  checkpoints = os.path.join(workdir, "checkpoints")
  with read_only(checkpoints) if fault == "read_only" else contextlib.nullcontext():
    proc = run_main(workdir, *ARGS, check=False, prefix=FULL_DISK if fault == "full_disk" else ())
  assert proc.returncode == 2, proc.stderr[-3000:]
  assert "could not write the checkpoint of step 20" in proc.stderr, proc.stderr[-3000:]
  assert "steps [10]" in proc.stderr and "Traceback" not in proc.stderr
  assert [d for d in os.listdir(checkpoints) if not d.startswith("20.")] == ["10"]
  assert_same_params(final_params(workdir, 10), final_params(reference, 10))


def test_nan_stops_the_run_naming_the_step_and_the_metric(tmp_path):
  workdir = str(tmp_path / "nan_stop")
  bad = 11 * BATCH + 5  # an example of step 12's batch
  proc = run_main(workdir, *RUN_ARGS, f"--config.debug.nan_at_positions=({bad},)", "--config.deterministic=true",
                  check=False)
  assert proc.returncode == 2, proc.stderr[-3000:]
  assert "step 12 had a non-finite loss" in proc.stderr and "Traceback" not in proc.stderr, proc.stderr[-3000:]
  assert os.listdir(os.path.join(workdir, "checkpoints")) == ["10"]
  environment = json.load(open(os.path.join(workdir, "config.json")))["environment"]
  assert environment["deterministic"] and "--xla_gpu_deterministic_ops=true" in environment["xla_flags"]


def test_nan_rolls_back_to_the_last_checkpoint_and_skips_the_batch(reference, tmp_path):
  workdir = str(tmp_path / "nan_rollback")
  bad_start = 11 * BATCH  # step 12's batch
  proc = run_main(workdir, *RUN_ARGS, "--config.nonfinite=rollback", f"--config.debug.nan_at_positions=({bad_start},)")
  assert "rolled back to step 10" in proc.stderr, proc.stderr[-3000:]
  summary = json.load(open(os.path.join(workdir, "summary.json")))
  assert summary["steps"] == 30 and summary["rollbacks"] == 1
  meta = json.load(open(os.path.join(workdir, "checkpoints", "30", "meta", "metadata")))
  assert meta["skipped_positions"] == [bad_start] and meta["data_position"] == 31 * BATCH
  rows, expected = train_rows(workdir), train_rows(reference)
  assert [r["step"] for r in rows] == list(range(5, 31, 5))
  untimed = lambda row: {k: v for k, v in row.items() if k not in ("throughput", "compile_s")}  # noqa: E731
  assert [untimed(r) for r in rows[:2]] == [untimed(r) for r in expected[:2]]
  assert_same_params(final_params(workdir, 10), final_params(reference, 10))
  assert all(np.isfinite(r["loss"]) for r in rows)


def test_rollbacks_are_limited(tmp_path):
  workdir = str(tmp_path / "nan_again")
  bad = ",".join(str(p) for p in range(11 * BATCH, 20 * BATCH, BATCH))  # every batch from step 12 on
  proc = run_main(workdir, *RUN_ARGS, "--config.nonfinite=rollback", "--config.max_rollbacks=2",
                  f"--config.debug.nan_at_positions=({bad},)", check=False)
  assert proc.returncode == 2
  assert "after 2 rollbacks" in proc.stderr and proc.stderr.count("rolled back to step 10") == 2, proc.stderr[-3000:]
  assert sorted(os.listdir(os.path.join(workdir, "checkpoints"))) == ["0", "10"]
