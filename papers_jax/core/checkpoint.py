"""Orbax checkpoints of the train state: async, keep-last-N plus keep-every-K, auto-resume.

A checkpoint holds the whole TrainState (params, model state, optimizer state, step, RNG) and a
JSON `meta` item with the data position. Orbax commits a step atomically (it is written to a
temporary directory and renamed), so a crash mid-save leaves no step that looks complete; a step
that was damaged afterwards (truncated copy, bad disk) fails to restore, is moved aside to
`<step>.damaged` and the previous step is used. A failed write raises CheckpointError and leaves
the earlier steps as they were. Restoring takes an abstract state with shardings, so a checkpoint
written on one mesh restores onto another.

Before any step is restored, the tree of the saved state (its keys, shapes and dtypes, read from
orbax's metadata) is compared with the state the config builds. A difference means the config
changed (another model, optimizer or task), not that the checkpoint is damaged: the run stops
with a CheckpointError naming the differences, and nothing in the workdir is renamed or written.
"""

import contextlib
import gc
import logging
import os
import sys
import tempfile
import time
import traceback

import jax
import orbax.checkpoint as ocp
from jax.experimental import multihost_utils

from papers_jax.errors import CheckpointError

log = logging.getLogger(__name__)


class Checkpointer:
  """A thin wrapper over `ocp.CheckpointManager` at `<workdir>/checkpoints`."""

  def __init__(self, directory: str, *, max_to_keep: int = 3, keep_every: int = 0, async_save: bool = True):
    self.directory = os.path.abspath(directory)
    options = ocp.CheckpointManagerOptions(
        max_to_keep=max_to_keep, keep_period=keep_every or None, create=True,
        enable_async_checkpointing=async_save)
    # The handlers are named so that the saved state's metadata can be read before any restore.
    self.manager = ocp.CheckpointManager(
        self.directory, options=options,
        item_handlers={"state": ocp.StandardCheckpointHandler(), "meta": ocp.JsonCheckpointHandler()})

  def latest_step(self) -> int | None:
    return self.manager.latest_step()

  def all_steps(self) -> list[int]:
    return sorted(self.manager.all_steps())

  def save(self, step: int, state, meta: dict, *, force: bool = False) -> bool:
    try:
      with _quiet_failed_reads():
        return self.manager.save(step, args=ocp.args.Composite(state=ocp.args.StandardSave(state),
                                                             meta=ocp.args.JsonSave(meta)), force=force)
    except Exception as e:  # also a failure of the previous async save, surfaced here
      raise self._write_error(step, e) from e

  def _write_error(self, step: int | None, e: Exception) -> CheckpointError:
    kept = [s for s in self.all_steps() if s != step]
    which = "a checkpoint" if step is None else f"the checkpoint of step {step}"
    return CheckpointError(
        f"could not write {which} to {self.directory}: {type(e).__name__}: {_first_line(e)}\n"
        f"The earlier checkpoints (steps {kept}) are untouched. Free disk space or fix the directory's "
        "permissions, then run the same command to resume from the last of them.")

  def restore_latest(self, abstract_state):
    """(state, meta) of the newest step that restores, or None when there is none.

    A step that fails to restore is moved aside to `<step>.damaged` (kept for inspection) and the
    next older one is tried; only when every step fails is the error raised.
    """
    steps = self.all_steps()
    checked = {}
    # A changed config stops the run before anything is restored or renamed: the newest step whose
    # metadata reads is compared first, and each older step before it is tried.
    for step in reversed(steps):
      checked[step] = self.saved_structure(step)
      if checked[step] is not None:
        self._check_structure(step, checked[step], abstract_state)
        break
    for i, step in enumerate(reversed(steps)):
      saved = checked[step] if step in checked else self.saved_structure(step)
      if saved is not None:
        self._check_structure(step, saved, abstract_state)
      try:
        return self.restore(step, abstract_state)
      except CheckpointError as e:
        if i == len(steps) - 1:
          raise
        log.warning("checkpoint step %d is damaged (%s); it is moved to %s.damaged and step %d is tried.",
                    step, _first_line(e.__cause__ or e), os.path.join(self.directory, str(step)), steps[-i - 2])
        self._set_aside(step)
    return None

  def saved_structure(self, step: int) -> dict | None:
    """{key path: (shape, dtype)} of the state saved at `step`, or None when its metadata is unreadable."""
    try:
      with _quiet_failed_reads(grace_s=0.0):
        tree = self.manager.item_metadata(step)["state"]
    except Exception:  # damaged metadata: the restore will fail too and the step is set aside
      return None
    if tree is None:
      return None
    return _shapes(tree)

  def _check_structure(self, step: int, saved: dict, abstract_state) -> None:
    wanted = _shapes(abstract_state)
    if saved == wanted:
      return
    order = lambda k: (not k.startswith("params/"), k.startswith("opt_state/"), k)  # the model first
    lines = [f"  {k}: saved {_describe(saved[k])}, this config {_describe(wanted[k])}"
             if k in saved and k in wanted else
             f"  {k}: only in the checkpoint {_describe(saved[k])}" if k in saved else
             f"  {k}: only in this config {_describe(wanted[k])}"
             for k in sorted(saved.keys() | wanted.keys(), key=order) if saved.get(k) != wanted.get(k)]
    shown = lines[:MAX_DIFF_LINES]
    if len(lines) > len(shown):
      shown.append(f"  ... and {len(lines) - len(shown)} more differences")
    path = os.path.join(self.directory, str(step))
    raise StructureMismatch(
        f"the checkpoint {path} was written with another config: the train state it holds differs from "
        f"the one this config builds ({len(lines)} differences):\n" + "\n".join(shown) + "\n"
        "Nothing in the workdir was changed. To resume, rerun with the config of that run (config.json in the "
        "workdir); to start afresh, use a new --workdir; to start a new run from its weights, use a new "
        f"--workdir with --config.init_from={path}/state.")

  def _set_aside(self, step: int):
    if jax.process_index() == 0:
      path = os.path.join(self.directory, str(step))
      target = path + ".damaged"
      n = 1
      while os.path.exists(target):
        target, n = f"{path}.damaged{n}", n + 1
      os.rename(path, target)
    if jax.process_count() > 1:
      multihost_utils.sync_global_devices(f"checkpoint_set_aside_{step}")
    self.manager.reload()

  def restore(self, step: int, abstract_state):
    """Restores (state, meta) at `step` onto the shardings in `abstract_state`."""
    try:
      with _quiet_failed_reads():
        restored = self.manager.restore(step, args=ocp.args.Composite(
            state=ocp.args.StandardRestore(abstract_state), meta=ocp.args.JsonRestore()))
    except Exception as e:  # orbax raises many types for a damaged or foreign checkpoint.
      raise CheckpointError(
          f"cannot restore the checkpoint at {self.directory}/{step}: {type(e).__name__}: {_first_line(e)}\n"
          f"If it is damaged, delete {self.directory}/{step} to resume from the previous checkpoint, "
          "or start in a new --workdir.") from e
    return restored["state"], restored["meta"]

  def wait(self):
    try:
      with _quiet_failed_reads():
        self.manager.wait_until_finished()
    except Exception as e:
      raise self._write_error(None, e) from e  # an async save failed in the background

  def close(self):
    try:
      self.wait()
    finally:
      self.manager.close()


MAX_DIFF_LINES = 12  # a structure mismatch names at most this many keys


class StructureMismatch(CheckpointError):
  """The saved state's keys, shapes or dtypes differ from the config's: a changed config, not damage."""


def _flatten_with_names(tree) -> list:
  """[("params/blocks/0/attn/qkv/kernel", leaf), ...] for a train state and for orbax's metadata of it
  alike (dataclass fields, named tuples and dict keys become names; sequence positions numbers)."""
  def name(key):
    for attr in ("key", "name", "idx"):
      if hasattr(key, attr):
        return str(getattr(key, attr))
    return str(key)
  leaves = jax.tree_util.tree_flatten_with_path(tree)[0]
  return [("/".join(name(k) for k in path), leaf) for path, leaf in leaves]


def _shapes(tree) -> dict:
  """{key path: (shape, dtype)}; a leaf without them (not an array) is described by its type."""
  return {path: (tuple(getattr(leaf, "shape", ())), str(getattr(leaf, "dtype", type(leaf).__name__)))
          for path, leaf in _flatten_with_names(tree)}


def _describe(shape_dtype) -> str:
  shape, dtype = shape_dtype
  return f"{dtype}{list(shape)}"


class _DropOrbaxOrphanedReads(logging.Filter):
  """After a failed restore, orbax's abandoned metadata reads are garbage-collected at random times
  and asyncio logs each as 'Task exception was never retrieved' with a traceback that says nothing
  new (the CheckpointError already names the step and the fix)."""

  def filter(self, record):
    message = record.getMessage()
    if "Task exception was never retrieved" not in message:
      return True
    # The task's repr names orbax only while its coroutine runs; a finished one's traceback still does.
    # A task that awaited a tensorstore future directly (asyncio's `_wrap_awaitable`) has neither, but its
    # exception names its `tensorstore_spec` (seen in CI).
    frames = traceback.extract_tb(record.exc_info[2]) if record.exc_info and record.exc_info[2] else []
    return not ("orbax" in message or "tensorstore" in message
                or any(f"{os.sep}{lib}{os.sep}" in f.filename for f in frames for lib in ("orbax", "tensorstore")))


logging.getLogger("asyncio").addFilter(_DropOrbaxOrphanedReads())


def _in_orbax(obj) -> bool:
  code = getattr(obj, "cr_code", None) or getattr(obj, "gi_code", None)
  filename = getattr(code, "co_filename", "")
  return f"{os.sep}orbax{os.sep}" in filename or f"{os.sep}tensorstore{os.sep}" in filename


def _closed_loop_callback(unraisable) -> bool:
  exc = unraisable.exc_value
  return unraisable.object is None and isinstance(exc, RuntimeError) and str(exc) == "Event loop is closed"


def _drop_orbax_unraisable(unraisable, _previous=sys.unraisablehook):
  """The same abandoned reads reach sys.unraisablehook when their coroutines are garbage-collected
  half-run ('Exception ignored in: <coroutine object ...>') and when tensorstore's callbacks find
  orbax's event loop closed ('Exception ignored in: None ... Event loop is closed'): hundreds to
  thousands of tracebacks per damaged checkpoint. They are dropped, with one line the first time;
  anything else goes to the previous hook."""
  if not (_in_orbax(unraisable.object) or _closed_loop_callback(unraisable)):
    return _previous(unraisable)
  global _dropped_unraisable
  _dropped_unraisable += 1
  if _dropped_unraisable == 1:
    log.info("not shown: errors of orbax reads abandoned after a failed restore (%s)",
             type(unraisable.exc_value).__name__)


_dropped_unraisable = 0
sys.unraisablehook = _drop_orbax_unraisable


class _ShortenOrbaxThreadErrors(logging.Filter):
  """An async save that fails (a full disk) is logged by orbax's background threads with tracebacks,
  at times of their choosing. The same exception reaches the trainer through the save's future and is
  reported there as a CheckpointError, so orbax's lines are kept but their tracebacks dropped."""

  def filter(self, record):
    if record.exc_info and f"{os.sep}orbax{os.sep}" in record.pathname:
      record.exc_info, record.exc_text = None, None
    return True


logging.getLogger("absl").addFilter(_ShortenOrbaxThreadErrors())


def _first_line(e: Exception, limit: int = 300) -> str:
  reason = str(e).splitlines()[0] if str(e) else ""
  return reason if len(reason) <= limit else reason[:limit] + " ..."



@contextlib.contextmanager
def _quiet_failed_reads(grace_s: float = 1.0):
  """Holds back what native threads print on stderr while a restore runs.

  When one read of a damaged checkpoint (or one write to a full disk) fails, tensorstore's other
  pending operations call back into
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
        gc.collect()  # abandoned reads die now, while their noise is still held back
      sys.stderr.flush()
      os.dup2(saved, 2)
      os.close(saved)
      capture.seek(0)
      text = capture.read().decode(errors="replace")
      if "Event loop is closed" not in text and text:
        sys.stderr.write(text)
