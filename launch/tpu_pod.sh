#!/usr/bin/env bash
# Training on a Cloud TPU pod slice: one process per TPU VM worker.
#
#   TPU_NAME=my-v4-64 ZONE=us-central2-b launch/tpu_pod.sh \
#       --config=configs/vit/imagenet.py:variant=B/16 --workdir=/mnt/shared/runs/vit_b16
#   DRY_RUN=1 TPU_NAME=... ZONE=... launch/tpu_pod.sh ...   # print the commands, run nothing
#
# 1. packs this checkout (git archive HEAD) and copies it to every worker;
# 2. creates the venv on every worker and installs papers_jax with jax[tpu] (SETUP=0 skips 1-2);
# 3. starts papers_jax.main on every worker at once; it initialises jax.distributed from the TPU
#    metadata. The workdir must be a filesystem every worker mounts (Filestore/NFS or gcsfuse).
# A maintenance event sends SIGTERM: every worker checkpoints at one agreed step and exits 0; run
# this script again (SETUP=0) to resume.
set -euo pipefail

# Prints a command so that it can be pasted into a shell.
print_command() {
  local out=() a
  for a in "$@"; do
    if [[ $a =~ [^A-Za-z0-9_./:=@%+,-] ]]; then out+=("${a@Q}"); else out+=("$a"); fi
  done
  echo "${out[*]}"
}

: "${TPU_NAME:?set TPU_NAME to the TPU VM name}"
: "${ZONE:?set ZONE to the TPU zone}"
PROJECT_FLAG=${PROJECT:+--project=$PROJECT}
REMOTE_DIR=${REMOTE_DIR:-papers_jax}
SETUP=${SETUP:-1}
archive=/tmp/papers_jax_$$.tar.gz

run() {
  if [[ -n "${DRY_RUN:-}" ]]; then
    print_command "$@"
  else
    "$@"
  fi
}
ssh_all() {
  run gcloud compute tpus tpu-vm ssh "$TPU_NAME" --zone="$ZONE" $PROJECT_FLAG --worker=all --command="$1"
}

if [[ "$SETUP" == 1 ]]; then
  run git archive --format=tar.gz -o "$archive" HEAD
  run gcloud compute tpus tpu-vm scp "$archive" "$TPU_NAME:papers_jax.tar.gz" --zone="$ZONE" $PROJECT_FLAG --worker=all
  ssh_all "mkdir -p $REMOTE_DIR && tar xzf papers_jax.tar.gz -C $REMOTE_DIR && cd $REMOTE_DIR && \
python3 -m venv .venv && .venv/bin/pip install --quiet -e . 'jax[tpu]'"
fi
ssh_all "cd $REMOTE_DIR && .venv/bin/python -m papers_jax.main $(printf '%q ' "$@")"
