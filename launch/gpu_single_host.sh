#!/usr/bin/env bash
# One process driving every GPU of this machine.
#
#   launch/gpu_single_host.sh --config=configs/vit/imagenet.py:variant=B/16 --workdir=runs/vit_b16
#   DRY_RUN=1 launch/gpu_single_host.sh ...   # print the command, run nothing
#
# SIGTERM (or Ctrl-C's SIGINT is not enough: use `kill -TERM`) checkpoints and exits 0; the same
# command resumes. CUDA_VISIBLE_DEVICES picks a subset of GPUs.
set -euo pipefail

# Prints a command so that it can be pasted into a shell.
print_command() {
  local out=() a
  for a in "$@"; do
    if [[ $a =~ [^A-Za-z0-9_./:=@%+,-] ]]; then out+=("${a@Q}"); else out+=("$a"); fi
  done
  echo "${out[*]}"
}

PYTHON=${PYTHON:-.venv/bin/python}
# Overlap collectives with compute (the latency-hiding scheduler); keep 10% of GPU memory free.
export XLA_FLAGS="--xla_gpu_enable_latency_hiding_scheduler=true${XLA_FLAGS:+ $XLA_FLAGS}"
export XLA_PYTHON_CLIENT_MEM_FRACTION=${XLA_PYTHON_CLIENT_MEM_FRACTION:-0.90}

cmd=("$PYTHON" -m papers_jax.main "$@")
if [[ -n "${DRY_RUN:-}" ]]; then
  print_command env "XLA_FLAGS=$XLA_FLAGS" "XLA_PYTHON_CLIENT_MEM_FRACTION=$XLA_PYTHON_CLIENT_MEM_FRACTION" "${cmd[@]}"
  exit 0
fi
exec "${cmd[@]}"
