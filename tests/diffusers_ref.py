"""diffusers as a parity reference: imported only inside the tests that need it (the test/convert extra)."""

import importlib.util

import pytest


def diffusers_or_skip():
  """(torch, diffusers), or the test is skipped where either is missing. The project's torchvision shim declares
  the op schemas that the registry's torchvision build lacks before diffusers imports it."""
  torch = pytest.importorskip("torch")
  if importlib.util.find_spec("diffusers") is None:
    pytest.skip("diffusers is not installed")
  from papers_jax.convert.torch_compat import _define_torchvision_ops
  _define_torchvision_ops()
  import diffusers
  return torch, diffusers
