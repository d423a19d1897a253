"""What the self-supervised objectives carry from step to step, as pure functions of arrays that
live in the train state: MoCo's key queue, InstDisc/CMC memory banks, EMA (momentum) encoders and
their cosine momentum schedule. All shapes are static, so the jitted step never recompiles.
"""

import jax
import jax.numpy as jnp
import optax

from papers_jax.objectives.contrastive import l2_normalize


def enqueue(queue, pointer, keys):
  """Writes a batch of keys over the oldest entries of a (K, C) ring buffer; returns (queue, pointer).

  Correct for any batch size B: for B < K the rows at (pointer + i) mod K are replaced; for B ≥ K
  the queue becomes the last K keys. `pointer` is the slot of the oldest entry.
  """
  size, batch = queue.shape[0], keys.shape[0]
  keys = jax.lax.stop_gradient(keys).astype(queue.dtype)
  if batch >= size:
    return keys[batch - size:], jnp.zeros_like(pointer)
  if size % batch == 0:  # the common case (K a multiple of B): one contiguous slice, never wraps
    queue = jax.lax.dynamic_update_slice(queue, keys, (pointer, 0))
  else:
    queue = queue.at[(pointer + jnp.arange(batch)) % size].set(keys)
  return queue, (pointer + batch) % size


def queue_in_order(queue, pointer):
  """The queue's entries from the oldest to the newest."""
  return jnp.roll(queue, -pointer, axis=0)


def init_queue(rng, size: int, dim: int, dtype=jnp.float32):
  """MoCo initialises its queue with random unit vectors."""
  return l2_normalize(jax.random.normal(rng, (size, dim), jnp.float32)).astype(dtype), jnp.zeros((), jnp.int32)


def update_bank(bank, index, features, momentum: float = 0.5):
  """InstDisc/CMC memory bank: f_i ← normalise(m·f_i + (1 − m)·v_i) for the batch's examples."""
  features = jax.lax.stop_gradient(l2_normalize(features))
  mixed = l2_normalize(momentum * bank[index].astype(jnp.float32) + (1.0 - momentum) * features)
  return bank.at[index].set(mixed.astype(bank.dtype))


def ema_update(target, online, momentum):
  """θ_target ← m·θ_target + (1 − m)·θ_online for every leaf (optax.incremental_update)."""
  return optax.incremental_update(new_tensors=online, old_tensors=target, step_size=1.0 - momentum)


def cosine_momentum(step, total_steps: int, base: float):
  """BYOL/DINO: m(k) = 1 − (1 − m_base)·(cos(πk/K) + 1)/2, rising from m_base to 1."""
  progress = jnp.clip(jnp.asarray(step, jnp.float32) / max(total_steps, 1), 0.0, 1.0)
  return 1.0 - (1.0 - base) * (jnp.cos(jnp.pi * progress) + 1.0) / 2.0
