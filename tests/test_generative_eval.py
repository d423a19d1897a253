"""The evaluation of the generative models: DDPM's variational bound in bits per dimension (objectives/diffusion.py)
against a numpy/scipy reference written from the paper's equations, and the digits FID of every generative task
(evaluators/fid.py: digits_sample_metrics, wired into the GAN, VAE, DDPM and VQ-VAE tasks)."""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
import scipy.stats

from papers_jax.errors import ConfigError
from papers_jax.evaluators import fid as fid_lib
from papers_jax.objectives import diffusion

SCHEDULE = diffusion.linear_schedule(12, 1e-4, 0.2)  # few steps, so every term is tested and matters


# ------------------------------------------------------------------ numpy references (float64, the paper's equations)
def np_normal_kl(m1, lv1, m2, lv2):
  """KL(N(m1, e^lv1) ‖ N(m2, e^lv2)) = log(σ2/σ1) + (σ1² + (m1 − m2)²) / (2σ2²) − ½."""
  v1, v2 = np.exp(lv1), np.exp(lv2)
  return 0.5 * (lv2 - lv1) + (v1 + (m1 - m2) ** 2) / (2 * v2) - 0.5


def np_discretized_log_likelihood(x, mean, scale):
  """Eq. 13: the normal's mass on x's bin [x − 1/255, x + 1/255], from −∞ at x = −1 and to +∞ at x = 1."""
  upper = np.where(x > 0.999, np.inf, x + 1 / 255)
  lower = np.where(x < -0.999, -np.inf, x - 1 / 255)
  mass = scipy.stats.norm.cdf(upper, mean, scale) - scipy.stats.norm.cdf(lower, mean, scale)
  return np.log(np.maximum(mass, 1e-12))


def np_vlb(x0, noises, eps_fn, betas, variance):
  """(prior, decoder, per-step KLs (T − 1, B)) in bits per dimension, eqs. 5–7 and 13, 0-based steps."""
  alphas = 1 - betas
  abar = np.cumprod(alphas)
  abar_prev = np.append(1.0, abar[:-1])
  post_var = betas * (1 - abar_prev) / (1 - abar)
  sigma2 = betas.copy() if variance == "beta" else post_var.copy()
  sigma2[0] = post_var[1]
  dims = x0[0].size
  bits = lambda nats: nats.reshape(len(nats), -1).sum(1) / dims / np.log(2)  # noqa: E731
  prior = bits(np_normal_kl(np.sqrt(abar[-1]) * x0, np.log(1 - abar[-1]), 0.0, 0.0))
  kls, decoder = [], None
  for t in range(len(betas)):
    x_t = np.sqrt(abar[t]) * x0 + np.sqrt(1 - abar[t]) * noises[t]
    x0_hat = np.clip((x_t - np.sqrt(1 - abar[t]) * eps_fn(x_t, t)) / np.sqrt(abar[t]), -1, 1)
    def mu(x):  # eq. 7
      return (np.sqrt(abar_prev[t]) * betas[t] * x + np.sqrt(alphas[t]) * (1 - abar_prev[t]) * x_t) / (1 - abar[t])
    if t == 0:
      decoder = -bits(np_discretized_log_likelihood(x0, mu(x0_hat), np.sqrt(sigma2[0])))
    else:
      kls.append(bits(np_normal_kl(mu(x0), np.log(post_var[t]), mu(x0_hat), np.log(sigma2[t]))))
  return prior, decoder, np.stack(kls)


def _eps_fn(xp):
  return lambda x_t, t: xp.tanh(0.7 * x_t + 0.05 * t - 0.1)  # a fixed, imperfect "denoiser"


@pytest.fixture(scope="module")
def images():
  rng = np.random.default_rng(0)
  levels = rng.integers(0, 256, size=(3, 4, 4, 1))
  levels[:, 0, 0, 0], levels[:, 1, 1, 0] = 0, 255  # both edge bins
  return levels / 127.5 - 1.0


def test_normal_kl_and_discretized_likelihood_match_scipy(images):
  rng = np.random.default_rng(1)
  m1, m2 = rng.normal(size=(2, 50))
  lv1, lv2 = rng.normal(size=(2, 50))
  np.testing.assert_allclose(diffusion.normal_kl(m1, lv1, m2, lv2), np_normal_kl(m1, lv1, m2, lv2),
                             rtol=1e-5, atol=1e-6)
  x = np.repeat(images.reshape(-1), 4)
  mean = x + rng.normal(size=x.shape) * np.repeat([0.001, 0.01, 0.1, 1.0], len(images.reshape(-1)))
  for scale in (0.003, 0.02, 0.5):
    got = diffusion.discretized_gaussian_log_likelihood(x, mean, np.log(scale))
    np.testing.assert_allclose(got, np_discretized_log_likelihood(x, mean, scale), rtol=1e-4, atol=1e-5)
  # The 256 bins' masses sum to one for any mean and scale.
  grid = np.arange(256) / 127.5 - 1.0
  for mean, scale in ((0.3, 0.01), (-0.99, 0.2), (1.4, 0.05)):
    total = np.exp(diffusion.discretized_gaussian_log_likelihood(grid, mean, np.log(scale))).sum()
    assert total == pytest.approx(1.0, abs=1e-4)


@pytest.mark.parametrize("variance", ["beta", "posterior"])
def test_vlb_terms_match_the_numpy_bound(images, variance):
  key = jax.random.key(3)
  got = diffusion.vlb_bits_per_dim(_eps_fn(jnp), SCHEDULE, images, key, variance=variance)
  noises = [np.asarray(jax.random.normal(jax.random.fold_in(key, t), images.shape)) for t in range(SCHEDULE.num_steps)]
  prior, decoder, kls = np_vlb(images, noises, _eps_fn(np), SCHEDULE.betas, variance)
  np.testing.assert_allclose(got["prior"], prior, rtol=1e-5)
  np.testing.assert_allclose(got["decoder"], decoder, rtol=1e-4)
  np.testing.assert_allclose(got["terms"][1:], kls, rtol=1e-4, atol=1e-6)
  np.testing.assert_allclose(got["total"], prior + decoder + kls.sum(0), rtol=1e-4)
  assert np.all(kls > 0) and np.all(decoder > 0)


def test_vlb_of_the_true_noise_is_the_prior_and_decoder_only(images):
  """A denoiser that knows x_0 makes p_θ's mean the posterior's: with σ²_t = β̃_t every KL vanishes and the
  bound is L_T + L_0; with σ²_t = β_t the KLs are the variance mismatch alone, the same for any data."""
  abar = jnp.asarray(SCHEDULE.alphas_cumprod, jnp.float32)
  x0 = jnp.asarray(images, jnp.float32)

  def oracle(x_t, t):  # the ε that made x_t
    a = abar[t][:, None, None, None]
    return (x_t - jnp.sqrt(a) * x0) / jnp.sqrt(1 - a)
  out = diffusion.vlb_bits_per_dim(oracle, SCHEDULE, images, jax.random.key(0), variance="posterior")
  np.testing.assert_allclose(out["kl"], 0.0, atol=1e-5)
  # The decoder's mean is x_0 itself: each pixel's bin holds Φ(1/255σ) − Φ(−1/255σ) of the mass (edges more).
  sigma = np.sqrt(SCHEDULE.posterior_variance[1])
  inner = -np.log2(2 * scipy.stats.norm.cdf(1 / 255 / sigma) - 1)
  edge = -np.log2(scipy.stats.norm.cdf(1 / 255 / sigma))
  want = np.where(np.abs(images) > 0.999, edge, inner).reshape(len(images), -1).mean(1)
  np.testing.assert_allclose(out["decoder"], want, rtol=1e-4)
  beta = diffusion.vlb_bits_per_dim(oracle, SCHEDULE, images, jax.random.key(0), variance="beta")
  ratio = SCHEDULE.posterior_variance[1:] / SCHEDULE.betas[1:]
  mismatch = (0.5 * (ratio - 1 - np.log(ratio))).sum() / np.log(2)
  np.testing.assert_allclose(beta["kl"], mismatch, rtol=1e-4)


# ------------------------------------------------------------------ the digits FID of the generative tasks
class RandomFeatures:
  """A stand-in for the trained MLP (its training takes seconds to a minute on a loaded CPU; tests/test_fid.py
  tests the real one): a fixed random ReLU network with the same `coefs_` / `intercepts_` / `predict`."""

  def __init__(self, dims):
    rng = np.random.default_rng(0)
    self.coefs_ = [rng.normal(size=(dims, 32)) / np.sqrt(dims), rng.normal(size=(32, 16)) / np.sqrt(32),
                   rng.normal(size=(16, 10))]
    self.intercepts_ = [rng.normal(size=32) * 0.1, rng.normal(size=16) * 0.1, np.zeros(10)]

  def predict(self, x):
    for w, b in zip(self.coefs_[:-1], self.intercepts_[:-1]):
      x = np.maximum(x @ w + b, 0.0)
    return (x @ self.coefs_[-1]).argmax(-1)


@pytest.fixture(autouse=True)
def random_feature_extractor(monkeypatch):
  fid_lib._digits_references.cache_clear()
  monkeypatch.setattr(fid_lib, "digits_feature_extractor",
                      lambda size, seed=0: fid_lib.DigitsClassifier(size, RandomFeatures(size * size), 0.0))
  yield
  fid_lib._digits_references.cache_clear()


def test_digits_sample_metrics_rank_real_digits_noise_and_binarised_data():
  real_test, _ = fid_lib.digits_images("test", 8)
  train, _ = fid_lib.digits_images("train", 8)
  good = fid_lib.digits_sample_metrics(real_test[:300], 8)
  assert set(good) == {"fid", "fid_gaussian", "fid_test_split", "sample_class_entropy"}
  assert good["fid"] < good["fid_gaussian"] / 3
  counts = np.bincount(fid_lib.digits_feature_extractor(8).predict(real_test[:300]), minlength=10) / 300
  assert good["sample_class_entropy"] == pytest.approx(-sum(p * np.log(p) for p in counts if p > 0))
  noise = fid_lib.digits_sample_metrics(fid_lib.gaussian_baseline(train, 300, seed=5), 8)
  assert noise["fid"] > 3 * good["fid"]
  assert fid_lib.digits_sample_metrics(np.repeat(real_test[:1], 10, 0), 8)["sample_class_entropy"] == 0.0
  # Binarised: the references are binarised too, so binarised real digits are close and grey ones are not.
  binary = fid_lib.digits_sample_metrics(fid_lib.binarize(real_test[:300], 0.5), 8, threshold=0.5)
  assert binary["fid"] < binary["fid_gaussian"] / 3
  assert binary["fid_test_split"] != good["fid_test_split"]


def _config(task, section, **fields):
  return ml_collections.ConfigDict({"data": {"name": "digits", "image_size": 8}, task: section, "task": task, **fields})


def test_gan_and_vae_report_the_fid_of_their_samples(monkeypatch):
  """The tasks' after_eval scores their samples with digits_sample_metrics (samples stubbed: no model)."""
  from papers_jax.tasks.gan import GANTask
  from papers_jax.tasks.vae import VAETask
  real, _ = fid_lib.digits_images("test", 8)
  gan = GANTask(_config("gan", {"generator_loss": "non_saturating", "vis_examples": 0, "sample_seed": 0,
                                "fid_samples": 50}, model={"z_dim": 4}))
  monkeypatch.setattr(gan, "sample", lambda trainer, n: real[:n] / 255.0)
  assert gan.after_eval(None, 1, None, None, {}) == fid_lib.digits_sample_metrics(real[:50], 8)
  vae = VAETask(_config("vae", {"binarize_threshold": 0.5, "vis_examples": 0, "eval_seed": 0, "fid_samples": 50},
                        model={"name": "vae_mlp", "likelihood": "bernoulli"}))
  monkeypatch.setattr(vae, "sample", lambda trainer, n, seed: (fid_lib.binarize(real[:n], 0.5), real[:n]))
  out = vae.after_eval(None, 1, None, [], {})
  assert out == {**fid_lib.digits_sample_metrics(fid_lib.binarize(real[:50], 0.5), 8, threshold=0.5),
                 "fid_means": fid_lib.digits_sample_metrics(real[:50], 8, threshold=0.5)["fid"]}
  with pytest.raises(ConfigError, match="fid_samples"):
    GANTask(_config("gan", {"generator_loss": "minimax", "fid_samples": 1}, model={}))
  bad = _config("vae", {"fid_samples": 8}, model={"name": "vae_mlp", "likelihood": "bernoulli"})
  bad.data.name = "cifar10"
  with pytest.raises(ConfigError, match="digits"):
    VAETask(bad)
