"""`gradient_barrier`: an identity that makes XLA's CPU compiler store a block's input gradient once.

A residual network's gradient at block l is a running sum over every later block. XLA's CPU fusion
treats adds as free to duplicate, so it copies that whole elementwise sum into each fusion that
reads it (the transposes feeding the weight-gradient matmuls, the bias reductions, ...) and
recomputes it there: work quadratic in depth, a third of a ViT-B/16 train step on CPU
(docs/benchmarks.md). `lax.optimization_barrier` does not help: the CPU pipeline removes it before
fusion. A gather, which XLA's CPU fusion counts as expensive and never duplicates, does.

So on CPU the tangent goes through a scatter of t into zeros at every index (the identity), whose
transpose, in the backward pass, is a gather of the cotangent at every index (the identity again,
and the barrier). Forward-mode autodiff keeps working; other platforms are left as they were.
"""

import jax
import jax.numpy as jnp


def _scatter_identity(t):
  index = jnp.arange(t.shape[-1])
  return jnp.zeros_like(t).at[..., index].set(t, unique_indices=True, indices_are_sorted=True)


@jax.custom_jvp
def gradient_barrier(x):
  """Returns x. Its backward pass on CPU materialises the cotangent (see the module docstring)."""
  return x


@gradient_barrier.defjvp
def _jvp(primals, tangents):
  (x,), (t,) = primals, tangents
  return x, jax.lax.platform_dependent(t, cpu=_scatter_identity, default=lambda t: t)
