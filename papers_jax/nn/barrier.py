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

The indices run along axis 1, the length (or image-row) axis of the blocks' (batch, length, ...)
outputs: never sharded by the default rules, unlike batch (data parallelism) and sometimes the
channels. Gathering along the channels instead made XLA lay the copy out channels-major, a
transpose of the whole activation; along axis 1 it copies whole rows, and the CPU train steps of
Swin-T and ViT-B/16 were 4–6% faster (docs/benchmarks.md).
"""

import jax
import jax.numpy as jnp


def _scatter_identity(t):
  axis = min(1, t.ndim - 1)
  index = jnp.arange(t.shape[axis])
  return jnp.zeros_like(t).at[(slice(None),) * axis + (index,)].set(t, unique_indices=True, indices_are_sorted=True)


@jax.custom_jvp
def gradient_barrier(x):
  """Returns x. Its backward pass on CPU materialises the cotangent (see the module docstring)."""
  return x


@gradient_barrier.defjvp
def _jvp(primals, tangents):
  (x,), (t,) = primals, tangents
  return x, jax.lax.platform_dependent(t, cpu=_scatter_identity, default=lambda t: t)
