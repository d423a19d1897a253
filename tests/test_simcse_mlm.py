"""SimCSE's pre-training stage (`simcse.mode="mlm"`): BERT's masked LM on the training sentences, whose encoder the
SimCSE modes load with init_prefix="bert/"."""

import os

import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from papers_jax import tasks
from papers_jax.core.config import load


def _task(mode, tokenizer=None):
  task = tasks.get_task(load(f"configs/simcse/sentence_pairs.py:smoke,mode={mode}"))
  if tokenizer is not None:
    task.tokenizer = tokenizer  # the cached property's value: training another one costs a second
  return task


@pytest.fixture(scope="module")
def mlm_task():
  return _task("mlm")


def test_mlm_masks_only_words(mlm_task):
  task = mlm_task
  tok, source, fn = task.tokenizer, task.source("train"), task.preprocess(train=True)
  rng = np.random.default_rng(0)
  examples = [fn(dict(source[i]), rng) for i in range(64)]
  for i, e in enumerate(examples):
    original, chosen = source[i]["sentence_ids"], e["positions"][e["weights"] > 0]
    assert len(chosen) >= 1 and not np.isin(original[chosen], [tok.pad_id, tok.cls_id, tok.sep_id]).any()
    np.testing.assert_array_equal(e["labels"][e["weights"] > 0], original[chosen])
    unchosen = np.setdiff1d(np.arange(len(original)), chosen)
    np.testing.assert_array_equal(e["sentence_ids"][unchosen], original[unchosen])  # only chosen tokens change
  replaced = np.concatenate([e["sentence_ids"][e["positions"][e["weights"] > 0]] == tok.mask_id for e in examples])
  assert 0.6 < replaced.mean() < 0.95  # 80% of the chosen tokens become [MASK]
  np.testing.assert_array_equal(task.preprocess(train=False)(dict(source[0]), None)["sentence_ids"],
                                source[0]["sentence_ids"])  # evaluation: unmasked


@pytest.mark.skipif(not os.environ.get("PAPERS_JAX_FULL_PARITY"), reason="make test-full (CI time)")
def test_mlm_loss_is_cross_entropy_at_the_masked_positions(mlm_task):
  task = mlm_task
  source, fn = task.source("train"), task.preprocess(train=True)
  examples = [fn(dict(source[i]), np.random.default_rng(i)) for i in range(4)]
  model = task.build_model(nnx.Rngs(0))
  batch = {k: jnp.asarray(np.stack([e[k] for e in examples[:4]])) for k in examples[0]}
  logits, _ = model(batch["sentence_ids"], None, batch["sentence_mask"], masked_positions=batch["positions"])
  logits = np.asarray(logits, np.float64)
  logp = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
  nll = -np.take_along_axis(logp, np.asarray(batch["labels"])[..., None], -1)[..., 0]
  w = np.asarray(batch["weights"])
  for _, module in nnx.iter_modules(model):
    if hasattr(module, "rate"):
      module.rate = 0.0  # no dropout: the task's loss is numpy's on the same logits
  np.testing.assert_allclose(task.losses(model, batch, nnx.Rngs(dropout=0)), (nll * w).sum(-1) / w.sum(-1),
                             rtol=1e-4, atol=1e-4)


def test_simcse_encoder_is_the_mlm_models_bert(mlm_task):
  """init_prefix="bert/" loads every SimCSE parameter from an MLM checkpoint (same paths and shapes)."""
  shapes = lambda m: {k: v.shape for k, v in nnx.to_flat_state(nnx.state(m, nnx.Param))}  # noqa: E731
  mlm = shapes(nnx.eval_shape(lambda: mlm_task.build_model(nnx.Rngs(0))))
  unsupervised = _task("unsupervised", mlm_task.tokenizer)
  encoder = shapes(nnx.eval_shape(lambda: unsupervised.build_model(nnx.Rngs(0))))
  assert encoder == {k[1:]: v for k, v in mlm.items() if k[0] == "bert"}
