"""papers_jax.core.host: the restart that puts malloc's large mappings on transparent huge pages."""

import os
import subprocess
import sys

import pytest

from conftest import ROOT
from papers_jax.core import host

HUGE = "glibc.malloc.hugetlb=1"


def test_restart_environment_only_where_it_helps():
  env = {"PATH": "/bin"}
  assert host.huge_pages_environment(env, "madvise", (2, 36)) == {"PATH": "/bin", "GLIBC_TUNABLES": HUGE}
  # Other tunables are kept, this one appended.
  got = host.huge_pages_environment({"GLIBC_TUNABLES": "glibc.malloc.arena_max=2"}, "madvise", (2, 35))
  assert got["GLIBC_TUNABLES"] == f"glibc.malloc.arena_max=2:{HUGE}"
  assert host.huge_pages_environment(env, "always", (2, 36)) is None  # the kernel already uses huge pages
  assert host.huge_pages_environment(env, "never", (2, 36)) is None
  assert host.huge_pages_environment(env, None, (2, 36)) is None  # no THP support to ask for
  assert host.huge_pages_environment(env, "madvise", (2, 34)) is None  # glibc without the tunable
  assert host.huge_pages_environment(env, "madvise", None) is None  # not glibc
  assert host.huge_pages_environment({"GLIBC_TUNABLES": HUGE}, "madvise", (2, 36)) is None  # already restarted
  assert host.huge_pages_environment({"GLIBC_TUNABLES": "glibc.malloc.hugetlb=0"}, "madvise", (2, 36)) is None
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


RESTARTS = host.huge_pages_environment({}, host.transparent_hugepage_mode(), host.glibc_version()) is not None


@pytest.mark.skipif(not RESTARTS, reason="this host's kernel (no THP 'madvise') or C library (no "
                    "glibc.malloc.hugetlb, glibc < 2.35) gives nothing to restart for")
def test_restart_sets_the_huge_page_tunable_and_the_opt_out_does_not():
  assert _probe(PAPERS_JAX_HUGE_PAGES="0")[1] == ""
  assert _probe()[1] == HUGE


# How many page faults an allocation takes depends on the kernel, not on this code: whether it has 2 MiB
# pages free (fragmentation), its THP defrag policy, and its memory pressure from other processes.
@pytest.mark.skipif(not (RESTARTS and os.environ.get("PAPERS_JAX_PLATFORM_CHECKS")),
                    reason="counts page faults, which depend on the kernel granting transparent huge pages (free "
                    "2 MiB pages, THP defrag policy); set PAPERS_JAX_PLATFORM_CHECKS=1 on a quiet Linux host")
def test_restart_backs_a_large_allocation_with_huge_pages():
  faults_off, _ = _probe(PAPERS_JAX_HUGE_PAGES="0")
  faults_on, _ = _probe()
  small_pages = (256 << 20) // 4096
  assert faults_off >= small_pages  # one fault per 4 KiB page without the tunable
  assert faults_on < small_pages // 8, (faults_on, faults_off)  # 2 MiB pages: ~128 faults when all are huge
