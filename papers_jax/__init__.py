"""papers_jax: classic deep-learning papers reproduced on one JAX/Flax NNX training system."""

import importlib.metadata
import os

__version__ = "0.1.0"

# jaxlib 0.10.2's CPU backend runs reductions fused through YNNPACK and computes x - sum(b * x)
# wrongly when b is broadcast along a leading axis: jit(jax.jacrev(a Swin block)) is off by up to 1.0
# (jaxlib 0.9.2, 0.10.0 and 0.10.1 are right). Keeping reductions out of those fusions fixes it. XLA
# reads the flag when JAX starts its backend, so it is set here, on import, before any computation;
# XLA_FLAGS that already choose the fusion kinds are left alone. tests/test_nn.py checks the pattern.
XLA_CPU_WORKAROUNDS = {"0.10.2": "--xla_cpu_experimental_ynn_fusion_type=-reduce"}


def _apply_xla_cpu_workaround():
  try:
    flag = XLA_CPU_WORKAROUNDS.get(importlib.metadata.version("jaxlib"))
  except importlib.metadata.PackageNotFoundError:
    return
  flags = os.environ.get("XLA_FLAGS", "")
  if flag and flag.split("=")[0] not in flags:
    os.environ["XLA_FLAGS"] = f"{flags} {flag}".strip()


_apply_xla_cpu_workaround()
