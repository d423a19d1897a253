"""TF-C's augmentations and loss (Zhang et al., NeurIPS 2022; the official code's pre-training loss).

Views. Time domain: each series gets one augmentation drawn from a bank of three, with equal probability:
  jitter       x + N(0, σ_j²) at every step;
  scaling      each channel times N(1, σ_s²);
  permutation  the series cut at s − 1 random points (s ~ U{1, …, max_segments − 1}) and its segments
               put in a random order (the official `permutation`, split points drawn from 0 … T − 3).
Frequency domain (on the magnitude spectrum |FFT(x)|): each component removed (set to 0) with probability
`ratio`, then each component, with probability `ratio`, raised by U(0, α · the series' largest amplitude).

Loss, for a batch's series x and their views x̃ (the model gives h and z of each domain):
  L_T = NT-Xent(h_T, h̃_T),  L_F = NT-Xent(h_F, h̃_F)        (τ, cosine similarity; models/tfc.py's h)
  S_TF = NT-Xent(z_T, z_F), and the three pairs with a view: S_TF̃ = NT-Xent(z_T, z̃_F), S_T̃F, S_T̃F̃
  L_C = Σ over the three pairs of (δ + S_TF − S_pair)             (the time-frequency consistency triplet)
  L = λ (L_T + L_F) + (1 − λ) L_C
A series' time and frequency embeddings are the anchor and positive; its views' embeddings in the other
domain are the negatives that must lie at least δ further off. The NT-Xent terms are the batch means
(objectives/contrastive.nt_xent), so S is each pair's distance measured against the whole batch, as the
official code measures it; L_C is not clipped at 0, as in the paper's equation and the official code.
"""

import jax
import jax.numpy as jnp

from papers_jax.objectives.contrastive import nt_xent


def jitter(key, x, sigma: float):
  return x + sigma * jax.random.normal(key, x.shape, x.dtype)


def scaling(key, x, sigma: float):
  return x * (1.0 + sigma * jax.random.normal(key, (x.shape[0], 1, x.shape[2]), x.dtype))


def permutation(key, x, max_segments: int):
  """x (batch, T, C): each series cut into s ~ U{1, …, max_segments − 1} segments at distinct random points of
  0 … T − 3 and the segments reordered at random."""
  b, t = x.shape[0], x.shape[1]
  cuts = min(max_segments - 2, t - 2)  # at most this many cut points
  if cuts < 1:
    return x

  def one(key, series):
    k_num, k_points, k_order = jax.random.split(key, 3)
    num = jax.random.randint(k_num, (), 1, max_segments)
    points = jax.random.permutation(k_points, t - 2)[:cuts]  # distinct candidates
    points = jnp.where(jnp.arange(cuts) < num - 1, points, t)  # keep num − 1 of them
    segment = (points[None, :] <= jnp.arange(t)[:, None]).sum(1)  # each step's segment index
    rank = jax.random.permutation(k_order, max_segments - 1)
    order = jnp.argsort(rank[segment] * t + jnp.arange(t))
    return series[order]
  return jax.vmap(one)(jax.random.split(key, b), x)


def time_augment(key, x, *, jitter_sigma: float, scaling_sigma: float, max_segments: int):
  """One augmentation of the bank (jitter, scaling, permutation) per series; NaN steps are zeroed first."""
  x = jnp.nan_to_num(x)
  k_choice, k1, k2, k3 = jax.random.split(key, 4)
  views = jnp.stack([jitter(k1, x, jitter_sigma), scaling(k2, x, scaling_sigma), permutation(k3, x, max_segments)])
  choice = jax.random.randint(k_choice, (x.shape[0],), 0, 3)
  return views[choice, jnp.arange(x.shape[0])]


def frequency_augment(key, spectrum, *, ratio: float = 0.1, alpha: float = 0.1):
  """spectrum (batch, T, C) magnitudes: components removed, then components added (module docstring)."""
  k_remove, k_add, k_amp = jax.random.split(key, 3)
  kept = spectrum * (jax.random.uniform(k_remove, spectrum.shape) > ratio)
  added = jax.random.uniform(k_add, spectrum.shape) > 1 - ratio
  peak = spectrum.max(axis=(1, 2), keepdims=True)
  return kept + added * jax.random.uniform(k_amp, spectrum.shape) * alpha * peak


def tfc_loss(original, augmented, *, temperature: float = 0.2, margin: float = 1.0, lam: float = 0.2):
  """(L, metrics) of the module docstring; `original` and `augmented` are the model's (h_T, z_T, h_F, z_F) of
  the series and of their views."""
  h_t, z_t, h_f, z_f = original
  h_ta, z_ta, h_fa, z_fa = augmented
  s = lambda a, b: nt_xent(a, b, temperature).mean()  # noqa: E731
  loss_t, loss_f = s(h_t, h_ta), s(h_f, h_fa)
  s_tf = s(z_t, z_f)
  loss_c = sum(margin + s_tf - s(a, b) for a, b in ((z_t, z_fa), (z_ta, z_f), (z_ta, z_fa)))
  loss = lam * (loss_t + loss_f) + (1 - lam) * loss_c
  return loss, {"loss_time": loss_t, "loss_freq": loss_f, "loss_consistency": loss_c}
