"""The training core: sharded vs single-device equality, FSDP memory, gradient accumulation."""

import jax
import numpy as np
import pytest

from conftest import load_config
from papers_jax.core import loop, sharding
from papers_jax.data import pipeline

MESHES = {
    "data=8": {"data": 8, "fsdp": 1, "tensor": 1},
    "data=2,fsdp=4": {"data": 2, "fsdp": 4, "tensor": 1},
    "data=2,fsdp=2,tensor=2": {"data": 2, "fsdp": 2, "tensor": 2},
}
NUM_STEPS = 4


def smoke_config(**overrides):
  config = load_config("vit/digits.py", "smoke").unlock()
  config.model.drop_path_rate = 0.0  # per-step randomness must not depend on the micro-batch split
  for key, value in overrides.items():
    *parents, leaf = key.split(".")
    target = config
    for name in parents:
      target = target[name]
    target[leaf] = value
  return config.lock()


def run_steps(config, devices, num_steps=NUM_STEPS):
  """Per-step losses and final params of `num_steps` train steps on `devices`."""
  trainer = loop.Trainer(config, "/nonexistent-workdir-unused", devices=devices)
  batches = pipeline.train_batches(trainer.train_source, trainer._preprocess(train=True),
                                   global_batch=config.batch_size, seed=config.seed,
                                   starts=pipeline.batch_starts(0, num_steps, config.batch_size))
  losses, state = [], trainer.state
  with sharding.use_mesh(trainer.mesh, trainer.rules):
    for local in batches:
      state, metrics = trainer.train_step(state, sharding.global_batch(local, trainer.mesh, trainer.rules))
      losses.append(float(metrics["loss"]))
  return np.array(losses), jax.device_get(state.params), trainer


@pytest.fixture(scope="module")
def single_device_run():
  return run_steps(smoke_config(), jax.devices()[:1])


@pytest.mark.parametrize("mesh_name", list(MESHES))
def test_sharded_losses_equal_single_device(single_device_run, mesh_name):
  ref_losses, ref_params, _ = single_device_run
  config = smoke_config(mesh=MESHES[mesh_name])
  losses, params, trainer = run_steps(config, jax.devices())
  assert dict(trainer.mesh.shape) == MESHES[mesh_name]
  assert np.all(np.isfinite(losses)) and losses[-1] != losses[0]
  np.testing.assert_allclose(losses, ref_losses, rtol=1e-5)
  # Adam divides by sqrt(v): near-zero gradients magnify reduction-order noise, hence the atol.
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5), params, ref_params)


def test_fsdp_holds_a_quarter_of_the_params_per_device():
  config = smoke_config(mesh=MESHES["data=2,fsdp=4"], **{"model.embed_dim": 64, "model.num_heads": 4})
  trainer = loop.Trainer(config, "/nonexistent-workdir-unused", devices=jax.devices())
  params = trainer.state.params
  total = sum(x.nbytes for x in jax.tree.leaves(params))
  per_device = sharding.bytes_per_device(params)
  assert len(per_device) == 8
  for device, nbytes in per_device.items():
    assert 0.25 <= nbytes / total < 0.28, (device, nbytes / total)
  # The big matrices really are split 4 ways along the embed axis.
  qkv = params["blocks"][0]["attn"]["qkv"]["kernel"]
  assert qkv.sharding.spec[0] == "fsdp"
  assert qkv.addressable_shards[0].data.shape[0] == qkv.shape[0] // 4


def test_grad_accumulation_equals_full_batch():
  full_losses, full_params, _ = run_steps(smoke_config(batch_size=32), jax.devices()[:1], num_steps=1)
  acc_losses, acc_params, _ = run_steps(smoke_config(batch_size=32, grad_accum_steps=4), jax.devices()[:1],
                                        num_steps=1)
  np.testing.assert_allclose(acc_losses, full_losses, rtol=1e-5)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6), acc_params, full_params)
  # And on a data=2 × fsdp=4 mesh, where each micro-batch is itself sharded.
  mesh_losses, mesh_params, _ = run_steps(
      smoke_config(batch_size=32, grad_accum_steps=4, mesh=MESHES["data=2,fsdp=4"]), jax.devices(), num_steps=1)
  np.testing.assert_allclose(mesh_losses, full_losses, rtol=1e-5)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6), mesh_params, full_params)


def test_nonfinite_step_is_skipped():
  config = smoke_config()
  trainer = loop.Trainer(config, "/nonexistent-workdir-unused", devices=jax.devices()[:1])
  batch = next(pipeline.train_batches(trainer.train_source, trainer._preprocess(train=True), global_batch=32,
                                      seed=0, starts=[0]))
  batch["image"] = batch["image"].astype(np.float32) * np.nan  # NaN inputs → NaN loss and gradients
  before = jax.device_get(trainer.state.params)
  with sharding.use_mesh(trainer.mesh, trainer.rules):
    state, metrics = trainer.train_step(trainer.state, sharding.global_batch(batch, trainer.mesh))
  assert float(metrics["nonfinite"]) == 1.0 and int(state.step) == 1
  jax.tree.map(np.testing.assert_array_equal, jax.device_get(state.params), before)


def test_make_mesh_fills_and_rejects():
  mesh = sharding.make_mesh({"data": -1, "fsdp": 2, "tensor": 1})
  assert dict(mesh.shape) == {"data": 4, "fsdp": 2, "tensor": 1}
  with pytest.raises(ValueError, match="needs 6 devices"):
    sharding.make_mesh({"data": 3, "fsdp": 2, "tensor": 1})
  with pytest.raises(ValueError, match="unknown mesh axes"):
    sharding.make_mesh({"data": -1, "model": 2})


def test_logical_rules_replicate_undividable_dims():
  mesh = sharding.make_mesh({"data": 2, "fsdp": 4, "tensor": 1})
  spec = sharding.logical_to_spec(("embed", "classes"), shape=(64, 10), mesh=mesh)
  assert tuple(spec) == ("fsdp", None)
  spec = sharding.logical_to_spec(("embed", "mlp"), shape=(30, 64), mesh=mesh)
  assert tuple(spec) == (None, None)  # 30 is not divisible by fsdp=4; tensor=1 is dropped


def test_post_update_keeps_an_ema_of_the_new_params_inside_the_step():
  import jax.numpy as jnp
  import optax
  from flax import nnx
  from papers_jax.core import step as step_lib
  from papers_jax.core.state import create_train_state
  from papers_jax.nn.linear import param
  from papers_jax.objectives.memory import ema_update

  class Ema(nnx.Variable):
    pass

  class Tiny(nnx.Module):
    def __init__(self, rngs):
      self.w = param(rngs, nnx.initializers.normal(1.0), (4,), jnp.float32, ("embed",))
      self.w_ema = Ema(jnp.zeros((4,)))

  mesh = sharding.make_mesh({"data": 1}, jax.devices()[:1])
  with sharding.use_mesh(mesh, sharding.DEFAULT_RULES):
    state, shardings, _, tx = create_train_state(Tiny, lambda p: optax.sgd(0.1), mesh, sharding.DEFAULT_RULES, 0)

  def loss_fn(params, model_state, batch, rng):
    return jnp.sum((params["w"] - batch["x"].mean(0)) ** 2), ({}, model_state)

  def post_update(params, model_state, step):
    return {**model_state, "w_ema": ema_update(model_state["w_ema"], params["w"], 0.9)}

  train_step = step_lib.jit_train_step(step_lib.make_train_step(loss_fn, tx, lambda s: 0.1, post_update=post_update),
                                       shardings, mesh, sharding.DEFAULT_RULES)
  trajectory, batch = [], {"x": np.arange(8, dtype=np.float32).reshape(2, 4)}
  with sharding.use_mesh(mesh, sharding.DEFAULT_RULES):
    for _ in range(5):
      state, _ = train_step(state, sharding.global_batch(batch, mesh))
      trajectory.append(np.asarray(state.params["w"]))
  expected = sum(0.1 * 0.9 ** (4 - k) * trajectory[k] for k in range(5))  # from zeros: (1 − m) Σ m^(n−1−k) θ_k
  np.testing.assert_allclose(np.asarray(state.model_state["w_ema"]), expected, rtol=1e-5)


def test_frozen_params_stay_put_through_the_trainer():
  # optimizer.freeze masks the update with optax.multi_transform, whose state holds MaskedNodes
  # where the frozen params are; the state's shardings must be built around them.
  config = smoke_config().unlock()
  config.optimizer.freeze = (r"^blocks/0/", r"^patch_embed/")
  trainer = loop.Trainer(config.lock(), "/nonexistent-workdir-unused", devices=jax.devices()[:2])
  before = jax.device_get(trainer.state.params)
  batch = next(pipeline.train_batches(trainer.train_source, trainer._preprocess(train=True), global_batch=32,
                                      seed=0, starts=[0]))
  state = trainer.state
  with sharding.use_mesh(trainer.mesh, trainer.rules):
    for _ in range(2):
      state, _ = trainer.train_step(state, sharding.global_batch(batch, trainer.mesh))
  after = jax.device_get(state.params)
  jax.tree.map(np.testing.assert_array_equal, after["blocks"][0], before["blocks"][0])
  jax.tree.map(np.testing.assert_array_equal, after["patch_embed"], before["patch_embed"])
  assert not np.array_equal(after["blocks"][1]["mlp"]["fc1"]["kernel"], before["blocks"][1]["mlp"]["fc1"]["kernel"])


def test_weight_ema_follows_the_numpy_reference_and_skips_nonfinite_steps():
  # config.ema_decay: ema_0 = params_0 (no warm-up, no bias correction, as timm's ModelEmaV2), then
  # ema_k = d·ema_(k−1) + (1 − d)·params_k after every applied step; a skipped step leaves it alone.
  import jax.numpy as jnp
  import optax
  from flax import nnx
  from papers_jax.core import step as step_lib
  from papers_jax.core.state import add_weight_ema, create_train_state
  from papers_jax.nn.linear import param

  class Tiny(nnx.Module):
    def __init__(self, rngs):
      self.w = param(rngs, nnx.initializers.normal(1.0), (4, 6), jnp.float32, ("embed", "mlp"))

  decay = 0.7
  mesh = sharding.make_mesh({"data": 1, "fsdp": 2}, jax.devices()[:2])
  with sharding.use_mesh(mesh, sharding.DEFAULT_RULES):
    state, shardings, _, tx = create_train_state(Tiny, lambda p: optax.adam(0.1), mesh, sharding.DEFAULT_RULES, 0)
    state, shardings = add_weight_ema(state, shardings)
  assert state.extra["ema_params"]["w"].sharding == state.params["w"].sharding  # sharded like the params
  assert state.extra["ema_params"]["w"].sharding.spec[0] == "fsdp"

  def loss_fn(params, model_state, batch, rng):
    return jnp.sum((params["w"] - batch["x"].mean(0)) ** 2), ({}, model_state)

  train_step = step_lib.jit_train_step(step_lib.make_train_step(loss_fn, tx, lambda s: 0.1, ema_decay=decay),
                                       shardings, mesh, sharding.DEFAULT_RULES)
  ema = np.asarray(state.params["w"], np.float64)
  x = np.arange(48, dtype=np.float32).reshape(2, 4, 6)
  with sharding.use_mesh(mesh, sharding.DEFAULT_RULES):
    for k in range(5):
      batch = {"x": x, "nan": np.full((2,), k == 3)}  # step 4 is non-finite: skipped
      state, metrics = train_step(state, sharding.global_batch(batch, mesh))
      if k != 3:
        ema = decay * ema + (1 - decay) * np.asarray(state.params["w"], np.float64)
      assert float(metrics["nonfinite"]) == float(k == 3)
      np.testing.assert_allclose(np.asarray(state.extra["ema_params"]["w"]), ema, rtol=1e-6, atol=1e-6)
  assert state.extra["ema_params"]["w"].dtype == jnp.float32
  assert not np.allclose(ema, np.asarray(state.params["w"]), atol=1e-2)  # it lags the params


@pytest.fixture(scope="module")
def ema_runs(tmp_path_factory):
  """The digits smoke run with a weight EMA: uninterrupted, and preempted at step 2 then resumed."""
  def config(**overrides):
    return smoke_config(ema_decay=0.9, num_steps=4, checkpoint_every=2, log_every=2, async_checkpoint=False,
                        mesh={"data": 1, "fsdp": 2, "tensor": 1}, **overrides)
  devices = jax.devices()[:2]
  base = tmp_path_factory.mktemp("ema")
  whole = loop.Trainer(config(), str(base / "whole"), devices=devices)
  whole_summary = whole.run()
  first = loop.Trainer(config(**{"debug.sigterm_at_step": 2}), str(base / "resumed"), devices=devices)
  assert first.run()["preempted_at"] == 2
  second = loop.Trainer(config(), str(base / "resumed"), devices=devices)
  return whole, whole_summary, second, second.run()


def test_weight_ema_resumes_bit_exactly(ema_runs):
  whole, _, resumed, summary = ema_runs
  assert summary["resumed_from"] == 2
  for name in ("params", "extra"):
    jax.tree.map(np.testing.assert_array_equal, jax.device_get(getattr(resumed.state, name)),
                 jax.device_get(getattr(whole.state, name)))
  ema, params = resumed.state.extra["ema_params"], resumed.state.params
  assert jax.tree.map(lambda e, p: e.sharding == p.sharding, ema, params) == jax.tree.map(lambda p: True, params)
  assert not np.array_equal(ema["head"]["kernel"], params["head"]["kernel"])


def test_weight_ema_is_evaluated_and_summarised(ema_runs):
  import json
  import os
  whole, summary, _, resumed_summary = ema_runs
  for s in (summary, resumed_summary):
    assert {"eval/accuracy", "eval_ema/accuracy", "eval_ema/count"} <= set(s)
  assert summary["eval_ema/accuracy"] == resumed_summary["eval_ema/accuracy"]
  on_disk = json.load(open(os.path.join(whole.workdir, "summary.json")))
  assert on_disk["eval_ema/accuracy"] == summary["eval_ema/accuracy"]
  # The EMA evaluation really runs on the average: evaluating the params' step again differs from it.
  assert summary["eval_ema/loss"] != summary["eval/loss"]


def test_export_of_the_weight_ema_and_none_in_a_params_checkpoint(ema_runs, tmp_path, capsys):
  import os
  from conftest import ROOT
  from papers_jax import cli, convert
  whole = ema_runs[0]
  # `papers-jax export --ema` exports this model: the run's params replaced by the average.
  exported = convert.export_state_dict(cli._model(whole, ema=True), "timm")
  of_params = convert.export_state_dict(cli._model(whole), "timm")
  head = np.asarray(whole.state.extra["ema_params"]["head"]["kernel"]).T
  np.testing.assert_array_equal(exported["head.weight"], head)
  assert not np.array_equal(exported["head.weight"], of_params["head.weight"])
  # A params checkpoint (checkpoints/<step>/state) restores no EMA, even with ema_decay set: none to export.
  config = os.path.join(ROOT, "configs", "vit", "digits.py") + ":smoke"
  assert cli.main(["export", "--config", config, "--set", "ema_decay=0.9", "--format", "timm", "--ema",
                   "--out", str(tmp_path / "x.safetensors"), "--checkpoint",
                   os.path.join(whole.workdir, "checkpoints", "4", "state")]) == 2
  assert "holds no weight EMA" in capsys.readouterr().err
  assert not os.path.exists(tmp_path / "x.safetensors")
