"""core.malloc: on the CPU backend, a program's large buffers reuse the previous execution's pages."""

import json
import os
import subprocess
import sys

import pytest

from conftest import ROOT

# Runs a jitted program with a 64 MiB temporary buffer (over glibc's largest mmap threshold, 32 MiB)
# and counts the minor page faults of its later executions.
SCRIPT = """
import json, resource, sys
from papers_jax.core import malloc
applied = malloc.keep_freed_memory()
import jax, jax.numpy as jnp
f = jax.jit(lambda x, w: jnp.sin(x) @ w)
x, w = jnp.ones((4096, 4096), jnp.float32), jnp.ones((4096, 64), jnp.float32)
for _ in range(20):  # the next execution may start before the last one's buffer is freed: two places
  f(x, w).block_until_ready()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(10):
  f(x, w).block_until_ready()
print(json.dumps({"applied": applied, "faults": (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / 10}))
"""


def run(**env):
  env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=1", "PYTHONPATH": ROOT, **env}
  proc = subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True, timeout=120)
  assert proc.returncode == 0, proc.stderr[-2000:]
  return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc")
def test_cpu_buffers_reuse_their_pages_and_accelerators_are_left_alone():
  kept = run(JAX_PLATFORMS="cpu")
  default = run(JAX_PLATFORMS="cpu", PAPERS_JAX_CPU_MALLOC="default")
  assert kept["applied"] and not default["applied"]
  assert default["faults"] > 10_000  # 64 MiB of fresh 4 KiB pages is 16,384
  assert kept["faults"] < 0.25 * default["faults"], (kept, default)  # measured: 0 in each of 8 runs
  # Not for another backend, and not over malloc options the user set; neither starts a backend.
  check = "from papers_jax.core import malloc; print(malloc.keep_freed_memory())"
  for env in ({"JAX_PLATFORMS": "cuda"}, {"JAX_PLATFORMS": "cpu", "GLIBC_TUNABLES": "glibc.malloc.arena_max=2"}):
    proc = subprocess.run([sys.executable, "-c", check], env={**os.environ, "PYTHONPATH": ROOT, **env},
                          capture_output=True, text=True, timeout=60)
    assert proc.stdout.strip() == "False", (env, proc.stdout, proc.stderr[-2000:])
