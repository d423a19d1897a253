"""SimCSE: both losses against numpy, the generated NLI-style triples and graded pairs, and the task's losses
on the model's own sentence embeddings (dropout as the unsupervised noise)."""

import os

import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from papers_jax.core.config import load
from papers_jax.data import sentence_pairs as data
from papers_jax.objectives import simcse as objective


def _unit(x):
  return x / np.linalg.norm(x, axis=-1, keepdims=True)


def numpy_simcse(h, positive, negative=None, tau=0.05):
  """−log softmax over [sim(h_i, h_j⁺)]_j (+ [sim(h_i, h_j⁻)]_j), at the own positive; sim = cosine."""
  candidates = positive if negative is None else np.concatenate([positive, negative])
  logits = _unit(h) @ _unit(candidates).T / tau
  logits -= logits.max(1, keepdims=True)
  log_probs = logits - np.log(np.exp(logits).sum(1, keepdims=True))
  return -log_probs[np.arange(len(h)), np.arange(len(h))]


def test_losses_match_numpy():
  rng = np.random.default_rng(0)
  h, pos, neg = (rng.normal(size=(5, 8)).astype(np.float32) for _ in range(3))
  np.testing.assert_allclose(objective.unsupervised_loss(h, pos), numpy_simcse(h, pos), rtol=1e-4, atol=1e-5)
  np.testing.assert_allclose(objective.supervised_loss(h, pos, neg), numpy_simcse(h, pos, neg), rtol=1e-4, atol=1e-5)
  # A hard negative equal to the positive costs log 2 more than none at all, at a perfect positive.
  same = objective.supervised_loss(h, h, h)
  assert np.all(np.asarray(same) > np.asarray(objective.unsupervised_loss(h, h)))


def _values(sentence, slot):
  words = " " + " ".join(sentence.replace(",", " ").replace(";", " ").replace(".", " ").split()) + " "
  return {i for i, forms in enumerate(data.ATTRIBUTES[slot]) for f in forms if f" {f} " in words}


def test_generated_triples_and_pairs():
  for premise, entailment, contradiction in data.nli_triples(50, seed=1):
    for slot in data.SLOTS:  # every value the entailment states is the premise's; the contradiction breaks one
      assert _values(entailment, slot) <= _values(premise, slot) or not _values(entailment, slot)
    assert any(_values(contradiction, s) and not _values(contradiction, s) & _values(premise, s) for s in data.SLOTS)
  pairs = data.similarity_pairs(200, seed=2)
  grades = np.array([g for *_, g in pairs])
  assert set(grades) == {0, 1, 2, 3, 4}
  for a, b, grade in pairs[:50]:
    assert sum(bool(_values(a, s) & _values(b, s)) for s in data.SLOTS) == grade
  train = " ".join(data.training_sentences(200)) + " ".join(t for row in data.nli_triples(200) for t in row)
  assert "stands a" not in train and "look at" not in train  # the held-out wordings


@pytest.mark.skipif(not os.environ.get("PAPERS_JAX_FULL_PARITY"), reason="make test-full (CI time)")
def test_task_losses_are_simcse_on_the_models_embeddings():
  from papers_jax import tasks
  from papers_jax.nn import Dropout
  from papers_jax.tasks import simcse
  config = load("configs/simcse/sentence_pairs.py:smoke,mode=supervised").unlock()
  task = tasks.get_task(config)
  model = task.build_model(nnx.Rngs(0))
  source = task.source("train")
  batch = {k: jnp.asarray(np.stack([source[i][k] for i in range(6)])) for k in source[0]}
  # Unsupervised noise: with dropout the two encodings of a sentence in one batch differ.
  ids, mask = batch["premise_ids"], batch["premise_mask"]
  two = simcse.sentence_embedding(model, jnp.concatenate([ids, ids]), jnp.concatenate([mask, mask]), mlp=True,
                                  train=True, rngs=nnx.Rngs(dropout=0))
  assert np.abs(np.asarray(two[:6] - two[6:])).max() > 1e-3
  for _, module in nnx.iter_modules(model):  # no dropout: the losses are numpy's on separately computed embeddings
    if isinstance(module, Dropout):
      module.rate = 0.0
  h = [np.asarray(simcse.sentence_embedding(model, batch[f"{n}_ids"], batch[f"{n}_mask"], mlp=True))
       for n in ("premise", "entailment", "contradiction")]
  np.testing.assert_allclose(task.losses(model, batch, nnx.Rngs(dropout=1)), numpy_simcse(*h), rtol=1e-4, atol=1e-4)
  task.s.mode = "unsupervised"
  batch["sentence_ids"], batch["sentence_mask"] = ids, mask
  np.testing.assert_allclose(task.losses(model, batch, nnx.Rngs(dropout=1)), numpy_simcse(h[0], h[0]), rtol=1e-4,
                             atol=1e-4)
