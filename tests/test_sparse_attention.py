"""The Sparse Transformer's strided and fixed attention patterns: the masks against the paper's set
definitions, two steps connecting every position to every earlier one, and a GPT that attends through them
(positions outside the pattern cannot move a logit; cached decoding equals the full forward)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from papers_jax import models
from papers_jax.errors import ConfigError
from papers_jax.nn import sparse_attention

N, L, C = 16, 4, 1


def test_masks_are_the_papers_sets():
  strided, fixed = sparse_attention.pattern_masks("strided", N, L), sparse_attention.pattern_masks("fixed", N, L, C)
  for i in range(N):
    assert set(np.flatnonzero(strided[0][i])) == {j for j in range(i + 1) if i - j < L}
    assert set(np.flatnonzero(strided[1][i])) == {j for j in range(i + 1) if (i - j) % L == 0}
    assert set(np.flatnonzero(fixed[0][i])) == {j for j in range(i + 1) if j // L == i // L}
    assert set(np.flatnonzero(fixed[1][i])) == {j for j in range(i + 1) if j % L in range(L - C, L)} | {i}
  assert strided[0].sum() < N * (N + 1) // 2 and strided[1].sum() < N * (N + 1) // 2  # both are sparse


@pytest.mark.parametrize("kind", ["strided", "fixed"])
def test_two_layers_connect_every_earlier_position(kind):
  first, second = sparse_attention.pattern_masks(kind, N, L, C)
  eye = np.eye(N, dtype=bool)
  # Layer 1 attends through A1, layer 2 through A2; the residual stream carries each position's own state.
  reach = ((second | eye).astype(int) @ (first | eye).astype(int)) > 0
  np.testing.assert_array_equal(reach, np.tril(np.ones((N, N), bool)))
  assert not np.array_equal(first | eye, np.tril(np.ones((N, N), bool)))  # one layer alone does not


def _gpt(depth, **pattern):
  return models.create("gpt2", vocab_size=11, context_length=N, embed_dim=16, depth=depth, num_heads=2,
                       drop_rate=0.0, embed_drop_rate=0.0, attn_drop_rate=0.0, rngs=nnx.Rngs(0), **pattern)


def test_a_position_outside_the_pattern_cannot_move_the_logits():
  model = _gpt(1, attention_pattern="strided", pattern_stride=L)
  tokens = jnp.asarray(np.random.RandomState(0).randint(0, 11, (1, N)))
  base = model(tokens)
  first, _ = sparse_attention.pattern_masks("strided", N, L)
  changed = model(tokens.at[0, 3].set((tokens[0, 3] + 1) % 11))
  moved = np.abs(np.asarray(changed - base)).max(-1)[0] > 1e-6
  np.testing.assert_array_equal(moved, first[:, 3])  # exactly the positions whose A1 holds position 3


def test_cached_decoding_equals_the_full_forward_and_bad_settings_are_errors():
  model = _gpt(2, attention_pattern="fixed", pattern_stride=L, pattern_summary=2, pattern_mode="interleaved")
  tokens = jnp.asarray(np.random.RandomState(1).randint(0, 11, (2, 10)))
  full = model(tokens)
  cache = model.init_cache(2, N)
  prompt_logits, cache = model.decode_step(tokens[:, :6], cache)
  steps = [prompt_logits]
  for t in range(6, 10):
    logits, cache = model.decode_step(tokens[:, t:t + 1], cache)
    steps.append(logits)
  np.testing.assert_allclose(np.concatenate(steps, axis=1), full, atol=2e-5)
  dense = _gpt(2)
  assert np.abs(np.asarray(dense(tokens) - full)).max() > 1e-3  # the pattern changes the function
  with pytest.raises(ConfigError, match="attention_pattern"):
    _gpt(1, attention_pattern="axial")
  with pytest.raises(ConfigError, match="pattern_summary"):
    _gpt(1, attention_pattern="fixed", pattern_stride=4, pattern_summary=5)
