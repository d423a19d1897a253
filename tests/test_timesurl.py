"""TimesURL (objectives/timesurl.py, models/timesurl.py): each loss term against a numpy reference, the
frequency mixing and the masks, the parameter count against the official code's layer shapes, and the task's
training loss end to end on a tiny model."""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
from flax import nnx

from papers_jax import models
from papers_jax.models import timesurl as timesurl_model
from papers_jax.objectives import timesurl

T = 16


# ----------------------------------------------------------------------------- numpy references


def _log_softmax(x):
  x = x - x.max(-1, keepdims=True)
  return x - np.log(np.exp(x).sum(-1, keepdims=True))


def _drop_diagonal(sim):
  """The official code's tril(sim, -1)[..., :-1] + triu(sim, 1)[..., 1:] on an (n, m) matrix, m > n: each row
  without its own column."""
  return np.tril(sim, -1)[..., :-1] + np.triu(sim, 1)[..., 1:]


def np_instance(z1, z2, p1, p2, lam, temp):
  b = z1.shape[0]
  if b == 1:
    return 0.0
  u1, u2 = lam * z1 + (1 - lam) * z1[p1], lam * z2 + (1 - lam) * z2[p2]
  z = np.concatenate([z1, z2, u1, u2], 0).transpose(1, 0, 2)  # T x 4B x D
  sim = z[:, :2 * b] @ z.transpose(0, 2, 1) / temp  # T x 2B x 4B
  nll = -_log_softmax(_drop_diagonal(sim))
  i = np.arange(b)
  return (nll[:, i, b + i - 1].mean() + nll[:, b + i, i].mean()) / 2


def np_temporal(z1, z2, q1, q2, lam, temp):
  t = z1.shape[1]
  if t == 1:
    return 0.0
  u1, u2 = lam * z1 + (1 - lam) * z1[:, q1], lam * z2 + (1 - lam) * z2[:, q2]
  z = np.concatenate([z1, z2, u1, u2], 1)  # B x 4T x D
  sim = z[:, :2 * t] @ z.transpose(0, 2, 1) / temp
  nll = -_log_softmax(_drop_diagonal(sim))
  s = np.arange(t)
  return (nll[:, s, t + s - 1].mean() + nll[:, t + s, s].mean()) / 2


def np_pool(z):
  t = z.shape[1] // 2
  return np.maximum(z[:, 0:2 * t:2], z[:, 1:2 * t:2])


def np_dualcon(z1, z2, perms, alpha, temporal_unit, lam, temp):
  """The official losses.hierarchical_contrastive_loss (mixup variants) in numpy, given each scale's
  permutations."""
  loss, d = 0.0, 0
  while z1.shape[1] > 1:
    p1, p2, q1, q2 = perms[d]
    loss += alpha * np_instance(z1, z2, p1, p2, lam, temp)
    if d >= temporal_unit:
      loss += (1 - alpha) * np_temporal(z1, z2, q1, q2, lam, temp)
    d += 1
    z1, z2 = np_pool(z1), np_pool(z2)
  if z1.shape[1] == 1:
    p1, p2, _, _ = perms[d]
    loss += alpha * np_instance(z1, z2, p1, p2, lam, temp)
    d += 1
  return loss / d


# ----------------------------------------------------------------------------- tests


def test_dualcon_equals_numpy_on_every_overlap_length():
  """One jitted function at a fixed length serves every overlap length (odd ones, 2, 1), with the
  permutations of each scale drawn by scale_permutations; padding past the overlap changes nothing."""
  rng = np.random.default_rng(0)
  b = 4
  z1, z2 = (rng.normal(size=(b, T, 6)).astype(np.float32) for _ in range(2))
  key = jax.random.key(3)
  loss = jax.jit(timesurl.dual_hierarchical_loss, static_argnames=("alpha", "temporal_unit", "lam", "temperature"))
  for length, alpha, unit, lam, temp in ((16, 0.8, 0, 0.2, 1.0), (11, 0.8, 0, 0.2, 1.0), (7, 0.5, 1, 0.3, 2.0),
                                         (2, 0.8, 0, 0.2, 1.0), (1, 0.8, 0, 0.2, 1.0)):
    perms, size, valid = [], T, length
    for d in range(5):
      if d:
        size, valid = size // 2, valid // 2
      p1, p2, q1, q2 = (np.asarray(p) for p in timesurl.scale_permutations(key, d, b, size, valid))
      assert sorted(q1[:valid]) == list(range(valid)), "a temporal permutation leaves the overlap"
      perms.append((p1, p2, q1[:valid], q2[:valid]))
    want = np_dualcon(z1[:, :length].astype(np.float64), z2[:, :length].astype(np.float64), perms, alpha, unit,
                      lam, temp)
    got = float(loss(z1, z2, length, key, alpha=alpha, temporal_unit=unit, lam=lam, temperature=temp))
    np.testing.assert_allclose(got, want, rtol=2e-5, err_msg=f"length {length}")
  noisy = z1.copy()
  noisy[:, 9:] = 1e3
  np.testing.assert_allclose(float(loss(noisy, z2, 9, key)), float(loss(z1, z2, 9, key)), rtol=1e-6)


def test_frequency_mix_takes_each_component_from_the_series_or_its_partner():
  rng = np.random.default_rng(1)
  x = rng.normal(size=(6, 20, 2)).astype(np.float32)
  key = jax.random.key(0)
  np.testing.assert_allclose(np.asarray(timesurl.frequency_mix(key, x, 0.0)), x, atol=1e-5)
  perm = np.asarray(jax.random.permutation(jax.random.split(key)[1], 6))  # the function's partner draw
  np.testing.assert_allclose(np.asarray(timesurl.frequency_mix(key, x, 1.0)), x[perm], atol=1e-5)
  mixed = np.asarray(timesurl.frequency_mix(key, x, 0.5))
  swap = np.asarray(jax.random.bernoulli(jax.random.split(key)[0], 0.5, (6, 11, 2)))  # the function's mask draw
  own, other = np.fft.rfft(x, axis=1), np.fft.rfft(x[perm], axis=1)
  np.testing.assert_allclose(mixed, np.fft.irfft(np.where(swap, other, own), n=20, axis=1), atol=1e-5)
  assert 0.3 < swap.mean() < 0.7


def test_reconstruction_loss_and_masks_against_numpy():
  rng = np.random.default_rng(2)
  x, rebuilt = rng.normal(size=(3, 40, 2)), rng.normal(size=(3, 40, 2))
  x[0, 5, 1] = np.nan  # unobserved values carry no mask
  mask = timesurl.segment_mask(jax.random.key(1), 3, 40, 2, segments=3, ratio=0.05)
  mask = np.asarray(mask) & ~np.isnan(x)
  want = ((x - rebuilt) ** 2)[mask].sum() / mask.sum()
  np.testing.assert_allclose(float(timesurl.reconstruction_loss(x, rebuilt, mask)), want, rtol=1e-5)
  assert float(timesurl.reconstruction_loss(x, rebuilt, np.zeros_like(mask))) == 0.0
  m = np.asarray(timesurl.segment_mask(jax.random.key(1), 50, 40, 2, segments=3, ratio=0.05))
  per_row = m.sum(1)  # spans of 2 steps, 3 of them, possibly overlapping
  assert per_row.min() >= 2 and per_row.max() <= 6 and (per_row == 6).mean() > 0.5


def test_parameter_count_equals_the_official_layer_shapes():
  """The paper's configuration (hidden 64, 10 blocks, 320 dimensions) with the reconstruction head, counted
  abstractly, against the official code's layer shapes; and the TS2Vec encoder inside it unchanged."""
  for channels in (1, 6):
    model = nnx.eval_shape(lambda: models.create("timesurl", input_dims=channels, rngs=nnx.Rngs(0)))
    count = sum(int(np.prod(p.shape)) for p in jax.tree.leaves(nnx.state(model, nnx.Param)))
    assert count == timesurl_model.param_count(channels)
    head = 320 * 1280 + 1280 + 1280 * channels + channels
    encoder = nnx.eval_shape(lambda: models.create("ts2vec", input_dims=channels, rngs=nnx.Rngs(0)))
    assert count - head == sum(int(np.prod(p.shape)) for p in jax.tree.leaves(nnx.state(encoder, nnx.Param)))


def test_task_loss_trains_every_part():
  """The task's TimesURL loss on a tiny network: finite, both terms positive, weighted as configured, and
  gradients reaching the encoder and the reconstruction head; the series' NaN steps are tolerated."""
  from papers_jax.tasks.ts_representation import TSRepresentationTask
  cfg = ml_collections.ConfigDict(dict(ts_repr=dict(method="timesurl", alpha=0.8, temporal_unit=0,
                                                    max_train_length=3000, timesurl=timesurl.default_config())))
  task = TSRepresentationTask(cfg)
  model = models.create("timesurl", input_dims=2, output_dims=8, hidden_dims=4, depth=1, mask_mode="all_true",
                        rngs=nnx.Rngs(0))
  x = np.random.default_rng(3).normal(size=(4, 12, 2)).astype(np.float32)
  x[1, -3:] = np.nan
  graphdef, params, rest = nnx.split(model, nnx.Param, ...)

  @jax.jit
  def loss_and_grad(params, key):
    def f(p):
      m = nnx.merge(graphdef, p, rest)
      return task._timesurl_loss(m, jnp.asarray(x), key, True, nnx.Rngs(dropout=1))
    return jax.value_and_grad(f, has_aux=True)(params)

  (loss, metrics), grads = loss_and_grad(params, jax.random.key(5))
  assert np.isfinite(float(loss)) and float(metrics["dualcon"]) > 0 and float(metrics["reconstruction"]) > 0
  np.testing.assert_allclose(float(loss), 0.01 * float(metrics["dualcon"]) + float(metrics["reconstruction"]),
                             rtol=1e-5)
  norm = lambda tree: float(sum(jnp.abs(g).sum() for g in jax.tree.leaves(tree)))  # noqa: E731
  assert norm(grads["recon_head"]) > 0 and norm(grads["input_fc"]) > 0 and norm(grads["blocks"]) > 0
