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


def perturbed(module, torch, *, seed: int = 0, weight_std: float = 0.05):
  """`module` in eval mode with every parameter random: norm gains 1 + N(0, 0.1), other vectors (biases)
  N(0, 0.1), matrices and kernels N(0, weight_std²), so a converter that dropped a bias or a gain would not match."""
  generator = torch.Generator().manual_seed(seed)
  with torch.no_grad():
    for key, p in module.named_parameters():
      if p.ndim == 1:
        base = 1.0 if "norm" in key and key.endswith("weight") else 0.0
        p.copy_(base + 0.1 * torch.randn(p.shape, generator=generator))
      else:
        p.copy_(weight_std * torch.randn(p.shape, generator=generator))
  return module.eval()
