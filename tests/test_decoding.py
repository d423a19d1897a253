"""The KV cache of nn.Attention and the sampling filters of papers_jax/decoding.py."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from papers_jax import decoding
from papers_jax.nn import Attention, KVCache


@pytest.fixture(scope="module")
def attention():
  layer = Attention(16, 4, rngs=nnx.Rngs(0))
  layer.deterministic = True
  return layer


def test_cached_attention_equals_causal_attention(attention):
  x = jax.random.normal(jax.random.key(1), (2, 7, 16))
  with jax.default_matmul_precision("highest"):
    full = attention(x, is_causal=True)
    cache = KVCache.init(2, 10, 4, 4)
    y_prompt, cache = attention(x[:, :4], cache=cache)  # a prompt of 4, then one position at a time
    steps = [y_prompt]
    for t in range(4, 7):
      y, cache = attention(x[:, t:t + 1], cache=cache)
      steps.append(y)
  assert int(cache.index) == 7
  np.testing.assert_allclose(np.concatenate(steps, axis=1), full, atol=1e-5)


def test_cache_respects_a_key_padding_mask(attention):
  x = jax.random.normal(jax.random.key(2), (1, 5, 16))
  keep = jnp.array([[True, False, True, True, True]])
  with jax.default_matmul_precision("highest"):
    full = attention(x, mask=keep[:, None, None, :], is_causal=True)
    cache = KVCache.init(1, 8, 4, 4)
    padded = jnp.pad(keep, ((0, 0), (0, 3)))[:, None, None, :]
    y, _ = attention(x, cache=cache, mask=padded)
  np.testing.assert_allclose(y[:, 2:], full[:, 2:], atol=1e-5)


def _filter_reference(logits, top_k, top_p):
  out = np.array(logits, np.float64)
  for row in out:
    order = np.argsort(-row, kind="stable")
    keep = np.zeros(row.shape, bool)
    keep[order[:top_k or len(row)]] = True
    probs = np.exp(row[order] - row[order].max())
    probs /= probs.sum()
    # the nucleus: tokens until the running mass first reaches top_p (that token included)
    nucleus = order[:int(np.searchsorted(np.cumsum(probs), top_p) + 1)] if top_p < 1 else order
    row[~(keep & np.isin(np.arange(len(row)), nucleus))] = -np.inf
  return out


@pytest.mark.parametrize("top_k,top_p", [(0, 0.5), (3, 1.0), (4, 0.8), (0, 1.0)])
def test_filter_logits_matches_numpy(top_k, top_p):
  logits = jax.random.normal(jax.random.key(3), (4, 12)) * 2
  got = np.asarray(decoding.filter_logits(logits, top_k=top_k, top_p=top_p))
  want = _filter_reference(np.asarray(logits), top_k, top_p)
  np.testing.assert_array_equal(np.isfinite(want), got > jnp.finfo(jnp.float32).min)
  np.testing.assert_allclose(got[np.isfinite(want)], want[np.isfinite(want)], rtol=1e-6)


def test_sampling_follows_the_filtered_distribution():
  logits = jnp.log(jnp.array([[0.5, 0.3, 0.15, 0.05]]))
  draws = jax.vmap(lambda k: decoding.sample_logits(k, logits, top_p=0.7))(jax.random.split(jax.random.key(0), 4000))
  freq = np.bincount(np.asarray(draws).ravel(), minlength=4) / 4000
  # nucleus {0, 1} renormalised: 0.625 / 0.375; 4-sigma binomial bound
  assert freq[2] == freq[3] == 0
  assert abs(freq[0] - 0.625) < 4 * np.sqrt(0.625 * 0.375 / 4000)


def test_generate_greedy_matches_a_python_loop():
  table = jax.random.normal(jax.random.key(13), (11, 11))  # next-token logits depend on the previous token

  def step_fn(tokens, cache):
    return table[tokens], cache

  def python_greedy(last):
    out = []
    for _ in range(6):
      last = int(np.argmax(table[last]))
      out.append(last)
    return out

  prompt = jnp.array([[1, 2], [3, 5]])
  # Greedy from 2 runs 6 1 4 7 10 3, from 5 runs 9 10 3 3 3 3: with EOS 4 the first row stops after
  # its third token and the second never does, so both branches of the EOS rule run.
  eos, pad = 4, 0
  free = [python_greedy(p[-1]) for p in np.asarray(prompt)]
  assert free == [[6, 1, 4, 7, 10, 3], [9, 10, 3, 3, 3, 3]]
  out = jax.jit(lambda p: decoding.generate(step_fn, None, p, max_new_tokens=6, eos_id=eos, pad_id=pad))(prompt)
  assert np.asarray(out).tolist() == [[6, 1, 4, pad, pad, pad], [9, 10, 3, 3, 3, 3]]
