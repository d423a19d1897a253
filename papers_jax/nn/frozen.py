"""Weights that a run carries but never trains: frozen teachers (DeiT's), momentum encoders (MoCo, BYOL, DINO,
ALBEF, BLIP), all made by turning a module's Params into another variable type."""

from flax import nnx

from papers_jax.nn.drop import Dropout


class Frozen(nnx.Variable):
  """A weight read from a checkpoint and never updated: it lives in the model state, not the params, so the
  optimizer, weight decay, gradient clipping and the parameter counts never see it."""


def params_as(module: nnx.Module, variable_type: type[nnx.Variable], *, deterministic: bool = False) -> nnx.Module:
  """Turns every Param of `module` into `variable_type` with the same value and metadata (in place).
  `deterministic`: also switch dropout and attention dropout off (for targets, which are deterministic
  functions of the input)."""
  for _, node in list(nnx.iter_graph(module)):
    if deterministic and isinstance(node, Dropout):
      node.rate = 0.0
    if deterministic and isinstance(getattr(node, "attn_drop", None), float):
      node.attn_drop = 0.0
    if isinstance(node, nnx.Module):
      for name, value in list(vars(node).items()):
        if isinstance(value, nnx.Param):
          setattr(node, name, variable_type(value[...], **value.get_metadata()))
  return module


def freeze(module: nnx.Module) -> nnx.Module:
  """Turns every Param of `module` into a Frozen variable with the same value and metadata (in place)."""
  return params_as(module, Frozen)
