"""Test set-up: 8 simulated CPU devices and JAX's persistent compilation cache.

XLA_FLAGS must be set before JAX is imported anywhere, which is why it happens here.
"""

import os
import sys

# Compiling dominates this suite, so the CPU backend is set to compile fast: LLVM at -O0 (about 40%
# faster) and XLA's older loop emitters in place of its MLIR fusion emitters (about half the compile
# time again). Numerics tests compare within one setting or at float32 tolerances.
TEST_XLA_FLAGS = "--xla_backend_optimization_level=0 --xla_cpu_use_fusion_emitters=false"
os.environ["XLA_FLAGS"] = " ".join([os.environ.get("XLA_FLAGS", ""), "--xla_force_host_platform_device_count=8",
                                    TEST_XLA_FLAGS]).strip()
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import papers_jax  # noqa: E402,F401  (its XLA CPU workaround must reach XLA_FLAGS before the backend starts)

import jax  # noqa: E402
import pytest  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# PAPERS_JAX_TEST_CACHE_DIR=<empty dir> measures a test as a clean clone (no cache yet) runs it.
CACHE_DIR = os.environ.get("PAPERS_JAX_TEST_CACHE_DIR") or os.path.join(ROOT, ".jax_cache")
jax.config.update("jax_compilation_cache_dir", CACHE_DIR)
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)
jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)

# Every nnx.Rngs draw under tracing (jit(init), nnx.eval_shape) stores the stream's new count, and flax compares
# the old and new values' `.sharding` with getattr(..., None). On a tracer that raises an AttributeError whose
# message JAX builds by scanning the whole trace so far, so an abstract build is quadratic in the model's size
# (a full-size DANet: 2.5 s of CPU, 0.7 s without the scan). getattr drops the message unread: the suite raises
# the same AttributeError without it. Only this message changes; jax 0.10.2 (core.Tracer.sharding).
from jax._src import core as _jax_core  # noqa: E402


def _tracer_has_no_sharding(tracer):
  raise AttributeError(f"The 'sharding' attribute is not available on a tracer ({type(tracer).__name__}).")


_jax_core.Tracer.sharding = property(_tracer_has_no_sharding)

# Orbax's replica-parallel save slices every replicated array across the 8 simulated devices, and
# each new shape compiles its own slice (~4 s per model in this suite); one process writes every
# byte either way, so the tests save whole arrays. Runs keep Orbax's default.
import orbax.checkpoint as ocp  # noqa: E402
ocp.type_handlers.register_type_handler(jax.Array, ocp.type_handlers.ArrayHandler(use_replica_parallel=False),
                                        override=True)


def load_config(path: str, arg: str | None = None):
  """Loads configs/<path> the way `--config` does and returns its (locked) ConfigDict."""
  from papers_jax.core import config as config_lib
  return config_lib.load(os.path.join(ROOT, "configs", path) + (f":{arg}" if arg else ""))


@pytest.fixture
def config_loader():
  return load_config


sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))


# `make test` runs two xdist workers that take one file at a time (`--dist loadfile --no-loadscope-reorder`)
# in the order below. The files with the longest tests (CI's --durations) go first, so that the run does not end
# with one worker on a 30 s end-to-end test while the other has nothing left; the rest follow by their number of
# tests, most first (xdist's own order). A new file with a test over ~15 s belongs in this list.
SLOW_FILES_FIRST = (
    "test_configs_more.py", "test_configs.py", "test_ssl_task.py", "test_reliability.py", "test_multihost.py",
    "test_sweep.py", "test_detection.py", "test_clip.py", "test_core.py", "test_benchmark.py", "test_precision.py",
    "test_cnn_classics.py", "test_interpret.py", "test_faults.py", "test_validation.py", "test_text_finetune.py",
    "test_remat.py", "test_run.py")


def pytest_collection_modifyitems(config, items):
  by_file = {}
  for item in items:
    by_file.setdefault(item.nodeid.split("::")[0], []).append(item)
  first = {name: i for i, name in enumerate(SLOW_FILES_FIRST)}
  rank = lambda path: (first.get(os.path.basename(path), len(first)), -len(by_file[path]))  # noqa: E731
  items[:] = [item for path in sorted(by_file, key=rank) for item in by_file[path]]
