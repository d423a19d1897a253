"""Orbax checkpoints of the train state: async, keep-last-N plus keep-every-K, auto-resume.

A checkpoint holds the whole TrainState (params, model state, optimizer state, step, RNG) and a
JSON `meta` item with the data position and the config. Orbax commits a step atomically (it is
written to a temporary directory and renamed), so a crash mid-save leaves no step that looks
complete. Restoring takes an abstract state with shardings, so a checkpoint written on one mesh
restores onto another.
"""

import os

import jax
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


def load_params(path: str, abstract_params):
  """Loads a params-only checkpoint (written by tools/convert_weights.py or a finished run).

  `path` is an orbax checkpoint directory holding a pytree with a `params` entry. Returns the
  params restored onto the shardings of `abstract_params` (ShapeDtypeStructs).
  """
  path = os.path.abspath(path)
  if not os.path.isdir(path):
    raise CheckpointError(f"init_from checkpoint {path} does not exist; write one with tools/convert_weights.py "
                          "or point config.init_from at a run's checkpoints/<step>/state directory.")
  try:
    metadata = ocp.StandardCheckpointer().metadata(path)
    tree = metadata.item_metadata.tree if hasattr(metadata, "item_metadata") else metadata
  except Exception as e:
    raise CheckpointError(f"init_from checkpoint {path} is not a readable orbax checkpoint "
                          f"({type(e).__name__}: {e}); re-create it with tools/convert_weights.py.") from e
  if "params" not in tree:
    raise CheckpointError(f"init_from checkpoint {path} has no 'params' entry (it has {sorted(tree)}).")
  return tree, jax.tree.structure(abstract_params)
