"""VAE objectives against numpy (KL with its sign, the likelihoods, the ELBO, the importance-weighted bound,
bits per dimension), checked on a linear-Gaussian model whose log p(x) is known, and the VAE models' shapes."""

import math

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from scipy import stats

from papers_jax import models
from papers_jax.objectives import vae as objective

S = 0.7  # the linear-Gaussian model: z ~ N(0, 1), x | z ~ N(z, S²), so p(x) = N(0, 1 + S²)


def test_gaussian_kl_equals_numpy_and_is_nonnegative():
  rng = np.random.default_rng(0)
  mu, logvar = rng.normal(0, 1, (5, 3)), rng.normal(0, 1, (5, 3))
  # KL(N(μ, σ²) ‖ N(0, 1)) = log(1/σ) + (σ² + μ²)/2 − ½, summed over dimensions.
  sigma2 = np.exp(logvar)
  expected = np.sum(-0.5 * logvar + (sigma2 + mu ** 2) / 2 - 0.5, axis=1)
  kl = np.asarray(objective.gaussian_kl(jnp.asarray(mu), jnp.asarray(logvar)))
  np.testing.assert_allclose(kl, expected, rtol=1e-5)
  assert (kl > 0).all()
  assert float(objective.gaussian_kl(jnp.zeros((1, 4)), jnp.zeros((1, 4)))[0]) == 0.0  # q = prior
  # And against a Monte Carlo estimate of E_q[log q − log p] in one dimension.
  z = 0.3 + np.exp(0.5 * -0.4) * rng.standard_normal(400_000)
  mc = np.mean(stats.norm.logpdf(z, 0.3, np.exp(-0.2)) - stats.norm.logpdf(z))
  np.testing.assert_allclose(float(objective.gaussian_kl(jnp.array([[0.3]]), jnp.array([[-0.4]]))[0]), mc, atol=5e-3)


def test_likelihoods_equal_scipy():
  rng = np.random.default_rng(1)
  logits, x = rng.normal(0, 2, (3, 4, 4, 1)), (rng.random((3, 4, 4, 1)) > 0.5).astype(np.float64)
  expected = stats.bernoulli.logpmf(x, 1 / (1 + np.exp(-logits))).reshape(3, -1).sum(1)
  np.testing.assert_allclose(objective.bernoulli_log_likelihood(jnp.asarray(logits), jnp.asarray(x)), expected,
                             rtol=1e-5)
  mean, logvar, y = rng.normal(size=(3, 5)), rng.normal(size=(3, 5)), rng.normal(size=(3, 5))
  expected = stats.norm.logpdf(y, mean, np.exp(0.5 * logvar)).sum(1)
  np.testing.assert_allclose(objective.gaussian_log_likelihood(jnp.asarray(mean), jnp.asarray(logvar), jnp.asarray(y)),
                             expected, rtol=1e-5)


@jax.jit
def _log_weights(z, x, q_mean, q_logvar):
  """Flat (N, 1) arrays → (log w, log p(x|z)) of the linear-Gaussian model, each (N,)."""
  log_px_z = objective.gaussian_log_likelihood(z, jnp.full_like(z, 2 * math.log(S)), x)
  return log_px_z + objective.log_normal(z, 0.0, 0.0) - objective.log_normal(z, q_mean, q_logvar), log_px_z


def linear_gaussian_log_weights(x, q_mean, q_logvar, k, seed=0):
  """(k, B) log w = log p(x|z) + log p(z) − log q(z|x) with z ~ q, and (k, B) log p(x|z)."""
  shape = (k,) + x.shape
  q_mean, q_logvar = np.broadcast_to(q_mean, shape), np.broadcast_to(q_logvar, shape)
  z = q_mean + np.exp(0.5 * q_logvar) * np.random.default_rng(seed).standard_normal(shape)
  col = lambda a: np.broadcast_to(a, shape).reshape(-1, 1).astype(np.float32)  # one latent dimension
  log_w, log_px_z = _log_weights(col(z), col(x), col(q_mean), col(q_logvar))
  return np.asarray(log_w).reshape(shape), np.asarray(log_px_z).reshape(shape)


def test_elbo_and_iwae_bound_on_a_model_with_known_likelihood():
  x = np.array([-1.5, 0.2, 2.0])
  log_px = stats.norm.logpdf(x, 0.0, math.sqrt(1 + S ** 2))
  # With the exact posterior q = p(z|x) = N(x / (1 + S²), S² / (1 + S²)) every weight is p(x): ELBO = IWAE = log p(x).
  post_mean, post_logvar = x / (1 + S ** 2), np.full_like(x, math.log(S ** 2 / (1 + S ** 2)))
  log_w, _ = linear_gaussian_log_weights(x, post_mean, post_logvar, k=5)
  np.testing.assert_allclose(objective.iwae_bound(jnp.asarray(log_w)), log_px, rtol=1e-5)
  kl = objective.gaussian_kl(jnp.asarray(post_mean[:, None]), jnp.asarray(post_logvar[:, None]))
  _, log_px_z = linear_gaussian_log_weights(x, post_mean, post_logvar, k=20_000)
  np.testing.assert_allclose(objective.elbo(log_px_z.mean(0), kl), log_px, atol=0.02)
  # With the prior as the proposal the bound is loose at k = 1 and tightens towards log p(x) as k grows
  # (each the mean over 200 independent bounds). Near x = 0 the prior is already a fair proposal; the
  # two outer points show the whole ordering.
  bounds = {}
  for k in (1, 10, 1000):
    log_w, _ = linear_gaussian_log_weights(x, 0.0, 0.0, 200 * k, seed=k)
    bounds[k] = np.asarray(jax.vmap(objective.iwae_bound)(jnp.asarray(log_w.reshape(200, k, -1)))).mean(0)
  assert (bounds[1] < bounds[10]).all() and (bounds[10][[0, 2]] < bounds[1000][[0, 2]]).all()
  assert (bounds[1][[0, 2]] < log_px[[0, 2]] - 0.5).all()
  np.testing.assert_allclose(bounds[1000], log_px, atol=0.03)
  # The bound is log of the mean of the weights (numpy reference).
  log_w = np.random.default_rng(2).normal(0, 3, (7, 4))
  np.testing.assert_allclose(objective.iwae_bound(jnp.asarray(log_w)), np.log(np.mean(np.exp(log_w), 0)), rtol=1e-5)


def test_bits_per_dim():
  np.testing.assert_allclose(objective.bits_per_dim(784 * math.log(2), 784), 1.0)
  # A continuous density on [0, 1] pixels from 256 levels: the uniform density (NLL 0) is 8 bits per dimension.
  np.testing.assert_allclose(objective.bits_per_dim(0.0, 3072, levels=256), 8.0)


def test_vae_models_reparameterize_and_shapes():
  for name, size, likelihood in (("vae_mlp", 28, "bernoulli"), ("vae_conv", 32, "gaussian")):
    vae = nnx.eval_shape(lambda: models.create(name, rngs=0, img_size=size, in_chans=1, latent_dim=3,
                                               likelihood=likelihood, hidden=8, widths=(4, 8)))
    x = jax.ShapeDtypeStruct((2, size, size, 1), jnp.float32)
    mu, logvar = nnx.eval_shape(lambda m, x: m.encode(x), vae, x)
    assert mu.shape == logvar.shape == (2, 3)
    out = nnx.eval_shape(lambda m, z: m.decode(z), vae, mu)
    if likelihood == "bernoulli":
      assert out.shape == (2, size, size, 1)
    else:
      assert out[0].shape == out[1].shape == (2, size, size, 1)
  # z = μ + σ ε: its mean and spread are μ and σ, and gradients reach both.
  z = models.vae.reparameterize(jax.random.key(0), jnp.full((20_000, 1), 1.5), jnp.full((20_000, 1), math.log(0.25)))
  np.testing.assert_allclose([float(z.mean()), float(z.std())], [1.5, 0.5], atol=0.02)
  g = jax.grad(lambda m, lv: models.vae.reparameterize(jax.random.key(0), m, lv).sum(), argnums=(0, 1))(
      jnp.zeros((1, 1)), jnp.zeros((1, 1)))
  assert float(g[0][0, 0]) == 1.0 and float(g[1][0, 0]) != 0.0
