#!/usr/bin/env bash
# N processes on this machine, each with M simulated CPU devices, joined by jax.distributed.
# For testing multi-host code paths without a cluster.
#
#   launch/local_multiprocess.sh N M --config configs/vit/digits.py:smoke --workdir runs/mp
#
# Process 0 prints to this terminal; process i>0 writes $LOG_DIR/process_i.log (LOG_DIR defaults
# to a new temporary directory). SIGTERM/SIGINT are passed on to every process (a preemption:
# they checkpoint at one agreed step and exit 0) and the launcher waits for all of them. If a
# process fails, the others are stopped. Exit status: the first non-zero status of any process,
# else 0 (so 0 after a preemption checkpoint, as SLURM's requeue expects). DRY_RUN=1 prints the commands.
set -euo pipefail

# Prints a command so that it can be pasted into a shell.
print_command() {
  local out=() a
  for a in "$@"; do
    if [[ $a =~ [^A-Za-z0-9_./:=@%+,-] ]]; then out+=("${a@Q}"); else out+=("$a"); fi
  done
  echo "${out[*]}"
}

if [[ $# -lt 2 ]]; then
  echo "usage: $0 NUM_PROCESSES DEVICES_PER_PROCESS [papers_jax.main flags...]" >&2
  exit 2
fi
num_processes=$1
devices=$2
shift 2
PYTHON=${PYTHON:-python}
port=${PORT:-$("$PYTHON" -c 'import socket; s = socket.socket(); s.bind(("localhost", 0)); print(s.getsockname()[1])')}
log_dir=${LOG_DIR:-$(mktemp -d)}

pids=()
for ((i = 0; i < num_processes; i++)); do
  env_vars=(JAX_PLATFORMS=cpu "XLA_FLAGS=--xla_force_host_platform_device_count=$devices${XLA_FLAGS:+ $XLA_FLAGS}"
            "JAX_COORDINATOR_ADDRESS=localhost:$port" "JAX_NUM_PROCESSES=$num_processes" "JAX_PROCESS_ID=$i")
  cmd=("$PYTHON" -m papers_jax.main "$@")
  if [[ -n "${DRY_RUN:-}" ]]; then
    print_command env "${env_vars[@]}" "${cmd[@]}"
    continue
  fi
  if ((i == 0)); then
    env "${env_vars[@]}" "${cmd[@]}" &
  else
    env "${env_vars[@]}" "${cmd[@]}" >"$log_dir/process_$i.log" 2>&1 &
  fi
  pids+=($!)
done
[[ -n "${DRY_RUN:-}" ]] && exit 0
((num_processes > 1)) && echo "processes 1..$((num_processes - 1)) log to $log_dir" >&2

forward() { ((${#pids[@]} == 0)) || kill -s "$1" "${pids[@]}" 2>/dev/null || true; }
trap 'forward TERM' TERM
trap 'forward INT' INT

status=0
while ((${#pids[@]} > 0)); do
  finished="" code=0
  wait -n -p finished "${pids[@]}" || code=$?
  # A trapped signal interrupts `wait` and leaves `finished` unset (not empty): wait again, for
  # the processes are now saving their preemption checkpoint.
  [[ -z "${finished:-}" ]] && continue
  left=()
  for pid in "${pids[@]}"; do [[ $pid != "$finished" ]] && left+=("$pid"); done
  pids=("${left[@]+"${left[@]}"}")
  if ((code != 0 && status == 0)); then
    status=$code
    echo "process with pid $finished exited with status $code; stopping the others" >&2
    forward TERM
  fi
done
exit "$status"
