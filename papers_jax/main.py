"""Entry point: python -m papers_jax.main --config=configs/vit/digits.py --workdir=runs/x [--config.k=v]

Multi-host: under SLURM, on a TPU pod, or with the coordinator given by --coordinator_address (or
JAX_COORDINATOR_ADDRESS, JAX_NUM_PROCESSES, JAX_PROCESS_ID), jax.distributed is initialised
first; single-process runs need nothing. See launch/README.md.

Exit codes: 0 finished, or preempted with a checkpoint saved (the same command resumes);
2 a problem the message names (config, data, checkpoint, non-finite loss).
"""

import logging
import os
import sys

from absl import app, flags
from ml_collections import config_flags

from papers_jax.core import platform_setup

_CONFIG = config_flags.DEFINE_config_file("config", None, "Experiment config file (configs/<family>/<name>.py[:args]).",
                                          lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Directory for checkpoints, metrics and summaries.")
_COORDINATOR = flags.DEFINE_string("coordinator_address", None, "host:port of process 0 for multi-process runs.")
_NUM_PROCESSES = flags.DEFINE_integer("num_processes", None, "Number of processes (multi-process runs).")
_PROCESS_ID = flags.DEFINE_integer("process_id", None, "This process's index (multi-process runs).")


# XLA flags that make GPU results bit-reproducible from run to run (at some cost in speed).
DETERMINISTIC_XLA_FLAGS = ("--xla_gpu_deterministic_ops=true", "--xla_gpu_exclude_nondeterministic_ops=true")


def _set_deterministic_flags():
  """Adds the deterministic flags to XLA_FLAGS; must run before JAX starts its backend."""
  flags_now = os.environ.get("XLA_FLAGS", "").split()
  os.environ["XLA_FLAGS"] = " ".join(flags_now + [f for f in DETERMINISTIC_XLA_FLAGS if f not in flags_now])


def _maybe_initialize_distributed():
  import jax
  coordinator = _COORDINATOR.value or os.environ.get("JAX_COORDINATOR_ADDRESS")
  if coordinator:
    num_processes = _NUM_PROCESSES.value or int(os.environ["JAX_NUM_PROCESSES"])
    process_id = _PROCESS_ID.value if _PROCESS_ID.value is not None else int(os.environ["JAX_PROCESS_ID"])
    jax.distributed.initialize(coordinator, num_processes, process_id)
  elif int(os.environ.get("SLURM_NTASKS", "1")) > 1:
    # JAX reads the SLURM environment and gives each task the GPU of its local rank; with one task
    # per node (SLURM_NTASKS_PER_NODE=1) each process takes all of its node's GPUs instead.
    local_device_ids = None
    if os.environ.get("SLURM_NTASKS_PER_NODE") == "1" and os.environ.get("SLURM_GPUS_ON_NODE"):
      local_device_ids = list(range(int(os.environ["SLURM_GPUS_ON_NODE"])))
    jax.distributed.initialize(local_device_ids=local_device_ids)
  elif os.environ.get("TPU_WORKER_HOSTNAMES") or os.environ.get("CLOUD_TPU_TASK_ID"):
    jax.distributed.initialize()  # reads the TPU pod's metadata


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  from papers_jax.errors import UserError
  logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
  logging.getLogger("absl").setLevel(logging.WARNING)  # orbax logs every save at INFO through absl
  if not _WORKDIR.value:
    print("error: --workdir is required (a directory for checkpoints, metrics and summaries).", file=sys.stderr)
    return 2
  try:
    if _CONFIG.value.get("deterministic"):
      _set_deterministic_flags()
    _maybe_initialize_distributed()
    from papers_jax.core import loop
    summary = loop.train(_CONFIG.value, _WORKDIR.value)
  except UserError as e:
    print(f"error: {e}", file=sys.stderr)
    sys.stderr.flush()
    sys.stdout.flush()
    # Nothing is left to write: exit at once, so that background threads of a failed checkpoint
    # read cannot print unrelated tracebacks under the message during interpreter teardown.
    os._exit(2)
  if summary.get("preempted_at") is not None:
    print(f"preempted at step {summary['preempted_at']}: checkpoint saved; run the same command to resume.")
    return 0
  print({k: v for k, v in summary.items() if k.startswith("eval/") or k in ("steps", "wall_time_s")})
  return 0


def _config_spec(argv) -> str | None:
  """The value of --config in `argv` ('configs/vit/digits.py:smoke'), or None."""
  for i, arg in enumerate(argv[1:], 1):
    for name in ("--config", "-config"):
      if arg.startswith(name + "="):
        return arg[len(name) + 1:]
      if arg == name and i + 1 < len(argv):
        return argv[i + 1]
  return None


def _parse_flags(argv):
  """absl's flag parsing, with config-override mistakes reported as one line that names the fix."""
  spec = _config_spec(argv)
  path = spec.split(":", 1)[0] if spec else None
  if path is not None and not os.path.isfile(path):
    # ml_collections would defer this error to the first use of the config, as two chained tracebacks.
    print(f"error: config file {path} does not exist; give --config=configs/<family>/<name>.py[:args] "
          "(relative to the current directory, or an absolute path).", file=sys.stderr)
    sys.exit(2)
  try:
    return flags.FLAGS(argv)
  except flags.Error as e:
    message = str(e)
    if "Error whilst parsing config file" in message:
      # ml_collections puts the whole traceback of the config's own error in the message: keep its last line.
      last = [line for line in message.splitlines() if line.strip()][-1].strip()
      message = f"in config {spec}: " + last.split("Error: ", 1)[-1] if "Error: " in last else last
    elif "--config." in message:
      message += "; give a value of the type the config file uses for that key."
  except SyntaxError as e:
    message = f"config file {e.filename} line {e.lineno}: {e.msg}; fix the file's Python syntax."
  except (AttributeError, KeyError) as e:
    if any(a.startswith("--config.") for a in argv[1:]):  # ml_collections: the key is not in the locked config
      key = str(e).strip("\"'")
      message = (f"unknown config key {key!r} in a --config.<key> override; only keys defined by the config "
                 "file can be set (see config.json of any run, or the config file itself).")
    else:  # the config file's own code failed
      message = f"in config {spec}: {type(e).__name__}: {e}"
  except (TypeError, ValueError) as e:
    message = f"bad --config override: {e}; give a value of the type the config file uses."
  print(f"error: {message}", file=sys.stderr)
  sys.exit(2)


def run():
  platform_setup.setup_entry_point()
  flags.mark_flags_as_required(["config"])
  app.run(main, flags_parser=_parse_flags)


if __name__ == "__main__":
  run()
