"""ELMo: the original model's parameter count against the paper's 93.6M (shape-only), the biLM loss and the
LSTMP layer against numpy, the directions' causality with padded rows and the scalar mix."""

import math

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from papers_jax import models
from papers_jax.data import elmo as data
from papers_jax.models import elmo
from papers_jax.objectives import elmo as objective


class FixedKeyRngs:
  def params(self):
    return jax.random.key(0)


def _count(tree):
  return sum(math.prod(v.shape) for v in jax.tree.leaves(tree))


def test_original_has_the_papers_93_6m_parameters():
  model = nnx.eval_shape(lambda: models.create("elmo_original", rngs=FixedKeyRngs()))
  total = _count(nnx.state(model, nnx.Param)) - _count(nnx.state(model.softmax, nnx.Param))
  # 262·16 characters, convolutions 199,168, 2 highways 16,785,408, projection 1,049,088, 4 LSTMPs 18,890,752 each.
  assert total == 4_192 + 199_168 + 16_785_408 + 1_049_088 + 4 * 18_890_752 == 93_600_864
  assert round(total / 1e6, 1) == 93.6
  assert model.softmax.kernel.shape == (512, 793471)


def _log_softmax(x):
  x = x - x.max(-1, keepdims=True)
  return x - np.log(np.exp(x).sum(-1, keepdims=True))


def test_bidirectional_loss_matches_numpy():
  rng = np.random.default_rng(0)
  fwd, bwd = rng.normal(size=(2, 5, 7)), rng.normal(size=(2, 5, 7))
  ids, lengths = rng.integers(0, 7, (2, 5)), np.array([5, 3])
  f, b, fw, bw = objective.bidirectional_lm_loss(jnp.asarray(fwd), jnp.asarray(bwd), jnp.asarray(ids),
                                                 jnp.asarray(lengths))
  want_f = [-_log_softmax(fwd[i, t])[ids[i, t + 1]] for i in range(2) for t in range(lengths[i] - 1)]
  want_b = [-_log_softmax(bwd[i, t])[ids[i, t - 1]] for i in range(2) for t in range(1, lengths[i])]
  np.testing.assert_allclose(np.asarray(f)[np.asarray(fw) > 0], want_f, rtol=1e-5)
  np.testing.assert_allclose(np.asarray(b)[np.asarray(bw) > 0], want_b, rtol=1e-5)
  assert np.asarray(fw).sum() == np.asarray(bw).sum() == 4 + 2


def test_lstmp_matches_numpy_and_the_directions_see_only_their_side():
  model = elmo.ELMo(vocab_size=11, char_dim=4, filters=((1, 3), (2, 5)), num_highway=1, projection_dim=6,
                    cell_dim=8, cell_clip=0.5, proj_clip=0.4, dropout_rate=0.0, rngs=nnx.Rngs(0))
  lstm = model.forward[0]
  xs = np.random.default_rng(1).normal(size=(2, 4, 6)).astype(np.float32)
  wx, bx = np.asarray(lstm.input.kernel[...]), np.asarray(lstm.input.bias[...])
  wh, wp = np.asarray(lstm.hidden.kernel[...]), np.asarray(lstm.proj.kernel[...])
  sig = lambda v: 1 / (1 + np.exp(-v))
  c, h, want = np.zeros((2, 8)), np.zeros((2, 6)), []
  for t in range(4):
    gates = np.einsum("bi,igc->bgc", xs[:, t], wx) + bx + np.einsum("bp,pgc->bgc", h, wh)
    c = np.clip(sig(gates[:, 1]) * c + sig(gates[:, 0]) * np.tanh(gates[:, 2]), -0.5, 0.5)
    h = np.clip((sig(gates[:, 3]) * np.tanh(c)) @ wp, -0.4, 0.4)
    want.append(h)
  np.testing.assert_allclose(lstm(jnp.asarray(xs)), np.stack(want, 1), rtol=1e-4, atol=1e-5)

  chars = np.stack([np.stack([data.char_ids(w, 6) for w in s]) for s in (["a", "bc", "d", "ef", "g"],
                                                                         ["x", "yz", "w", data.EOS, data.EOS])])
  lengths = jnp.asarray([5, 3])
  lm_logits = nnx.jit(lambda m, c: m.lm_logits(c, lengths))  # one compilation for the three calls
  fwd, bwd = lm_logits(model, jnp.asarray(chars))
  changed = chars.copy()
  changed[:, 2] = data.char_ids("qq", 6)
  fwd2, bwd2 = lm_logits(model, jnp.asarray(changed))
  moved = lambda a, b: np.abs(np.asarray(a - b)).max(-1) > 1e-6
  np.testing.assert_array_equal(moved(fwd, fwd2)[0], [False, False, True, True, True])  # token 2 onwards
  np.testing.assert_array_equal(moved(bwd, bwd2)[0], [True, True, True, False, False])  # token 2 and before
  changed = chars.copy()
  changed[1, 3:] = data.char_ids("pad", 6)  # beyond row 2's length: nothing of it moves
  fwd3, bwd3 = lm_logits(model, jnp.asarray(changed))
  assert not moved(fwd3, fwd)[1, :3].any() and not moved(bwd3, bwd)[1, :3].any()

  layers = model(jnp.asarray(chars), lengths)
  assert len(layers) == 3 and all(h.shape == (2, 5, 12) for h in layers)
  mix = elmo.ScalarMix(3, rngs=nnx.Rngs(0))
  mix.weights[...], mix.gamma[...] = jnp.asarray([0.3, -1.0, 2.0]), jnp.asarray(0.7)
  s = np.exp([0.3, -1.0, 2.0]) / np.exp([0.3, -1.0, 2.0]).sum()
  np.testing.assert_allclose(mix(layers), 0.7 * sum(w * np.asarray(h) for w, h in zip(s, layers)), rtol=1e-5,
                             atol=1e-6)


def test_characters_and_rows():
  ids = data.char_ids("ab", 6)
  np.testing.assert_array_equal(ids, [data.BOW_CHAR + 1, ord("a") + 1, ord("b") + 1, data.EOW_CHAR + 1, 0, 0])
  assert list(data.char_ids(data.BOS, 4)) == [data.BOW_CHAR + 1, data.BOS_CHAR + 1, data.EOW_CHAR + 1, 0]
  vocab = data.WordVocabulary(["a b a", "b c"], min_count=2)
  assert vocab.words == ["a", "b", "<unk>", data.BOS, data.EOS]
  source = data.WordRowSource(["a b a", "b c"], vocab, seq_len=4, max_chars=5)
  assert len(source) == 3 and int(source[1]["length"]) == 4 and int(source[2]["length"]) == 1  # 9 tokens
  assert [vocab.words[i] for i in source[1]["word_ids"]] == [data.EOS, data.BOS, "b", "<unk>"]
  assert source[1]["chars"][3, 1] == ord("c") + 1  # the <unk> target keeps its own characters
