"""unCLIP's diffusion objectives and samplers as pure functions (Ramesh et al. 2022, §2.1–2.2), on top of DDPM's
(objectives/diffusion.py: schedules, q_sample, the posterior).

- The prior predicts the unnoised image embedding: `prior_loss` = ‖f(z_t, t, y) − z_0‖², the mean over the
  embedding's dimensions (x₀-prediction; the paper's E_t ‖f_θ(z_i^(t), t, y) − z_i‖²).
- The decoder predicts the noise: L_simple (objectives/diffusion.py).
- Classifier-free guidance: conditioning dropped at training time (`keep_mask`: the CLIP embedding 10% and the
  caption 50% of the time for the decoder, the text 10% for the prior), and at sampling time
  `guided(u, c, s)` = u + s · (c − u) on the model's outputs (ε for the decoder, ẑ_0 for the prior).
- `x0_step`: one ancestral step from an x₀ prediction, x_{t−1} ~ q(x_{t−1} | x_t, x̂_0) with σ²_t = β̃_t or β_t
  (no σ·z at t = 0), computed from x̂_0 directly (recovering ε from x̂_0 divides by √(1 − ᾱ_t) only).
  `x0_ddim_step`: DDIM (η = 0) from an x₀ prediction.
- `sample_from_x0`: the prior's chain as one `lax.scan` (ancestral over all T steps or DDIM over a subsequence).
- `best_of`: the paper's sampling of the prior: draw several image embeddings and keep the one with the
  highest dot product with the text embedding.
"""

import jax
import jax.numpy as jnp
import numpy as np

from papers_jax.objectives import diffusion


def prior_loss(pred_z0, z0):
  """(B,) float32: the mean over the embedding's dimensions of (ẑ_0 − z_0)²."""
  err = jnp.square(pred_z0.astype(jnp.float32) - z0.astype(jnp.float32))
  return err.reshape(err.shape[0], -1).mean(axis=1)


def guided(uncond, cond, scale):
  """Classifier-free guidance: uncond + scale · (cond − uncond) (scale 1: the conditional model)."""
  return uncond + scale * (cond - uncond)


def keep_mask(key, batch: int, drop_prob: float):
  """(B,) bool: True where the conditioning is kept (each dropped independently with `drop_prob`)."""
  return jax.random.uniform(key, (batch,)) >= drop_prob


def eps_from_x0(schedule: diffusion.Schedule, x_t, t, x0):
  """ε = (x_t − √ᾱ_t · x_0) / √(1 − ᾱ_t)."""
  abar = diffusion._at(schedule.alphas_cumprod, t, x_t.ndim)
  return (x_t - jnp.sqrt(abar) * x0) / jnp.sqrt(1.0 - abar)


def x0_step(schedule: diffusion.Schedule, x_t, t, x0, z, *, variance: str = "posterior"):
  """x_{t−1} = posterior mean of q(x_{t−1} | x_t, x̂_0) + σ_t · z (not at t = 0); t (B,) steps."""
  if variance not in diffusion.VARIANCES:
    raise ValueError(f"variance must be one of {diffusion.VARIANCES}, got {variance!r}")
  nd = x_t.ndim
  mean = diffusion.posterior_mean(schedule, x0, x_t, t)
  var = schedule.betas if variance == "beta" else schedule.posterior_variance
  not_last = (jnp.asarray(t) > 0).astype(x_t.dtype)
  not_last = not_last.reshape(not_last.shape + (1,) * (nd - not_last.ndim))
  return mean + not_last * jnp.sqrt(diffusion._at(var, t, nd)) * z


def x0_ddim_step(schedule: diffusion.Schedule, x_t, t, t_prev, x0):
  """DDIM (η = 0) from x̂_0: x_{t'} = √ᾱ_{t'} · x̂_0 + √(1 − ᾱ_{t'}) · ε̂, ε̂ from x̂_0; ᾱ = 1 for t' < 0."""
  eps = eps_from_x0(schedule, x_t, t, x0)
  abar_ext = np.append(schedule.alphas_cumprod, 1.0)
  abar_prev = diffusion._at(abar_ext, jnp.where(jnp.asarray(t_prev) < 0, -1, t_prev), x_t.ndim)
  return jnp.sqrt(abar_prev) * x0 + jnp.sqrt(1.0 - abar_prev) * eps


def sample_from_x0(predict_x0_fn, schedule: diffusion.Schedule, shape, key, *, method: str = "ddim",
                   num_steps: int = 64, variance: str = "posterior"):
  """Samples of `shape` from a model of x₀ (`diffusion.run_chain`: one `lax.scan`, the same keys as
  `diffusion.sample`). `predict_x0_fn(x_t, t (B,) int32) -> x̂_0`."""

  def step(x, t, t_prev, z):
    x0 = predict_x0_fn(x, t).astype(jnp.float32)
    if method == "ancestral":
      return x0_step(schedule, x, t, x0, z, variance=variance)
    return x0_ddim_step(schedule, x, t, t_prev, x0)

  return diffusion.run_chain(step, schedule, shape, key, method=method, num_steps=num_steps)


def best_of(candidates, text_embedding):
  """candidates (K, B, D), text_embedding (B, D) → (B, D): per example, the candidate with the highest dot
  product with the text embedding (the paper draws K = 2)."""
  scores = jnp.einsum("kbd,bd->kb", candidates, text_embedding)
  return jnp.take_along_axis(candidates, jnp.argmax(scores, axis=0)[None, :, None], axis=0)[0]
