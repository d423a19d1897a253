"""Helpers shared by the timm parity tests (ViT, Swin, Mixer); torch and timm required."""

import functools
import math

import jax
import numpy as np
import torch
from flax import nnx

from papers_jax import convert, models
from papers_jax.convert.torch_compat import import_timm

timm = import_timm()
TOL = 1e-4


class FixedKeyRngs:
  """Stands in for nnx.Rngs in shape-only builds.

  Each nnx.Rngs draw under tracing updates a counter Variable whose sharding lookup scans the
  whole trace, so `nnx.eval_shape` is quadratic in model size (~60 s for all ViTs, 12 s with this).
  """

  def params(self):
    return jax.random.key(0)


def abstract(name, **overrides):
  return nnx.eval_shape(lambda: models.create(name, rngs=FixedKeyRngs(), **overrides))


def num_params(model) -> int:
  return sum(math.prod(v.shape) for v in jax.tree.leaves(nnx.state(model, nnx.Param)))


def timm_param_count(name, **kwargs) -> int:
  with torch.device("meta"):
    ref = timm.create_model(name, pretrained=False, **kwargs)
  return sum(p.numel() for p in ref.parameters())


def random_timm(name, seed=0, **kwargs):
  """A timm model in eval mode with random values in EVERY tensor.

  timm's init leaves biases at 0, LayerNorms at (1, 0) and (after its own init) nothing else
  distinctive, so a converter that dropped them would still match. Here: kernels N(0, 0.02),
  biases N(0, 0.1), LayerNorm scales 1 + N(0, 0.1), relative-position bias tables N(0, 1) (trained
  tables reach several units, so the bias and the masks visibly shape the attention). Built on
  the meta device; timm's non-persistent buffers (index, masks) are then recomputed.
  """
  with torch.device("meta"):
    model = timm.create_model(name, pretrained=False, **kwargs)
  model = model.to_empty(device="cpu").eval()
  for module in model.modules():
    if hasattr(module, "init_non_persistent_buffers"):
      module.init_non_persistent_buffers()
  generator = torch.Generator().manual_seed(seed)
  with torch.no_grad():
    for key, p in model.named_parameters():
      if key.endswith("relative_position_bias_table"):
        base, std = 0.0, 1.0
      elif p.ndim == 1:
        base, std = (1.0 if "norm" in key and key.endswith(".weight") else 0.0), 0.1
      else:
        base, std = 0.0, 0.02
      p.copy_(base + std * torch.randn(p.shape, generator=generator))
  return model


def numpy_state_dict(model):
  """Numpy views of the model's tensors (no copy: the large models hold 200M+ parameters)."""
  return {k: v.detach().numpy() for k, v in model.state_dict().items()}


def images(height, width=None, seed=0, batch=1):
  return np.random.RandomState(seed).randn(batch, height, width or height, 3).astype(np.float32)


def timm_logits(model, x):
  with torch.no_grad():
    return model(torch.from_numpy(x.transpose(0, 3, 1, 2).copy())).numpy()


# XLA's CPU backend at optimisation level 0 compiles these one-off forwards about 2.5× faster (Swin-T:
# 7 s instead of 18 s) for a slower run; the ops and their float32 numerics are the same.
@functools.partial(jax.jit, static_argnums=0, compiler_options={"xla_backend_optimization_level": 0})
def _logits(graphdef, state, x):
  return nnx.merge(graphdef, state)(x)


def our_logits(model, x):
  """Logits at the highest matmul precision; models of the same structure share the compiled function."""
  graphdef, state = nnx.split(model)
  with jax.default_matmul_precision("highest"):
    return np.asarray(_logits(graphdef, state, x))


def load_ours(name, state_dict, **overrides):
  model = abstract(name, **overrides)
  report = convert.load_torch_weights(model, state_dict, "timm")
  model.eval()
  return model, report


def modified(model, path, fn):
  """A copy of `model` whose param at '/'-joined `path` is fn(value)."""
  model = nnx.clone(model)
  *parents, leaf = path.split("/")
  node = model
  for k in parents:
    node = node[int(k)] if k.isdigit() else getattr(node, k)
  var = getattr(node, leaf)
  var[...] = fn(np.asarray(var[...]))
  return model
