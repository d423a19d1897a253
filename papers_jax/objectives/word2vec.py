"""word2vec's objectives (Mikolov et al. 2013, "Distributed Representations of Words and Phrases and their
Compositionality"): negative sampling for skip-gram and CBOW, the unigram^0.75 noise distribution and the
subsampling of frequent words. fastText (Bojanowski et al. 2017) trains the same objective with subword input
vectors (models/word2vec.py). numpy references in tests/test_word2vec.py.
"""

import jax
import jax.numpy as jnp
import numpy as np


def negative_sampling_loss(inputs, targets, target_mask, negatives, negative_mask):
  """Eq. 4 summed over each example's target words: −log σ(u_o·v) − Σ_k log σ(−u_k·v).

  inputs (B, D): the input vector v (skip-gram: the centre word's; CBOW: the mean of the context's).
  targets (B, P, D): output vectors u_o of the P target slots (skip-gram: the context words; CBOW: the
  centre word, P = 1), target_mask (B, P) True on real slots. negatives (B, P, K, D): K noise words' output
  vectors per target, negative_mask (B, P, K) False where a noise word is the target itself (word2vec.c
  skips those draws). Returns per-example losses (B,), float32.
  """
  inputs, targets, negatives = (x.astype(jnp.float32) for x in (inputs, targets, negatives))
  positive = jax.nn.log_sigmoid(jnp.einsum("bd,bpd->bp", inputs, targets))
  noise = jax.nn.log_sigmoid(-jnp.einsum("bd,bpkd->bpk", inputs, negatives))
  per_target = -positive - jnp.sum(jnp.where(negative_mask, noise, 0.0), axis=-1)
  return jnp.sum(jnp.where(target_mask, per_target, 0.0), axis=-1)


def noise_distribution(counts, power: float = 0.75) -> np.ndarray:
  """P_n(w) ∝ U(w)^{3/4}, the unigram distribution raised to the 3/4 power (§2.2)."""
  weights = np.asarray(counts, np.float64) ** power
  return weights / weights.sum()


def sample_noise(key, cdf, shape):
  """Words drawn from the distribution whose cumulative sums are `cdf` (V,), by inverting it at uniform draws:
  word2vec.c's unigram table without the table (one uniform per draw, not a Gumbel per word and draw)."""
  u = jax.random.uniform(key, shape, jnp.float32) * cdf[-1]
  return jnp.minimum(jnp.searchsorted(jnp.asarray(cdf), u, side="right"), cdf.shape[0] - 1).astype(jnp.int32)


def keep_probability(counts, threshold: float) -> np.ndarray:
  """Subsampling (§2.3): word w is discarded with P(w) = 1 − sqrt(t / f(w)), f its relative frequency;
  this is 1 − P(w), clipped to [0, 1] (words rarer than t are always kept)."""
  freq = np.asarray(counts, np.float64) / np.sum(counts)
  return np.clip(np.sqrt(threshold / freq), 0.0, 1.0)
