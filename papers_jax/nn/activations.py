"""ReLU with a swappable backward pass, for guided backpropagation (Springenberg et al., 2015).

Models call `relu` from here instead of `jax.nn.relu`; it is `jax.nn.relu` except inside
`guided_relu_backward()`, where its gradient passes only positive gradients through positive inputs.
The switch acts at trace time, so enter it inside the function that jit / grad transforms
(evaluators/interpret.py does); the forward values never change.
"""

import contextlib
import contextvars

import jax
import jax.numpy as jnp

_GUIDED = contextvars.ContextVar("guided_relu", default=False)


@jax.custom_vjp
def guided_relu(x):
  """max(x, 0) whose VJP is g · [x > 0] · [g > 0] (guided backprop's rule)."""
  return jnp.maximum(x, 0)


def _guided_fwd(x):
  return jnp.maximum(x, 0), x


def _guided_bwd(x, g):
  return (jnp.where((x > 0) & (g > 0), g, jnp.zeros_like(g)),)


guided_relu.defvjp(_guided_fwd, _guided_bwd)


def relu(x):
  return guided_relu(x) if _GUIDED.get() else jax.nn.relu(x)


@contextlib.contextmanager
def guided_relu_backward():
  """Every `relu` traced inside back-propagates guided-backprop style."""
  token = _GUIDED.set(True)
  try:
    yield
  finally:
    _GUIDED.reset(token)
