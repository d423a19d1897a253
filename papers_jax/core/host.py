"""The host machine: which CPU it is, and backing large host buffers with transparent huge pages.

XLA's CPU runtime allocates every execution's temporary buffer afresh (1.2 GB for a Swin-T train
step at batch 8), and glibc's malloc maps a buffer that large with its own mmap and unmaps it on
free. On kernels whose transparent huge pages are in `madvise` mode (the common default), each
step then faults its buffer in 4 KiB at a time: 320,000 page faults per Swin-T step, 460,000 per
ViT-B/16 step. glibc ≥ 2.35 has a tunable, `glibc.malloc.hugetlb=1`, with which malloc asks for
transparent huge pages on the memory it maps, so the same buffer faults in 2 MiB at a time.
Measured on a 2-core CPU (docs/benchmarks.md): 1,100–3,500 faults per step, and train steps 10–17%
faster at the same resident memory; on an Intel Xeon VM it gave nothing measurable, so it is opt-in.
glibc reads tunables only when a process starts, so with `PAPERS_JAX_HUGE_PAGES=1` the entry points
(`python -m papers_jax.main`, `tools/benchmark.py`, the demo tools, through
`platform_setup.setup_entry_point`) restart themselves once with it set, before JAX is imported.

Only the standard library is imported here: `reexec_with_huge_pages` runs before JAX.
"""

import os
import platform
import sys

HUGE_PAGES_TUNABLE = "glibc.malloc.hugetlb=1"
THP_ENABLED = "/sys/kernel/mm/transparent_hugepage/enabled"


def host_cpu() -> str:
  """The host CPU's model name (CPU timings differ several-fold between VMs of the same size)."""
  info, count = {}, 0
  try:
    with open("/proc/cpuinfo") as f:
      for line in f:
        key, _, value = line.partition(":")
        info.setdefault(key.strip(), value.strip())  # the first processor's fields
        count += key.strip() == "processor"
  except OSError:
    pass
  if "model name" not in info:
    return platform.processor()
  return f"{info['model name']} (family {info.get('cpu family', '?')}, model {info.get('model', '?')}) ×{count}"


def transparent_hugepage_mode(path: str = THP_ENABLED) -> str | None:
  """The kernel's transparent-huge-page mode ("always", "madvise" or "never"); None if unknown."""
  try:
    with open(path) as f:
      text = f.read()
  except OSError:
    return None
  start, end = text.find("["), text.find("]")
  return text[start + 1:end] if 0 <= start < end else None


def glibc_version() -> tuple[int, int] | None:
  """(major, minor) of the C library if it is glibc, else None."""
  try:
    name, version = os.confstr("CS_GNU_LIBC_VERSION").split()
    major, minor = version.split(".")[:2]
    return (int(major), int(minor)) if name == "glibc" else None
  except (AttributeError, ValueError, OSError):
    return None


def huge_pages_environment(environ, thp_mode: str | None, glibc: tuple[int, int] | None) -> dict | None:
  """The environment to restart with so malloc asks for huge pages, or None when that would not help.

  Only with `PAPERS_JAX_HUGE_PAGES=1`; even then nothing to do where the kernel already backs every
  large mapping with huge pages ("always"), or never does ("never"), where glibc is absent or older
  than 2.35 (no such tunable), or where the tunable is already set (this is the restarted process).
  """
  tunables = environ.get("GLIBC_TUNABLES", "")
  if (environ.get("PAPERS_JAX_HUGE_PAGES", "0") != "1" or thp_mode != "madvise" or glibc is None
      or glibc < (2, 35) or "glibc.malloc.hugetlb=" in tunables):
    return None
  return {**environ, "GLIBC_TUNABLES": ":".join(t for t in (tunables, HUGE_PAGES_TUNABLE) if t)}


def reexec_with_huge_pages():
  """Restarts this process (same command, same PID) with malloc's huge-page tunable, when it helps.

  Call it first thing in a program's entry point: everything done before it is done twice.
  """
  environ = huge_pages_environment(os.environ, transparent_hugepage_mode(), glibc_version())
  if environ is None or not sys.executable:
    return
  sys.stdout.flush()
  sys.stderr.flush()
  os.execve(sys.executable, [sys.executable, *sys.orig_argv[1:]], environ)


def memory_settings() -> dict:
  """What `reexec_with_huge_pages` depends on, for a run's recorded environment."""
  return {"transparent_hugepage": transparent_hugepage_mode(), "glibc_tunables": os.environ.get("GLIBC_TUNABLES", "")}
