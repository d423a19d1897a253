"""Runs `python -m papers_jax.main` in a subprocess for the end-to-end tests."""

import os
import subprocess
import sys

import orbax.checkpoint as ocp

from conftest import CACHE_DIR, ROOT, TEST_XLA_FLAGS

SMOKE = ["--config", os.path.join(ROOT, "configs/vit/digits.py") + ":smoke"]
RUN_ARGS = ["--config.num_steps=30", "--config.checkpoint_every=10", "--config.log_every=5",
            "--config.async_checkpoint=false"]


def main_env(devices: int = 1) -> dict:
  env = {**os.environ, "XLA_FLAGS": f"--xla_force_host_platform_device_count={devices} {TEST_XLA_FLAGS}",
         "PYTHONUNBUFFERED": "1",
         # Subprocesses share the suite's compilation cache: repeated runs of one config compile once.
         "JAX_COMPILATION_CACHE_DIR": CACHE_DIR,
         "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0.5"}
  env.pop("JAX_PLATFORMS", None)
  return env


def run_main(workdir, *args, check=True, wait=True, devices=1, config=SMOKE, prefix=(), timeout=300):
  cmd = [*prefix, sys.executable, "-m", "papers_jax.main", *config, f"--workdir={workdir}", *args]
  if not wait:
    return subprocess.Popen(cmd, cwd=ROOT, env=main_env(devices), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)
  proc = subprocess.run(cmd, cwd=ROOT, env=main_env(devices), capture_output=True, text=True, timeout=timeout)
  if check:
    assert proc.returncode == 0, proc.stderr[-3000:]
  return proc


def final_params(workdir, step):
  path = os.path.join(workdir, "checkpoints", str(step), "state")
  return ocp.StandardCheckpointer().restore(path)["params"]


def comparable(summary):
  return {k: v for k, v in summary.items()
          if k not in ("wall_time_s", "examples_per_s", "resumed_from", "compile_s", "peak_flops", "peak_source")}


def train_rows(workdir):
  import json
  return [json.loads(l) for l in open(os.path.join(workdir, "metrics.jsonl")) if '"loss"' in l]
