"""Dense layers over any number of input/output axes, with logical axis names on the kernel."""

from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
from flax import nnx

Initializer = Callable[..., jax.Array]


def param(rngs: nnx.Rngs, init: Initializer, shape: Sequence[int], dtype, axes: Sequence[str | None]):
  """Creates an `nnx.Param` whose `axes` metadata names each dimension (see core/sharding.py)."""
  if len(axes) != len(shape):
    raise ValueError(f"axes {axes} do not match shape {shape}")
  return nnx.Param(init(rngs.params(), tuple(shape), dtype), axes=tuple(axes))


def _tuple(x) -> tuple[int, ...]:
  return tuple(x) if isinstance(x, Sequence) else (x,)


class Dense(nnx.Module):
  """y = x·W + b contracting the last `len(in_features)` axes of x.

  `in_features` / `out_features` may be tuples, e.g. a fused QKV projection has kernel shape
  (embed, 3, heads, head_dim), so heads can be sharded over the tensor axis without reshapes.
  """

  def __init__(self, in_features, out_features, *, axes: Sequence[str | None], use_bias: bool = True,
               kernel_init: Initializer | None = None, bias_init: Initializer = nnx.initializers.zeros,
               dtype=None, param_dtype=jnp.float32, rngs: nnx.Rngs):
    self.in_features = _tuple(in_features)
    self.out_features = _tuple(out_features)
    n_in, n_out = len(self.in_features), len(self.out_features)
    if kernel_init is None:  # Xavier-uniform over the flattened fan-in / fan-out.
      kernel_init = nnx.initializers.variance_scaling(
          1.0, "fan_avg", "uniform", in_axis=tuple(range(n_in)), out_axis=tuple(range(n_in, n_in + n_out)))
    self.kernel = param(rngs, kernel_init, self.in_features + self.out_features, param_dtype, axes)
    self.bias = (param(rngs, bias_init, self.out_features, param_dtype, tuple(axes)[n_in:])
                 if use_bias else None)
    self.dtype = dtype

  def __call__(self, x: jax.Array) -> jax.Array:
    dtype = self.dtype or x.dtype
    n_in = len(self.in_features)
    kernel = self.kernel[...].astype(dtype)
    contract = (tuple(range(x.ndim - n_in, x.ndim)), tuple(range(n_in)))
    y = jax.lax.dot_general(x.astype(dtype), kernel, (contract, ((), ())))
    if self.bias is not None:
      y = y + self.bias[...].astype(dtype)
    return y
