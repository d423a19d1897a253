"""word2vec and fastText: the negative-sampling loss and its gradients against numpy, the noise distribution
and subsampling, fastText's n-grams and hash, the window examples, and the task's skip-gram / CBOW / fastText
wiring against numpy on the same noise draws."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from papers_jax.core.config import load
from papers_jax.data import word2vec as data
from papers_jax.errors import ConfigError
from papers_jax.objectives import word2vec as objective


def _sigmoid(x):
  return 1.0 / (1.0 + np.exp(-x))


def numpy_loss_and_grads(v, u, target_mask, n, noise_mask):
  """Eq. 4 per example and its gradients, written out: d/dv = −(1 − σ(u·v)) u + Σ σ(n·v) n,
  d/du = −(1 − σ(u·v)) v, d/dn = σ(n·v) v, each only where the slot (and the draw) counts."""
  loss = np.zeros(len(v))
  gv, gu, gn = np.zeros_like(v), np.zeros_like(u), np.zeros_like(n)
  for b in range(len(v)):
    for p in range(u.shape[1]):
      if not target_mask[b, p]:
        continue
      s = u[b, p] @ v[b]
      loss[b] -= np.log(_sigmoid(s))
      gv[b] -= (1 - _sigmoid(s)) * u[b, p]
      gu[b, p] = -(1 - _sigmoid(s)) * v[b]
      for k in range(n.shape[2]):
        if noise_mask[b, p, k]:
          t = n[b, p, k] @ v[b]
          loss[b] -= np.log(_sigmoid(-t))
          gv[b] += _sigmoid(t) * n[b, p, k]
          gn[b, p, k] = _sigmoid(t) * v[b]
  return loss, (gv, gu, gn)


def test_negative_sampling_loss_and_gradients_match_numpy():
  rng = np.random.default_rng(0)
  v, u, n = rng.normal(size=(3, 4)), rng.normal(size=(3, 5, 4)), rng.normal(size=(3, 5, 2, 4))
  target_mask, noise_mask = rng.random((3, 5)) < 0.7, rng.random((3, 5, 2)) < 0.8
  want, want_grads = numpy_loss_and_grads(v, u, target_mask, n, noise_mask)
  loss_fn = lambda a, b, c: objective.negative_sampling_loss(a, b, target_mask, c, noise_mask)
  got, vjp = jax.jit(lambda *x: jax.vjp(loss_fn, *x))(*(jnp.asarray(x, jnp.float32) for x in (v, u, n)))
  np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
  grads = vjp(jnp.ones(3, jnp.float32))
  for g, w in zip(grads, want_grads):
    np.testing.assert_allclose(g, w, rtol=1e-4, atol=1e-5)


def test_noise_distribution_subsampling_and_fasttext_ngrams():
  np.testing.assert_allclose(objective.noise_distribution([1, 16]), np.array([1, 8]) / 9)  # 16^0.75 = 8
  p = np.array([0.1, 0.6, 0.3])
  draws = np.asarray(objective.sample_noise(jax.random.key(0), np.cumsum(p), (20000,)))
  np.testing.assert_allclose(np.bincount(draws, minlength=3) / 20000, p, atol=0.015)
  keep = objective.keep_probability([1, 99], threshold=0.04)  # f = 0.01 (kept), 0.99
  np.testing.assert_allclose(keep, [1.0, np.sqrt(0.04 / 0.99)])
  # The fastText paper's example (§3.2): the 3-grams of "where" and the special sequence <where>.
  assert [g for g in data.char_ngrams("where", 3, 3)] == ["<wh", "whe", "her", "ere", "re>"]
  # "<where>" is longer than 6: the word enters through its own row (subword_rows); "<ab>" is also an n-gram.
  assert "<where>" not in data.char_ngrams("where") and data.char_ngrams("ab") == ["<ab", "<ab>", "ab>"]
  # FNV-1a 32-bit test vectors (Fowler/Noll/Vo), and a byte above 127 sign-extended as fastText does.
  assert (data.fnv1a(""), data.fnv1a("a"), data.fnv1a("foobar")) == (0x811C9DC5, 0xE40C292C, 0xBF9CF968)
  assert data.fnv1a("é") == (((((0x811C9DC5 ^ 0xFFFFFFC3) * 16777619) & 0xFFFFFFFF) ^ 0xFFFFFFA9) * 16777619
                             ) & 0xFFFFFFFF


DOCS = ["the cat sat on the mat the cat ran", "a dog sat on a log the dog ran the end"]


def test_windows_stay_in_their_document_and_subsampling_thins_frequent_words():
  vocab = data.Vocabulary(DOCS, min_count=1)
  assert vocab.words[0] == "the" and vocab.counts[0] == 5
  source = data.WindowSource(DOCS, vocab, window=3, passes=2, subsample=0.0)
  assert len(source) == 2 * 20
  first = source[8]  # the last word of document 1, pass 1: its context is inside document 1 only
  context = first["context"][first["context_mask"]]
  assert first["center"] == vocab.index["ran"] and 1 <= len(context) <= 3
  assert set(vocab.words[i] for i in context) <= set(DOCS[0].split())
  sub = data.WindowSource(DOCS * 50, vocab, window=2, passes=1, subsample=0.05, seed=0)
  kept = np.bincount([sub[i]["center"] for i in range(len(sub))], minlength=len(vocab))
  keep = objective.keep_probability(vocab.counts, 0.05)
  assert keep[0] < 0.6 and abs(kept[0] / (50 * 5) - keep[0]) < 0.1 and kept[-1] == 50 * vocab.counts[-1]


def test_task_losses_are_the_objective_on_the_right_vectors():
  """fastText's skip-gram, then (the same task with subwords off) word2vec's skip-gram and CBOW."""
  from papers_jax import tasks
  task = tasks.get_task(load("configs/fasttext/python_docs.py:smoke").unlock())
  model = task.build_model(nnx.Rngs(0))
  table = np.random.default_rng(1).normal(size=model.input_embed.shape).astype(np.float32)
  out = table[:model.vocab_size] * 0.5
  model.input_embed[...], model.output_embed[...] = table, out
  source = task.source("validation")
  batch = {k: np.stack([source[i][k] for i in range(4)]) for k in source[0]}
  keys = jax.random.split(jax.random.key(3), 4)
  k = task.w2v.negatives
  for arch, subwords in (("skipgram", True), ("skipgram", False), ("cbow", False)):
    task.w2v.update(arch=arch, subwords=subwords)
    got = np.asarray(task._losses(model, batch, keys))
    targets = batch["context"] if arch == "skipgram" else batch["center"][:, None]
    noise = np.stack([objective.sample_noise(r, task.noise_cdf, targets.shape[1:] + (k,)) for r in keys])
    if subwords:  # the mean of the word's own row and its n-gram rows
      rows, mask = batch["center_subwords"], batch["subword_mask"]
      assert (rows[:, 0] == batch["center"]).all() and (rows[mask] >= model.vocab_size).sum() == mask.sum() - 4
      v = (table[rows] * mask[..., None]).sum(1) / mask.sum(1, keepdims=True)
    elif arch == "skipgram":
      v = table[batch["center"]]
    else:
      m = batch["context_mask"]
      v = (table[batch["context"]] * m[..., None]).sum(1) / m.sum(1, keepdims=True)
    target_mask = batch["context_mask"] if arch == "skipgram" else batch["context_mask"].any(1, keepdims=True)
    want, _ = numpy_loss_and_grads(v, out[targets], target_mask, out[noise], noise != targets[..., None])
    np.testing.assert_allclose(got, want, rtol=1e-4, err_msg=arch)


def test_bad_settings_are_config_errors():
  from papers_jax import tasks
  config = load("configs/word2vec/python_docs.py:smoke").unlock()
  config.word2vec.update(arch="cbow", subwords=True)
  with pytest.raises(ConfigError, match="skip-gram"):
    tasks.get_task(config)
