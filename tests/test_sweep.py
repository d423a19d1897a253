"""tools/sweep.py: size names, grids, the SLURM array, and a sweep killed midway that completes
without rerunning finished points."""

import importlib.util
import json
import os
import signal
import subprocess
import sys
import time

import pytest

from conftest import ROOT
from papers_jax import sweep as sweep_lib
from papers_jax.errors import ConfigError

# Four ViT sizes under a 10 MiB device-memory budget: width 17 is not divisible by the smoke config's
# 2 heads, and width 512's train step needs ~90 MiB a device (8 simulated CPU devices): both fail.
SWEEP_FILE = """
from papers_jax.sweep import Sweep, product
def get_sweep():
  return Sweep(config="configs/vit/digits.py:smoke", points=product(**{"model.embed_dim": [16, 17], "num_steps": [4]})
               + [{"model.embed_dim": 24, "num_steps": 4}, {"model.embed_dim": 512, "num_steps": 4}],
               fixed={"checkpoint_every": 2, "log_every": 2, "memory_budget_gb": 0.01})
"""
GOOD = ["model.embed_dim=16,num_steps=4", "model.embed_dim=24,num_steps=4"]
BAD = "model.embed_dim=17,num_steps=4"
TOO_BIG = "model.embed_dim=512,num_steps=4"


def test_sizes_and_grids():
  assert sweep_lib.vit_size("S/16") == {"model.embed_dim": 384, "model.depth": 12, "model.num_heads": 6,
                                        "model.mlp_ratio": 4.0, "model.patch_size": 16}
  assert sweep_lib.vit_size("mu/4")["model.embed_dim"] == 32
  with pytest.raises(ConfigError, match="width one of"):
    sweep_lib.vit_size("XL/16")
  assert sweep_lib.product(a=[1, 2], b=[3]) == [{"a": 1, "b": 3}, {"a": 2, "b": 3}]
  assert sweep_lib.zip_(a=[1, 2], b=[3, 4]) == [{"a": 1, "b": 3}, {"a": 2, "b": 4}]
  with pytest.raises(ConfigError):
    sweep_lib.zip_(a=[1, 2], b=[3])
  s = sweep_lib.Sweep(config="x.py", points=[{"size": "B/16"}, {"config": "y.py:a=1", "num_steps": 5}],
                      fixed={"num_steps": 10})
  assert s.overrides(s.points[0])["model.depth"] == 12 and s.overrides(s.points[0])["num_steps"] == 10
  # A point may train a config of its own (ViT against ResNet); `config` is not an override.
  assert (s.config_of(s.points[0]), s.config_of(s.points[1])) == ("x.py", "y.py:a=1")
  assert s.overrides(s.points[1]) == {"num_steps": 5}
  # collect reads a point's values back from its directory name.
  point = {"config": "configs/vit/digits.py", "data.train_fraction": 0.25, "seed": 1, "size": "S/16",
           "data.affine_scale": (0.9, 1.1)}
  assert sweep_lib.point_values(sweep_lib.point_name(point)) == {
      "config": "configs-vit-digits.py", "data.train_fraction": 0.25, "seed": 1, "size": "S-16",
      "data.affine_scale": "-0.9,-1.1-"}


def _sweep(tmp_path, *args, **kw):
  path = tmp_path / "tiny_sweep.py"
  path.write_text(SWEEP_FILE)
  return subprocess.Popen([sys.executable, os.path.join(ROOT, "tools", "sweep.py"), "run", str(path), *args],
                          cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          start_new_session=True, **kw)


def test_slurm_script_has_one_array_task_per_point(tmp_path):
  proc = _sweep(tmp_path, "--workdir", str(tmp_path / "w"), "--launcher", "slurm")
  assert proc.wait(timeout=120) == 0, proc.stdout.read()
  script = tmp_path / "w" / "sweep.sbatch"
  assert subprocess.run(["bash", "-n", str(script)]).returncode == 0
  text = script.read_text()
  assert "#SBATCH --array=0-3" in text
  # The points array has exactly one entry per point, each a papers_jax.main command of its own workdir.
  out = subprocess.run(["bash", "-c", f"SLURM_ARRAY_TASK_ID=0; eval \"$(sed -n '/^points=(/,/^)/p' {script})\"; "
                        "printf '%s\\n' \"${points[@]}\""], capture_output=True, text=True, check=True).stdout
  entries = out.strip().split("\n")
  assert len(entries) == 4 and all("-m papers_jax.main" in e for e in entries)
  assert len({e.split("--workdir=")[1].split()[0] for e in entries}) == 4


def test_a_killed_sweep_resumes_without_rerunning_finished_points_and_reports_a_failing_one(tmp_path):
  workdir = tmp_path / "w"
  proc = _sweep(tmp_path, "--workdir", str(workdir))
  first = workdir / GOOD[0] / "summary.json"
  deadline = time.time() + 600
  while not first.exists() and time.time() < deadline and proc.poll() is None:
    time.sleep(0.5)
  assert first.exists(), proc.stdout.read() if proc.poll() is not None else "no point finished in time"
  os.killpg(proc.pid, signal.SIGKILL)  # the sweep and the point it is running
  proc.wait()
  finished_at = first.stat().st_mtime
  proc = _sweep(tmp_path, "--workdir", str(workdir))
  out, _ = proc.communicate(timeout=900)
  assert proc.returncode == 1, out  # some points failed
  assert "1 already finished" in out
  assert first.stat().st_mtime == finished_at  # not run again
  assert all((workdir / n / "summary.json").exists() for n in GOOD)
  assert f"point {BAD} failed" in out
  # The point over the memory budget fails naming itself and what it needs; the others complete.
  assert f"point {TOO_BIG} failed (exit 2): error: out of memory: the train step needs" in out, out
  assert f"failed: {BAD}, {TOO_BIG}" in out
  assert not (workdir / TOO_BIG / "summary.json").exists()
  failures = [json.loads(l) for l in open(workdir / "failures.jsonl")]
  assert [f["point"] for f in failures] == [BAD, TOO_BIG], failures
  assert "divisible" in failures[0]["error"], failures
  assert "more than memory_budget_gb=0.01" in failures[1]["error"], failures
  collect = subprocess.run([sys.executable, os.path.join(ROOT, "tools", "sweep.py"), "collect", str(workdir)],
                           cwd=ROOT, capture_output=True, text=True, timeout=120)
  assert collect.returncode == 0, collect.stderr
  rows = [json.loads(l) for l in open(workdir / "results.jsonl")]
  assert sorted(r["point"] for r in rows) == sorted(GOOD) and all(r["steps"] == 4 for r in rows)


def test_every_shipped_sweep_builds_a_valid_config_for_each_point():
  import glob
  import importlib.util

  from papers_jax.core import config as config_lib
  spec = importlib.util.spec_from_file_location("sweep_tool", os.path.join(ROOT, "tools", "sweep.py"))
  tool = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(tool)
  files = sorted(glob.glob(os.path.join(ROOT, "configs", "sweeps", "*.py")))
  assert files
  for path in files:
    sweep = tool.load_sweep(path)
    for point in sweep.points:
      config = tool._config(sweep, point)
      config_lib.validate(config, data_parallel=1, num_processes=1)


def test_failure_reason_names_the_error_out_of_memory_or_the_signal():
  spec = importlib.util.spec_from_file_location("sweep_tool", os.path.join(ROOT, "tools", "sweep.py"))
  tool = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(tool)
  assert tool.failure_reason(["I0 start", "error: bad config\n", ""], 2) == "error: bad config"
  xla = "jaxlib._jax.XlaRuntimeError: RESOURCE_EXHAUSTED: Out of memory while trying to allocate 9.1GiB."
  assert tool.failure_reason(["Traceback (most recent call last):", xla, "  at exit"], 1) == (
      f"error: out of device memory: {xla}")
  assert "killed by SIGKILL" in tool.failure_reason(["step 10"], -9)
  assert tool.failure_reason(["step 10", "Segfault here"], 139) == "Segfault here"
