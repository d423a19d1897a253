"""Autoregressive decoding under jit: greedy and sampling (temperature, top-k, top-p) with a KV cache.

A model exposes one decode step, `step_fn(tokens (B, t), cache) -> (logits (B, t, V), cache)`,
that appends t positions to its caches (nn/attention.py `KVCache`) and returns their next-token
logits. `generate` feeds the prompt in one call and then one token per step inside a `lax.scan`,
so the whole loop compiles once for a given prompt length and number of new tokens.
"""

import jax
import jax.numpy as jnp


def filter_logits(logits, *, top_k: int = 0, top_p: float = 1.0):
  """(B, V) logits with every token outside the top-k / the top-p nucleus set to -inf.

  The nucleus is the smallest set of most likely tokens whose probabilities sum to at least top_p
  (Holtzman et al., 2020); the most likely token is always kept.
  """
  logits = logits.astype(jnp.float32)
  neg_inf = jnp.finfo(jnp.float32).min
  if top_k:
    kth = jax.lax.top_k(logits, top_k)[0][:, -1:]
    logits = jnp.where(logits < kth, neg_inf, logits)
  if top_p < 1.0:
    sorted_logits = jnp.sort(logits, axis=-1)[:, ::-1]
    probs = jax.nn.softmax(sorted_logits, axis=-1)
    before = jnp.cumsum(probs, axis=-1) - probs  # probability mass strictly above each token
    threshold = jnp.min(jnp.where(before < top_p, sorted_logits, jnp.inf), axis=-1, keepdims=True)
    logits = jnp.where(logits < threshold, neg_inf, logits)
  return logits


def sample_logits(rng, logits, *, temperature: float = 1.0, top_k: int = 0, top_p: float = 1.0):
  """One token per row of (B, V) logits; temperature 0 takes the argmax (greedy)."""
  if temperature == 0.0:
    return jnp.argmax(logits, axis=-1).astype(jnp.int32)
  logits = filter_logits(logits.astype(jnp.float32) / temperature, top_k=top_k, top_p=top_p)
  return jax.random.categorical(rng, logits, axis=-1).astype(jnp.int32)


def generate(step_fn, cache, prompt, *, max_new_tokens: int, rng=None, temperature: float = 0.0, top_k: int = 0,
             top_p: float = 1.0, eos_id: int | None = None, pad_id: int = 0):
  """Continues each row of `prompt` (B, P) by `max_new_tokens` tokens; returns them, (B, max_new_tokens).

  Every row has the same prompt length P (the caches are filled in lockstep). Once a row has
  produced `eos_id`, its later tokens are `pad_id`. `rng` is needed unless temperature is 0.
  """
  if max_new_tokens < 1:
    raise ValueError(f"max_new_tokens must be at least 1, got {max_new_tokens}")
  if temperature != 0.0 and rng is None:
    raise ValueError("sampling with temperature > 0 needs an rng")
  keys = jax.random.split(rng if rng is not None else jax.random.key(0), max_new_tokens)
  sample = lambda key, logits: sample_logits(key, logits, temperature=temperature, top_k=top_k, top_p=top_p)

  logits, cache = step_fn(prompt, cache)
  first = sample(keys[0], logits[:, -1])

  def body(carry, key):
    token, cache = carry
    logits, cache = step_fn(token[:, None], cache)
    token = sample(key, logits[:, -1])
    return (token, cache), token

  _, rest = jax.lax.scan(body, (first, cache), keys[1:])
  tokens = jnp.concatenate([first[:, None], rest.T], axis=1)
  if eos_id is not None:
    ended_before = jnp.cumsum(tokens == eos_id, axis=1) - (tokens == eos_id) > 0
    tokens = jnp.where(ended_before, pad_id, tokens)
  return tokens
