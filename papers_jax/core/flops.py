"""Compute accounting: analytic FLOPs per example and the device peaks that MFU divides by.

The counters live with their models (`forward_flops` in each family's module, picked by
`models.forward_flops`); a task that knows its sequence lengths has its own (`task.forward_flops`).
A training step costs 3 × the forward FLOPs (forward, and a backward of twice that), matmuls only.
"""

import jax

from papers_jax import models

# Dense peak FLOP/s of one device (no sparsity), by compute dtype.
PEAKS = {
    "H100": {"bfloat16": 989e12, "float32": 67e12},
    "H200": {"bfloat16": 989e12, "float32": 67e12},
    "A100": {"bfloat16": 312e12, "float32": 19.5e12},
    "TPU v4": {"bfloat16": 275e12, "float32": 275e12 / 4},
    "TPU v5 lite": {"bfloat16": 197e12, "float32": 197e12 / 4},
    "TPU v5p": {"bfloat16": 459e12, "float32": 459e12 / 4},
    "TPU v6 lite": {"bfloat16": 918e12, "float32": 918e12 / 4},
}


def known_peak(device_kind: str, dtype: str) -> tuple[float | None, str]:
  """(peak FLOP/s of one device, where it comes from); None for a device not in PEAKS (CPUs)."""
  for name, peaks in PEAKS.items():
    if name.lower() in device_kind.lower():
      return peaks.get(dtype, peaks["float32"]), f"{name} dense {dtype} peak"
  return None, f"no known peak for {device_kind!r}"


def run_peak(config) -> tuple[float | None, str]:
  """The peak of all devices of a run: `config.peak_flops` per device when set, else the table's."""
  if config.get("peak_flops", 0.0):
    per_device, source = float(config.peak_flops), "config.peak_flops"
  else:
    per_device, source = known_peak(jax.devices()[0].device_kind, config.get("dtype", "float32"))
  return (per_device * jax.device_count() if per_device else None), source


def forward_flops(model, task=None) -> float | None:
  """Per-example forward FLOPs: the task's counter when it has one (it knows the sequence lengths),
  else the model family's; None when neither has one."""
  if task is not None and hasattr(task, "forward_flops"):
    return float(task.forward_flops(model))
  return models.forward_flops(model)
