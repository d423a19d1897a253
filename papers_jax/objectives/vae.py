"""VAE objectives (Kingma & Welling, 2014) and the importance-weighted bound (Burda et al., 2016).

All per example (summed over pixels / latent dimensions), float32, natural logarithms:
  gaussian_kl(μ, log σ²) = KL(N(μ, σ²) ‖ N(0, I)) = −½ Σ (1 + log σ² − μ² − σ²) ≥ 0 (App. B). The sign
      matters: the ELBO subtracts this non-negative KL (a KL written with the opposite sign rewards the
      posterior for leaving the prior).
  bernoulli_log_likelihood(logits, x) = Σ x log p + (1 − x) log(1 − p), p = sigmoid(logits).
  gaussian_log_likelihood(mean, log σ², x) = Σ −½ (log 2π + log σ² + (x − mean)² / σ²).
  elbo = log p(x|z) − KL: the loss is −elbo (the reconstruction term enters with a minus: it is a log-likelihood,
      to be maximised).
  iwae_bound(log_w) = log (1/k) Σ_i w_i with log w_i = log p(x|z_i) + log p(z_i) − log q(z_i|x), z_i ~ q(z|x):
      a lower bound on log p(x) that tightens as k grows (k = 1 is the ELBO's estimate); −iwae_bound is the
      reported NLL.
  bits_per_dim(nll, num_dims, levels=1): nll / (num_dims · ln 2). For a continuous density on pixels scaled to
      [0, 1] from `levels` discrete values (256 for 8-bit images, uniformly dequantised), the discrete NLL is
      nll + num_dims · ln(levels), which `levels` adds; binary data (Bernoulli) takes levels = 1.
"""

import math

import jax
import jax.numpy as jnp

LOG_2PI = math.log(2 * math.pi)


def _sum_but_batch(x):
  return x.reshape(x.shape[0], -1).sum(-1) if x.ndim > 1 else x


def gaussian_kl(mu, logvar):
  """KL(N(μ, diag exp(logvar)) ‖ N(0, I)) per example, (B,)."""
  mu, logvar = jnp.asarray(mu, jnp.float32), jnp.asarray(logvar, jnp.float32)
  return -0.5 * _sum_but_batch(1.0 + logvar - jnp.square(mu) - jnp.exp(logvar))


def bernoulli_log_likelihood(logits, x):
  """log p(x | logits) per example for x in [0, 1] (binary, or the probabilities of a soft target)."""
  logits, x = logits.astype(jnp.float32), x.astype(jnp.float32)
  return _sum_but_batch(x * logits - jax.nn.softplus(logits))


def gaussian_log_likelihood(mean, logvar, x):
  """log N(x; mean, diag exp(logvar)) per example."""
  mean, logvar, x = (jnp.asarray(a, jnp.float32) for a in (mean, logvar, x))
  return _sum_but_batch(-0.5 * (LOG_2PI + logvar + jnp.square(x - mean) * jnp.exp(-logvar)))


def log_normal(z, mu, logvar):
  """log N(z; μ, diag exp(logvar)) per example; log_normal(z, 0, 0) is the standard prior's."""
  return gaussian_log_likelihood(mu, logvar, z)


def elbo(log_px_z, kl):
  """The evidence lower bound per example: E_q[log p(x|z)] − KL(q(z|x) ‖ p(z))."""
  return log_px_z - kl


def iwae_bound(log_w):
  """log (1/k) Σ_i exp(log_w[i]) over the first axis (k samples) of (k, B) log importance weights → (B,)."""
  k = log_w.shape[0]
  return jax.nn.logsumexp(log_w.astype(jnp.float32), axis=0) - math.log(k)


def bits_per_dim(nll, num_dims: int, levels: int = 1):
  """NLL in nats per example → bits per dimension (module docstring for `levels`)."""
  return (nll + num_dims * math.log(levels)) / (num_dims * math.log(2.0))
