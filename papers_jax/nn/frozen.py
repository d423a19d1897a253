"""Frozen modules: weights that a run carries but never trains (DeiT's teacher)."""

from flax import nnx


class Frozen(nnx.Variable):
  """A weight read from a checkpoint and never updated: it lives in the model state, not the params, so the
  optimizer, weight decay, gradient clipping and the parameter counts never see it."""


def freeze(module: nnx.Module) -> nnx.Module:
  """Turns every Param of `module` into a Frozen variable with the same value and metadata (in place)."""
  for _, node in list(nnx.iter_graph(module)):
    if isinstance(node, nnx.Module):
      for name, value in list(vars(node).items()):
        if isinstance(value, nnx.Param):
          setattr(node, name, Frozen(value[...], **value.get_metadata()))
  return module
