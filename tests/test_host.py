"""papers_jax.core.platform_setup and host: what importing papers_jax changes (one documented flag, on one
jaxlib), and the opt-in restart that puts malloc's large mappings on transparent huge pages."""

import json
import os
import subprocess
import sys

import pytest

from conftest import ROOT
from papers_jax.core import host

HUGE = "glibc.malloc.hugetlb=1"


def test_restart_environment_only_where_it_helps():
  env = {"PATH": "/bin"}
  assert host.huge_pages_environment(env, "madvise", (2, 36)) is None  # opt-in: nothing without the variable
  env = {"PATH": "/bin", "PAPERS_JAX_HUGE_PAGES": "1"}
  assert host.huge_pages_environment(env, "madvise", (2, 36)) == {**env, "GLIBC_TUNABLES": HUGE}
  # Other tunables are kept, this one appended.
  got = host.huge_pages_environment({**env, "GLIBC_TUNABLES": "glibc.malloc.arena_max=2"}, "madvise", (2, 35))
  assert got["GLIBC_TUNABLES"] == f"glibc.malloc.arena_max=2:{HUGE}"
  assert host.huge_pages_environment(env, "always", (2, 36)) is None  # the kernel already uses huge pages
  assert host.huge_pages_environment(env, "never", (2, 36)) is None
  assert host.huge_pages_environment(env, None, (2, 36)) is None  # no THP support to ask for
  assert host.huge_pages_environment(env, "madvise", (2, 34)) is None  # glibc without the tunable
  assert host.huge_pages_environment(env, "madvise", None) is None  # not glibc
  assert host.huge_pages_environment({**env, "GLIBC_TUNABLES": HUGE}, "madvise", (2, 36)) is None  # restarted
  assert host.huge_pages_environment({**env, "GLIBC_TUNABLES": "glibc.malloc.hugetlb=0"}, "madvise", (2, 36)) is None
  assert host.huge_pages_environment({"PAPERS_JAX_HUGE_PAGES": "0"}, "madvise", (2, 36)) is None


def test_transparent_hugepage_mode_reads_the_bracketed_choice(tmp_path):
  path = tmp_path / "enabled"
  path.write_text("always [madvise] never\n")
  assert host.transparent_hugepage_mode(str(path)) == "madvise"
  path.write_text("[always] madvise never\n")
  assert host.transparent_hugepage_mode(str(path)) == "always"
  assert host.transparent_hugepage_mode(str(tmp_path / "missing")) is None


# Restarts itself, then takes 256 MiB from malloc (as XLA's CPU runtime does; numpy would ask for
# huge pages itself) and writes every byte: prints the page faults that took, and the tunables the
# process ended up with.
PROBE = """
import ctypes, os, resource, sys
sys.path.insert(0, sys.argv[1])
from papers_jax.core import host
host.reexec_with_huge_pages()
libc = ctypes.CDLL(None)
libc.malloc.restype = ctypes.c_void_p
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
buf = libc.malloc(256 << 20)
ctypes.memset(buf, 1, 256 << 20)
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before, os.getpid(), os.environ.get("GLIBC_TUNABLES", ""))
"""


def _probe(**env):
  base = {k: v for k, v in os.environ.items() if k not in ("GLIBC_TUNABLES", "PAPERS_JAX_HUGE_PAGES")}
  out = subprocess.run([sys.executable, "-c", PROBE, ROOT], env={**base, **env}, capture_output=True,
                       text=True, timeout=60, check=True).stdout.split()
  return int(out[0]), out[2] if len(out) > 2 else ""


OPT_IN = {"PAPERS_JAX_HUGE_PAGES": "1"}
RESTARTS = host.huge_pages_environment(OPT_IN, host.transparent_hugepage_mode(), host.glibc_version()) is not None


@pytest.mark.skipif(not RESTARTS, reason="this host's kernel (no THP 'madvise') or C library (no "
                    "glibc.malloc.hugetlb, glibc < 2.35) gives nothing to restart for")
def test_restart_sets_the_huge_page_tunable_only_when_asked():
  assert _probe()[1] == ""  # off unless asked for
  assert _probe(**OPT_IN)[1] == HUGE


# How many page faults an allocation takes depends on the kernel, not on this code: whether it has 2 MiB
# pages free (fragmentation), its THP defrag policy, and its memory pressure from other processes.
@pytest.mark.skipif(not (RESTARTS and os.environ.get("PAPERS_JAX_PLATFORM_CHECKS")),
                    reason="counts page faults, which depend on the kernel granting transparent huge pages (free "
                    "2 MiB pages, THP defrag policy); set PAPERS_JAX_PLATFORM_CHECKS=1 on a quiet Linux host")
def test_restart_backs_a_large_allocation_with_huge_pages():
  faults_off, _ = _probe()
  faults_on, _ = _probe(**OPT_IN)
  small_pages = (256 << 20) // 4096
  assert faults_off >= small_pages  # one fault per 4 KiB page without the tunable
  assert faults_on < small_pages // 8, (faults_on, faults_off)  # 2 MiB pages: ~128 faults when all are huge


IMPORT_PROBE = """
import json, os, sys
sys.path.insert(0, sys.argv[1])
import papers_jax
from papers_jax.core import platform_setup
print(json.dumps({"xla_flags": os.environ.get("XLA_FLAGS"), "applied": platform_setup.XLA_CPU_WORKAROUND_APPLIED,
                  "tunables": os.environ.get("GLIBC_TUNABLES")}))
"""


def _import_probe(env):
  out = subprocess.run([sys.executable, "-c", IMPORT_PROBE, ROOT], env=env, capture_output=True, text=True,
                       timeout=60, check=True).stdout
  return json.loads(out)


@pytest.mark.parametrize("user_flags", ["--xla_dump_to=/tmp/dump", None])
def test_import_leaves_xla_flags_alone_but_for_the_documented_workaround(user_flags):
  import importlib.metadata

  from papers_jax.core import platform_setup
  base = {k: v for k, v in os.environ.items() if k not in ("XLA_FLAGS", "GLIBC_TUNABLES", "PAPERS_JAX_HUGE_PAGES")}
  got = _import_probe(base | ({"XLA_FLAGS": user_flags} if user_flags else {}))
  expected = platform_setup.XLA_CPU_WORKAROUNDS.get(importlib.metadata.version("jaxlib"))
  assert got["xla_flags"] == (" ".join(f for f in (user_flags, expected) if f) or None)
  assert got["applied"] == expected
  assert got["tunables"] is None  # no restart, no glibc tunables: huge pages are opt-in
  # A program that already chooses the fusion kinds keeps its own choice.
  got = _import_probe(base | {"XLA_FLAGS": "--xla_cpu_experimental_ynn_fusion_type=all"})
  assert got["xla_flags"] == "--xla_cpu_experimental_ynn_fusion_type=all" and got["applied"] is None
