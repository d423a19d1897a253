"""DDPM (Ho et al. 2020) as pure functions: the noise schedule, the forward process q(x_t | x_0), the
ε-prediction loss L_simple, and two samplers, each one `lax.scan` over the steps.

Notation: β_t the variances of the forward process, α_t = 1 − β_t, ᾱ_t = ∏_{s ≤ t} α_s; steps are
0-based (t = 0 is the paper's t = 1), as in the official code and diffusers.

- `linear_schedule`: β_t linear from 1e-4 to 0.02 over T = 1000 steps (paper §4).
- `q_sample`: x_t = √ᾱ_t · x_0 + √(1 − ᾱ_t) · ε (eq. 4).
- `l_simple`: ‖ε − ε_θ(x_t, t)‖², averaged over the pixels of each example (eq. 14; t uniform, Algorithm 1).
- `ancestral_step`: one step of Algorithm 2, x_{t−1} = μ_θ(x_t, t) + σ_t · z, with z added at every step
  t > 0 and NOT at the last one (t = 0 returns the mean). σ²_t = β_t (`variance="beta"`, the paper's
  choice for CIFAR-10 and the official code's "fixedlarge"; diffusers "fixed_large") or the posterior
  variance β̃_t = (1 − ᾱ_{t−1}) / (1 − ᾱ_t) · β_t (`"posterior"`; diffusers "fixed_small"). μ_θ is
  computed as the official code does: x̂_0 = (x_t − √(1 − ᾱ_t) ε̂) / √ᾱ_t, optionally clipped to [−1, 1]
  (`clip_x0`, the code's `clip_denoised=True`), then the posterior mean of q(x_{t−1} | x_t, x̂_0); without
  clipping this is exactly Algorithm 2's 1/√α_t · (x_t − β_t / √(1 − ᾱ_t) · ε̂).
- `ddim_step`: DDIM (Song et al. 2021) with η = 0: deterministic, from x_t to x_{t'} (t' < t, ᾱ_{−1} = 1).
- `sample`: the full chain from x_T ~ N(0, I), T ancestral steps (T−1 … 0) or `num_steps` DDIM steps
  (t = (k · T / num_steps) for k = num_steps − 1 … 0, diffusers' "leading" spacing), as one `lax.scan`.
  Jit it with the denoiser's params as an argument (tasks/diffusion.py).
- `vlb_bits_per_dim`: the variational bound L_vlb = L_T + Σ_{t>0} L_{t−1} + L_0 (eq. 5) in bits per
  dimension of 8-bit data, as the official code's `calc_bpd_loop`: L_T = KL(q(x_T | x_0) ‖ N(0, I))
  (`prior_bpd`), L_{t−1} = KL(q(x_{t−1} | x_t, x_0) ‖ p_θ(x_{t−1} | x_t)) between Gaussians (`normal_kl`)
  with one x_t ~ q(x_t | x_0) per t, and the decoder L_0 = −log p_θ(x_0 | x_1) with the discretised
  Gaussian over 256 bins of [−1, 1] (`discretized_gaussian_log_likelihood`, eq. 13). As the official code,
  the decoder's variance is β̃ of the second step (β_1 = 1e-4 would make it the forward step's, not the
  posterior's) for both `variance` choices, and the KL terms use σ²_t = β_t or β̃_t.

Learned variances and strided sampling (Nichol & Dhariwal 2021, "Improved DDPM"; GLIDE's and unCLIP's decoders):
- `learned_log_variance`: the network's extra C channels v (`split_learned`: the last C of 2C) set
  log σ²_t = frac · log β_t + (1 − frac) · log β̃_t, frac = (v + 1) / 2 (eq. 15; β̃ clipped at step 0).
- `hybrid_loss` / `hybrid_terms`: L_hybrid = L_simple + λ L_vlb (§3.1, λ = 0.001), the bound's term at the
  sampled t estimating L_vlb as T · L_t (so weighted T/1000, the official code's RESCALED_MSE), computed with
  the mean from stop_gradient(ε̂): the bound trains only the variance. No x̂_0 clipping (as the official loss).
- `strided_timesteps`, `respace`: K of the T steps, evenly spaced as the official `space_timesteps`, and the
  schedule over them, β'_i = 1 − ᾱ_{t_i} / ᾱ_{t_{i−1}} (§4), with the map back to the original steps.
- `sample_learned`: the ancestral chain over the respaced schedule with the learned σ², the network called with
  the original steps (e.g. GLIDE's 250 strided steps: `num_steps=250`). `ancestral_step(log_variance=...)` and
  `vlb_term_bpd(log_variance=...)` take any model log-variance; `vlb_bits_per_dim(learned=True)` the 2C output.

A note from PAPERS.md (mistake #12): a sampler that drops the √β·z noise, or stops at t = 1, is not the
paper's; `tests/test_diffusion.py` checks both.
"""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

VARIANCES = ("beta", "posterior")
METHODS = ("ancestral", "ddim")


@dataclasses.dataclass(frozen=True)
class Schedule:
  """The constants of a β schedule, float64 numpy arrays of length T (cast to float32 where used)."""
  betas: np.ndarray

  @property
  def num_steps(self) -> int:
    return len(self.betas)

  @property
  def alphas_cumprod(self) -> np.ndarray:
    return np.cumprod(1.0 - self.betas)

  @property
  def alphas_cumprod_prev(self) -> np.ndarray:
    return np.append(1.0, self.alphas_cumprod[:-1])

  @property
  def posterior_variance(self) -> np.ndarray:
    """β̃_t = (1 − ᾱ_{t−1}) / (1 − ᾱ_t) · β_t (0 at t = 0)."""
    return (1.0 - self.alphas_cumprod_prev) / (1.0 - self.alphas_cumprod) * self.betas

  @property
  def posterior_log_variance_clipped(self) -> np.ndarray:
    """log β̃_t with step 0's (β̃_0 = 0) replaced by step 1's, as the official code."""
    return np.log(np.append(self.posterior_variance[1], self.posterior_variance[1:]))


def linear_schedule(num_steps: int = 1000, beta_start: float = 1e-4, beta_end: float = 0.02) -> Schedule:
  return Schedule(np.linspace(beta_start, beta_end, num_steps, dtype=np.float64))


def cosine_schedule(num_steps: int = 1000, s: float = 0.008, max_beta: float = 0.999) -> Schedule:
  """The cosine schedule (Nichol & Dhariwal 2021, eq. 17; GLIDE's and unCLIP's): ᾱ(t) = f(t) / f(0) with
  f(t) = cos²((t/T + s) / (1 + s) · π/2), β_t = min(1 − ᾱ(t+1) / ᾱ(t), max_beta)."""
  f = lambda i: np.cos((i / num_steps + s) / (1 + s) * np.pi / 2) ** 2  # noqa: E731
  i = np.arange(num_steps, dtype=np.float64)
  return Schedule(np.minimum(1.0 - f(i + 1) / f(i), max_beta))


def _at(values: np.ndarray, t, ndim: int):
  """values[t] as float32, shaped (B, 1, ..., 1) to broadcast over images of `ndim` dims."""
  v = jnp.asarray(values, jnp.float32)[jnp.asarray(t)]
  return v.reshape(v.shape + (1,) * (ndim - v.ndim))


def q_sample(schedule: Schedule, x0, t, noise):
  """x_t = √ᾱ_t · x_0 + √(1 − ᾱ_t) · noise; t (B,) integer steps."""
  abar = _at(schedule.alphas_cumprod, t, x0.ndim)
  return jnp.sqrt(abar) * x0 + jnp.sqrt(1.0 - abar) * noise


def l_simple(eps_pred, noise):
  """(B,) float32: the mean over each example's pixels of (ε̂ − ε)²."""
  err = jnp.square(eps_pred.astype(jnp.float32) - noise.astype(jnp.float32))
  return err.reshape(err.shape[0], -1).mean(axis=1)


def predict_x0(schedule: Schedule, x_t, t, eps, clip_x0: bool):
  abar = _at(schedule.alphas_cumprod, t, x_t.ndim)
  x0 = (x_t - jnp.sqrt(1.0 - abar) * eps) / jnp.sqrt(abar)
  return jnp.clip(x0, -1.0, 1.0) if clip_x0 else x0


def ancestral_step(schedule: Schedule, x_t, t, eps, z, *, variance: str = "beta", clip_x0: bool = True,
                   log_variance=None):
  """x_{t−1} from x_t, the predicted noise `eps` and standard normal `z`; t a scalar or (B,) steps.
  z is added (times σ_t) only where t > 0. `log_variance` (an array broadcasting to x_t, e.g.
  `learned_log_variance`) replaces the fixed σ²_t of `variance`."""
  if variance not in VARIANCES:
    raise ValueError(f"variance must be one of {VARIANCES}, got {variance!r}")
  nd = x_t.ndim
  x0 = predict_x0(schedule, x_t, t, eps, clip_x0)
  abar, abar_prev = schedule.alphas_cumprod, schedule.alphas_cumprod_prev
  coef_x0 = np.sqrt(abar_prev) * schedule.betas / (1.0 - abar)
  coef_xt = np.sqrt(1.0 - schedule.betas) * (1.0 - abar_prev) / (1.0 - abar)
  mean = _at(coef_x0, t, nd) * x0 + _at(coef_xt, t, nd) * x_t
  if log_variance is None:
    var = schedule.betas if variance == "beta" else schedule.posterior_variance
    sigma = jnp.sqrt(_at(var, t, nd))
  else:
    sigma = jnp.exp(0.5 * log_variance)
  not_last = (jnp.asarray(t) > 0).astype(x_t.dtype)
  not_last = not_last.reshape(not_last.shape + (1,) * (nd - not_last.ndim))
  return mean + not_last * sigma * z


def ddim_step(schedule: Schedule, x_t, t, t_prev, eps, *, clip_x0: bool = True):
  """DDIM, η = 0: x_{t_prev} = √ᾱ_{t_prev} · x̂_0 + √(1 − ᾱ_{t_prev}) · ε̂, with ᾱ = 1 for t_prev < 0.
  With clip_x0, ε̂ is not recomputed from the clipped x̂_0 (as diffusers' DDIMScheduler)."""
  nd = x_t.ndim
  x0 = predict_x0(schedule, x_t, t, eps, clip_x0)
  abar_ext = np.append(schedule.alphas_cumprod, 1.0)  # index −1 → ᾱ = 1 (diffusers' set_alpha_to_one)
  abar_prev = _at(abar_ext, jnp.where(jnp.asarray(t_prev) < 0, -1, t_prev), nd)
  return jnp.sqrt(abar_prev) * x0 + jnp.sqrt(1.0 - abar_prev) * eps


def sampling_timesteps(schedule: Schedule, method: str = "ancestral", num_steps: int = 0) -> np.ndarray:
  """The steps the sampler visits, in order: T−1 … 0 (ancestral), or the DDIM subsequence."""
  T = schedule.num_steps
  if method == "ancestral":
    return np.arange(T)[::-1].copy()
  if method == "ddim":
    if not 1 <= num_steps <= T:
      raise ValueError(f"DDIM takes 1 to {T} steps, got {num_steps}")
    return (np.arange(num_steps) * (T // num_steps))[::-1].copy()
  raise ValueError(f"method must be one of {METHODS}, got {method!r}")


def run_chain(step_fn, schedule: Schedule, shape, key, *, method: str, num_steps: int = 0):
  """The reverse chain in one `lax.scan`: x_T ~ N(0, I) from `fold_in(key, 0)`, then every step of
  `sampling_timesteps`; `step_fn(x_t, t, t_prev, z) -> x_{t_prev}` with t, t_prev (B,) int32 (t_prev = -1 after the
  last step) and z the ancestral step's noise at position i, from `fold_in(key, i + 1)` (None for DDIM)."""
  steps = sampling_timesteps(schedule, method, num_steps)
  prev = np.append(steps[1:], -1)
  x = jax.random.normal(jax.random.fold_in(key, 0), shape, jnp.float32)

  def body(x, xs):
    i, t, t_prev = xs
    z = jax.random.normal(jax.random.fold_in(key, i + 1), shape, jnp.float32) if method == "ancestral" else None
    full = lambda v: jnp.full((shape[0],), v, jnp.int32)  # noqa: E731
    return step_fn(x, full(t), full(t_prev), z), None

  xs = (jnp.arange(len(steps), dtype=jnp.int32), jnp.asarray(steps, jnp.int32), jnp.asarray(prev, jnp.int32))
  x, _ = jax.lax.scan(body, x, xs)
  return x


def sample(denoise_fn, schedule: Schedule, shape, key, *, method: str = "ancestral", num_steps: int = 0,
           variance: str = "beta", clip_x0: bool = True):
  """Samples of `shape` (B, H, W, C) from a model of ε (`run_chain`). `denoise_fn(x_t, t (B,) int32) -> ε̂`."""

  def step(x, t, t_prev, z):
    eps = denoise_fn(x, t).astype(jnp.float32)
    if method == "ancestral":
      return ancestral_step(schedule, x, t, eps, z, variance=variance, clip_x0=clip_x0)
    return ddim_step(schedule, x, t, t_prev, eps, clip_x0=clip_x0)

  return run_chain(step, schedule, shape, key, method=method, num_steps=num_steps)


# ------------------------------------------------------------------ the variational bound (bits per dimension)
def normal_kl(mean1, logvar1, mean2, logvar2):
  """KL(N(mean1, e^logvar1) ‖ N(mean2, e^logvar2)) per element, in nats."""
  return 0.5 * (-1.0 + logvar2 - logvar1 + jnp.exp(logvar1 - logvar2) + jnp.square(mean1 - mean2) * jnp.exp(-logvar2))


def discretized_gaussian_log_likelihood(x, mean, log_scale):
  """log P(x) per element for x on the 256-level grid of [−1, 1] (x = 2k/255 − 1): the mass of
  N(mean, e^{2 log_scale}) on x's bin [x − 1/255, x + 1/255], the edge bins reaching to ±∞ (eq. 13). Φ is exact here (the official code
  uses a tanh approximation of it); as there, a bin's mass is floored at 1e-12."""
  inv_scale = jnp.exp(-log_scale)
  upper, lower = inv_scale * (x - mean + 1.0 / 255.0), inv_scale * (x - mean - 1.0 / 255.0)
  log_cdf_upper = jax.scipy.special.log_ndtr(upper)          # the bin at −1: Φ(upper)
  log_one_minus_cdf_lower = jax.scipy.special.log_ndtr(-lower)  # the bin at +1: 1 − Φ(lower)
  # Inner bins: Φ(upper) − Φ(lower), computed on the side of the tail it is further from (no cancellation).
  flip = lower > 0
  hi, lo = jnp.where(flip, -lower, upper), jnp.where(flip, -upper, lower)
  log_delta = jax.scipy.special.log_ndtr(hi) + jnp.log1p(-jnp.exp(jax.scipy.special.log_ndtr(lo)
                                                                    - jax.scipy.special.log_ndtr(hi)))
  log_probs = jnp.where(x < -0.999, log_cdf_upper, jnp.where(x > 0.999, log_one_minus_cdf_lower, log_delta))
  return jnp.maximum(log_probs, np.log(1e-12))  # the official code's floor on a bin's mass


def _mean_bits(nats):
  """(B, ...) nats per element → (B,) bits per dimension (the mean over an example's elements / ln 2)."""
  return nats.reshape(nats.shape[0], -1).mean(axis=1) / np.log(2.0)


def posterior_mean(schedule: Schedule, x0, x_t, t):
  """The mean of q(x_{t−1} | x_t, x_0) (eq. 7); its variance is `schedule.posterior_variance`."""
  abar, abar_prev = schedule.alphas_cumprod, schedule.alphas_cumprod_prev
  coef_x0 = np.sqrt(abar_prev) * schedule.betas / (1.0 - abar)
  coef_xt = np.sqrt(1.0 - schedule.betas) * (1.0 - abar_prev) / (1.0 - abar)
  return _at(coef_x0, t, x_t.ndim) * x0 + _at(coef_xt, t, x_t.ndim) * x_t


def model_log_variance(schedule: Schedule, variance: str) -> np.ndarray:
  """log σ²_t of p_θ(x_{t−1} | x_t) for the bound: log β_t or log β̃_t, with step 0 (the decoder's) set to
  log β̃ of step 1 in both cases, as the official code (whose β̃_0 = 0 has no log)."""
  if variance not in VARIANCES:
    raise ValueError(f"variance must be one of {VARIANCES}, got {variance!r}")
  var = schedule.betas if variance == "beta" else schedule.posterior_variance
  return np.log(np.append(schedule.posterior_variance[1], var[1:]))


def prior_bpd(schedule: Schedule, x0):
  """(B,) L_T in bits per dimension: KL(q(x_T | x_0) ‖ N(0, I)), no parameters."""
  abar_T = float(schedule.alphas_cumprod[-1])
  return _mean_bits(normal_kl(np.sqrt(abar_T) * x0, np.log(1.0 - abar_T), 0.0, 0.0))


def vlb_term_bpd(schedule: Schedule, x0, x_t, t, eps, *, variance: str = "beta", clip_x0: bool = True,
                 log_variance=None):
  """(B,) the bound's term at step t (B,) in bits per dimension, from x_t ~ q(x_t | x_0) and ε̂ = ε_θ(x_t, t):
  the decoder's −log p_θ(x_0 | x_1) where t = 0, KL(q(x_{t−1} | x_t, x_0) ‖ p_θ(x_{t−1} | x_t)) elsewhere.
  p_θ's mean is the posterior mean at x̂_0 = (x_t − √(1 − ᾱ_t) ε̂) / √ᾱ_t (clipped to [−1, 1] with
  `clip_x0`, as the official code's bound and sampler); its log-variance is `log_variance` (an array
  broadcasting to x_t, e.g. `learned_log_variance`) or, if None, the fixed `model_log_variance(variance)`."""
  nd = x_t.ndim
  model_mean = posterior_mean(schedule, predict_x0(schedule, x_t, t, eps, clip_x0), x_t, t)
  if log_variance is None:
    model_logvar = _at(model_log_variance(schedule, variance), t, nd)
  else:
    model_logvar = jnp.broadcast_to(log_variance, x_t.shape)
  true_logvar = _at(schedule.posterior_log_variance_clipped, t, nd)
  kl = _mean_bits(normal_kl(posterior_mean(schedule, x0, x_t, t), true_logvar, model_mean, model_logvar))
  decoder_nll = -_mean_bits(discretized_gaussian_log_likelihood(x0, model_mean, 0.5 * model_logvar))
  return jnp.where(jnp.asarray(t) == 0, decoder_nll, kl)


def vlb_bits_per_dim(denoise_fn, schedule: Schedule, x0, key, *, variance: str = "beta", clip_x0: bool = True,
                     learned: bool = False):
  """The bound L_vlb of 8-bit images x0 (B, H, W, C) scaled to [−1, 1], in bits per dimension, with every one of
  the T steps (one `lax.scan`; one x_t ~ q(x_t | x_0) per step, its ε from `fold_in(key, t)`).
  `denoise_fn(x_t, t (B,) int32) -> ε̂`, or with `learned` the 2C channels (ε̂, v) of a learned variance
  (`split_learned`, `learned_log_variance`; `variance` is then unused). Returns {"total", "prior", "decoder",
  "kl"} of (B,) arrays, and "terms" (T, B): the term of each step (row 0 the decoder's)."""
  x0 = jnp.asarray(x0, jnp.float32)
  batch = x0.shape[0]

  def body(_, t):
    tb = jnp.full((batch,), t, jnp.int32)
    noise = jax.random.normal(jax.random.fold_in(key, t), x0.shape, jnp.float32)
    x_t = q_sample(schedule, x0, tb, noise)
    out = denoise_fn(x_t, tb).astype(jnp.float32)
    if learned:
      eps, v = split_learned(out)
      return None, vlb_term_bpd(schedule, x0, x_t, tb, eps, clip_x0=clip_x0,
                                log_variance=learned_log_variance(schedule, tb, v))
    return None, vlb_term_bpd(schedule, x0, x_t, tb, out, variance=variance, clip_x0=clip_x0)

  _, terms = jax.lax.scan(body, None, jnp.arange(schedule.num_steps, dtype=jnp.int32))
  prior = prior_bpd(schedule, x0)
  kl = terms[1:].sum(axis=0)
  return {"total": prior + terms[0] + kl, "prior": prior, "decoder": terms[0], "kl": kl, "terms": terms}


# ------------------------------------------------ learned variances and strided sampling (Improved DDPM)
def learned_log_variance(schedule: Schedule, t, v):
  """log σ²_t = frac · log β_t + (1 − frac) · log β̃_t with frac = (v + 1) / 2 (Improved DDPM eq. 15): v, the
  network's raw variance output (ideally in [−1, 1]; not clipped, as the official code), interpolates between
  the two fixed choices. β̃ is the clipped one (step 0's is step 1's); log β_0 is kept at step 0."""
  nd = v.ndim
  max_log = _at(np.log(schedule.betas), t, nd)
  min_log = _at(schedule.posterior_log_variance_clipped, t, nd)
  frac = (jnp.asarray(v, jnp.float32) + 1.0) / 2.0
  return frac * max_log + (1.0 - frac) * min_log


def split_learned(out):
  """A 2C-channel output (last axis, NHWC) → (ε̂, v): the first C channels and the last C."""
  channels = out.shape[-1]
  if channels % 2:
    raise ValueError(f"a learned-variance output has an even channel count, got {channels}")
  return out[..., :channels // 2], out[..., channels // 2:]


def hybrid_terms(schedule: Schedule, x0, x_t, t, noise, out, *, clip_x0: bool = False):
  """L_hybrid's pieces per example, each (B,): "mse" = L_simple (the mean over the example of (ε − ε̂)²),
  "vb" = T/1000 · L_t, the bound's term at t in bits per dimension (`vlb_term_bpd`: the KL for t > 0, the
  decoder's NLL at t = 0) with p_θ's mean from stop_gradient(ε̂) and the learned variance of v, and
  "loss" = mse + vb. So the bound trains only the variance and L_simple only the mean (Improved DDPM §3.1,
  L_hybrid = L_simple + λ L_vlb with λ = 0.001 and L_vlb estimated as T · L_t, the official code's
  RESCALED_MSE). `out` is the network's 2C channels at (x_t, t) (`split_learned`). The official training loss
  does not clip x̂_0 (`clip_denoised=False`), hence clip_x0=False."""
  eps, v = split_learned(jnp.asarray(out, jnp.float32))
  mse = l_simple(eps, noise)
  vb = vlb_term_bpd(schedule, x0, x_t, t, jax.lax.stop_gradient(eps), clip_x0=clip_x0,
                    log_variance=learned_log_variance(schedule, t, v))
  vb = vb * (schedule.num_steps / 1000.0)
  return {"loss": mse + vb, "mse": mse, "vb": vb}


def hybrid_loss(schedule: Schedule, x0, x_t, t, noise, out, *, clip_x0: bool = False):
  """(B,) L_hybrid per example (`hybrid_terms`)."""
  return hybrid_terms(schedule, x0, x_t, t, noise, out, clip_x0=clip_x0)["loss"]


def strided_timesteps(num_steps: int, counts) -> np.ndarray:
  """The kept steps (ascending) of Improved DDPM §4's strided sampling, as the official `space_timesteps` with
  section counts: the T steps cut into len(counts) near-equal sections, section i giving counts[i] steps at a
  fractional stride (size − 1) / (count − 1) from its start, each rounded (Python's round, half to even) from a
  running sum. `counts` an int (one section: evenly from 0 to T − 1) or a sequence of ints."""
  counts = [int(counts)] if np.ndim(counts) == 0 else [int(c) for c in counts]
  size_per, extra = divmod(num_steps, len(counts))
  start, steps = 0, []
  for i, count in enumerate(counts):
    size = size_per + (1 if i < extra else 0)
    if not 1 <= count <= size:
      raise ValueError(f"cannot take {count} steps from a section of {size}")
    stride = (size - 1) / (count - 1) if count > 1 else 1
    idx = 0.0
    for _ in range(count):
      steps.append(start + round(idx))
      idx += stride  # a running sum, not i · stride: the official rounding of ties depends on it
    start += size
  return np.array(sorted(set(steps)), np.int64)


def respace(schedule: Schedule, timesteps) -> tuple[Schedule, np.ndarray]:
  """The schedule over the kept steps t_0 < … < t_{K−1} (Improved DDPM §4): β'_i = 1 − ᾱ_{t_i} / ᾱ_{t_{i−1}}
  (ᾱ_{t_{−1}} = 1), so ᾱ'_i = ᾱ_{t_i}. Returns it and the map i → t_i (int64, ascending): the network is
  called with the original t_i."""
  steps = np.array(sorted(set(int(t) for t in np.asarray(timesteps).ravel())), np.int64)
  if len(steps) == 0 or steps[0] < 0 or steps[-1] >= schedule.num_steps:
    raise ValueError(f"timesteps must lie in [0, {schedule.num_steps}), got {steps}")
  abar = schedule.alphas_cumprod[steps]
  return Schedule(1.0 - abar / np.append(1.0, abar[:-1])), steps


def sample_learned(denoise_fn, schedule: Schedule, shape, key, *, num_steps: int = 0, timesteps=None,
                   clip_x0: bool = True):
  """Ancestral samples of `shape` (B, H, W, C) from a model of ε and a learned variance: `denoise_fn(x_t,
  t (B,) int32) -> (B, H, W, 2C)` (`split_learned`), always called with the original steps t. The chain runs
  over the respaced schedule of `timesteps` (kept steps), or of `strided_timesteps(T, num_steps)`, or of all
  T steps if neither is given (`run_chain`: one `lax.scan`, no noise at the last step). σ² interpolates the
  respaced schedule's β' and β̃' (as the official `SpacedDiffusion`)."""
  if timesteps is not None and num_steps:
    raise ValueError("give num_steps or timesteps, not both")
  if timesteps is None:
    timesteps = strided_timesteps(schedule.num_steps, num_steps) if num_steps else np.arange(schedule.num_steps)
  spaced, steps = respace(schedule, timesteps)
  original = jnp.asarray(steps, jnp.int32)

  def step(x, i, i_prev, z):
    del i_prev
    eps, v = split_learned(denoise_fn(x, original[i]).astype(jnp.float32))
    return ancestral_step(spaced, x, i, eps, z, clip_x0=clip_x0, log_variance=learned_log_variance(spaced, i, v))

  return run_chain(step, spaced, shape, key, method="ancestral")
