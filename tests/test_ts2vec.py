"""TS2Vec against the official code (the `ts2vec` wheel, torch), the crop draw, and the uniform weight average."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from papers_jax import models
from papers_jax.core import step as step_lib
from papers_jax.core.state import TrainState
from papers_jax.objectives.ts_contrastive import hierarchical_contrastive_loss
from papers_jax.tasks.ts_representation import aligned, two_crops

T = 16


@pytest.fixture(scope="module")
def official():
  pytest.importorskip("torch")
  from papers_jax.convert.torch_compat import import_timm
  import_timm()
  pytest.importorskip("ts2vec")
  from ts2vec.models import encoder, losses
  return encoder, losses


@pytest.mark.torch
def test_hierarchical_loss_equals_the_official_on_every_overlap_length(official):
  """One jitted function at a fixed length T serves every overlap length, padded rows ignored, including odd
  lengths (the pooling drops the last step), length 1 (one scale) and temporal_unit > 0."""
  import torch
  rng = np.random.default_rng(0)
  loss = jax.jit(hierarchical_contrastive_loss, static_argnames=("alpha", "temporal_unit"))
  z1, z2 = (rng.normal(size=(3, T, 5)).astype(np.float32) for _ in range(2))
  for length, alpha, unit in ((16, 0.5, 0), (11, 0.5, 0), (7, 0.5, 1), (2, 0.3, 0), (1, 0.5, 0)):
    want = official[1].hierarchical_contrastive_loss(torch.tensor(z1[:, :length]), torch.tensor(z2[:, :length]),
                                                      alpha=alpha, temporal_unit=unit).item()
    got = float(loss(z1, z2, length, alpha=alpha, temporal_unit=unit))
    np.testing.assert_allclose(got, want, rtol=1e-5, err_msg=f"length {length}")
  # garbage past the overlap changes nothing
  noisy = z1.copy()
  noisy[:, 9:] = 1e3
  np.testing.assert_allclose(float(loss(noisy, z2, 9)), float(loss(z1, z2, 9)), rtol=1e-6)


@pytest.mark.torch
def test_encoder_equals_the_official_whole_and_cropped(official):
  """Random weights (every bias perturbed) through convert/ts2vec.py; NaN steps; and the `valid` mask gives
  the outputs of the segment cropped out and encoded alone."""
  import torch
  from papers_jax.convert import load_torch_weights
  torch.manual_seed(0)
  ref = official[0].TSEncoder(3, 12, hidden_dims=8, depth=3).eval()
  with torch.no_grad():
    for p in ref.parameters():
      if p.ndim == 1:
        p.add_(torch.randn_like(p) * 0.5)
  ours = models.create("ts2vec", input_dims=3, output_dims=12, hidden_dims=8, depth=3, rngs=nnx.Rngs(0))
  load_torch_weights(ours, {k: v.numpy() for k, v in ref.state_dict().items()}, source="ts2vec")
  x = np.random.default_rng(1).normal(size=(2, 40, 3)).astype(np.float32)
  x[0, 5, 1], x[1, 30:] = np.nan, np.nan
  with torch.no_grad():
    want = ref(torch.tensor(x.copy())).numpy()
  np.testing.assert_allclose(np.asarray(ours(jnp.asarray(x))), want, atol=1e-5)
  starts, length = np.array([7, 3]), 22
  with torch.no_grad():
    want = ref(torch.tensor(np.stack([x[i, s:s + length] for i, s in enumerate(starts)]))).numpy()
  t = np.arange(40)
  valid = (t[None] >= starts[:, None]) & (t[None] < starts[:, None] + length)
  got = np.asarray(ours(jnp.asarray(x), valid=jnp.asarray(valid)))
  np.testing.assert_allclose(np.stack([got[i, s:s + length] for i, s in enumerate(starts)]), want, atol=1e-5)


def test_two_crops_draw_overlapping_contexts_as_the_official_code():
  """Both contexts lie inside the series, each contains the overlap, the overlap is what they share, and its
  length is at least 2^(temporal_unit + 1); `aligned` moves each row's overlap to the front."""
  draw = jax.jit(two_crops, static_argnums=(1, 2, 3))
  lengths = set()
  for seed in range(40):
    v1, v2, start, overlap = (np.asarray(a) for a in draw(jax.random.key(seed), 4, T, 1))
    lengths.add(int(overlap))
    assert overlap >= 4
    for row in range(4):
      shared = np.flatnonzero(v1[row] & v2[row])
      np.testing.assert_array_equal(shared, np.arange(start[row], start[row] + overlap))
      one, two = np.flatnonzero(v1[row]), np.flatnonzero(v2[row])
      assert one[-1] == start[row] + overlap - 1 and two[0] == start[row]  # context 1 ends, 2 starts, with it
      assert np.all(np.diff(one) == 1) and np.all(np.diff(two) == 1)  # each context is one contiguous crop
  assert len(lengths) > 5  # the overlap length varies from step to step
  z = jnp.arange(2 * T, dtype=jnp.float32).reshape(2, T, 1)
  np.testing.assert_array_equal(np.asarray(aligned(z, jnp.array([3, 0])))[:, :4, 0], [[3, 4, 5, 6], [16, 17, 18, 19]])


def test_uniform_weight_average_is_the_mean_of_the_iterates():
  """weight_average="uniform": after n steps extra["ema_params"] is the mean of the params after steps 1…n
  (the first update a copy, not a blend with the initial params): torch's AveragedModel."""
  params = {"w": jnp.array([1.0, -2.0])}
  tx = optax.sgd(0.1)

  def loss_fn(p, model_state, batch, rng):
    return jnp.sum(jnp.square(p["w"] - batch["x"])), ({}, model_state)
  train_step = jax.jit(step_lib.make_train_step(loss_fn, tx, optax.constant_schedule(0.1), uniform_average=True))
  state = TrainState(step=jnp.int32(0), params=params, opt_state=tx.init(params), model_state={},
                     rng=jax.random.key(0), extra={"ema_params": params})
  iterates = []
  for x in (3.0, -1.0, 5.0):
    state, _ = train_step(state, {"x": jnp.float32(x)})
    iterates.append(np.asarray(state.params["w"]))
  np.testing.assert_allclose(np.asarray(state.extra["ema_params"]["w"]), np.mean(iterates, 0), rtol=1e-6)


def test_flop_counter_is_within_5_percent_of_xla():
  from papers_jax.models import ts2vec
  model = models.create("ts2vec", input_dims=2, output_dims=32, hidden_dims=16, depth=4, rngs=nnx.Rngs(0))
  from papers_jax.models.conv_flops import xla_flops
  graphdef, state = nnx.split(model)
  xla = xla_flops(lambda s, x: nnx.merge(graphdef, s)(x), state, jax.ShapeDtypeStruct((1, 48, 2), jnp.float32))
  assert abs(ts2vec.forward_flops(model, seq_len=48) / xla - 1) < 0.05


def test_supervised_contrastive_equals_numpy():
  """SupCon's L_out over the labelled rows only (unlabelled rows neither anchors nor candidates), anchors
  without a positive left out of the mean."""
  from papers_jax.objectives.contrastive import supervised_contrastive
  rng = np.random.default_rng(0)
  z = rng.normal(size=(10, 4)).astype(np.float32)
  labels = np.array([0, 1, 0, 2, 1, 0, 2, 3, 1, 0])
  valid = np.array([1, 1, 1, 0, 1, 1, 1, 1, 0, 1], bool)
  zn = z / np.linalg.norm(z, axis=1, keepdims=True)
  losses = []
  for i in np.flatnonzero(valid):
    others = [j for j in np.flatnonzero(valid) if j != i]
    positives = [p for p in others if labels[p] == labels[i]]
    if not positives:
      continue
    logits = np.array([zn[i] @ zn[j] / 0.2 for j in others])
    log_den = np.log(np.exp(logits).sum())
    losses.append(-np.mean([zn[i] @ zn[p] / 0.2 - log_den for p in positives]))
  got = float(jax.jit(supervised_contrastive, static_argnums=3)(z, labels, valid, 0.2))
  np.testing.assert_allclose(got, np.mean(losses), rtol=1e-5)


def test_labelled_fraction_is_stratified_and_fixed_by_its_seed():
  from papers_jax.tasks.ts_representation import labelled_indices
  labels = np.repeat(np.arange(3), [20, 7, 1])
  keep = labelled_indices(labels, 0.1)
  np.testing.assert_array_equal(np.bincount(labels[keep], minlength=3), [2, 1, 1])  # ceil(0.1 n), at least 1
  np.testing.assert_array_equal(keep, labelled_indices(labels, 0.1))
  assert not np.array_equal(keep, labelled_indices(labels, 0.1, seed=1))


def test_hybrid_and_finetune_losses_on_the_shipped_configs():
  """The SLOTS config's loss is 1·NT-Xent + 1·SupCon over the labelled views + the mean CE of the labelled
  series' two views (unlabelled series enter only NT-Xent), and the fine-tuning config trains on the labelled
  fraction alone; eager, on the configs' smoke models (their smoke runs are in make test-full)."""
  from conftest import load_config
  from papers_jax.objectives import contrastive
  from papers_jax.tasks.ts_representation import TSRepresentationTask, augment, labelled_indices
  task = TSRepresentationTask(load_config("slots/ucr.py", "smoke"))
  train = task.source("train")
  assert 0 < train.flags.sum() < len(train) and len(train) == len(train.source)
  model = task.build_model(nnx.Rngs(0))
  rows = [train[i] for i in range(8)]
  batch = {k: jnp.asarray(np.stack([r[k] for r in rows])) for k in ("series", "label", "labelled")}
  batch["labelled"] = batch["labelled"].at[:3].set(True).at[3:].set(False)
  key = jax.random.key(3)
  loss, metrics = task._hybrid_loss(model, batch, key, False)
  k1, k2 = jax.random.split(key)
  h1, h2 = (model.features(augment(k, batch["series"], 0.03, 0.1)) for k in (k1, k2))
  z1, z2 = model.projector(h1), model.projector(h2)
  two = lambda a: jnp.concatenate([a, a])  # noqa: E731
  want_ntx = contrastive.nt_xent(z1, z2, 0.2).mean()
  want_sup = contrastive.supervised_contrastive(jnp.concatenate([z1, z2]), two(batch["label"]),
                                                two(batch["labelled"]), 0.2)
  logp = [jax.nn.log_softmax(model.head(h)) for h in (h1, h2)]
  want_ce = -np.mean([float(lp[i, batch["label"][i]]) for lp in logp for i in range(3)])
  np.testing.assert_allclose([float(metrics["nt_xent"]), float(metrics["supcon"]), float(metrics["ce"])],
                             [float(want_ntx), float(want_sup), want_ce], rtol=1e-5)
  np.testing.assert_allclose(float(loss), float(want_ntx + want_sup + want_ce), rtol=1e-5)
  config = load_config("ts2vec/finetune.py", "smoke").unlock()
  config.ts_repr.label_fraction = 0.1
  finetune = TSRepresentationTask(config).source("train")
  assert len(finetune) == len(labelled_indices(finetune.source.labels, 0.1)) and all(finetune[i]["labelled"]
                                                                                      for i in range(len(finetune)))
