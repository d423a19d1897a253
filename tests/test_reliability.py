"""What survives what (docs/reliability.md): kill -9 anywhere, changed configs on resume, torn metrics,
damaged-checkpoint noise and the multi-process launcher under SIGTERM.

The kill -9 matrix (tests/killmatrix.py) runs here for classification and in test_reliability_moco.py
for MoCo v2; PAPERS_JAX_SOAK=1 adds the longer seeded soak.
"""

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import jax
import jax.numpy as jnp
import pytest

import killmatrix
from conftest import ROOT, TEST_XLA_FLAGS, load_config
from mainrun import SMOKE, main_env, run_main

from papers_jax.core import metrics as metrics_lib
from papers_jax.core.checkpoint import Checkpointer
from papers_jax.errors import ConfigError


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
  """An uninterrupted classification run, made once for the module."""
  workdir = str(tmp_path_factory.mktemp("reference"))
  killmatrix.run("classification", workdir)
  return workdir


def test_kill_9_in_every_phase_then_resume_equals_an_uninterrupted_run(reference, tmp_path):
  killmatrix.kill_in_every_phase("classification", reference, str(tmp_path / "killed"))


@pytest.mark.skipif(not killmatrix.SOAK, reason="the seeded soak runs with PAPERS_JAX_SOAK=1")
def test_soak_random_kills(reference, tmp_path):
  killmatrix.soak("classification", reference, str(tmp_path))


# ------------------------------------------------------------------ defect 1: a changed config is not damage
def _save_steps(directory, tree, steps):
  ckpt = Checkpointer(directory, async_save=False)
  for step in steps:
    ckpt.save(step, tree, {"step": step})
  ckpt.close()


def test_a_changed_state_structure_stops_before_anything_is_renamed(tmp_path):
  from papers_jax.core.checkpoint import StructureMismatch
  directory = str(tmp_path / "checkpoints")
  saved = {"params": {f"layer{i}": jnp.zeros((4,)) for i in range(20)} | {"head": jnp.zeros((2, 3))},
           "step": jnp.zeros((), jnp.int32)}
  _save_steps(directory, saved, (2, 4))
  sharding = jax.sharding.SingleDeviceSharding(jax.devices()[0])
  spec = lambda shape, dtype=jnp.float32: jax.ShapeDtypeStruct(shape, dtype, sharding=sharding)
  changed = {"params": {f"layer{i}": spec((5,)) for i in range(20)} | {"extra": spec((3,))},
             "step": spec((), jnp.int32)}
  ckpt = Checkpointer(directory, async_save=False)
  with pytest.raises(StructureMismatch) as e:
    ckpt.restore_latest(changed)
  message = str(e.value)
  assert "params/layer0: saved float32[4], this config float32[5]" in message
  assert "params/head: only in the checkpoint float32[2, 3]" in message
  assert "params/extra: only in this config float32[3]" in message
  assert "and 10 more differences" in message and len(message.splitlines()) < 20  # capped
  assert "--workdir" in message and f"init_from={directory}/4/state" in message
  assert sorted(os.listdir(directory)) == ["2", "4"]  # nothing moved aside
  # The config that wrote them restores the newest step as before.
  state, meta = ckpt.restore_latest(jax.tree.map(lambda x: spec(x.shape, x.dtype), saved))
  assert meta["step"] == 4
  ckpt.close()


def test_a_damaged_step_whose_structure_matches_is_still_set_aside(tmp_path):
  directory = str(tmp_path / "checkpoints")
  saved = {"params": {"w": jnp.arange(4.0)}, "step": jnp.zeros((), jnp.int32)}
  _save_steps(directory, saved, (2, 4))
  for root, _, files in os.walk(os.path.join(directory, "4", "state")):
    for f in files:
      if not f.startswith("_"):  # the data, not the tree metadata
        open(os.path.join(root, f), "wb").write(b"garbage")
  ckpt = Checkpointer(directory, async_save=False)
  sharding = jax.sharding.SingleDeviceSharding(jax.devices()[0])
  state, meta = ckpt.restore_latest(jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=sharding),
                                                 saved))
  assert meta["step"] == 2 and sorted(os.listdir(directory)) == ["2", "4.damaged"]
  ckpt.close()


def test_resuming_with_another_model_stops_and_keeps_every_checkpoint(reference, tmp_path):
  workdir = str(tmp_path / "run")
  shutil.copytree(reference, workdir)
  before = sorted(os.listdir(os.path.join(workdir, "checkpoints")))
  config_before = open(os.path.join(workdir, "config.json")).read()
  proc = killmatrix.run("classification", workdir, "--config.model.embed_dim=64", check=False)
  assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
  assert "written with another config" in proc.stderr and "this config float32[64]" in proc.stderr, proc.stderr[-3000:]
  assert sorted(os.listdir(os.path.join(workdir, "checkpoints"))) == before
  assert open(os.path.join(workdir, "config.json")).read() == config_before
  assert not any(f.startswith("config.") and f != "config.json" for f in os.listdir(workdir))


# ------------------------------------------------------------------ defect 2: keys that change the data order
def _workdir_with_record(tmp_path, config):
  from papers_jax.core import run_config
  workdir = str(tmp_path / "run")
  os.makedirs(workdir)
  run_config.write(workdir, {"config": config.to_dict()}, metrics_lib.write_json_atomic)
  return workdir


def test_check_resume_names_changed_keys_and_honours_allow_config_change(tmp_path):
  from papers_jax.core import run_config
  workdir = _workdir_with_record(tmp_path, load_config("vit/digits.py", "smoke"))
  new = load_config("vit/digits.py", "smoke").unlock()
  new.batch_size, new.data.max_shift, new.optimizer.lr, new.mesh.data = 64, 2, 0.5, 2
  with pytest.raises(ConfigError) as e:
    run_config.check_resume(new, workdir, 10)
  message = str(e.value)
  assert "batch_size 32 → 64" in message and "data.max_shift 1 → 2" in message
  assert "optimizer.lr" not in message and "mesh" not in message  # free to change
  assert "--config.allow_config_change=batch_size,data.max_shift" in message
  new.allow_config_change = "batch_size, data"
  run_config.check_resume(new, workdir, 10)
  new.allow_config_change = "batch_sise"
  with pytest.raises(ConfigError, match="batch_sise"):
    run_config.allowed_changes(new)


def test_config_history_is_kept_and_a_missing_config_json_falls_back_to_it(tmp_path):
  from papers_jax.core import run_config
  workdir = _workdir_with_record(tmp_path, load_config("vit/digits.py", "smoke"))
  new = load_config("vit/digits.py", "smoke").unlock()
  new.seed = 5
  run_config.write(workdir, {"config": new.to_dict()}, metrics_lib.write_json_atomic)
  assert json.load(open(os.path.join(workdir, "config.1.json")))["config"]["seed"] == 0
  assert json.load(open(os.path.join(workdir, "config.json")))["config"]["seed"] == 5
  os.remove(os.path.join(workdir, "config.json"))  # e.g. deleted by hand: the history still speaks
  new.seed = 7
  with pytest.raises(ConfigError, match="seed 0 → 7"):
    run_config.check_resume(new, workdir, 10)


def test_resuming_with_another_seed_stops_unless_allowed(reference, tmp_path):
  workdir = str(tmp_path / "run")
  shutil.copytree(reference, workdir)
  os.remove(os.path.join(workdir, "summary.json"))
  proc = killmatrix.run("classification", workdir, "--config.seed=1", check=False)
  assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
  assert "seed 0 → 1" in proc.stderr and "allow_config_change=seed" in proc.stderr, proc.stderr[-3000:]
  assert not os.path.exists(os.path.join(workdir, "config.1.json"))
  killmatrix.run("classification", workdir, "--config.seed=1", "--config.allow_config_change=seed")
  assert json.load(open(os.path.join(workdir, "config.1.json")))["config"]["seed"] == 0
  record = json.load(open(os.path.join(workdir, "config.json")))
  assert record["config"]["seed"] == 1 and record["config"]["allow_config_change"] == "seed"


# ------------------------------------------------------------------ defect 5: metrics.jsonl after kills
def _write_lines(path, text):
  with open(path, "w") as f:
    f.write(text)


def test_a_start_without_a_checkpoint_drops_every_earlier_row(tmp_path):
  path = os.path.join(tmp_path, "metrics.jsonl")
  _write_lines(path, '{"step": 5, "loss": 2.0}\n{"step": 10, "loss": 1.5}\n')
  metrics_lib.MetricWriter(str(tmp_path), resume_step=None).close()  # nothing was restored
  assert killmatrix.read_rows(path) == []


def test_a_torn_last_row_is_dropped_on_resume(tmp_path):
  path = os.path.join(tmp_path, "metrics.jsonl")
  _write_lines(path, '{"step": 5, "loss": 2.0}\n{"step": 10, "loss": 1.5}\n{"step": 15, "lo')
  writer = metrics_lib.MetricWriter(str(tmp_path), resume_step=10)
  writer.write(15, {"loss": 1.25})
  writer.close()
  assert [r["step"] for r in killmatrix.read_rows(path)] == [5, 10, 15]
  assert open(path).read().count("\n") == 3


# ------------------------------------------------------------------ defect 7: orbax's abandoned reads
def test_abandoned_orbax_coroutines_print_nothing():
  # A coroutine of orbax's that is garbage-collected half-run with a failing finaliser reaches
  # sys.unraisablehook, which by default prints 'Exception ignored in: <coroutine ...>' and a traceback;
  # so does a callback into orbax's closed event loop ('Exception ignored in: None'), seen in this suite.
  code = """
import os, orbax.checkpoint
import papers_jax.core.checkpoint
source = '''
class Pending:
  def __await__(self):
    yield
async def read_chunk():
  try:
    await Pending()
  finally:
    raise RuntimeError('Event loop is closed')
'''
namespace = {}
exec(compile(source, os.path.join(os.path.dirname(orbax.checkpoint.__file__), '_src', 'read.py'), 'exec'), namespace)
for _ in range(200):
  coroutine = namespace['read_chunk']()
  coroutine.send(None)
  del coroutine
async def ours():
  try:
    await namespace['Pending']()
  finally:
    raise RuntimeError('not from orbax')
c = ours(); c.send(None); del c
# tensorstore's callbacks into orbax's closed event loop reach the hook with no object.
import sys, types
for _ in range(200):
  error = RuntimeError('Event loop is closed')
  sys.unraisablehook(types.SimpleNamespace(exc_type=RuntimeError, exc_value=error, exc_traceback=None,
                                           err_msg=None, object=None))
"""
  proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120,
                        env={**os.environ, "JAX_PLATFORMS": "cpu"})
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert "Event loop is closed" not in proc.stderr, proc.stderr[-3000:]
  assert proc.stderr.count("Exception ignored in") == 1 and "not from orbax" in proc.stderr  # others still shown


# ------------------------------------------------------------------ defect 4: the launcher under SIGTERM
LAUNCH_ARGS = ["--config.num_steps=1000", "--config.log_every=1", "--config.checkpoint_every=1000",
               "--config.async_checkpoint=false", "--config.eval_every=0"]


def test_sigterm_to_the_launcher_checkpoints_exits_0_and_resumes(tmp_path):
  workdir = str(tmp_path / "two_processes")
  env = {**main_env(), "PYTHON": sys.executable, "LOG_DIR": str(tmp_path)}
  env["XLA_FLAGS"] = TEST_XLA_FLAGS  # the launcher adds the device count
  launcher = subprocess.Popen(
      ["bash", os.path.join(ROOT, "launch/local_multiprocess.sh"), "2", "4", *SMOKE, f"--workdir={workdir}",
       *LAUNCH_ARGS], cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
  metrics, deadline = os.path.join(workdir, "metrics.jsonl"), time.time() + 300
  started = lambda: os.path.isfile(metrics) and os.path.getsize(metrics) > 0
  while time.time() < deadline and launcher.poll() is None and not started():
    time.sleep(0.05)  # both processes train once process 0 has logged a step
  launcher.send_signal(signal.SIGTERM)  # what SLURM sends before a requeue
  out, err = launcher.communicate(timeout=300)
  other = open(tmp_path / "process_1.log").read()
  assert launcher.returncode == 0, err[-3000:] + other[-3000:]
  assert "preempted at step" in out and "preempted at step" in other, out[-2000:] + err[-2000:]
  stopped = int(out.split("preempted at step ")[1].split(":")[0])
  assert os.listdir(os.path.join(workdir, "checkpoints")) == [str(stopped)]

  # The same command resumes (here in one process with the same 8 devices; SIGTERM again one step later).
  proc = run_main(workdir, *LAUNCH_ARGS, f"--config.debug.sigterm_at_step={stopped + 1}", devices=8)
  assert f"preempted at step {stopped + 1}" in proc.stdout, proc.stdout + proc.stderr[-2000:]
  assert f"at step {stopped}" in proc.stderr  # resumed from the launcher's checkpoint
