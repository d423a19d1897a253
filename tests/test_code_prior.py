"""The VQ-VAE code prior (tasks/code_prior.py): its loss against numpy, causality, and the scanned sampler
against the model's own conditionals."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from papers_jax.core import config as config_lib
from papers_jax.tasks.code_prior import CodePriorTask, prior_inputs, sample_codes


@pytest.fixture(scope="module")
def prior():
  """A tiny prior (no dropout) over the smoke VQ-VAE's K = 8 codes, 4×4 grids: (task, model, graphdef,
  params, rest)."""
  config = config_lib.load("configs/vqvae/prior_digits.py:smoke").unlock()
  config.model.update(drop_rate=0.0, embed_drop_rate=0.0, attn_drop_rate=0.0)
  task = CodePriorTask(config.lock())
  model = task.build_model(nnx.Rngs(params=0))
  graphdef, params, rest = nnx.split(model, nnx.Param, ...)
  forward = jax.jit(lambda tokens: nnx.merge(graphdef, params, rest)(tokens))  # (3, 16) tokens → logits
  return task, forward, graphdef, params, rest


def _codes(seed, shape=(3, 16), k=8):
  return np.random.default_rng(seed).integers(0, k, size=shape).astype(np.int32)


def test_loss_equals_numpy_reference(prior):
  """The train loss: BOS then all codes but the last in, each position's log-softmax over the K codes
  (BOS left out) scored against the code at that position, averaged over positions and images."""
  task, forward, graphdef, params, rest = prior
  k = task.num_codes
  codes = _codes(0)
  loss, (metrics, _) = jax.jit(task.make_loss_fn(graphdef))(nnx.to_pure_dict(params), nnx.to_pure_dict(rest),
                                                     {"codes": jnp.asarray(codes)}, jax.random.key(0))
  inputs = np.concatenate([np.full((3, 1), k), codes[:, :-1]], axis=1)
  logits = np.asarray(forward(jnp.asarray(inputs)), np.float64)
  assert logits.shape == (3, 16, k + 1)  # K codes and BOS
  logits = logits[..., :k]
  log_probs = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
  nll = -np.take_along_axis(log_probs, codes[..., None], axis=-1)[..., 0]
  np.testing.assert_allclose(float(loss), nll.mean(), rtol=1e-5)
  np.testing.assert_allclose(float(metrics["accuracy"]), (logits.argmax(-1) == codes).mean())
  # The evaluation's sums: per-code NLL and bits per image.
  out = jax.jit(task.make_eval_fn(graphdef))(nnx.to_pure_dict(params), nnx.to_pure_dict(rest),
                                    {"codes": jnp.asarray(codes), "mask": jnp.array([1, 1, 0])})
  np.testing.assert_allclose(float(out["loss"]) / float(out["count"]), nll[:2].mean(), rtol=1e-5)
  np.testing.assert_allclose(float(out["bits_per_image"]), nll[:2].sum() / np.log(2), rtol=1e-5)


def test_changing_a_later_code_never_changes_earlier_logits(prior):
  task, forward, *_ = prior
  codes = _codes(1)
  base = np.asarray(forward(prior_inputs(jnp.asarray(codes), task.num_codes)))
  for j in (0, 7, 14):
    changed = codes.copy()
    changed[:, j] = (changed[:, j] + 1) % task.num_codes
    logits = np.asarray(forward(prior_inputs(jnp.asarray(changed), task.num_codes)))
    np.testing.assert_array_equal(logits[:, :j + 1], base[:, :j + 1])  # positions ≤ j predict codes ≤ j
    assert np.abs(logits[:, j + 1:] - base[:, j + 1:]).max() > 1e-4  # the change is seen after it


def test_scanned_sampler_draws_from_the_models_conditionals(prior):
  """The jitted sampler (BOS prompt, lax.scan with a KV cache) gives, step by step, the draw that the full
  causal forward's conditional at that position makes with the same key: every code is in [0, K)."""
  task, _, graphdef, params, rest = prior
  k, n, length = task.num_codes, 5, 16
  key = jax.random.key(3)
  fn = jax.jit(lambda p, r, key: sample_codes(nnx.merge(graphdef, p, r), key, n, num_codes=k, length=length))
  codes = np.asarray(fn(params, rest, key))
  assert codes.shape == (n, length) and codes.min() >= 0 and codes.max() < k
  keys = jax.random.split(key, length)

  @jax.jit
  def draw(p, r, tokens, key, i):  # the code at position i from the full forward's conditional there
    logits = nnx.merge(graphdef, p, r)(prior_inputs(tokens, k))
    return jax.random.categorical(key, jax.lax.dynamic_index_in_dim(logits, i, 1, False)[:, :k], axis=-1)
  expected = np.zeros((n, length), np.int32)  # positions after i are placeholders the causal mask hides
  for i in range(length):
    expected[:, i] = np.asarray(draw(params, rest, jnp.asarray(expected), keys[i], i))
  np.testing.assert_array_equal(codes, expected)
  assert len(np.unique(codes)) > 1
