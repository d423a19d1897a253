"""TimesURL's objectives (Liu & Chen, AAAI 2024): frequency mixing, the double-Universum hierarchical
contrastive loss (DualCon) and the masked time-reconstruction loss.

  frequency_mix      FTAug's frequency mixing: each frequency component of a series is, with probability
                     `rate`, replaced by the same component of another series of the batch (a random
                     permutation), then transformed back to time. The real FFT is used, so the mixed series
                     is real (see configs/timesurl/ucr.py for how the official code differs).
  DualCon            TS2Vec's hierarchical loss (objectives/ts_contrastive.py) where each contrast also
                     holds Universums, hard negatives mixed in feature space:
                       instance-wise  u1 = λ·z1 + (1 − λ)·z1[perm over the batch], u2 likewise from z2 (its own
                                      permutation); at each timestamp a representation of view 1 or 2 is
                                      contrasted against the other 2B − 1 representations of the two views
                                      and the 2B Universums (4B − 1 candidates; positive: the other view);
                       temporal       the same within each series with permutations over the (valid)
                                      timestamps: 2T − 1 + 2T candidates.
                     Similarities are dot products over a temperature; λ = 0.2 (the official code's mix).
                     New permutations are drawn at every scale, as the official code does.
  reconstruction     the mean squared error over the masked (observed) values only, between the series and
                     the reconstruction head's output for the series with those values zeroed.
  segment_mask       the masks of the reconstruction: per series and channel, `segments` spans of
                     max(1, ⌊ratio · T⌋) steps at uniform random starts.

`length` (the crops' overlap) may be traced: the arrays keep a fixed length and only the first `length`
timestamps count, as in objectives/ts_contrastive.py.
"""

import math

import jax
import jax.numpy as jnp
import ml_collections

from papers_jax.objectives.ts_contrastive import NEG, _max_pool2


def default_config(**overrides) -> ml_collections.ConfigDict:
  """`config.ts_repr.timesurl`: the official code's defaults (train.py, losses.py, collator.py)."""
  return ml_collections.ConfigDict(dict(
      mix_rate=0.5,  # FTAug: the probability that a frequency component is taken from the partner series
      universum_lambda=0.2,  # the anchor's share in a Universum
      temperature=1.0,
      contrast_weight=0.01,  # `--lmd`: the weight of DualCon; the reconstruction's is 1
      recon_weight=1.0,
      recon_segments=3,  # `--segment_num`
      recon_ratio=0.05,  # `--mask_ratio_per_seg`
  ) | overrides)


def configure(c) -> None:
  """Turns an unlocked TS2Vec config (configs/ts2vec/*.py) into TimesURL's, with the official code's settings
  (configs/timesurl/ucr.py lists them)."""
  c.ts_repr.update(method="timesurl", alpha=0.8)
  c.ts_repr.timesurl = default_config()
  c.model.update(name="timesurl", mask_mode="all_true")
  c.optimizer.update(lr=1e-4, weight_decay=5e-4)
  c.schedule.update(name="cosine", warmup_steps=0)


# ----------------------------------------------------------------------------- augmentation


def frequency_mix(key, series, rate: float):
  """series (B, T, C), no NaN → (B, T, C): each rfft component (along T, per channel) taken from the series
  `perm[i]` of the batch with probability `rate`."""
  k_mask, k_perm = jax.random.split(key)
  spectrum = jnp.fft.rfft(series.astype(jnp.float32), axis=1)
  partner = spectrum[jax.random.permutation(k_perm, series.shape[0])]
  swap = jax.random.bernoulli(k_mask, rate, spectrum.shape)
  return jnp.fft.irfft(jnp.where(swap, partner, spectrum), n=series.shape[1], axis=1).astype(series.dtype)


def segment_mask(key, batch: int, length: int, channels: int, segments: int = 3, ratio: float = 0.05):
  """(batch, length, channels) bool, True on the masked steps: `segments` spans of max(1, ⌊ratio·length⌋)
  steps per series and channel (they may overlap)."""
  span = max(int(ratio * length), 1)
  starts = jax.random.randint(key, (batch, segments, channels), 0, length - span + 1)
  t = jnp.arange(length)[None, None, :, None]
  hit = (t >= starts[:, :, None]) & (t < starts[:, :, None] + span)
  return hit.any(1)


def reconstruction_loss(series, reconstruction, mask):
  """Σ mask·(series − reconstruction)² / Σ mask over (B, T, C); `mask` float or bool (0 where a value is not
  masked or not observed). 0 when nothing is masked."""
  m = mask.astype(jnp.float32)
  err = jnp.where(m > 0, series.astype(jnp.float32) - reconstruction.astype(jnp.float32), 0.0)
  return (jnp.square(err) * m).sum() / (m.sum() + 1e-10)


# ----------------------------------------------------------------------------- DualCon


def valid_permutation(key, size: int, length):
  """(size,) int: a uniform random permutation of 0 … `length` − 1 in the first `length` places (the rest
  hold the padding's indices); `length` may be traced."""
  score = jax.random.uniform(key, (size,))
  score = jnp.where(jnp.arange(size) < length, score, 2.0 + jnp.arange(size))  # padding last, in order
  return jnp.argsort(score)


def _universum_nll(anchors, candidates, valid_cols, positive, temperature):
  """−log softmax at column `positive` of each row of anchors @ candidatesᵀ / τ, over the valid candidate
  columns except each row's own (row r of anchors is column r of candidates).
  anchors (…, n, D), candidates (…, m, D) with m ≥ n, valid_cols (…, m), positive (…, n)."""
  n, m = anchors.shape[-2], candidates.shape[-2]
  sim = jnp.einsum("...id,...jd->...ij", anchors, candidates) / temperature
  allowed = valid_cols[..., None, :] & (jnp.arange(m)[None, :] != jnp.arange(n)[:, None])
  logp = jax.nn.log_softmax(jnp.where(allowed, sim, NEG), axis=-1)
  return -jnp.take_along_axis(logp, positive[..., None], axis=-1)[..., 0]


def dual_instance_loss(z1, z2, length, perm1, perm2, *, lam: float = 0.2, temperature: float = 1.0):
  """The instance-wise contrast with instance Universums over the first `length` timestamps; perm1, perm2
  (B,) the batch permutations of the two views' Universums. 0 for a batch of one series."""
  b, t = z1.shape[0], z1.shape[1]
  if b == 1:
    return jnp.zeros((), jnp.float32)
  z1, z2 = z1.astype(jnp.float32), z2.astype(jnp.float32)
  u1 = lam * z1 + (1 - lam) * z1[perm1]
  u2 = lam * z2 + (1 - lam) * z2[perm2]
  anchors = jnp.concatenate([z1, z2], axis=0).transpose(1, 0, 2)  # (T, 2B, D)
  candidates = jnp.concatenate([z1, z2, u1, u2], axis=0).transpose(1, 0, 2)  # (T, 4B, D)
  positive = jnp.concatenate([jnp.arange(b) + b, jnp.arange(b)])
  nll = _universum_nll(anchors, candidates, jnp.ones((t, 4 * b), bool), jnp.broadcast_to(positive, (t, 2 * b)),
                       temperature)  # (T, 2B)
  steps = (jnp.arange(t) < length).astype(jnp.float32)
  return (nll * steps[:, None]).sum() / (2 * b * jnp.maximum(length, 1))


def dual_temporal_loss(z1, z2, length, perm1, perm2, *, lam: float = 0.2, temperature: float = 1.0):
  """The temporal contrast with temporal Universums over the first `length` timestamps of each series;
  perm1, perm2 (T,) permutations of the valid timestamps (valid_permutation). 0 when `length` ≤ 1."""
  b, t = z1.shape[0], z1.shape[1]
  z1, z2 = z1.astype(jnp.float32), z2.astype(jnp.float32)
  u1 = lam * z1 + (1 - lam) * z1[:, perm1]
  u2 = lam * z2 + (1 - lam) * z2[:, perm2]
  anchors = jnp.concatenate([z1, z2], axis=1)  # (B, 2T, D)
  candidates = jnp.concatenate([z1, z2, u1, u2], axis=1)  # (B, 4T, D)
  steps = jnp.arange(t) < length
  valid = jnp.concatenate([steps] * 4)
  positive = jnp.concatenate([jnp.arange(t) + t, jnp.arange(t)])
  nll = _universum_nll(anchors, candidates, jnp.broadcast_to(valid, (b, 4 * t)), jnp.broadcast_to(positive, (b, 2 * t)),
                       temperature)  # (B, 2T)
  rows = jnp.concatenate([steps, steps]).astype(jnp.float32)
  total = (nll * rows).sum() / (2 * b * jnp.maximum(length, 1))
  return jnp.where(length > 1, total, 0.0)


def scale_permutations(key, scale: int, batch: int, size: int, length):
  """The four permutations of `scale`: (instance perm1, perm2 over the batch, temporal perm1, perm2 over the
  scale's `size` timestamps of which `length` are valid)."""
  k = jax.random.split(jax.random.fold_in(key, scale), 4)
  return (jax.random.permutation(k[0], batch), jax.random.permutation(k[1], batch),
          valid_permutation(k[2], size, length), valid_permutation(k[3], size, length))


def dual_hierarchical_loss(z1, z2, length, key, *, alpha: float = 0.8, temporal_unit: int = 0, lam: float = 0.2,
                           temperature: float = 1.0):
  """DualCon: the scales of ts_contrastive.hierarchical_contrastive_loss with the Universum contrasts above;
  the permutations of scale d are scale_permutations(key, d, …)."""
  b, t = z1.shape[0], z1.shape[1]
  length = jnp.asarray(t if length is None else length, jnp.int32)
  total, scales = jnp.zeros((), jnp.float32), jnp.zeros((), jnp.float32)
  for d in range(int(math.log2(max(t, 1))) + 1):
    if d:
      z1, z2, length = _max_pool2(z1), _max_pool2(z2), length // 2
    p1, p2, q1, q2 = scale_permutations(key, d, b, z1.shape[1], length)
    multi, last = length > 1, length == 1
    term = alpha * dual_instance_loss(z1, z2, length, p1, p2, lam=lam, temperature=temperature) if alpha else 0.0
    if d >= temporal_unit and alpha != 1:
      temporal = dual_temporal_loss(z1, z2, length, q1, q2, lam=lam, temperature=temperature)
      term = term + jnp.where(multi, (1 - alpha) * temporal, 0.0)
    total = total + jnp.where(multi | last, term, 0.0)
    scales = scales + (multi | last).astype(jnp.float32)
    if z1.shape[1] == 1:
      break
  return total / jnp.maximum(scales, 1.0)
