"""Everything papers_jax does differently by platform, in one place.

| what | applied by | when |
|---|---|---|
| XLA CPU correctness workaround | `import papers_jax` | jaxlib 0.10.2 only (a wrong result otherwise) |
| malloc on transparent huge pages | entry points, `setup_entry_point()` | opt-in: `PAPERS_JAX_HUGE_PAGES=1` |
| `nn.gradient_barrier` | each block's output (ViT, Swin, Mixer, BERT, GPT, ...) | CPU backend only; the identity elsewhere |
| attention's own JVP | `nn.dot_product_attention` | every backend (plain batched GEMMs) |
| fast-compile XLA flags | `tests/conftest.py` | the test suite only |

- **The workaround.** jaxlib 0.10.2's CPU backend fuses reductions through YNNPACK and computes
  `x - sum(b * x)` wrongly when `b` is broadcast along a leading axis (`jit(jax.jacrev(a Swin
  block))` is off by up to 1.0; jaxlib 0.9.2–0.10.1 are right). Keeping reductions out of those
  fusions fixes it. XLA reads the flag when JAX starts its backend, so it is added to `XLA_FLAGS`
  on import, before any computation, and only on that version and only when `XLA_FLAGS` does not
  already choose the fusion kinds. It is the one change `import papers_jax` makes to a program's
  environment; `XLA_CPU_WORKAROUND_APPLIED` says whether it did, and every run records it.
- **Huge pages** (`core/host.py`): XLA's CPU runtime allocates each step's temporary buffer
  afresh; with glibc's `glibc.malloc.hugetlb=1` it faults in 2 MiB at a time instead of 4 KiB.
  glibc reads the tunable only at process start, so an entry point restarts itself once with it.
  It made train steps 10–17% faster on an AMD Zen 5 VM and gave nothing measurable on an Intel
  Xeon VM (docs/benchmarks.md), so it is off unless asked for.
- **The gradient barrier** (`nn/barrier.py`) stops XLA's CPU fusion from recomputing the residual
  stream's gradient inside every consumer; it paid 1.65× on both CPUs measured. On other backends
  its JVP is the identity.

Only the standard library is imported here: `setup_entry_point()` may restart the process before JAX starts.
"""

import importlib.metadata
import os

from papers_jax.core import host

XLA_CPU_WORKAROUNDS = {"0.10.2": "--xla_cpu_experimental_ynn_fusion_type=-reduce"}
XLA_CPU_WORKAROUND_APPLIED: str | None = None


def apply_xla_cpu_workaround() -> str | None:
  """Adds the installed jaxlib's CPU workaround flag to XLA_FLAGS; returns the flag it added, if any."""
  global XLA_CPU_WORKAROUND_APPLIED
  try:
    flag = XLA_CPU_WORKAROUNDS.get(importlib.metadata.version("jaxlib"))
  except importlib.metadata.PackageNotFoundError:
    return None
  flags = os.environ.get("XLA_FLAGS", "")
  if flag and flag.split("=")[0] not in flags:
    os.environ["XLA_FLAGS"] = f"{flags} {flag}".strip()
    XLA_CPU_WORKAROUND_APPLIED = flag
  return XLA_CPU_WORKAROUND_APPLIED


def setup_entry_point():
  """What a command-line entry point applies first, before JAX starts: the opt-in huge-page restart."""
  host.reexec_with_huge_pages()


def describe() -> dict:
  """The platform settings in effect, for a run's recorded environment."""
  return {"xla_cpu_workaround": XLA_CPU_WORKAROUND_APPLIED, **host.memory_settings()}
