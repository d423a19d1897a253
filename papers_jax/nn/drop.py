"""Dropout and stochastic depth. Randomness comes from `rngs` passed at call time, so the model
holds no RNG state and a train step stays a pure function of (params, batch, key)."""

import jax
import jax.numpy as jnp
from flax import nnx


class Dropout(nnx.Module):
  """Elementwise dropout; `deterministic` is toggled by `model.train()` / `model.eval()`."""

  def __init__(self, rate: float, *, deterministic: bool = False, rng_collection: str = "dropout"):
    self.rate = rate
    self.deterministic = deterministic
    self.rng_collection = rng_collection

  def mask_shape(self, x) -> tuple[int, ...]:
    return x.shape

  def __call__(self, x, *, deterministic: bool | None = None, rngs: nnx.Rngs | None = None):
    deterministic = self.deterministic if deterministic is None else deterministic
    if deterministic or self.rate == 0.0:
      return x
    if rngs is None:
      raise ValueError(f"{type(self).__name__} in training mode needs `rngs` "
                       "(e.g. model(x, rngs=nnx.Rngs(dropout=0))).")
    keep = 1.0 - self.rate
    mask = jax.random.bernoulli(rngs[self.rng_collection](), keep, self.mask_shape(x))
    return jnp.where(mask, x / keep, 0).astype(x.dtype)


class DropPath(Dropout):
  """Stochastic depth: drops the whole residual branch per example, rescaling survivors."""

  def mask_shape(self, x) -> tuple[int, ...]:
    return (x.shape[0],) + (1,) * (x.ndim - 1)
