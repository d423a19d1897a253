"""Orbax checkpoints of the train state: async, keep-last-N plus keep-every-K, auto-resume.

A checkpoint holds the whole TrainState (params, model state, optimizer state, step, RNG) and a
JSON `meta` item with the data position and the config. Orbax commits a step atomically (it is
written to a temporary directory and renamed), so a crash mid-save leaves no step that looks
complete. Restoring takes an abstract state with shardings, so a checkpoint written on one mesh
restores onto another.
"""

import os

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
      restored = self.manager.restore(step, args=ocp.args.Composite(
          state=ocp.args.StandardRestore(abstract_state), meta=ocp.args.JsonRestore()))
    except Exception as e:  # orbax raises many types for a damaged or foreign checkpoint.
      raise CheckpointError(
          f"cannot restore the checkpoint at {self.directory}/{step}: {type(e).__name__}: {e}\n"
          f"If it is damaged, delete {self.directory}/{step} to resume from the previous checkpoint, "
          "or start in a new --workdir.") from e
    return restored["state"], restored["meta"]

  def wait(self):
    self.manager.wait_until_finished()

  def close(self):
    self.manager.wait_until_finished()
    self.manager.close()

