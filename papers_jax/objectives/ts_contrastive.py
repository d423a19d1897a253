"""TS2Vec's hierarchical contrastive loss (Yue et al., 2022, §3.3), at a fixed array length.

z1, z2: (batch, T, dims), the two augmented contexts' representations of the same timestamps, of which the
first `length` ≤ T are real (the crops' overlap; the rest is padding, so that one jitted step serves every
crop length). At each scale:
  instance  at each timestamp t, z1[i, t] against the 2B − 1 other representations of the batch at t
            (positive: z2[i, t]); and the same from z2's side; cross-entropy averaged over t and i;
  temporal  for each series, z1[i, t] against the 2T − 1 other timestamps of the two views (positive:
            z2[i, t]); and from z2's side; averaged over t and i.
Then both views are max-pooled over time with kernel 2 (an odd last step dropped) and the next scale
follows, while more than one timestamp is left; at the last scale (one timestamp) only the instance term
is taken. The loss is α · instance + (1 − α) · temporal summed over the scales (the temporal term from
scale `temporal_unit` on) and divided by the number of scales. Similarities are plain dot products, with
no normalisation and no temperature, as the paper. `length` may be traced: the scales it does not reach
contribute nothing.
"""

import math

import jax
import jax.numpy as jnp

NEG = -1e30


def _off_diagonal_nll(sim, valid_cols, positive):
  """−log softmax over each row of `sim` (…, n, n) without its diagonal and invalid columns, at the column
  `positive` (…, n) of each row."""
  n = sim.shape[-1]
  allowed = valid_cols[..., None, :] & ~jnp.eye(n, dtype=bool)
  logits = jnp.where(allowed, sim, NEG)
  logp = jax.nn.log_softmax(logits, axis=-1)
  return -jnp.take_along_axis(logp, positive[..., None], axis=-1)[..., 0]


def instance_loss(z1, z2, length):
  """The instance-wise term over the first `length` timestamps; 0 for a batch of one series."""
  b, t = z1.shape[0], z1.shape[1]
  if b == 1:
    return jnp.zeros((), jnp.float32)
  z = jnp.concatenate([z1, z2], axis=0).astype(jnp.float32).transpose(1, 0, 2)  # (T, 2B, D)
  sim = jnp.einsum("tid,tjd->tij", z, z)
  positive = jnp.concatenate([jnp.arange(b) + b, jnp.arange(b)])
  nll = _off_diagonal_nll(sim, jnp.ones((t, 2 * b), bool), jnp.broadcast_to(positive, (t, 2 * b)))  # (T, 2B)
  steps = (jnp.arange(t) < length).astype(jnp.float32)
  return (nll * steps[:, None]).sum() / (2 * b * jnp.maximum(length, 1))


def temporal_loss(z1, z2, length):
  """The temporal term over the first `length` timestamps of each series; 0 when `length` ≤ 1."""
  b, t = z1.shape[0], z1.shape[1]
  z = jnp.concatenate([z1, z2], axis=1).astype(jnp.float32)  # (B, 2T, D)
  sim = jnp.einsum("bid,bjd->bij", z, z)
  steps = jnp.arange(t) < length
  valid = jnp.concatenate([steps, steps])
  positive = jnp.concatenate([jnp.arange(t) + t, jnp.arange(t)])
  nll = _off_diagonal_nll(sim, jnp.broadcast_to(valid, (b, 2 * t)), jnp.broadcast_to(positive, (b, 2 * t)))
  total = (nll * valid.astype(jnp.float32)).sum() / (2 * b * jnp.maximum(length, 1))
  return jnp.where(length > 1, total, 0.0)


def _max_pool2(z):
  t = z.shape[1] // 2
  return jnp.maximum(z[:, 0:2 * t:2], z[:, 1:2 * t:2])


def hierarchical_contrastive_loss(z1, z2, length=None, *, alpha: float = 0.5, temporal_unit: int = 0):
  """The loss above; `length` (scalar, may be traced) defaults to T."""
  t = z1.shape[1]
  length = jnp.asarray(t if length is None else length, jnp.int32)
  total, scales = jnp.zeros((), jnp.float32), jnp.zeros((), jnp.float32)
  for d in range(int(math.log2(max(t, 1))) + 1):  # scale d holds floor(length / 2^d) timestamps
    if d:
      z1, z2, length = _max_pool2(z1), _max_pool2(z2), length // 2
    multi, last = length > 1, length == 1  # a scale of the loop, or the final one-timestamp scale
    term = alpha * instance_loss(z1, z2, length) if alpha else 0.0
    if d >= temporal_unit and alpha != 1:
      term = term + jnp.where(multi, (1 - alpha) * temporal_loss(z1, z2, length), 0.0)
    total = total + jnp.where(multi | last, term, 0.0)
    scales = scales + (multi | last).astype(jnp.float32)
    if z1.shape[1] == 1:
      break
  return total / jnp.maximum(scales, 1.0)
