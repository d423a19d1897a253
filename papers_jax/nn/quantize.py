"""Vector quantisation (VQ-VAE, van den Oord et al. 2017, §3.1–3.2; the EMA variant of its Appendix A.1).

Each encoder vector z (the last axis) is replaced by its nearest codebook entry e_k, k = argmin ‖z − e_j‖².
The decoder's gradient is copied straight through to the encoder (z_q = z + sg[e_k − z]). Losses:
  codebook   = mean ‖sg[z] − e_k‖²     (moves the codes towards the encoder outputs)
  commitment = mean ‖z − sg[e_k]‖²     (keeps the encoder close to its codes), weighted by β = 0.25
(means over every element, as the reference implementations). `loss` = codebook + β · commitment; with
the EMA codebook (`ema_decay` > 0) the codebook term is dropped and the codes follow, in training,
  N_k ← γ N_k + (1 − γ) n_k,   m_k ← γ m_k + (1 − γ) Σ_{z → k} z,   e_k = m_k / Ñ_k,
with Laplace smoothing Ñ_k = (N_k + ε) / (Σ N + K ε) · Σ N (γ = 0.99, ε = 1e-5 as Sonnet's VQ-VAE-EMA).
These statistics are `nnx.BatchStat`s: the task's loss function returns them as the model state, as for
BatchNorm, so the update happens inside the jitted train step.

Dead-code restarts (`restart_threshold` > 0, EMA codebook only): in training, every code whose EMA count
N_k falls below the threshold is moved onto an encoder output of the current batch, chosen at random
(the `rngs` "dropout" stream), with N_k reset to 1 — the remedy for codes no input ever selects.

Metrics (`aux`): the indices, both losses, the perplexity exp(−Σ p_k log p_k) of the batch's code
frequencies p (K when every code is used equally, 1 when one code takes everything) and `usage`, the
fraction of codes the batch uses. tests/test_quantize.py checks indices, outputs, losses and gradients
against diffusers' `VectorQuantizer(legacy=False)`, and the losses and EMA update against numpy.
"""

import jax
import jax.numpy as jnp
from flax import nnx

from papers_jax.nn.linear import param


def _uniform(bound: float):
  def init(key, shape, dtype=jnp.float32):
    return jax.random.uniform(key, shape, dtype, -bound, bound)
  return init


def nearest_codes(z, codebook):
  """(N, D) vectors, (K, D) codebook → (N,) indices of the nearest codes (squared Euclidean distance)."""
  z, codebook = z.astype(jnp.float32), codebook.astype(jnp.float32)
  d = (jnp.sum(z ** 2, axis=1, keepdims=True) - 2.0 * z @ codebook.T + jnp.sum(codebook ** 2, axis=1)[None, :])
  return jnp.argmin(d, axis=1)


def perplexity_and_usage(indices, num_codes: int):
  p = jnp.bincount(indices.reshape(-1), length=num_codes).astype(jnp.float32) / indices.size
  entropy = -jnp.sum(jnp.where(p > 0, p * jnp.log(jnp.where(p > 0, p, 1.0)), 0.0))
  return jnp.exp(entropy), jnp.mean((p > 0).astype(jnp.float32))


class VectorQuantizer(nnx.Module):
  """`num_codes` × `dim` codebook over the last axis of its input; see the module docstring."""

  def __init__(self, num_codes: int, dim: int, *, beta: float = 0.25, ema_decay: float = 0.0, eps: float = 1e-5,
               restart_threshold: float = 0.0, param_dtype=jnp.float32, rngs: nnx.Rngs):
    if restart_threshold and not ema_decay:
      raise ValueError("dead-code restarts (restart_threshold > 0) need the EMA codebook (ema_decay > 0)")
    self.num_codes, self.dim, self.beta = num_codes, dim, beta
    self.ema_decay, self.eps, self.restart_threshold = ema_decay, eps, restart_threshold
    init = _uniform(1.0 / num_codes)  # as the reference (diffusers / taming) codebooks
    if ema_decay:
      codebook = init(rngs.params(), (num_codes, dim), param_dtype)
      self.embedding = nnx.BatchStat(codebook)
      self.ema_count = nnx.BatchStat(jnp.zeros((num_codes,), jnp.float32))
      self.ema_sum = nnx.BatchStat(codebook.astype(jnp.float32))
    else:
      self.embedding = param(rngs, init, (num_codes, dim), param_dtype, (None, "embed"))

  def lookup(self, indices):
    """Codebook vectors of integer `indices` (any shape) → indices.shape + (dim,)."""
    return jnp.take(self.embedding[...], indices, axis=0)

  def __call__(self, z, *, train: bool = False, rngs: nnx.Rngs | None = None):
    """z (..., dim) → (z_q with straight-through gradients, aux dict)."""
    shape = z.shape
    flat = z.reshape(-1, self.dim).astype(jnp.float32)
    indices = nearest_codes(jax.lax.stop_gradient(flat), self.embedding[...])
    e = self.lookup(indices).astype(jnp.float32)  # the codes before this step's EMA update (as Sonnet's)
    if train and self.ema_decay:
      self._ema_update(jax.lax.stop_gradient(flat), indices, rngs)
    codebook_loss = jnp.mean(jnp.square(jax.lax.stop_gradient(flat) - e))
    commitment_loss = jnp.mean(jnp.square(flat - jax.lax.stop_gradient(e)))
    loss = self.beta * commitment_loss + (0.0 if self.ema_decay else codebook_loss)
    z_q = flat + jax.lax.stop_gradient(e - flat)
    perplexity, usage = perplexity_and_usage(indices, self.num_codes)
    aux = dict(indices=indices.reshape(shape[:-1]), loss=loss, codebook_loss=codebook_loss,
               commitment_loss=commitment_loss, perplexity=perplexity, usage=usage)
    return z_q.reshape(shape).astype(z.dtype), aux

  def _ema_update(self, flat, indices, rngs):
    gamma = self.ema_decay
    onehot = jax.nn.one_hot(indices, self.num_codes, dtype=jnp.float32)
    count = gamma * self.ema_count[...] + (1 - gamma) * onehot.sum(axis=0)
    total = gamma * self.ema_sum[...] + (1 - gamma) * onehot.T @ flat
    if self.restart_threshold:
      if rngs is None:
        raise ValueError("dead-code restarts need `rngs` with a 'dropout' stream in training")
      dead = count < self.restart_threshold
      picks = flat[jax.random.randint(rngs.dropout(), (self.num_codes,), 0, flat.shape[0])]
      count = jnp.where(dead, 1.0, count)
      total = jnp.where(dead[:, None], picks, total)
    n = count.sum()
    smoothed = (count + self.eps) / (n + self.num_codes * self.eps) * n
    self.ema_count[...] = count
    self.ema_sum[...] = total
    self.embedding[...] = (total / smoothed[:, None]).astype(self.embedding[...].dtype)
