#!/usr/bin/env bash
# Training on a Cloud TPU pod slice: one process per TPU VM worker.
#
#   TPU_NAME=my-v4-64 ZONE=us-central2-b launch/tpu_pod.sh \
#       --config=configs/vit/imagenet.py:variant=B/16 --workdir=/mnt/shared/runs/vit_b16
#   DRY_RUN=1 TPU_NAME=... ZONE=... launch/tpu_pod.sh ...   # print the commands, run nothing
#
# 1. packs this checkout's tracked files and copies them to every worker. Uncommitted changes to
#    tracked files are shipped too (the archive is made from `git stash create`, which leaves your
#    tree and stash untouched) and the script lists them; untracked files are never shipped.
# 2. replaces the code in $REMOTE_DIR on every worker (everything but its .venv is deleted first, so
#    files removed here do not linger there), creates the venv if needed and installs papers_jax with
#    the versions pinned in constraints.txt plus jax[tpu] of the pinned jax version (SETUP=0 skips 1-2);
# 3. starts papers_jax.main on every worker at once, detached (setsid nohup), so a dropped SSH
#    session does not stop the run; its output goes to $REMOTE_DIR/logs/<time>.log on each worker.
#    It initialises jax.distributed from the TPU metadata. The workdir must be a filesystem every
#    worker mounts (Filestore/NFS or gcsfuse).
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
project_flag=()
if [[ -n "${PROJECT:-}" ]]; then project_flag=("--project=$PROJECT"); fi
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
  run gcloud compute tpus tpu-vm ssh "$TPU_NAME" --zone="$ZONE" "${project_flag[@]}" --worker=all --command="$1"
}

if [[ "$SETUP" == 1 ]]; then
  revision=$(git stash create)  # empty when nothing tracked has changed
  if [[ -n "$revision" ]]; then
    echo "shipping uncommitted changes to tracked files:" >&2
    git status --short --untracked-files=no >&2
  fi
  run git archive --format=tar.gz -o "$archive" "${revision:-HEAD}"
  run gcloud compute tpus tpu-vm scp "$archive" "$TPU_NAME:papers_jax.tar.gz" --zone="$ZONE" "${project_flag[@]}" \
      --worker=all
  jax_version=$(sed -n 's/^jax==//p' constraints.txt)
  ssh_all "mkdir -p $REMOTE_DIR && cd $REMOTE_DIR && \
find . -mindepth 1 -maxdepth 1 ! -name .venv -exec rm -rf {} + && tar xzf ~/papers_jax.tar.gz && \
{ test -x .venv/bin/python || python3 -m venv .venv; } && \
.venv/bin/pip install --quiet -c constraints.txt -e . 'jax[tpu]==$jax_version'"
fi
log="logs/$(date -u +%Y%m%d-%H%M%S).log"
ssh_all "cd $REMOTE_DIR && mkdir -p logs && \
setsid nohup .venv/bin/python -m papers_jax.main $(printf '%q ' "$@") > $log 2>&1 < /dev/null &"
echo "started on every worker of $TPU_NAME; follow it with:" >&2
echo "  gcloud compute tpus tpu-vm ssh $TPU_NAME --zone=$ZONE --worker=0 --command='tail -f $REMOTE_DIR/$log'" >&2
