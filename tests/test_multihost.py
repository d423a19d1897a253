"""Multi-process runs on one machine: 2 processes × 4 CPU devices through launch/local_multiprocess.sh.

jax.distributed joins the processes (CPU collectives over gloo); each reads its own slice of every
global batch. Its per-step losses must equal a 1-process × 8-device run's, a SIGTERM to one process
must stop both at one step with a checkpoint, and that checkpoint must resume in 1 process on another
mesh with the example order the run would have had.
"""

import json
import os
import subprocess

import numpy as np
import pytest

from conftest import ROOT, TEST_XLA_FLAGS
from mainrun import SMOKE, main_env, run_main, train_rows

NUM_STEPS = 40
ARGS = [f"--config.num_steps={NUM_STEPS}", "--config.log_every=1", "--config.checkpoint_every=1000",
        "--config.async_checkpoint=false", "--config.eval_every=0"]


def test_each_process_reads_a_disjoint_slice_of_the_same_global_batch():
  from papers_jax.data import pipeline
  from papers_jax.data.sources import DigitsSource
  source = DigitsSource("train")
  preprocess = pipeline.image_preprocess("translate", 8, train=True)
  starts = pipeline.batch_starts(64, 3, 32, skip=(96,))
  assert starts == [64, 128, 160]

  def batches(process_index, process_count):
    return list(pipeline.train_batches(source, preprocess, global_batch=32, seed=3, starts=starts,
                                       process_index=process_index, process_count=process_count))
  whole = batches(0, 1)
  for count in (2, 4):
    parts = [batches(i, count) for i in range(count)]
    for step, batch in enumerate(whole):
      for key in batch:
        np.testing.assert_array_equal(np.concatenate([p[step][key] for p in parts]), batch[key])


def test_two_processes_equal_one_and_resume_on_another_mesh(tmp_path):
  reference = str(tmp_path / "one_process")
  run_main(reference, *ARGS, devices=8)
  expected = {r["step"]: r["loss"] for r in train_rows(reference)}
  assert sorted(expected) == list(range(1, NUM_STEPS + 1))

  # Process 1 receives SIGTERM after step 5; both must agree on a step, checkpoint it and exit 0.
  workdir = str(tmp_path / "two_processes")
  env = {**main_env(), "PYTHON": os.environ.get("PYTHON", __import__("sys").executable),
         "LOG_DIR": str(tmp_path)}
  env["XLA_FLAGS"] = TEST_XLA_FLAGS  # the launcher adds the device count
  proc = subprocess.run(
      ["bash", os.path.join(ROOT, "launch/local_multiprocess.sh"), "2", "4", *SMOKE, f"--workdir={workdir}", *ARGS,
       "--config.debug.sigterm_at_step=5", "--config.debug.sigterm_process=1"],
      cwd=ROOT, env=env, capture_output=True, text=True, timeout=400)
  other = open(tmp_path / "process_1.log").read()
  assert proc.returncode == 0, proc.stderr[-3000:] + other[-3000:]
  assert "preempted at step" in proc.stdout and "preempted at step" in other
  stopped = int(proc.stdout.split("preempted at step ")[1].split(":")[0])
  assert 5 <= stopped < NUM_STEPS and os.listdir(os.path.join(workdir, "checkpoints")) == [str(stopped)]
  environment = json.load(open(os.path.join(workdir, "config.json")))["environment"]
  assert environment["num_processes"] == 2 and environment["num_devices"] == 8
  two = {r["step"]: r["loss"] for r in train_rows(workdir)}
  assert sorted(two) == list(range(1, stopped + 1))  # only process 0 writes metrics
  for step, loss in two.items():
    np.testing.assert_allclose(loss, expected[step], rtol=1e-5, err_msg=f"step {step}")

  # The same checkpoint, resumed by one process on a data=2 × fsdp=4 mesh.
  run_main(workdir, *ARGS, "--config.mesh.data=2", "--config.mesh.fsdp=4", devices=8)
  rows = train_rows(workdir)
  assert [r["step"] for r in rows] == list(range(1, NUM_STEPS + 1))
  for r in rows:
    np.testing.assert_allclose(r["loss"], expected[r["step"]], rtol=1e-5, err_msg=f"step {r['step']}")
  summary = json.load(open(os.path.join(workdir, "summary.json")))
  assert summary["resumed_from"] == stopped and summary["steps"] == NUM_STEPS


@pytest.mark.parametrize("script, expected", [
    ("slurm.sbatch", ["srun", "papers_jax.main", "--workdir=runs/x", "--xla_gpu_enable_latency_hiding_scheduler"]),
    ("tpu_pod.sh", ["gcloud compute tpus tpu-vm ssh my-tpu", "--worker=all", "python3 -m venv", "papers_jax.main",
                    "--workdir=/mnt/shared/x"]),
    ("gpu_single_host.sh", ["papers_jax.main", "--workdir=runs/x"]),
])
def test_launch_scripts_print_their_commands_in_dry_run(script, expected):
  path = os.path.join(ROOT, "launch", script)
  assert subprocess.run(["bash", "-n", path]).returncode == 0
  workdir = "/mnt/shared/x" if script == "tpu_pod.sh" else "runs/x"
  env = {**os.environ, "DRY_RUN": "1", "TPU_NAME": "my-tpu", "ZONE": "us-central2-b"}
  proc = subprocess.run(["bash", path, "--config=configs/vit/imagenet.py:variant=B/16", f"--workdir={workdir}"],
                        cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
  assert proc.returncode == 0, proc.stderr
  for text in expected:
    assert text in proc.stdout, proc.stdout
