"""Normalisation layers; statistics are always computed in float32."""

import jax
import jax.numpy as jnp
from flax import nnx

from papers_jax.nn.linear import param


class LayerNorm(nnx.Module):
  """LayerNorm over the last axis; computes in float32 and returns `dtype` (default: input dtype)."""

  def __init__(self, num_features: int, *, eps: float = 1e-6, use_bias: bool = True, use_scale: bool = True,
               axis_name: str = "norm", dtype=None, param_dtype=jnp.float32, rngs: nnx.Rngs):
    self.eps = eps
    self.dtype = dtype
    self.scale = param(rngs, nnx.initializers.ones, (num_features,), param_dtype, (axis_name,)) if use_scale else None
    self.bias = param(rngs, nnx.initializers.zeros, (num_features,), param_dtype, (axis_name,)) if use_bias else None

  def __call__(self, x: jax.Array) -> jax.Array:
    dtype = self.dtype or x.dtype
    x32 = x.astype(jnp.float32)
    mean = x32.mean(-1, keepdims=True)
    var = jnp.square(x32 - mean).mean(-1, keepdims=True)
    y = (x32 - mean) * jax.lax.rsqrt(var + self.eps)
    if self.scale is not None:
      y = y * self.scale[...].astype(jnp.float32)
    if self.bias is not None:
      y = y + self.bias[...].astype(jnp.float32)
    return y.astype(dtype)
