"""papers_jax: classic deep-learning papers reproduced on one JAX/Flax NNX training system."""

__version__ = "0.1.0"

# The one change importing papers_jax makes to a program: on jaxlib 0.10.2 only, a flag in
# XLA_FLAGS that avoids a wrong CPU result (core/platform_setup.py explains it and what else is
# platform-specific).
from papers_jax.core import platform_setup as _platform_setup  # noqa: E402

_platform_setup.apply_xla_cpu_workaround()
