"""Orbax checkpoints of the train state: async, keep-last-N plus keep-every-K, auto-resume.

A checkpoint holds the whole TrainState (params, model state, optimizer state, step, RNG) and a
JSON `meta` item with the data position and the config. Orbax commits a step atomically (it is
written to a temporary directory and renamed), so a crash mid-save leaves no step that looks
complete. Restoring takes an abstract state with shardings, so a checkpoint written on one mesh
restores onto another.
"""

import contextlib
import os
import sys
import tempfile
import time

import orbax.checkpoint as ocp

from papers_jax.errors import CheckpointError


class Checkpointer:
  """A thin wrapper over `ocp.CheckpointManager` at `<workdir>/checkpoints`."""

  def __init__(self, directory: str, *, max_to_keep: int = 3, keep_every: int = 0, async_save: bool = True):
    self.directory = os.path.abspath(directory)
    options = ocp.CheckpointManagerOptions(
        max_to_keep=max_to_keep, keep_period=keep_every or None, create=True,
        enable_async_checkpointing=async_save)
    self.manager = ocp.CheckpointManager(self.directory, options=options, item_names=("state", "meta"))

  def latest_step(self) -> int | None:
    return self.manager.latest_step()

  def save(self, step: int, state, meta: dict, *, force: bool = False) -> bool:
    return self.manager.save(step, args=ocp.args.Composite(state=ocp.args.StandardSave(state),
                                                           meta=ocp.args.JsonSave(meta)), force=force)

  def restore(self, step: int, abstract_state):
    """Restores (state, meta) at `step` onto the shardings in `abstract_state`."""
    try:
      with _quiet_failed_reads():
        restored = self.manager.restore(step, args=ocp.args.Composite(
            state=ocp.args.StandardRestore(abstract_state), meta=ocp.args.JsonRestore()))
    except Exception as e:  # orbax raises many types for a damaged or foreign checkpoint.
      reason = str(e).splitlines()[0] if str(e) else ""
      reason = reason if len(reason) <= 300 else reason[:300] + " ..."
      raise CheckpointError(
          f"cannot restore the checkpoint at {self.directory}/{step}: {type(e).__name__}: {reason}\n"
          f"If it is damaged, delete {self.directory}/{step} to resume from the previous checkpoint, "
          "or start in a new --workdir.") from e
    return restored["state"], restored["meta"]

  def wait(self):
    self.manager.wait_until_finished()

  def close(self):
    self.manager.wait_until_finished()
    self.manager.close()




@contextlib.contextmanager
def _quiet_failed_reads(grace_s: float = 1.0):
  """Holds back what native threads print on stderr while a restore runs.

  When one read of a damaged checkpoint fails, tensorstore's other pending reads call back into
  orbax's already closed event loop and each prints a 'RuntimeError: Event loop is closed'
  traceback that says nothing about the checkpoint. Those lines are dropped; anything else that
  was printed is passed on. On failure the capture stays a moment longer for late callbacks.
  """
  sys.stderr.flush()
  saved = os.dup(2)
  with tempfile.TemporaryFile() as capture:
    os.dup2(capture.fileno(), 2)
    failed = False
    try:
      yield
    except BaseException:
      failed = True
      raise
    finally:
      if failed:
        time.sleep(grace_s)
      sys.stderr.flush()
      os.dup2(saved, 2)
      os.close(saved)
      capture.seek(0)
      text = capture.read().decode(errors="replace")
      if "Event loop is closed" not in text and text:
        sys.stderr.write(text)
