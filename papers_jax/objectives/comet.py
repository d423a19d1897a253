"""COMET's hierarchical contrastive loss (Wang et al., NeurIPS 2023; the official code's losses).

Each level compares two encodings z1, z2 (batch, T, dims) of the same batch (two passes with independent
masks and dropout):
  patient      `id_contrastive_loss` with the patient ids: each representation is normalised over time (per
               channel, as the official code), flattened, and compared by cosine similarity / τ (τ = 0.1)
               with every representation of the other pass; E = exp(sim). For each pair (i, j), i ≠ j, of the
               same id: −log(E_ij / Σ_k E_ik) over the pairs above the diagonal (j > i) and
               −log(E_ij / Σ_k E_kj) over those below it (j < i); the loss is the mean of the two triangles'
               means (0 when the batch holds no such pair; the official code divides by zero there);
  trial        the same with the trial ids;
  sample       TS2Vec's instance-wise contrast (objectives/ts_contrastive.instance_loss): at each timestamp,
               z1[i] against the batch's other 2B − 1 representations, z2[i] the positive;
  observation  TS2Vec's temporal contrast (ts_contrastive.temporal_loss): within each series, z1[i, t]
               against the other 2T − 1 timestamps, z2[i, t] the positive.
The sample and observation levels are hierarchical: computed on z, then on z max-pooled over time by 2, and
so on while more than one timestamp is left, and averaged over those scales (unlike TS2Vec, the final
one-timestamp scale is not taken). The loss is Σ λ_level · L_level over the four levels.
"""

import jax
import jax.numpy as jnp

from papers_jax.objectives import ts_contrastive

LEVELS = ("patient", "trial", "sample", "observation")


def id_contrastive_loss(z1, z2, ids, temperature: float = 0.1):
  b = z1.shape[0]
  normalise = lambda z: z * jax.lax.rsqrt(jnp.maximum((z * z).sum(1, keepdims=True), 1e-24))  # noqa: E731
  v1 = normalise(z1.astype(jnp.float32)).reshape(b, -1)
  v2 = normalise(z2.astype(jnp.float32)).reshape(b, -1)
  n1 = jnp.sqrt((v1 * v1).sum(1))
  n2 = jnp.sqrt((v2 * v2).sum(1))
  logits = (v1 @ v2.T) / (n1[:, None] * n2[None, :] * temperature)
  row = logits - jax.nn.logsumexp(logits, axis=1, keepdims=True)  # log(E_ij / Σ_k E_ik)
  col = logits - jax.nn.logsumexp(logits, axis=0, keepdims=True)  # log(E_ij / Σ_k E_kj)
  same = ids[:, None] == ids[None, :]
  upper = same & jnp.triu(jnp.ones((b, b), bool), 1)
  lower = same & jnp.tril(jnp.ones((b, b), bool), -1)
  terms = []
  for mask, logp in ((upper, row), (lower, col)):
    count = mask.sum()
    terms.append((jnp.where(mask, -logp, 0.0).sum() / jnp.maximum(count, 1), count > 0))
  used = sum(has.astype(jnp.float32) for _, has in terms)
  return sum(jnp.where(has, value, 0.0) for value, has in terms) / jnp.maximum(used, 1.0)


def _pool(z):
  t = z.shape[1] // 2
  return jnp.maximum(z[:, 0:2 * t:2], z[:, 1:2 * t:2])


def hierarchical(level_loss, z1, z2):
  """`level_loss` averaged over the scales T, T/2, … while more than one timestamp is left (one scale for
  T = 1, where the official loop takes none and returns 0/0)."""
  if z1.shape[1] <= 1:
    return level_loss(z1, z2, z1.shape[1])
  total, scales = 0.0, 0
  while z1.shape[1] > 1:
    total, scales = total + level_loss(z1, z2, z1.shape[1]), scales + 1
    z1, z2 = _pool(z1), _pool(z2)
  return total / scales


def sample_loss(z1, z2):
  return hierarchical(ts_contrastive.instance_loss, z1, z2)


def observation_loss(z1, z2):
  return hierarchical(ts_contrastive.temporal_loss, z1, z2)


def comet_loss(pairs: dict, patient, trial, factors, temperature: float = 0.1):
  """(loss, metrics): `pairs` maps each level of LEVELS with a nonzero factor to its (z1, z2)."""
  weights = dict(zip(LEVELS, factors))
  terms = {}
  if weights["patient"]:
    terms["patient"] = id_contrastive_loss(*pairs["patient"], patient, temperature)
  if weights["trial"]:
    terms["trial"] = id_contrastive_loss(*pairs["trial"], trial, temperature)
  if weights["sample"]:
    terms["sample"] = sample_loss(*pairs["sample"])
  if weights["observation"]:
    terms["observation"] = observation_loss(*pairs["observation"])
  loss = sum(weights[k] * v for k, v in terms.items())
  return loss, {f"loss_{k}": v for k, v in terms.items()}
