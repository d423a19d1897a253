"""Keeps freed host memory mapped for XLA's CPU backend, so each step reuses the last one's pages.

XLA's CPU runtime mallocs every execution's temporary buffer (2.4 GB for a ViT-B/16 train step at
batch 8) from one of its own threads. glibc serves a request that large with a fresh mmap and
unmaps it on free, so every step faults in every page again: about 460,000 minor page faults and
0.7 s of system time per ViT-B/16 step (docs/benchmarks.md). Serving large blocks from the main
heap and never trimming it lets the next step find the pages mapped; the process keeps its peak
resident size instead of returning it between steps.

A thread picks its malloc arena at its first allocation, so this must run before JAX starts its
backend; it applies only where the backend will be the CPU (JAX_PLATFORMS=cpu, or no accelerator
plugin installed), on glibc, and not when GLIBC_TUNABLES already sets malloc options or
PAPERS_JAX_CPU_MALLOC=default asks for glibc's defaults.
"""

import ctypes
import ctypes.util
import importlib.metadata
import importlib.util
import logging
import os

log = logging.getLogger(__name__)

# mallopt parameters (glibc's malloc.h).
M_TRIM_THRESHOLD, M_MMAP_MAX, M_ARENA_MAX = -1, -4, -8
ACCELERATOR_PACKAGES = ("libtpu", "jax-cuda", "jax_cuda", "jax-rocm", "jax_rocm")

applied = False  # whether keep_freed_memory() changed malloc in this process


def backend_is_cpu() -> bool:
  """Whether JAX will run on the CPU, decided without starting its backend."""
  platforms = os.environ.get("JAX_PLATFORMS", "")
  try:
    import jax
    platforms = jax.config.jax_platforms or platforms
  except ImportError:
    pass
  if platforms:
    return set(platforms.replace(" ", "").split(",")) == {"cpu"}
  names = {(d.metadata["Name"] or "").lower() for d in importlib.metadata.distributions()}
  return not any(n.startswith(ACCELERATOR_PACKAGES) for n in names) and importlib.util.find_spec("libtpu") is None


def keep_freed_memory() -> bool:
  """One malloc arena, no mmap for large blocks and no trimming, when the backend is the CPU.

  Returns whether it applied. Call it before the first JAX computation (`jax.devices()` included).
  """
  global applied
  if applied:
    return True
  if os.environ.get("PAPERS_JAX_CPU_MALLOC", "keep") not in ("keep", "default"):
    raise ValueError(f"PAPERS_JAX_CPU_MALLOC={os.environ['PAPERS_JAX_CPU_MALLOC']!r}: use keep or default")
  if (os.environ.get("PAPERS_JAX_CPU_MALLOC") == "default" or "glibc.malloc" in os.environ.get("GLIBC_TUNABLES", "")
      or not backend_is_cpu()):
    return False
  name = ctypes.util.find_library("c")
  libc = ctypes.CDLL(name) if name else None
  if libc is None or not hasattr(libc, "mallopt") or not hasattr(libc, "gnu_get_libc_version"):
    return False  # not glibc
  # -1 as the trim threshold is SIZE_MAX to glibc: never trim.
  applied = all(libc.mallopt(param, value) == 1
                for param, value in ((M_ARENA_MAX, 1), (M_MMAP_MAX, 0), (M_TRIM_THRESHOLD, -1)))
  if not applied:
    log.warning("mallopt refused the CPU backend's malloc settings; large buffers stay mmapped")
  return applied
