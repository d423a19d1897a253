"""Run outputs: metrics.jsonl, TensorBoard events, a progress bar, and atomic JSON files.

Only process 0 writes. Every start cuts metrics.jsonl back to the restored step (to nothing when no
checkpoint was restored), so that after any kill and resume the file reads as one uninterrupted run;
a line that a kill left half-written is dropped then.
"""

import json
import os
import sys
import time

import jax
import numpy as np


def write_json_atomic(path: str, obj) -> None:
  """Writes JSON to `path` via a temporary file and rename, so a crash never leaves half a file."""
  tmp = f"{path}.tmp{os.getpid()}"
  with open(tmp, "w") as f:
    json.dump(obj, f, indent=2, sort_keys=True, default=_to_python)
    f.flush()
    os.fsync(f.fileno())
  os.replace(tmp, path)


def _to_python(x):
  if isinstance(x, (np.generic, np.ndarray, jax.Array)):
    return np.asarray(x).tolist()
  return str(x)


def read_row(line: str) -> dict | None:
  """One metrics.jsonl row, or None for an empty line or one a kill left half-written."""
  if not line.endswith("\n"):
    return None  # a row is complete only with its newline
  try:
    row = json.loads(line)
  except json.JSONDecodeError:
    return None
  return row if isinstance(row, dict) else None


def read_rows(path: str) -> list[dict]:
  """The complete rows of a metrics.jsonl file."""
  if not os.path.exists(path):
    return []
  with open(path) as f:
    return [row for l in f if (row := read_row(l)) is not None]


def _summary_writer_class():
  """tensorboardX's SummaryWriter, imported lazily (only process 0 needs it). Where torch is installed
  and not yet imported, tensorboardX's `import torch` (only for accepting torch tensors, which a run
  never logs) is made to fail: it costs 1.6 s of CPU per run start."""
  if "torch" in sys.modules:
    from tensorboardX import SummaryWriter
    return SummaryWriter
  sys.modules["torch"] = None  # `import torch` raises ImportError, which tensorboardX catches
  try:
    from tensorboardX import SummaryWriter
  finally:
    if sys.modules.get("torch", False) is None:
      del sys.modules["torch"]
  return SummaryWriter


class MetricWriter:
  """Appends `{"step": s, ...}` lines to metrics.jsonl and scalars to TensorBoard."""

  def __init__(self, workdir: str, *, enabled: bool = True, resume_step: int | None = None):
    self.enabled = enabled
    self.path = os.path.join(workdir, "metrics.jsonl")
    self._tb = None
    if not enabled:
      return
    self.truncate(resume_step or 0)  # rows past the restored state are written again
    self._tb = _summary_writer_class()(os.path.join(workdir, "tensorboard"), flush_secs=30)

  def truncate(self, step: int) -> None:
    """Drops the rows after `step` (a resumed or rolled-back run writes them again)."""
    if not self.enabled or not os.path.exists(self.path):
      return
    with open(self.path) as f:
      lines = [l for l in f if (row := read_row(l)) is not None and row.get("step", 0) <= step]
    tmp = self.path + ".tmp"
    with open(tmp, "w") as f:
      f.writelines(lines)
      f.flush()
      os.fsync(f.fileno())
    os.replace(tmp, self.path)

  def write(self, step: int, metrics: dict) -> None:
    if not self.enabled:
      return
    row = {"step": int(step), **{k: float(v) for k, v in metrics.items()}}
    with open(self.path, "a") as f:
      f.write(json.dumps(row) + "\n")
    for k, v in row.items():
      if k != "step":
        self._tb.add_scalar(k, v, step)

  def write_image(self, step: int, tag: str, image: np.ndarray) -> None:
    if self.enabled:
      self._tb.add_image(tag, image, step, dataformats="HWC")

  def close(self) -> None:
    if self._tb is not None:
      self._tb.close()


class Progress:
  """A progress bar with step, loss, examples/s (tokens/s for language models), MFU, cumulative training
  FLOPs and ETA (tqdm; plain lines when not a terminal)."""

  def __init__(self, total: int, initial: int, *, enabled: bool = True, unit: str = "ex"):
    self.enabled = enabled
    self.unit = unit
    self.total = total
    self._bar = None
    self._t0, self._step0 = time.time(), initial
    if enabled:
      from tqdm import tqdm
      self._bar = tqdm(total=total, initial=initial, dynamic_ncols=True, file=sys.stderr, unit="step",
                       mininterval=1.0, disable=None if sys.stderr.isatty() else True)
    self._last_print = 0.0

  def update(self, step: int, n: int, metrics: dict) -> None:
    if not self.enabled:
      return
    text = (f"loss={metrics.get('loss', float('nan')):.4f} "
            f"{self.unit}/s={metrics.get('throughput', 0):.1f}")
    if "tokens_per_s" in metrics:
      text += f" tok/s={metrics['tokens_per_s']:.0f}"
    if "mfu" in metrics:
      text += f" mfu={100 * metrics['mfu']:.1f}%"
    if "flops" in metrics:
      text += f" flops={metrics['flops']:.3g}"
    if self._bar is not None and not self._bar.disable:
      self._bar.set_postfix_str(text, refresh=False)
      self._bar.update(n)
    elif time.time() - self._last_print > 10 or step == self.total:
      self._last_print = time.time()
      rate = (step - self._step0) / max(time.time() - self._t0, 1e-9)
      eta = (self.total - step) / rate if rate > 0 else float("nan")
      print(f"step {step}/{self.total}: {text} eta={eta:.0f}s", file=sys.stderr, flush=True)

  def close(self) -> None:
    if self._bar is not None:
      self._bar.close()
