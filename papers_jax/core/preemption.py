"""Preemption notices: on SIGTERM every process saves a checkpoint at the same step and exits 0.

A single process catches SIGTERM itself. With several processes, JAX's coordination service
(started by `jax.distributed.initialize`) receives the notice on any process, agrees on one step
for all of them, and `reached_preemption_sync_point(step)` turns true on every process at that step.
"""

import signal
import threading

import jax
from jax.experimental import multihost_utils


class PreemptionWatch:
  """`reached(step)` is true at the step where this run should checkpoint and stop."""

  def __init__(self):
    self.distributed = jax.process_count() > 1
    self.noticed = False
    self._previous = None
    if not self.distributed and threading.current_thread() is threading.main_thread():
      self._previous = signal.signal(signal.SIGTERM, self._on_signal)

  def _on_signal(self, signum, frame):
    self.noticed = True

  def reached(self, step: int) -> bool:
    if self.distributed:  # must be called at every step, on every process
      self.noticed = multihost_utils.reached_preemption_sync_point(step)
    return self.noticed

  def close(self):
    if self._previous is not None:
      signal.signal(signal.SIGTERM, self._previous)
      self._previous = None
