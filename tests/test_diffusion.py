"""DDPM objectives (objectives/diffusion.py): the schedule, q_sample and one ancestral / DDIM step against
diffusers' DDPMScheduler / DDIMScheduler; L_simple against numpy; the sampler adds noise at every step
but the last and visits every step down to t = 0 (PAPERS.md mistake #12)."""


import jax
import jax.numpy as jnp
import numpy as np
import pytest

from papers_jax.objectives import diffusion
from diffusers_ref import diffusers_or_skip

SCHEDULE = diffusion.linear_schedule()


def _float64(scheduler, torch):
  """The scheduler with its constants in float64: diffusers keeps them in float32, whose rounding of
  1 − ᾱ_t near t = 0 (≈ 1e-4) alone moves a step by ~1e-4; ours are float64 cast to float32 at use."""
  betas = torch.from_numpy(np.linspace(1e-4, 0.02, 1000, dtype=np.float64))
  scheduler.betas, scheduler.alphas = betas, 1.0 - betas
  scheduler.alphas_cumprod = torch.cumprod(scheduler.alphas, 0)
  for name in ("one", "final_alpha_cumprod"):
    if hasattr(scheduler, name):
      setattr(scheduler, name, torch.tensor(1.0, dtype=torch.float64))
  return scheduler


def _nchw(x):
  return np.ascontiguousarray(x.transpose(0, 3, 1, 2))


def _images(seed, shape=(2, 4, 4, 3)):
  return np.random.RandomState(seed).randn(*shape).astype(np.float32)


def test_linear_schedule_is_the_papers():
  b = SCHEDULE.betas
  assert len(b) == 1000 and b[0] == pytest.approx(1e-4) and b[-1] == pytest.approx(0.02)
  np.testing.assert_allclose(np.diff(b), (0.02 - 1e-4) / 999, rtol=1e-9)
  np.testing.assert_allclose(SCHEDULE.alphas_cumprod[-1], np.prod(1 - b), rtol=1e-12)
  assert SCHEDULE.alphas_cumprod[-1] < 5e-5  # x_T is nearly pure noise


@pytest.mark.torch
def test_schedule_and_q_sample_match_diffusers():
  torch, diffusers = diffusers_or_skip()
  ref = diffusers.DDPMScheduler(num_train_timesteps=1000, beta_start=1e-4, beta_end=0.02, beta_schedule="linear")
  np.testing.assert_allclose(SCHEDULE.betas, ref.betas.numpy(), rtol=0, atol=1e-7)
  np.testing.assert_allclose(SCHEDULE.alphas_cumprod, ref.alphas_cumprod.numpy(), rtol=0, atol=1e-5)
  x0, noise = _images(0), _images(1)
  t = np.array([0, 999], np.int64)
  want = ref.add_noise(torch.from_numpy(_nchw(x0)), torch.from_numpy(_nchw(noise)), torch.from_numpy(t)).numpy()
  got = np.asarray(diffusion.q_sample(SCHEDULE, x0, t, noise))
  np.testing.assert_allclose(_nchw(got), want, rtol=0, atol=1e-5)


@pytest.mark.torch
@pytest.mark.parametrize("variance,theirs", [("beta", "fixed_large"), ("posterior", "fixed_small")])
@pytest.mark.parametrize("clip", [True, False])
@pytest.mark.parametrize("t", [0, 1, 500, 999])
def test_ancestral_step_matches_diffusers(variance, theirs, clip, t):
  torch, diffusers = diffusers_or_skip()
  ref = diffusers.DDPMScheduler(num_train_timesteps=1000, beta_start=1e-4, beta_end=0.02, beta_schedule="linear",
                                variance_type=theirs, clip_sample=clip)
  ref = _float64(ref, torch)
  x_t, eps = 0.8 * _images(2), _images(3)
  want = ref.step(torch.from_numpy(_nchw(eps)).double(), t, torch.from_numpy(_nchw(x_t)).double(),
                  generator=torch.Generator().manual_seed(7)).prev_sample.numpy()
  z = torch.randn(_nchw(x_t).shape, generator=torch.Generator().manual_seed(7), dtype=torch.float64)  # diffusers' draw
  z = z.float().numpy()
  got = diffusion.ancestral_step(SCHEDULE, x_t, jnp.full((2,), t), eps, z.transpose(0, 2, 3, 1),
                                 variance=variance, clip_x0=clip)
  np.testing.assert_allclose(_nchw(np.asarray(got)), want, rtol=0, atol=1e-4)


@pytest.mark.torch
@pytest.mark.parametrize("clip", [True, False])
def test_ddim_step_and_timesteps_match_diffusers(clip):
  torch, diffusers = diffusers_or_skip()
  ref = diffusers.DDIMScheduler(num_train_timesteps=1000, beta_start=1e-4, beta_end=0.02, beta_schedule="linear",
                                clip_sample=clip, set_alpha_to_one=True, steps_offset=0)
  ref.set_timesteps(50)
  ref = _float64(ref, torch)
  steps = diffusion.sampling_timesteps(SCHEDULE, "ddim", 50)
  np.testing.assert_array_equal(steps, ref.timesteps.numpy())
  x_t, eps = 0.8 * _images(4), _images(5)
  for i in (0, 25, 49):  # the first, a middle and the last step (to ᾱ = 1)
    t = int(steps[i])
    t_prev = int(steps[i + 1]) if i + 1 < len(steps) else -1
    want = ref.step(torch.from_numpy(_nchw(eps)).double(), t, torch.from_numpy(_nchw(x_t)).double(),
                    eta=0.0).prev_sample.numpy()
    got = diffusion.ddim_step(SCHEDULE, x_t, jnp.full((2,), t), jnp.full((2,), t_prev), eps, clip_x0=clip)
    np.testing.assert_allclose(_nchw(np.asarray(got)), want, rtol=0, atol=1e-4)


def test_l_simple_matches_numpy():
  eps, pred = _images(6), _images(7)
  want = ((pred - eps) ** 2).reshape(2, -1).mean(axis=1)
  np.testing.assert_allclose(np.asarray(diffusion.l_simple(pred, eps)), want, rtol=1e-6)


def test_ancestral_step_adds_noise_at_every_step_but_the_last():
  x_t, eps, z = _images(8), _images(9), _images(10)
  for variance in diffusion.VARIANCES:
    sigma2 = SCHEDULE.betas if variance == "beta" else SCHEDULE.posterior_variance
    for t in (999, 500, 1):
      with_z = diffusion.ancestral_step(SCHEDULE, x_t, jnp.full((2,), t), eps, z, variance=variance)
      without = diffusion.ancestral_step(SCHEDULE, x_t, jnp.full((2,), t), eps, 0 * z, variance=variance)
      np.testing.assert_allclose(np.asarray(with_z - without), np.sqrt(sigma2[t]) * z, rtol=1e-4, atol=1e-6)
      assert np.abs(np.asarray(with_z - without)).max() > 1e-3
    last = [diffusion.ancestral_step(SCHEDULE, x_t, jnp.zeros((2,), jnp.int32), eps, zz, variance=variance)
            for zz in (z, 0 * z, -3 * z)]
    np.testing.assert_array_equal(np.asarray(last[0]), np.asarray(last[1]))
    np.testing.assert_array_equal(np.asarray(last[2]), np.asarray(last[1]))
  # A batch mixing t = 0 and t > 0: only the t > 0 example gets the noise.
  mixed = diffusion.ancestral_step(SCHEDULE, x_t, jnp.array([0, 10]), eps, z)
  clean = diffusion.ancestral_step(SCHEDULE, x_t, jnp.array([0, 10]), eps, 0 * z)
  assert np.abs(np.asarray(mixed - clean)[0]).max() == 0 and np.abs(np.asarray(mixed - clean)[1]).max() > 1e-3


def test_ancestral_step_without_clipping_is_algorithm_2():
  x_t, eps, z = _images(11), _images(12), _images(13)
  b, abar = SCHEDULE.betas, SCHEDULE.alphas_cumprod
  for t in (999, 300, 0):
    want = (x_t - b[t] / np.sqrt(1 - abar[t]) * eps) / np.sqrt(1 - b[t]) + (t > 0) * np.sqrt(b[t]) * z
    got = diffusion.ancestral_step(SCHEDULE, x_t, jnp.full((2,), t), eps, z, clip_x0=False)
    np.testing.assert_allclose(np.asarray(got), want, rtol=1e-4, atol=1e-4)


def test_sampler_is_one_scan_over_every_step_to_zero_and_matches_a_python_loop():
  steps = diffusion.sampling_timesteps(SCHEDULE)
  np.testing.assert_array_equal(steps, np.arange(999, -1, -1))  # ends at t = 0 (not 1)
  small = diffusion.linear_schedule(10, 1e-2, 0.3)
  denoise = lambda x, t: 0.3 * x + 0.01 * t[:, None, None, None]  # noqa: E731
  key, shape = jax.random.key(3), (2, 4, 4, 1)
  for method, n in (("ancestral", 0), ("ddim", 5)):
    fn = jax.jit(lambda k, method=method, n=n: diffusion.sample(denoise, small, shape, k, method=method, num_steps=n))
    got = np.asarray(fn(key))
    assert "while" in fn.lower(key).as_text()  # the chain is one lax.scan, not unrolled
    x = jax.random.normal(jax.random.fold_in(key, 0), shape)
    ts = diffusion.sampling_timesteps(small, method, n)
    for i, t in enumerate(ts):
      tb = jnp.full((2,), t)
      if method == "ancestral":
        z = jax.random.normal(jax.random.fold_in(key, i + 1), shape)
        x = diffusion.ancestral_step(small, x, tb, denoise(x, tb), z)
      else:
        prev = ts[i + 1] if i + 1 < len(ts) else -1
        x = diffusion.ddim_step(small, x, tb, jnp.full((2,), prev), denoise(x, tb))
    np.testing.assert_allclose(got, np.asarray(x), rtol=1e-5, atol=1e-5)
  with pytest.raises(ValueError, match="DDIM takes"):
    diffusion.sampling_timesteps(SCHEDULE, "ddim", 0)
