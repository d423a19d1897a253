"""Compute accounting: analytic FLOPs per example, parameter counts, and the device peaks that MFU divides by.

The counters live with their models (`forward_flops` in each family's module, reached through
`models.forward_flops`); a task that knows its sequence lengths (tasks/lm.py) passes them to it from
its own `task.forward_flops(model)`. Training FLOPs are TRAIN_PER_FORWARD = 3 × the forward FLOPs
(the forward pass, and a backward pass of twice that: one product for the activations' gradients,
one for the weights'), as Kaplan et al. (2020) count C ≈ 6·N per token.
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


TRAIN_PER_FORWARD = 3
CONVENTION = ("analytic, 2 FLOPs per multiply-add: matmuls and convolutions, plus element-wise work where a family's "
              "counter traces it (models/conv_flops.py's jaxpr_flops with elementwise=True; FNet's FFT as "
              "5·N·log2 N); training = 3 × forward")


def forward_flops(model, task=None) -> float | None:
  """Per-example forward FLOPs: the task's `forward_flops` when it has one (it passes its sequence
  lengths to the model's counter), else `models.forward_flops(model)`; None without a counter."""
  if task is not None and hasattr(task, "forward_flops"):
    flops = task.forward_flops(model)
    return None if flops is None else float(flops)
  return models.forward_flops(model)


def train_flops(forward: float | None, examples: int) -> float | None:
  """Training FLOPs of `examples` examples (forward + backward), None without a forward count."""
  return TRAIN_PER_FORWARD * forward * examples if forward else None


def model_counts(model, task=None) -> dict:
  """Params, non-embedding params (models.embedding_params) and forward FLOPs per example of a model,
  abstract or not."""
  return models.param_counts(model) | {"forward_flops_per_example": forward_flops(model, task)}
