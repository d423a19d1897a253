"""GPT-3's size table (Brown et al. 2020, Table 2.1) as registered GPT variants: each size's shape and
parameter count against the table (shape-only builds), and the alternating dense / locally banded attention:
the masks, what a position outside the band can move, and cached decoding through them."""

import math
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from papers_jax import models
from papers_jax.core.config import load
from papers_jax.errors import ConfigError
from papers_jax.nn import sparse_attention

# Table 2.1: n_params, n_layers, d_model, n_heads, d_head (the table's values; see models/gpt.py for the two
# rows whose heads do not multiply out).
TABLE = {"gpt3-small": (125e6, 12, 768, 12, 64), "gpt3-medium": (350e6, 24, 1024, 16, 64),
         "gpt3-large": (760e6, 24, 1536, 16, 96), "gpt3-xl": (1.3e9, 24, 2048, 24, 128),
         "gpt3-2.7b": (2.7e9, 32, 2560, 32, 80), "gpt3-6.7b": (6.7e9, 32, 4096, 32, 128),
         "gpt3-13b": (13.0e9, 40, 5140, 40, 128), "gpt3-175b": (175.0e9, 96, 12288, 96, 128)}
FULL = bool(os.environ.get("PAPERS_JAX_FULL_PARITY"))


class FixedKeyRngs:
  def params(self):
    return jax.random.key(0)


def _count(name, **overrides):
  model = nnx.eval_shape(lambda: models.create(name, rngs=FixedKeyRngs(), **overrides))
  return model, sum(math.prod(v.shape) for v in jax.tree.leaves(nnx.state(model, nnx.Param)))


def test_sizes_and_parameter_counts_are_the_tables():
  """Full-depth shape-only builds under PAPERS_JAX_FULL_PARITY=1 (~20 s); by default each size is built
  at depths 1 and 2 and counted at its depth (blocks are identical, so the count is linear in depth)."""
  assert models.list_models("gpt3*") == sorted(TABLE)
  for name, (params, layers, width, heads, head_dim) in TABLE.items():
    assert models.model_config(name)["depth"] == layers
    if FULL:
      model, count = _count(name)
    else:
      (model, one), (_, two) = _count(name, depth=1), _count(name, depth=2)
      count = one + (layers - 1) * (two - one)
    # The table rounds to 2-3 significant figures; 350M and 2.7B are its largest roundings (1.7%, 1.8%).
    assert abs(count - params) / params < 0.02, (name, count)
    assert (model.context_length, model.pattern[:2]) == (2048, ("banded", "interleaved"))
    assert model.head_dim == head_dim and (model.embed_dim == width or name == "gpt3-13b"), name
    assert model.num_heads == heads or name == "gpt3-xl", name


def test_banded_layers_alternate_with_dense_ones():
  n, band = 12, 3
  masks = sparse_attention.layer_masks("banded", "interleaved", 4, n, band)
  causal = np.tril(np.ones((n, n), bool))
  for layer in (0, 2):
    np.testing.assert_array_equal(masks[layer], causal)
  for i in range(n):
    assert set(np.flatnonzero(masks[1][i])) == {j for j in range(i + 1) if i - j < band}
  np.testing.assert_array_equal(masks[3], masks[1])


def _gpt(depth, **kw):
  return models.create("gpt3-small", vocab_size=11, context_length=16, embed_dim=16, depth=depth, num_heads=2,
                       drop_rate=0.0, embed_drop_rate=0.0, attn_drop_rate=0.0, pattern_stride=4, rngs=nnx.Rngs(0),
                       **kw)


def test_banded_gpt_reaches_outside_the_band_through_its_dense_layers():
  tokens = jnp.asarray(np.random.RandomState(0).randint(0, 11, (2, 10)))
  # Layer 1 is dense, so a token 9 positions back (outside the band of 4) still moves the last logits.
  model = _gpt(2)
  base = model(tokens)
  changed = model(tokens.at[:, 0].set((tokens[:, 0] + 1) % 11))
  assert np.abs(np.asarray(changed - base))[:, 9].max() > 1e-6
  if FULL:  # cached decoding through the alternating layers (tests/test_sparse_attention.py: the other patterns)
    logits, cache = model.decode_step(tokens[:, :9], model.init_cache(2, 16))
    last, _ = model.decode_step(tokens[:, 9:], cache)
    np.testing.assert_allclose(np.concatenate([logits, last], axis=1), base, atol=2e-5)
  with pytest.raises(ConfigError, match="interleaved"):
    _gpt(1, pattern_mode="merged")


def test_config_follows_table_2_1():
  c = load("configs/gpt/gpt3.py:variant=gpt3-175b")
  assert (c.model.name, c.lm.seq_len, c.batch_size, c.optimizer.lr) == ("gpt3-175b", 2048, 1536, 6e-5)
  assert abs(c.num_steps * c.batch_size * 2048 - 300e9) / 300e9 < 1e-3
  with pytest.raises(ConfigError, match="variant"):
    load("configs/gpt/gpt3.py:variant=gpt2")
