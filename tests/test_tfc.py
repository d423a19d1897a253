"""TF-C: the loss against a numpy reference written with loops, the augmentations, the encoders' shapes and the
official configuration's parameter count."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from papers_jax import models
from papers_jax.models import tfc as tfc_model
from papers_jax.objectives import tfc as tfc_objective


def np_nt_xent(a, b, tau):
  """SimCLR's NT-Xent, one anchor at a time: views [a; b], each anchor's positive its pair, every other view
  (not itself) in the denominator, cosine similarity / τ; the mean over the 2N anchors."""
  views = np.concatenate([a, b]).astype(np.float64)
  n = len(a)
  total = 0.0
  for i in range(2 * n):
    cos = lambda u, v: float(u @ v / (np.linalg.norm(u) * np.linalg.norm(v)))  # noqa: E731
    positive = (i + n) % (2 * n)
    denominator = sum(math.exp(cos(views[i], views[k]) / tau) for k in range(2 * n) if k != i)
    total += -math.log(math.exp(cos(views[i], views[positive]) / tau) / denominator)
  return total / (2 * n)


def np_tfc_loss(original, augmented, tau, margin, lam):
  h_t, z_t, h_f, z_f = original
  h_ta, z_ta, h_fa, z_fa = augmented
  loss_t, loss_f = np_nt_xent(h_t, h_ta, tau), np_nt_xent(h_f, h_fa, tau)
  s_tf = np_nt_xent(z_t, z_f, tau)
  loss_c = 0.0
  for a, b in ((z_t, z_fa), (z_ta, z_f), (z_ta, z_fa)):
    loss_c += s_tf - np_nt_xent(a, b, tau) + margin
  return lam * (loss_t + loss_f) + (1 - lam) * loss_c


def test_loss_equals_the_numpy_reference():
  rng = np.random.default_rng(0)
  n = 5
  make = lambda: [rng.normal(size=(n, d)).astype(np.float32) for d in (12, 6, 12, 6)]  # noqa: E731
  original, augmented = make(), make()
  loss = jax.jit(tfc_objective.tfc_loss, static_argnames=("temperature", "margin", "lam"))
  for tau, margin, lam in ((0.2, 1.0, 0.2), (0.5, 0.3, 0.7)):
    got, parts = loss(original, augmented, temperature=tau, margin=margin, lam=lam)
    np.testing.assert_allclose(float(got), np_tfc_loss(original, augmented, tau, margin, lam), rtol=1e-5)
    np.testing.assert_allclose(float(parts["loss_time"]), np_nt_xent(original[0], augmented[0], tau), rtol=1e-5)
  # the consistency term falls when a series' time and frequency embeddings agree and its views' do not
  h_t, z_t, h_f, _ = original
  aligned = [h_t, z_t, h_f, z_t]
  _, near = loss(aligned, augmented, temperature=0.2, margin=1.0, lam=0.2)
  _, far = loss(original, augmented, temperature=0.2, margin=1.0, lam=0.2)
  assert float(near["loss_consistency"]) < float(far["loss_consistency"])


def test_time_augmentations():
  """With σ = 0 for jitter and scaling every view is the series itself or a permutation of its segments."""
  key = jax.random.key(0)
  x = np.random.default_rng(1).normal(size=(64, 40, 2)).astype(np.float32)
  x[0, -1] = np.nan  # zeroed: one zero step, so that each value names one step
  bank = jax.jit(lambda k, x: tfc_objective.time_augment(k, x, jitter_sigma=0.0, scaling_sigma=0.0, max_segments=5))
  views = np.asarray(bank(key, jnp.asarray(x)))
  assert views.shape == x.shape
  x = np.nan_to_num(x)
  for series, out in zip(x, views):
    # the same steps in another order, in at most 4 contiguous runs (3 cut points)
    order = [int(np.flatnonzero((series[:, 0] == v))[0]) for v in out[:, 0]]
    assert sorted(order) == list(range(40))
    assert sum(b != a + 1 for a, b in zip(order, order[1:])) <= 3
    assert np.array_equal(series[order], out)  # channels move together
  assert 4 <= (views != x).any(axis=(1, 2)).sum() < 32  # a third drew the permutation, which may keep the order
  scaled = np.asarray(tfc_objective.scaling(key, jnp.asarray(x), 0.2))
  ratio = scaled[1:] / x[1:]
  assert np.allclose(ratio, ratio[:, :1], rtol=1e-4) and ratio.std() > 0.05  # one factor per series and channel


def test_frequency_augmentation_removes_and_adds_components():
  x = jnp.asarray(np.random.default_rng(2).normal(size=(32, 100, 1)).astype(np.float32))
  s = np.asarray(jax.jit(tfc_model.spectrum)(x))
  np.testing.assert_allclose(s, np.abs(np.fft.fft(np.asarray(x), axis=1)), rtol=1e-4, atol=1e-4)
  augment = jax.jit(lambda k, s: tfc_objective.frequency_augment(k, s, ratio=0.1, alpha=0.1))
  out = np.asarray(augment(jax.random.key(3), s))
  peak = 0.1 * s.max(axis=(1, 2), keepdims=True)
  kept, raised = out == s, (out > s) & (out <= s + peak + 1e-6)
  removed = (out == 0) | (out <= peak + 1e-6) & ~kept & ~raised  # removed, and perhaps then raised from 0
  assert (kept | raised | removed).all()
  assert 0.06 < raised.mean() < 0.14 and 0.06 < removed.mean() < 0.14 and kept.mean() > 0.75


def test_official_configuration_parameter_count_and_shapes():
  """The official SleepEEG pre-training configuration (1 channel, 178 steps, kernel 25, stride 3, 128 final
  channels; its CNNoutput_channel 10): per domain, conv 1·32·25 + 64·32·8... counted by hand below."""
  model = nnx.eval_shape(lambda: models.create("tfc", input_dims=1, seq_len=178, kernel_size=25, stride=3,
                                               final_out_channels=128, rngs=nnx.Rngs(0)))
  assert tfc_model.conv_output_length(178, 25, 3) == 10
  convs = 1 * 32 * 25 + 32 * 64 * 8 + 64 * 128 * 8  # no biases
  norms = 2 * (32 + 64 + 128 + 256)  # scale and shift of the four BatchNorms
  projector = (10 * 128) * 256 + 256 + 256 * 128 + 128
  per_domain = convs + norms + projector
  params = sum(x.size for x in jax.tree.leaves(nnx.state(model, nnx.Param)))
  assert per_domain == 444_512 and params == 2 * per_domain == 889_024
  h_t, z_t, h_f, z_f = jax.eval_shape(lambda m, x: m(x, x), model, jax.ShapeDtypeStruct((4, 178, 1), jnp.float32))
  assert h_t.shape == h_f.shape == (4, 1280) and z_t.shape == z_f.shape == (4, 128)


@pytest.mark.parametrize("length", [29, 150])
def test_conv_output_length_matches_the_encoder(length):
  model = nnx.eval_shape(lambda: models.create("tfc", input_dims=2, seq_len=length, kernel_size=8, stride=1,
                                               final_out_channels=16, rngs=nnx.Rngs(0)))
  h, *_ = jax.eval_shape(lambda m, x: m(x, x), model, jax.ShapeDtypeStruct((2, length, 2), jnp.float32))
  assert h.shape == (2, 16 * tfc_model.conv_output_length(length, 8, 1))


def test_max_pool_pads_with_minus_infinity():
  x = -jnp.arange(1.0, 8.0).reshape(1, 7, 1)  # all negative: a zero padding would show up as a 0
  np.testing.assert_array_equal(np.asarray(tfc_model.max_pool1d(x))[0, :, 0], [-1, -2, -4, -6])


def test_flop_counter_is_within_5_percent_of_xla():
  from papers_jax.models.conv_flops import xla_flops
  model = models.create("tfc", input_dims=2, seq_len=40, kernel_size=8, stride=1, final_out_channels=16,
                        projection_dims=8, rngs=nnx.Rngs(0))
  graphdef, state = nnx.split(model)
  xla = xla_flops(lambda s, x: nnx.merge(graphdef, s)(x, x), state, jax.ShapeDtypeStruct((1, 40, 2), jnp.float32))
  assert abs(tfc_model.forward_flops(model) / xla - 1) < 0.05
