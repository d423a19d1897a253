"""Learned reverse variances and strided sampling (Improved DDPM) in objectives/diffusion.py: the interpolated
log-variance, L_hybrid (with its stop-gradient), the respaced schedule and its steps, the learned ancestral step and
sampler against float64 numpy written here; diffusers' DDPMScheduler(variance_type="learned_range") in test-full."""

import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import special

from papers_jax.objectives import diffusion
from diffusers_ref import diffusers_or_skip

FULL = bool(os.environ.get("PAPERS_JAX_FULL_PARITY"))
COSINE = diffusion.cosine_schedule()  # GLIDE's / unCLIP's
SHORT = diffusion.cosine_schedule(250)
LN2 = np.log(2.0)

# The official `space_timesteps(1000, "250")` and `(1000, "27")`, printed from the official code: stride 4 but
# 5 at three places for 250 (999 / 249 ≈ 4.012), stride ≈ 38.4 for 27.
STRIDED_250 = [4 * k for k in range(42)] + [4 * k + 1 for k in range(42, 125)] + [4 * k + 2 for k in range(125, 208)] \
    + [4 * k + 3 for k in range(208, 250)]
STRIDED_27 = [0, 38, 77, 115, 154, 192, 231, 269, 307, 346, 384, 423, 461, 499, 538, 576, 615, 653, 692, 730, 768,
              807, 845, 884, 922, 961, 999]


def _bc(a, t):
  return a[t][:, None, None, None]


def _np_constants(betas):
  abar = np.cumprod(1.0 - betas)
  abar_prev = np.append(1.0, abar[:-1])
  post = betas * (1.0 - abar_prev) / (1.0 - abar)
  return abar, abar_prev, np.log(np.append(post[1], post[1:]))


def _np_learned_logvar(betas, t, v):
  frac = (v + 1.0) / 2.0
  return frac * _bc(np.log(betas), t) + (1.0 - frac) * _bc(_np_constants(betas)[2], t)


def _np_mean(betas, x_t, t, eps, clip):
  """μ_θ: the posterior mean at x̂_0 from ε̂ (eq. 7, eq. 15 of DDPM)."""
  abar, abar_prev, _ = _np_constants(betas)
  x0 = (x_t - _bc(np.sqrt(1.0 - abar), t) * eps) / _bc(np.sqrt(abar), t)
  x0 = np.clip(x0, -1.0, 1.0) if clip else x0
  c0 = _bc(np.sqrt(abar_prev) * betas / (1.0 - abar), t)
  ct = _bc(np.sqrt(1.0 - betas) * (1.0 - abar_prev) / (1.0 - abar), t)
  return c0 * x0 + ct * x_t


def _np_hybrid(betas, x0, t, noise, out):
  """(mse, vb, kl, decoder nll) per example, float64, vb = T/1000 · (nll at t = 0, kl elsewhere)."""
  c = out.shape[-1] // 2
  eps, v = out[..., :c], out[..., c:]
  abar, _, post_log = _np_constants(betas)
  x_t = _bc(np.sqrt(abar), t) * x0 + _bc(np.sqrt(1.0 - abar), t) * noise
  mse = ((noise - eps) ** 2).reshape(len(t), -1).mean(1)
  m_model, m_true = _np_mean(betas, x_t, t, eps, False), _np_mean(betas, x_t, t, noise, False)
  lv_model, lv_true = _np_learned_logvar(betas, t, v), _bc(post_log, t)
  kl = 0.5 * (-1.0 + lv_model - lv_true + np.exp(lv_true - lv_model) + (m_true - m_model) ** 2 * np.exp(-lv_model))
  sd = np.exp(0.5 * lv_model)
  cdf_hi = np.where(x0 > 0.999, 1.0, special.ndtr((x0 + 1 / 255 - m_model) / sd))
  cdf_lo = np.where(x0 < -0.999, 0.0, special.ndtr((x0 - 1 / 255 - m_model) / sd))
  nll = -np.log(np.maximum(cdf_hi - cdf_lo, 1e-12))
  kl, nll = (a.reshape(len(t), -1).mean(1) / LN2 for a in (kl, nll))
  return mse, len(betas) / 1000 * np.where(t == 0, nll, kl), kl, nll, x_t


def _data(seed, shape):
  rng = np.random.RandomState(seed)
  x0 = rng.randint(0, 256, shape) * (2.0 / 255.0) - 1.0  # 8-bit data, edges included
  noise = rng.randn(*shape)
  out = np.concatenate([noise + 0.1 * rng.randn(*shape), rng.uniform(-1, 1, shape)], axis=-1)  # (ε̂, v)
  return x0, noise, out


def test_learned_log_variance_and_split_match_numpy():
  t = np.array([0, 1, 500, 999])
  v = np.random.RandomState(0).uniform(-1, 1, (4, 2, 2, 3))
  got = diffusion.learned_log_variance(COSINE, jnp.asarray(t), jnp.asarray(v, jnp.float32))
  np.testing.assert_allclose(np.asarray(got), _np_learned_logvar(COSINE.betas, t, v), rtol=1e-5)
  # v = ±1 are the fixed choices (β̃ clipped at step 0; log β_0 itself at step 0).
  ones = jnp.ones((4, 1, 1, 1))
  np.testing.assert_allclose(np.asarray(diffusion.learned_log_variance(COSINE, t, ones)).ravel(),
                             np.log(COSINE.betas[t]), rtol=1e-6)
  np.testing.assert_allclose(np.asarray(diffusion.learned_log_variance(COSINE, t, -ones)).ravel(),
                             np.log(COSINE.posterior_variance[np.maximum(t, 1)]), rtol=1e-6)
  eps, v = diffusion.split_learned(jnp.arange(12.0).reshape(1, 1, 2, 6))
  np.testing.assert_array_equal(np.asarray(eps)[0, 0], [[0, 1, 2], [6, 7, 8]])
  np.testing.assert_array_equal(np.asarray(v)[0, 0], [[3, 4, 5], [9, 10, 11]])
  with pytest.raises(ValueError, match="even channel count"):
    diffusion.split_learned(jnp.zeros((1, 1, 1, 3)))


def test_hybrid_loss_matches_numpy_and_the_bound_trains_only_the_variance():
  t = np.array([0, 1, 17, 500, 999])
  x0, noise, out = _data(1, (5, 4, 4, 3))
  mse, vb, kl, nll, x_t = _np_hybrid(COSINE.betas, x0, t, noise, out)
  assert abs(nll[0] - kl[0]) > 0.1  # t = 0 really takes the decoder's NLL, not the KL
  f32 = lambda a: jnp.asarray(a, jnp.float32)  # noqa: E731
  args = (f32(x0), diffusion.q_sample(COSINE, f32(x0), jnp.asarray(t), f32(noise)), jnp.asarray(t), f32(noise))
  np.testing.assert_allclose(np.asarray(args[1]), x_t, rtol=0, atol=1e-5)
  t_s = np.array([0, 1, 17, 100, 249])  # T = 250: the bound's term weighted T/1000 = 0.25
  _, vb_s, _, _, x_t_s = _np_hybrid(SHORT.betas, x0, t_s, noise, out)

  @jax.jit  # one compile for the values and both gradients
  def run(o):
    grads = {k: jax.grad(lambda o, k=k: diffusion.hybrid_terms(COSINE, *args, o)[k].sum())(o) for k in ("vb", "mse")}
    grads["loss"] = jax.grad(lambda o: diffusion.hybrid_loss(COSINE, *args, o).sum())(o)
    short = diffusion.hybrid_terms(SHORT, f32(x0), f32(x_t_s), jnp.asarray(t_s), f32(noise), o)["vb"]
    return diffusion.hybrid_terms(COSINE, *args, o), diffusion.hybrid_loss(COSINE, *args, o), grads, short

  terms, loss, grads, short = run(f32(out))
  np.testing.assert_allclose(np.asarray(short), vb_s, rtol=2e-4, atol=1e-5)
  np.testing.assert_allclose(np.asarray(terms["mse"]), mse, rtol=1e-5)
  np.testing.assert_allclose(np.asarray(terms["vb"]), vb, rtol=2e-4, atol=1e-5)
  np.testing.assert_allclose(np.asarray(loss), mse + vb, rtol=2e-4)
  # The bound's gradient reaches v only; the ε̂ channels get exactly L_simple's gradient.
  assert np.all(np.asarray(grads["vb"])[..., :3] == 0) and np.abs(np.asarray(grads["vb"])[..., 3:]).min() > 0
  assert np.all(np.asarray(grads["mse"])[..., 3:] == 0)
  np.testing.assert_allclose(np.asarray(grads["loss"])[..., :3], 2 * (out[..., :3] - noise) / 48, rtol=1e-4, atol=1e-7)


def test_strided_timesteps_are_the_official_ones_and_respace_keeps_alpha_bar():
  np.testing.assert_array_equal(diffusion.strided_timesteps(1000, 250), STRIDED_250)
  np.testing.assert_array_equal(diffusion.strided_timesteps(1000, 27), STRIDED_27)
  np.testing.assert_array_equal(diffusion.strided_timesteps(1000, 1000), np.arange(1000))
  np.testing.assert_array_equal(diffusion.strided_timesteps(10, [2, 3]), [0, 4, 5, 7, 9])  # two sections
  with pytest.raises(ValueError, match="cannot take"):
    diffusion.strided_timesteps(10, 11)
  for schedule, steps in ((COSINE, STRIDED_250), (COSINE, STRIDED_27), (diffusion.linear_schedule(), [3, 10, 999])):
    spaced, kept = diffusion.respace(schedule, steps[::-1])  # any order
    np.testing.assert_array_equal(kept, sorted(steps))
    abar = np.cumprod(1.0 - schedule.betas)
    prev = 1.0
    want = []
    for s in sorted(steps):
      want.append(1.0 - abar[s] / prev)
      prev = abar[s]
    np.testing.assert_allclose(spaced.betas, want, rtol=1e-12)
    np.testing.assert_allclose(spaced.alphas_cumprod, abar[kept], rtol=1e-10)  # ᾱ_999 ≈ 2e-9 (cosine)


@pytest.mark.parametrize("clip", [True, False])
def test_learned_ancestral_step_matches_numpy(clip):
  spaced, kept = diffusion.respace(COSINE, STRIDED_27)
  rng = np.random.RandomState(2)
  x_t, eps, v, z = rng.randn(4, 3, 3, 2), rng.randn(4, 3, 3, 2), rng.uniform(-1, 1, (4, 3, 3, 2)), rng.randn(4, 3, 3, 2)
  i = np.array([0, 1, 13, 26])
  betas = 1.0 - COSINE.alphas_cumprod[kept] / np.append(1.0, COSINE.alphas_cumprod[kept][:-1])
  want = _np_mean(betas, x_t, i, eps, clip) + (i > 0)[:, None, None, None] * np.exp(
      0.5 * _np_learned_logvar(betas, i, v)) * z
  f32 = lambda a: jnp.asarray(a, jnp.float32)  # noqa: E731
  logvar = diffusion.learned_log_variance(spaced, jnp.asarray(i), f32(v))
  got = diffusion.ancestral_step(spaced, f32(x_t), jnp.asarray(i), f32(eps), f32(z), clip_x0=clip, log_variance=logvar)
  np.testing.assert_allclose(np.asarray(got), want, rtol=1e-4, atol=1e-4)


def test_learned_sampler_is_one_scan_with_the_original_steps_and_the_bound_takes_2c_channels():
  small = diffusion.cosine_schedule(40)

  def denoise(x, t):  # the variance half depends on the original t, so a wrong map changes the samples
    return jnp.concatenate([0.3 * x + 0.01 * t[:, None, None, None], jnp.tanh(x) * (t[:, None, None, None] / 40.0)],
                           axis=-1)

  key, shape = jax.random.key(5), (2, 3, 3, 1)
  fn = jax.jit(lambda k: diffusion.sample_learned(denoise, small, shape, k, num_steps=7))
  got = np.asarray(fn(key))
  assert "while" in fn.lower(key).as_text()
  spaced, kept = diffusion.respace(small, diffusion.strided_timesteps(40, 7))
  np.testing.assert_array_equal(kept, [0, 6, 13, 20, 26, 32, 39])  # 5 · 6.5 = 32.5 rounds to even

  @jax.jit
  def loop(key):  # the same chain as a Python loop
    x = jax.random.normal(jax.random.fold_in(key, 0), shape)
    for n, i in enumerate(range(6, -1, -1)):
      ib = jnp.full((2,), i)
      eps, v = diffusion.split_learned(denoise(x, jnp.full((2,), kept[i])))
      z = jax.random.normal(jax.random.fold_in(key, n + 1), shape)
      x = diffusion.ancestral_step(spaced, x, ib, eps, z, log_variance=diffusion.learned_log_variance(spaced, ib, v))
    return x

  np.testing.assert_allclose(got, np.asarray(loop(key)), rtol=1e-5, atol=1e-5)
  # The bound with v ≡ −1 is the fixed σ² = β̃ one.
  x0 = jnp.asarray(_data(3, (2, 3, 3, 1))[0], jnp.float32)
  fixed, learned = jax.jit(lambda x0: (
      diffusion.vlb_bits_per_dim(lambda x, t: 0.9 * x, small, x0, key, variance="posterior"),
      diffusion.vlb_bits_per_dim(lambda x, t: jnp.concatenate([0.9 * x, -jnp.ones_like(x)], -1), small, x0, key,
                                 learned=True)))(x0)
  np.testing.assert_allclose(np.asarray(learned["terms"]), np.asarray(fixed["terms"]), rtol=1e-5, atol=1e-6)


# ------------------------------------------------------------------------------- diffusers (make test-full)


def _scheduler(torch, diffusers, clip):
  """DDPMScheduler(learned_range) with our cosine constants in float64 (diffusers keeps float32, whose rounding
  of 1 − ᾱ_t near t = 0 alone moves a step by ~1e-4)."""
  ref = diffusers.DDPMScheduler(num_train_timesteps=1000, beta_schedule="squaredcos_cap_v2",
                                variance_type="learned_range", clip_sample=clip)
  np.testing.assert_allclose(COSINE.betas, ref.betas.numpy(), rtol=1e-5, atol=1e-7)  # the same schedule
  ref.betas = torch.from_numpy(COSINE.betas)
  ref.alphas = 1.0 - ref.betas
  ref.alphas_cumprod = torch.cumprod(ref.alphas, 0)
  ref.one = torch.tensor(1.0, dtype=torch.float64)
  return ref


def _nchw(x):
  return np.ascontiguousarray(x.transpose(0, 3, 1, 2))


@pytest.mark.torch
@pytest.mark.skipif(not FULL, reason="make test-full (PAPERS_JAX_FULL_PARITY=1): diffusers' learned_range step")
@pytest.mark.parametrize("clip", [True, False])
@pytest.mark.parametrize("num_steps", [0, 250, 27])
def test_learned_step_matches_diffusers(clip, num_steps):
  """Their step (split of the 2C channels, learned_range variance, noise from the generator) against ours on the
  full chain and on the strided one (their custom timesteps = our kept steps; the network sees original t)."""
  torch, diffusers = diffusers_or_skip()
  ref = _scheduler(torch, diffusers, clip)
  if num_steps:
    kept = diffusion.strided_timesteps(1000, num_steps)
    ref.set_timesteps(timesteps=[int(s) for s in kept[::-1]])
    spaced, _ = diffusion.respace(COSINE, kept)
  else:
    kept, spaced = np.arange(1000), COSINE
  rng = np.random.RandomState(4)
  x_t, out = 0.8 * rng.randn(2, 4, 4, 3), np.concatenate([rng.randn(2, 4, 4, 3), rng.uniform(-1, 1, (2, 4, 4, 3))], -1)
  for i in sorted({0, 1, len(kept) // 2, len(kept) - 1}):
    t = int(kept[i])
    gen = torch.Generator().manual_seed(7 + i)
    want = ref.step(torch.from_numpy(_nchw(out)), t, torch.from_numpy(_nchw(x_t)), generator=gen).prev_sample.numpy()
    z = torch.randn((2, 3, 4, 4), generator=torch.Generator().manual_seed(7 + i), dtype=torch.float64).numpy()
    ib = jnp.full((2,), i)
    eps, v = diffusion.split_learned(jnp.asarray(out, jnp.float32))
    got = diffusion.ancestral_step(spaced, jnp.asarray(x_t, jnp.float32), ib, eps,
                                   jnp.asarray(z.transpose(0, 2, 3, 1), jnp.float32), clip_x0=clip,
                                   log_variance=diffusion.learned_log_variance(spaced, ib, v))
    # rtol: unclipped, x̂_0 = x_t / √ᾱ_999 reaches ~2e3 (float32 here)
    np.testing.assert_allclose(_nchw(np.asarray(got)), want, rtol=1e-6, atol=1e-4, err_msg=f"t={t}")
    if i > 0:  # their log-variance alone (at i = 0 they floor β̃ = 0 at 1e-20; the step adds no noise there)
      theirs = ref._get_variance(t, predicted_variance=torch.from_numpy(_nchw(out[..., 3:]))).numpy()
      ours = np.asarray(diffusion.learned_log_variance(spaced, ib, jnp.asarray(out[..., 3:], jnp.float32)))
      np.testing.assert_allclose(_nchw(ours), theirs, rtol=1e-5, atol=1e-5)


@pytest.mark.torch
@pytest.mark.skipif(not FULL, reason="make test-full (PAPERS_JAX_FULL_PARITY=1): diffusers' timestep spacings")
def test_strided_timesteps_equal_diffusers_linspace_spacing():
  """Their set_timesteps(n) with timestep_spacing="linspace" (round(linspace(0, T − 1, n))) keeps the official
  steps for these n, but not where a step lands on a tie that the official running sum of the stride rounds
  the other way (T = 100, n = 27: 13 · 99/26 = 49.5, the sum gives 49, their product 50); their default "leading"
  spacing (k · (T // n))
  differs. Their custom `timesteps=` takes our kept steps exactly (test_learned_step_matches_diffusers)."""
  torch, diffusers = diffusers_or_skip()
  for n in (250, 100, 50, 27, 25, 10):
    lin = diffusers.DDPMScheduler(num_train_timesteps=1000, timestep_spacing="linspace")
    lin.set_timesteps(n)
    np.testing.assert_array_equal(lin.timesteps.numpy()[::-1], diffusion.strided_timesteps(1000, n))
  lin = diffusers.DDPMScheduler(num_train_timesteps=100, timestep_spacing="linspace")
  lin.set_timesteps(27)
  assert not np.array_equal(lin.timesteps.numpy()[::-1], diffusion.strided_timesteps(100, 27))
  lead = diffusers.DDPMScheduler(num_train_timesteps=1000)
  lead.set_timesteps(250)
  assert not np.array_equal(lead.timesteps.numpy()[::-1], diffusion.strided_timesteps(1000, 250))
