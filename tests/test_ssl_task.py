"""The SSL task's state: momentum encoders start equal to the online weights and follow them by
EMA inside the jitted step; MoCo's queue advances by the global batch; every method trains (four in make test-full)."""

import os

import jax
import numpy as np

import pytest
from flax import nnx

from conftest import load_config
from papers_jax import tasks
from papers_jax.core import loop, sharding
from papers_jax.core.config import set_path
from papers_jax.data import pipeline
from papers_jax.errors import ConfigError
from papers_jax.objectives import memory

# Four of the per-method Trainer tests run in make test-full only (CI time); the other methods' stay.
full_only = pytest.mark.skipif(not os.environ.get("PAPERS_JAX_FULL_PARITY"),
                               reason="make test-full (PAPERS_JAX_FULL_PARITY=1)")


def trainer_for(method, **overrides):
  config = load_config(f"ssl/{method}.py", "smoke").unlock()
  for key, value in overrides.items():
    set_path(config, key, value)
  return loop.Trainer(config.lock(), "/nonexistent-workdir-unused", devices=jax.devices()[:2])


def one_step(trainer):
  batch = next(pipeline.train_batches(trainer.train_source, trainer._preprocess(train=True),
                                      global_batch=trainer.config.batch_size, seed=0, starts=[0]))
  with sharding.use_mesh(trainer.mesh, trainer.rules):
    return trainer.train_step(trainer.state, sharding.global_batch(batch, trainer.mesh))


def test_momentum_encoder_starts_equal_and_follows_by_ema_and_the_queue_advances():
  trainer = trainer_for("moco_v2", **{"ssl.momentum": 0.9, "schedule.warmup_steps": 0})
  state = jax.device_get(trainer.state)
  params, model_state = state.params, state.model_state
  assert "target_backbone" not in params  # no gradient, no optimizer state
  jax.tree.map(np.testing.assert_array_equal, {k: model_state["target_backbone"]["blocks"][0]["mlp"][k]
                                               for k in ("fc1", "fc2")},
               {k: params["backbone"]["blocks"][0]["mlp"][k] for k in ("fc1", "fc2")})
  new_state, metrics = one_step(trainer)
  new = jax.device_get(new_state)
  online_new = new.params["backbone"]["blocks"][0]["mlp"]["fc1"]["kernel"]
  online_old = params["backbone"]["blocks"][0]["mlp"]["fc1"]["kernel"]
  target_new = new.model_state["target_backbone"]["blocks"][0]["mlp"]["fc1"]["kernel"]
  assert not np.allclose(online_new, online_old)
  np.testing.assert_allclose(target_new, 0.9 * online_old + 0.1 * online_new, rtol=1e-5, atol=1e-7)
  # The queue: the batch's 32 keys (unit vectors) replaced the 32 oldest entries.
  assert int(new.model_state["queue_pointer"]) == 32
  changed = ~np.isclose(new.model_state["queue"], model_state["queue"]).all(axis=1)
  assert changed.sum() == 32 and changed[:32].all()
  np.testing.assert_allclose(np.linalg.norm(new.model_state["queue"][:32], axis=1), 1.0, rtol=1e-5)
  assert np.isfinite(metrics["loss"])


def test_cosine_momentum_uses_the_run_length():
  trainer = trainer_for("byol")
  assert trainer.task.num_steps == trainer.num_steps
  assert float(trainer.task.momentum(0)) == pytest.approx(trainer.config.ssl.momentum)
  assert float(trainer.task.momentum(trainer.num_steps)) == pytest.approx(1.0)
  assert float(memory.cosine_momentum(0, 10, 0.99)) == pytest.approx(0.99)


def test_simsiam_has_no_momentum_encoder_and_simclr_no_predictor():
  for method, has_target, has_predictor in [("simsiam", False, True), ("simclr", False, False),
                                            ("moco_v3", True, True)]:
    task = tasks.get_task(load_config(f"ssl/{method}.py", "smoke"))
    model = nnx.eval_shape(lambda t=task: t.build_model(nnx.Rngs(0)))
    assert (model.target_backbone is not None) == has_target, method
    assert (model.predictor is not None) == has_predictor, method


def test_moco_v3_freezes_exactly_the_patch_projection():
  """`optimizer.freeze` regexes are searched in the SSL model's parameter paths, where the ViT is
  under `backbone/`: a pattern written for the bare ViT would freeze nothing, silently."""
  import re
  from papers_jax.core import optim
  for arg in (None, "digits"):  # the ImageNet recipe (shape-only ViT-B) and the demo that inherits it
    config = load_config("ssl/moco_v3.py", arg)
    model = nnx.eval_shape(lambda c=config: tasks.get_task(c).build_model(nnx.Rngs(0)))
    paths = jax.tree.leaves(optim.param_paths(nnx.to_pure_dict(nnx.state(model, nnx.Param))))
    frozen = sorted(p for p in paths if any(re.search(f, p) for f in config.optimizer.freeze))
    assert frozen == ["backbone/patch_embed/proj/bias", "backbone/patch_embed/proj/kernel"], arg


def test_color_jitter_replaces_every_views_jitter():
  task = tasks.get_task(load_config("ssl/swav.py", "digits"))  # 2 global + 4 local crops
  assert len(task.recipes) == 6 and all(r.jitter == (0.4, 0.4, 0.4, 0.1) for r in task.recipes)
  assert tasks.get_task(load_config("ssl/simclr.py", "digits")).recipes[0].jitter == (0.8, 0.8, 0.8, 0.2)
  config = load_config("ssl/byol.py", "digits").unlock()
  config.ssl.color_jitter = (0.4, 0.4)
  with pytest.raises(ConfigError, match="color_jitter"):
    tasks.get_task(config.lock())


# ------------------------------------------------------------------ SwAV, DINO, InstDisc, CMC
def step_inputs(trainer, batch, step=0):
  """What the jitted step sees at `step`: the merged model of the current state, the float
  images and the step's rng (the train step folds the step into the state's key)."""
  from papers_jax.core.state import merge_model
  state = jax.tree.map(jax.numpy.asarray, jax.device_get(trainer.state))  # writable (BatchNorm statistics)
  model = merge_model(trainer.graphdef, state.params, state.model_state)
  images = jax.numpy.asarray(batch["image"], jax.numpy.float32) / 255.0
  return model, images, jax.random.fold_in(state.rng, step)


def first_batch(trainer, start=0):
  return next(pipeline.train_batches(trainer.train_source, trainer._preprocess(train=True),
                                     global_batch=trainer.config.batch_size, seed=0, starts=[start]))


def run_step(trainer, batch):
  with sharding.use_mesh(trainer.mesh, trainer.rules):
    trainer.state, metrics = trainer.train_step(trainer.state, sharding.global_batch(batch, trainer.mesh))
  return jax.device_get(metrics)


def test_train_batches_carry_each_rows_dataset_index():
  from papers_jax.data.sources import DigitsSource
  source = DigitsSource("train")
  preprocess = pipeline.image_preprocess("none", 8, train=True)
  batch = next(pipeline.train_batches(source, preprocess, global_batch=64, seed=3, starts=[1400]))  # spans 2 epochs
  expected = [pipeline.example_index(p, len(source), 3) for p in range(1400, 1464)]
  assert batch["index"].dtype == np.int32
  np.testing.assert_array_equal(batch["index"], expected)
  np.testing.assert_array_equal(batch["image"], np.stack([source[i]["image"] for i in expected]))


@full_only
def test_instdisc_bank_rows_at_the_batch_are_momentum_mixed_and_renormalised_others_untouched():
  from papers_jax.data import views
  from papers_jax.objectives import contrastive
  trainer = trainer_for("instdisc")
  c, task = trainer.config.ssl, trainer.task
  batch = first_batch(trainer)
  model, images, rng = step_inputs(trainer, batch)
  old_bank = np.asarray(model.bank[...])
  assert old_bank.shape == (len(trainer.train_source), c.projector_dim) and task.num_data == len(trainer.train_source)
  assert float(model.nce_normalizer[...][0]) == 0.0  # not yet estimated
  # The features the step computes: same views, same (dropout-free) network.
  @nnx.jit  # one compile; eagerly every op compiles on its own
  def features_and_negatives(model, images, rng):
    k_views, _, k_neg = jax.random.split(rng, 3)
    (view,) = views.make_views(images, k_views, task.recipes)
    z = contrastive.l2_normalize(model.embed(task._normalize(view), train=True))
    return z, jax.random.randint(k_neg, (len(z), c.nce_negatives), 0, task.num_data)
  z, negatives = features_and_negatives(model, images, rng)
  z, negatives = np.asarray(z, np.float64), np.asarray(negatives)
  idx = batch["index"]

  metrics = run_step(trainer, batch)
  bank = np.asarray(jax.device_get(trainer.state.model_state["bank"]))
  mixed = c.bank_momentum * old_bank[idx] + (1 - c.bank_momentum) * z
  np.testing.assert_allclose(bank[idx], mixed / np.linalg.norm(mixed, axis=1, keepdims=True), rtol=1e-4, atol=1e-5)
  np.testing.assert_allclose(np.linalg.norm(bank[idx], axis=1), 1.0, rtol=1e-5)
  others = np.setdiff1d(np.arange(len(bank)), idx)
  np.testing.assert_array_equal(bank[others], old_bank[others])
  # Z: estimated once from this batch's positive and negative logits, then kept.
  logits = np.concatenate([np.sum(z * old_bank[idx], 1)[:, None], np.einsum("nc,nmc->nm", z, old_bank[negatives])], 1)
  z_expected = np.exp(logits / c.temperature).mean() * task.num_data
  normalizer = float(jax.device_get(trainer.state.model_state["nce_normalizer"])[0])
  assert normalizer == pytest.approx(z_expected, rel=1e-4)
  assert np.isfinite(metrics["loss"]) and metrics["nce_normalizer"] == pytest.approx(normalizer)
  run_step(trainer, first_batch(trainer, start=32))
  assert float(jax.device_get(trainer.state.model_state["nce_normalizer"])[0]) == normalizer


@full_only
def test_cmc_updates_both_banks_at_the_batch_and_fixes_both_normalizers():
  trainer = trainer_for("cmc")
  state = jax.device_get(trainer.state)
  old = {k: np.asarray(state.model_state[k]) for k in ("bank", "bank2")}
  assert "backbone2" in state.params and "projector2" in state.params
  batch = first_batch(trainer)
  metrics = run_step(trainer, batch)
  new_state = jax.device_get(trainer.state.model_state)
  for k in ("bank", "bank2"):
    changed = np.flatnonzero(~(new_state[k] == old[k]).all(axis=1))
    assert set(changed) == set(batch["index"]), k
    np.testing.assert_allclose(np.linalg.norm(new_state[k][changed], axis=1), 1.0, rtol=1e-5)
  normalizers = np.asarray(new_state["nce_normalizer"])
  assert normalizers.shape == (2,) and (normalizers > 0).all() and normalizers[0] != normalizers[1]
  assert np.isfinite(metrics["loss"])
  run_step(trainer, first_batch(trainer, start=32))
  np.testing.assert_array_equal(jax.device_get(trainer.state.model_state["nce_normalizer"]), normalizers)


def test_cmc_lab_views_and_half_width_encoders_of_the_paper_recipe():
  config = load_config("ssl/cmc.py").unlock()
  config.ssl.bank_size = 1000  # the ImageNet recipe, without reading ImageNet for its size
  task = tasks.get_task(config.lock())
  model = nnx.eval_shape(lambda: task.build_model(nnx.Rngs(0)))
  assert model.backbone.conv1.kernel.shape[2:] == (1, 32) and model.backbone2.conv1.kernel.shape[2:] == (2, 32)
  rgb = jax.random.uniform(jax.random.key(0), (4, 16, 16, 3))
  l, ab = task._cmc_views(rgb)
  from papers_jax.data import views
  lab = np.asarray(views.rgb_to_lab(rgb))
  np.testing.assert_allclose(np.asarray(l)[..., 0], (lab[..., 0] - 50) / 50, rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(np.asarray(ab), (lab[..., 1:] - np.asarray(views.LAB_MEAN[1:])) / np.asarray(views.LAB_STD[1:]),
                             rtol=1e-5, atol=1e-5)


def test_dino_teacher_is_the_ema_centre_the_momentum_mean_and_last_layer_weight_normalised_and_frozen(
    incremental_update_calls):
  from papers_jax.tasks.ssl import encode_crops
  from papers_jax.data import views
  trainer = trainer_for("dino", **{"ssl.momentum": 0.9, "ssl.momentum_schedule": "constant",
                                   "ssl.freeze_last_layer_steps": 1, "schedule.warmup_steps": 0})
  c, task = trainer.config.ssl, trainer.task
  from papers_jax.tasks.ssl.dino import teacher_temperature
  paper = load_config("ssl/dino.py").ssl  # teacher τ: 0.04 → 0.07 over 30 epochs
  assert float(teacher_temperature(paper, 0)) == pytest.approx(0.04)
  assert float(teacher_temperature(paper, paper.warmup_teacher_temperature_steps / 2)) == pytest.approx(0.055)
  assert float(teacher_temperature(paper, 10 ** 7)) == pytest.approx(0.07)
  old = jax.device_get(trainer.state)
  assert "scale" not in old.params["projector"]["last_layer"]  # norm_last_layer: the gain is fixed to 1
  batch = first_batch(trainer)
  model, images, rng = step_inputs(trainer, batch)

  @nnx.jit  # one compile; eagerly every op of the views and the teacher compiles on its own
  def teacher_outputs(model, images, rng):
    k_views, _ = jax.random.split(rng)
    crops = [task._normalize(v) for v in views.make_views(images, k_views, task.recipes)]
    return encode_crops(model.target_backbone, lambda f: model.target_projector(f, train=True), crops[:2])
  teacher = np.asarray(teacher_outputs(model, images, rng))
  # The last layer is weight-normalised at use: its effective columns are unit vectors.
  w = np.asarray(model.projector.last_layer.weight())
  v = old.params["projector"]["last_layer"]["kernel"]
  np.testing.assert_allclose(np.linalg.norm(w, axis=0), 1.0, rtol=1e-5)
  np.testing.assert_allclose(w, v / np.linalg.norm(v, axis=0), rtol=1e-5, atol=1e-7)
  assert not np.allclose(np.linalg.norm(v, axis=0), 1.0)

  metrics = run_step(trainer, batch)
  new = jax.device_get(trainer.state)
  get = lambda tree: tree["backbone"]["blocks"][0]["mlp"]["fc1"]["kernel"]  # noqa: E731
  assert not np.allclose(get(new.params), get(old.params))
  np.testing.assert_allclose(new.model_state["target_backbone"]["blocks"][0]["mlp"]["fc1"]["kernel"],
                             0.9 * get(old.params) + 0.1 * get(new.params), rtol=1e-5, atol=1e-7)
  np.testing.assert_allclose(new.model_state["target_projector"]["linears"][0]["kernel"],
                             0.9 * old.params["projector"]["linears"][0]["kernel"]
                             + 0.1 * new.params["projector"]["linears"][0]["kernel"], rtol=1e-5, atol=1e-7)
  # Centre: 0.9 · 0 + 0.1 · the teacher's mean over both global crops of the global batch.
  np.testing.assert_allclose(new.model_state["center"], 0.1 * teacher.reshape(-1, teacher.shape[-1]).mean(0),
                             rtol=1e-4, atol=1e-6)
  assert int(new.model_state["iteration"]) == 1
  assert 0 < metrics["teacher_entropy"] < np.log(c.num_prototypes) and np.isfinite(metrics["loss"])
  assert metrics["teacher_student_kl"] == pytest.approx(metrics["loss"] - metrics["teacher_entropy"], rel=1e-5)
  # Frozen during step 1: AdamW's decoupled decay only rescales v, so the effective layer is unchanged.
  unit = lambda p: p["projector"]["last_layer"]["kernel"] / np.linalg.norm(p["projector"]["last_layer"]["kernel"], axis=0)  # noqa: E731
  np.testing.assert_allclose(unit(new.params), unit(old.params), rtol=1e-5, atol=1e-6)
  run_step(trainer, first_batch(trainer, start=32))
  after = jax.device_get(trainer.state)
  assert not np.allclose(unit(after.params), unit(old.params), rtol=1e-5, atol=1e-6)
  # Step 2 (the last layer trains): every teacher weight, last layer included, is the EMA through optax.
  assert_target_is_the_ema(new, after, 0.9)
  assert incremental_update_calls

  config = load_config("ssl/dino.py", "smoke").unlock()
  config.ssl.norm_last_layer = False
  free = tasks.get_task(config.lock())
  head = nnx.eval_shape(lambda: free.build_model(nnx.Rngs(0))).projector.last_layer
  assert head.scale is not None and head.scale.shape == (c.num_prototypes,)


@full_only
def test_swav_prototypes_unit_norm_frozen_first_and_queue_used_once_full():
  trainer = trainer_for("swav", **{"ssl.queue_size": 64, "ssl.queue_start_steps": 0,
                                   "ssl.freeze_last_layer_steps": 1, "schedule.warmup_steps": 0})
  unit = lambda p: p["prototypes"]["kernel"] / np.linalg.norm(p["prototypes"]["kernel"], axis=0)  # noqa: E731
  old = jax.device_get(trainer.state)
  np.testing.assert_allclose(np.linalg.norm(old.params["prototypes"]["kernel"], axis=0), 1.0, rtol=1e-5)
  assert not np.asarray(old.model_state["swav_queue"]).any()
  in_use = []
  for step in range(3):
    in_use.append(float(run_step(trainer, first_batch(trainer, start=32 * step))["queue_in_use"]))
    state = jax.device_get(trainer.state)
    if step == 0:  # frozen: AdamW's decoupled decay of a zero-gradient param only rescales the raw prototypes
      np.testing.assert_allclose(unit(state.params), unit(old.params), rtol=1e-5, atol=1e-6)
      queue = np.asarray(state.model_state["swav_queue"])
      np.testing.assert_allclose(np.linalg.norm(queue[:, :32], axis=-1), 1.0, rtol=1e-5)  # the 2 global crops' z
      assert not queue[:, 32:].any()
  assert in_use == [0.0, 0.0, 1.0]  # full after two batches of 32
  assert not np.allclose(unit(state.params), unit(old.params), rtol=1e-5, atol=1e-6)
  model = nnx.eval_shape(lambda: trainer.task.build_model(nnx.Rngs(0)))
  assert model.prototypes.scale is None  # the prototypes have no gain: unit vectors at use


def test_vit_sees_local_crops_through_resampled_position_embeddings_and_gradients_reach_it():
  from papers_jax import models
  from papers_jax.nn.embed import resample_pos_embed
  from papers_jax.tasks.ssl.common import _backbone_at
  kw = dict(patch_size=4, in_chans=1, embed_dim=32, depth=2, num_heads=2, num_classes=0, global_pool="avg")
  # Built, run and differentiated under jit: eagerly every op compiles on its own.
  vit = nnx.jit(lambda: models.create("vit_tiny_patch16_224", img_size=16, rngs=nnx.Rngs(0), **kw))()
  small = nnx.eval_shape(lambda: models.create("vit_tiny_patch16_224", img_size=8, rngs=nnx.Rngs(1), **kw))
  graphdef, small_state = nnx.split(small)
  params = nnx.to_pure_dict(nnx.state(vit))
  params["pos_embed"] = resample_pos_embed(params["pos_embed"], (2, 2), (4, 4), 1)
  nnx.replace_by_pure_dict(small_state, params)  # every leaf: nothing of the shape-only build is left
  reference = nnx.merge(graphdef, small_state)
  x = jax.random.normal(jax.random.key(0), (3, 8, 8, 1))
  view = _backbone_at(vit, 8)
  assert vit.patch_embed.img_size == (16, 16)  # the original is untouched
  forward = nnx.jit(lambda m, x: m(x, train=False))
  np.testing.assert_allclose(np.asarray(forward(view, x)), np.asarray(forward(reference, x)), rtol=1e-5, atol=1e-5)
  grads = nnx.jit(nnx.grad(lambda m: _backbone_at(m, 8)(x, train=False).sum()))(vit)
  assert np.abs(np.asarray(grads["pos_embed"][...])).sum() > 0


# ------------------------------------------------------------------ momentum encoders and shuffle-BN
def flat(tree, prefix=""):
  """{'a/b/c': leaf} of a nested dict."""
  out = {}
  for k, v in tree.items():
    out.update(flat(v, f"{prefix}{k}/") if isinstance(v, dict) else {f"{prefix}{k}": np.asarray(v)})
  return out


def batch_stats(module):
  return flat(nnx.to_pure_dict(nnx.state(module, nnx.BatchStat)))


def assert_target_is_the_ema(old, new, momentum):
  """Every weight of the target: m·θ_target + (1 − m)·θ_online (new online weights)."""
  for name in ("backbone", "projector"):
    online, old_target, new_target = flat(new.params[name]), flat(old.model_state[f"target_{name}"]), \
        flat(new.model_state[f"target_{name}"])
    assert online and set(online) <= set(new_target)
    for path, value in online.items():
      np.testing.assert_allclose(new_target[path], momentum * old_target[path] + (1 - momentum) * value,
                                 rtol=1e-5, atol=1e-6, err_msg=f"{name}/{path}")


@pytest.fixture
def incremental_update_calls(monkeypatch):
  """Counts calls of optax.incremental_update (made while the train step is traced)."""
  import optax
  calls, original = [], optax.incremental_update
  monkeypatch.setattr(optax, "incremental_update", lambda *a, **k: calls.append(1) or original(*a, **k))
  return calls


def test_moco_shuffle_bn_on_8_devices_and_one_online_pass(incremental_update_calls):
  """MoCo v2 with a small ResNet and per-device BatchNorm (4 images per group on 8 devices): the
  key encoder's groups hold other images than the query encoder's, the loss equals a reference that
  shuffles and unshuffles explicitly, the online encoder runs once (on the query view), the key
  encoder's BatchNorm statistics come from its own pass on the shuffled batch, and its weights are
  the EMA of the online weights, through optax."""
  from papers_jax.data import views
  from papers_jax.objectives import contrastive
  from papers_jax.tasks.ssl import shuffle_key
  config = load_config("ssl/moco_v2.py", "smoke").unlock()
  config.model = {"name": "resnet18", "layers": (1, 1, 1, 1), "width": 8, "stem": "cifar", "in_chans": 1}
  config.ssl.bn_group_size, config.ssl.momentum, config.schedule.warmup_steps = 4, 0.9, 0
  trainer = loop.Trainer(config.lock(), "/nonexistent-workdir-unused", devices=jax.devices())
  assert trainer.mesh.devices.size == 8 and config.batch_size == 32  # 4 images per device = per group
  task, c = trainer.task, trainer.config.ssl
  batch = first_batch(trainer)
  old = jax.device_get(trainer.state)
  model, images, rng = step_inputs(trainer, batch)
  perm = np.asarray(jax.random.permutation(shuffle_key(rng), 32))
  query_groups = [set(range(i, i + 4)) for i in range(0, 32, 4)]
  key_groups = [set(perm[i:i + 4]) for i in range(0, 32, 4)]
  assert not any(g in query_groups for g in key_groups)  # no key group is a query group
  queue = model.queue[...]

  @nnx.jit  # one compile; eagerly every op compiles on its own
  def views_and_passes(model, images, rng, perm):
    k_views, _ = jax.random.split(rng)
    v1, v2 = [task._normalize(v) for v in views.make_views(images, k_views, task.recipes)]
    return v2, model.embed(v1, train=True), model.embed_target(v2[perm])  # the key encoder on the permuted batch
  v2, q, keys_shuffled = views_and_passes(model, images, rng, perm)
  keys_shuffled = np.asarray(keys_shuffled)
  online_stats = batch_stats(model.backbone)  # after one pass, on the query view
  target_stats = batch_stats(model.target_backbone)
  keys = np.empty_like(keys_shuffled)
  keys[perm] = keys_shuffled  # back in the batch's order
  info_nce = jax.jit(lambda q, k: contrastive.info_nce(q, k, queue, c.temperature).mean())
  expected = float(info_nce(q, keys))
  unshuffled = float(info_nce(q, nnx.jit(lambda m, v: m.embed_target(v))(step_inputs(trainer, batch)[0], v2)))
  assert abs(expected - unshuffled) > 1e-4  # the grouping changes the loss

  metrics = run_step(trainer, batch)
  assert metrics["loss"] == pytest.approx(expected, rel=1e-5)
  new = jax.device_get(trainer.state)
  for path, value in online_stats.items():
    np.testing.assert_allclose(flat(new.model_state["backbone"])[path], value, rtol=1e-4, atol=1e-6, err_msg=path)
  for path, value in target_stats.items():
    np.testing.assert_allclose(flat(new.model_state["target_backbone"])[path], value, rtol=1e-4, atol=1e-6,
                               err_msg=path)
  assert_target_is_the_ema(old, new, 0.9)
  assert incremental_update_calls  # the momentum update goes through optax
  np.testing.assert_allclose(new.model_state["queue"][:32], contrastive.l2_normalize(keys), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("method", ["byol"])
def test_teacher_weights_are_the_ema_through_optax_and_its_batchnorm_statistics_its_own(
    method, incremental_update_calls):
  """BYOL (MoCo: the test above; DINO: its second step in test_dino_teacher_...): after one step every
  target weight is m·θ_target + (1 − m)·θ_online. Its BatchNorm statistics are not averaged: as in the official code
  (BYOL: `target_state` from the target's own `is_training=True` forward; MoCo, DINO: the momentum
  update zips `parameters()` only), they come from the target's own passes (BYOL's projector: one per view)."""
  from papers_jax.data import views
  trainer = trainer_for(method, **{"ssl.momentum": 0.9, "ssl.momentum_schedule": "constant",
                                   "schedule.warmup_steps": 0})
  task = trainer.task
  batch = first_batch(trainer)
  old = jax.device_get(trainer.state)
  model, images, rng = step_inputs(trainer, batch)
  expected_stats = {}
  if method == "byol":
    k_views, _ = jax.random.split(rng)
    v1, v2 = [task._normalize(v) for v in views.make_views(images, k_views, task.recipes)]
    model.embed_target(v1), model.embed_target(v2)
    expected_stats = batch_stats(model.target_projector)
    assert expected_stats  # the projector's hidden BatchNorm
  run_step(trainer, batch)
  new = jax.device_get(trainer.state)
  assert_target_is_the_ema(old, new, 0.9)
  assert incremental_update_calls
  for path, value in expected_stats.items():
    got = flat(new.model_state["target_projector"])[path]
    np.testing.assert_allclose(got, value, rtol=1e-4, atol=1e-6, err_msg=path)
    assert not np.allclose(got, flat(old.model_state["target_projector"])[path])


def moco_v3_sincos_table(h, w, dim, temperature=10_000.0):
  """The reference's `build_2d_sincos_position_embedding` (moco-v3/vits.py), in numpy."""
  grid_w, grid_h = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32), indexing="ij")
  omega = 1.0 / temperature ** (np.arange(dim // 4, dtype=np.float32) / (dim // 4))
  out_w, out_h = grid_w.reshape(-1)[:, None] * omega, grid_h.reshape(-1)[:, None] * omega
  return np.concatenate([np.sin(out_w), np.cos(out_w), np.sin(out_h), np.cos(out_h)], axis=1)


@full_only
def test_moco_v3_vit_has_fixed_sincos_position_embeddings_and_a_patch_projection_that_never_changes():
  """The paper's ViT: the 2-D sin-cos table is added to the patch tokens (nothing to the class token)
  and is no parameter; the random patch projection is frozen through the optimizer, so a step leaves
  it unchanged while the rest trains."""
  for arg in (None, "digits"):
    config = load_config("ssl/moco_v3.py", arg)
    model = nnx.eval_shape(lambda c=config: tasks.get_task(c).build_model(nnx.Rngs(0)))
    assert model.backbone.pos_embed is None and model.backbone.pos_embed_kind == "sincos", arg
  trainer = trainer_for("moco_v3", **{"schedule.warmup_steps": 0})
  old = jax.device_get(trainer.state)
  assert "pos_embed" not in old.params["backbone"]
  model, _, _ = step_inputs(trainer, first_batch(trainer))
  vit = model.backbone
  (gh, gw), dim = vit.patch_embed.grid_size, vit.embed_dim
  tokens = np.asarray(vit._pos_embed(jax.numpy.zeros((1, gh * gw, dim))))[0]
  np.testing.assert_array_equal(tokens[0], np.asarray(old.params["backbone"]["cls_token"])[0, 0])
  reference = moco_v3_sincos_table(gh, gw, dim)  # row first; ours (MAE's) column first: swapped halves
  np.testing.assert_allclose(tokens[1:], np.concatenate([reference[:, dim // 2:], reference[:, :dim // 2]], 1),
                             atol=1e-6)
  run_step(trainer, first_batch(trainer))
  new = jax.device_get(trainer.state)
  for leaf in ("kernel", "bias"):
    np.testing.assert_array_equal(new.params["backbone"]["patch_embed"]["proj"][leaf],
                                  old.params["backbone"]["patch_embed"]["proj"][leaf])
  assert not np.allclose(new.params["backbone"]["blocks"][0]["attn"]["qkv"]["kernel"],
                         old.params["backbone"]["blocks"][0]["attn"]["qkv"]["kernel"])


def test_moco_linear_protocol_loads_the_encoder_and_trains_only_the_classifier_in_eval_mode(tmp_path):
  """configs/ssl/moco_linear.py on a small ResNet: the encoder's params and BatchNorm statistics
  come from an SSL run's `backbone/`; after a step the classifier changed, every encoder param and
  statistic did not (frozen through the optimizer, BatchNorm in eval mode)."""
  import orbax.checkpoint as ocp
  resnet = {"name": "resnet18", "layers": (1, 1, 1, 1), "width": 8, "stem": "cifar", "in_chans": 1}
  ssl_trainer = trainer_for("moco_v2", **{"model": resnet, "ssl.bn_group_size": 4})
  ssl_state = jax.device_get(ssl_trainer.state)
  rng = np.random.default_rng(0)
  perturbed = jax.tree.map(lambda x: np.asarray(x) + rng.uniform(0.1, 0.5, np.shape(x)).astype(np.asarray(x).dtype)
                           if np.issubdtype(np.asarray(x).dtype, np.floating) else np.asarray(x),
                           ssl_state.model_state)
  ckpt = str(tmp_path / "ssl" / "state")
  ocp.StandardCheckpointer().save(ckpt, {"params": ssl_state.params, "model_state": perturbed})
  ocp.StandardCheckpointer().wait_until_finished()

  config = load_config("ssl/moco_linear.py", "smoke").unlock()
  config.model = dict(resnet, num_classes=10)
  config.init_from = ckpt
  trainer = loop.Trainer(config.lock(), "/nonexistent-workdir-unused", devices=jax.devices()[:2])
  old = jax.device_get(trainer.state)
  encoder, stats = flat(ssl_state.params["backbone"]), flat(perturbed["backbone"])
  params, model_state = flat(old.params), flat(old.model_state)
  assert set(params) - set(encoder) == {"fc/kernel", "fc/bias"}
  for path, value in encoder.items():
    np.testing.assert_array_equal(params[path], value, err_msg=path)
  assert stats and all(np.array_equal(model_state[path], value) for path, value in stats.items())

  run_step(trainer, first_batch(trainer))
  new = jax.device_get(trainer.state)
  new_params, new_model_state = flat(new.params), flat(new.model_state)
  for path in encoder:
    np.testing.assert_array_equal(new_params[path], params[path], err_msg=path)
  for path in stats:
    np.testing.assert_array_equal(new_model_state[path], model_state[path], err_msg=path)
  assert not np.allclose(new_params["fc/kernel"], params["fc/kernel"])
