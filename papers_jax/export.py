"""Exporting a model: a serialised StableHLO forward pass (`jax.export`), with its weights inside.

  blob = export.stablehlo(model, (1, 224, 224, 3))       # bytes; write them to a file
  logits = export.load_stablehlo(blob)(images)           # any JAX program, no papers_jax needed

The artefact holds the weights as constants, so it runs alone; its input shape and dtype are fixed
at export (a batch dimension given as None is symbolic). For the timm / HF state-dict layout, see
`convert.export_state_dict`.
"""

import jax
import jax.numpy as jnp
from flax import nnx


def stablehlo(model: nnx.Module, input_shape, input_dtype=jnp.float32, *, platforms=None) -> bytes:
  """The model's inference forward pass (`model(x, train=False)` when it takes `train`) as StableHLO."""
  graphdef, state = nnx.split(model)

  def forward(x):
    m = nnx.merge(graphdef, state)
    try:
      return m(x, train=False)
    except TypeError:
      return m(x)

  if None in input_shape:
    (batch,) = jax.export.symbolic_shape("batch")
    input_shape = tuple(batch if d is None else d for d in input_shape)
  spec = jax.ShapeDtypeStruct(tuple(input_shape), input_dtype)
  exported = jax.export.export(jax.jit(forward), platforms=platforms)(spec)
  return bytes(exported.serialize())


def load_stablehlo(blob: bytes):
  """The callable of a serialised export: `fn(x) -> outputs`."""
  return jax.export.deserialize(bytearray(blob)).call
