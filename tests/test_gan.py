"""GANs: the losses against numpy, the optimizer phases of the core (D then G in one step, each with its own
optimizer state; sharded = single-device; preempt and resume = uninterrupted), DCGAN's shapes, and the
1-D toy check of Goodfellow et al. (2014, Fig. 1): after training, the optimal discriminator
D*(x) = p_data / (p_data + p_g) is about ½ where the data lie."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

import killmatrix
from conftest import load_config
from papers_jax import models
from papers_jax.core import loop, optim, sharding, step as step_lib
from papers_jax.core.state import TrainState, merge_model, split_model
from papers_jax.data import pipeline
from papers_jax.errors import ConfigError
from papers_jax.objectives import gan as objective

MU, SIGMA = 2.0, 0.5  # the toy's p_data = N(MU, SIGMA²)
PHASES = (optim.Phase("discriminator", "^discriminator/"), optim.Phase("generator", "^generator/"))


def np_log_sigmoid(x):
  return -np.log1p(np.exp(-x))


def test_gan_losses_equal_numpy():
  rng = np.random.default_rng(0)
  real, fake = rng.normal(0, 3, 64), rng.normal(0, 3, 64)
  d_real, d_fake = 1 / (1 + np.exp(-real)), 1 / (1 + np.exp(-fake))
  np.testing.assert_allclose(objective.discriminator_loss(jnp.asarray(real), jnp.asarray(fake)),
                             -np.mean(np.log(d_real)) - np.mean(np.log(1 - d_fake)), rtol=1e-5)
  np.testing.assert_allclose(objective.generator_loss_minimax(jnp.asarray(fake)), np.mean(np.log(1 - d_fake)),
                             rtol=1e-5)
  np.testing.assert_allclose(objective.generator_loss_non_saturating(jnp.asarray(fake)), -np.mean(np.log(d_fake)),
                             rtol=1e-5)
  # Stable where D saturates (the logs of the sigmoids would be log 0).
  assert np.isfinite(float(objective.discriminator_loss(jnp.array([80.0]), jnp.array([-80.0]))))
  np.testing.assert_allclose(objective.generator_loss_non_saturating(jnp.array([-80.0])), 80.0, rtol=1e-6)
  np.testing.assert_allclose(objective.optimal_discriminator(np.array([1.0, 3.0]), np.array([1.0, 1.0])), [0.5, 0.75])


def toy_losses(graphdef):
  def d_loss(params, model_state, batch, rng):
    m = merge_model(graphdef, params, model_state)
    loss = objective.discriminator_loss(m.discriminator(batch["x"]), m.discriminator(m.generator(batch["z"])))
    return loss, ({}, model_state)

  def g_loss(params, model_state, batch, rng):
    m = merge_model(graphdef, params, model_state)
    return objective.generator_loss_non_saturating(m.discriminator(m.generator(batch["z"]))), ({}, model_state)
  return {"discriminator": d_loss, "generator": g_loss}


@pytest.fixture(scope="module")
def toy():
  """The 1-D toy GAN: (graphdef, initial state, Phased optimizer, train_step) with Adam 2e-4, β1 = 0.5."""
  graphdef, params, rest = split_model(models.create("gan_mlp_1d", rngs=0))
  masks = optim.phase_masks(PHASES, params)
  tx = optim.Phased(PHASES, masks, {n: optax.adam(2e-4, b1=0.5) for n in masks},
                    {n: optax.constant_schedule(2e-4) for n in masks})
  state = TrainState(step=jnp.zeros((), jnp.int32), params=params, model_state=rest, opt_state=tx.init(params),
                     rng=jax.random.key(0))
  return graphdef, state, tx, step_lib.make_train_step(toy_losses(graphdef), tx, None)


def toy_batch(key, n=256):
  kx, kz = jax.random.split(key)
  return {"x": MU + SIGMA * jax.random.normal(kx, (n, 1)), "z": jax.random.normal(kz, (n, 1))}


def test_one_step_updates_d_then_g_through_the_updated_d(toy):
  graphdef, state, tx, train_step = toy
  batch = toy_batch(jax.random.key(3))
  new, metrics = jax.jit(train_step)(state, batch)
  losses = toy_losses(graphdef)
  d_sub = optim.select(state.params, tx.masks["discriminator"])
  g_sub = optim.select(state.params, tx.masks["generator"])
  # Each phase keeps its own Adam state over its own parameters only.
  assert set(new.opt_state) == {"discriminator", "generator"}
  assert set(new.opt_state["discriminator"][0].mu) == {"discriminator"}
  assert set(new.opt_state["generator"][0].mu) == {"generator"}
  # By hand: D's Adam step on D's loss, then G's Adam step on G's loss through the *updated* D.
  grad = jax.jit(lambda name, params, sub: jax.grad(
      lambda s: losses[name](optim.overlay(params, s), {}, batch, None)[0])(sub), static_argnums=0)
  adam = optax.adam(2e-4, b1=0.5)
  d_up, _ = adam.update(grad("discriminator", state.params, d_sub), adam.init(d_sub))
  after_d = optim.overlay(state.params, optax.apply_updates(d_sub, d_up))
  g_up, _ = adam.update(grad("generator", after_d, g_sub), adam.init(g_sub))
  expected = optim.overlay(after_d, optax.apply_updates(g_sub, g_up))
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7), new.params, expected)
  # Through the old D, G's gradient would differ.
  g_old_grads, g_new_grads = grad("generator", state.params, g_sub), grad("generator", after_d, g_sub)
  assert not all(jax.tree.leaves(jax.tree.map(np.allclose, g_old_grads, g_new_grads)))
  assert {"discriminator/loss", "generator/loss", "discriminator/lr", "generator/grad_norm", "loss", "lr"} <= set(metrics)
  np.testing.assert_allclose(metrics["loss"], metrics["discriminator/loss"] + metrics["generator/loss"], rtol=1e-6)


def test_phase_masks_need_exactly_one_phase_per_parameter(toy):
  _, state, _, _ = toy
  with pytest.raises(ValueError, match="exactly one optimizer phase"):
    optim.phase_masks((optim.Phase("g", "^generator/"),), state.params)
  with pytest.raises(ValueError, match="exactly one optimizer phase"):
    optim.phase_masks(PHASES + (optim.Phase("all", lambda p: True),), state.params)


def toy_d_star(graphdef, state):
  """mean |D*(x) − ½| and mean |D(x) − ½| over x in [μ − σ, μ + σ], p_g from a histogram of 50,000 samples."""
  m = merge_model(graphdef, state.params, state.model_state)
  xs = np.asarray(m.generator(jax.random.normal(jax.random.key(1), (50_000, 1))))[:, 0]
  grid = np.linspace(MU - SIGMA, MU + SIGMA, 21)
  hist, edges = np.histogram(xs, bins=np.linspace(MU - 3 * SIGMA, MU + 3 * SIGMA, 61), density=True)
  p_g = np.interp(grid, (edges[1:] + edges[:-1]) / 2, hist)
  p_data = np.exp(-0.5 * ((grid - MU) / SIGMA) ** 2) / (SIGMA * np.sqrt(2 * np.pi))
  d = np.asarray(jax.nn.sigmoid(m.discriminator(jnp.asarray(grid[:, None], jnp.float32))))
  return np.abs(objective.optimal_discriminator(p_data, p_g) - 0.5).mean(), np.abs(d - 0.5).mean()


def test_toy_1d_optimal_discriminator_approaches_one_half(toy):
  graphdef, state, _, train_step = toy
  d_star_init, _ = toy_d_star(graphdef, state)
  body = lambda s, key: (train_step(s, toy_batch(key))[0], None)
  trained, _ = jax.jit(lambda s: jax.lax.scan(body, s, jax.random.split(jax.random.key(0), 2000)))(state)
  d_star, d = toy_d_star(graphdef, trained)
  # At the start G's samples sit near 0, away from the data: D* ≈ 1 over the data. After training p_g ≈ p_data
  # there and D* ≈ ½ (measured 0.068 with this seed; the margin covers GAN training's oscillation).
  assert d_star_init > 0.4
  assert d_star < 0.15, d_star
  assert d < 0.05, d  # the trained discriminator itself can no longer tell (measured 0.001)


def test_dcgan_shapes_and_norms():
  for name, size in (("dcgan_32", 32), ("dcgan_64", 64)):
    gan = nnx.eval_shape(lambda: models.create(name, rngs=0, in_chans=3))
    assert gan.generator.img_size == gan.discriminator.img_size == size
    # BatchNorm everywhere but G's output layer and D's input layer.
    assert len(gan.generator.norms) == len(gan.generator.convs) - 1
    assert len(gan.discriminator.norms) == len(gan.discriminator.convs) - 1
  gan = models.create("dcgan_32", rngs=0, z_dim=8, g_width=4, d_width=4, in_chans=1)
  x = gan.generator(jnp.ones((2, 8)), train=False)
  assert x.shape == (2, 32, 32, 1) and float(jnp.abs(x).max()) <= 1.0
  assert gan.discriminator(x, train=False).shape == (2,)
  kernel = np.asarray(gan.generator.convs[1].kernel[...])
  assert abs(kernel.std() - 0.02) < 0.002 and abs(kernel.mean()) < 0.002  # N(0, 0.02)


# ------------------------------------------------------------------ the trainer with optimizer phases
def gan_config(**overrides):
  """The digits DCGAN's smoke config at 8×8 (a 2-layer G and D): cheap to compile."""
  config = load_config("gan/dcgan_digits.py", "smoke").unlock()
  config.model.update(name="dcgan_32", img_size=8, z_dim=8, g_width=8, d_width=8)
  config.data.image_size = 8
  config.data.eval_split = ""
  for key, value in overrides.items():
    *parents, leaf = key.split(".")
    node = config
    for name in parents:
      node = node[name]
    node[leaf] = value
  return config.lock()


def run_steps(config, devices, num_steps=3):
  trainer = loop.Trainer(config, "/nonexistent-workdir-unused", devices=devices)
  batches = pipeline.train_batches(trainer.train_source, trainer._preprocess(train=True),
                                   global_batch=config.batch_size, seed=config.seed,
                                   starts=pipeline.batch_starts(0, num_steps, config.batch_size))
  rows, state = [], trainer.state
  with sharding.use_mesh(trainer.mesh, trainer.rules):
    for local in batches:
      state, metrics = trainer.train_step(state, sharding.global_batch(local, trainer.mesh, trainer.rules))
      rows.append(jax.device_get(metrics))
  return rows, jax.device_get(state), trainer


def test_sharded_gan_steps_equal_single_device():
  one, one_state, _ = run_steps(gan_config(), jax.devices()[:1])
  mesh = {"data": 2, "fsdp": 4, "tensor": 1}
  eight, eight_state, trainer = run_steps(gan_config(mesh=mesh), jax.devices())
  assert dict(trainer.mesh.shape) == mesh
  for key in ("discriminator/loss", "generator/loss", "discriminator/d_real"):
    np.testing.assert_allclose([r[key] for r in eight], [r[key] for r in one], rtol=1e-5)
  assert one[-1]["generator/loss"] != one[0]["generator/loss"]
  for part in ("params", "opt_state", "model_state"):
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5), getattr(eight_state, part),
                 getattr(one_state, part))


def test_preempted_gan_run_resumes_to_the_uninterrupted_result(tmp_path):
  def config(**overrides):
    return gan_config(num_steps=4, checkpoint_every=2, log_every=2, async_checkpoint=False, **overrides)
  devices = jax.devices()[:2]
  whole = loop.Trainer(config(), str(tmp_path / "whole"), devices=devices)
  whole.run()
  first = loop.Trainer(config(**{"debug.sigterm_at_step": 2}), str(tmp_path / "resumed"), devices=devices)
  assert first.run()["preempted_at"] == 2
  second = loop.Trainer(config(), str(tmp_path / "resumed"), devices=devices)
  assert second.run()["resumed_from"] == 2
  assert set(second.state.opt_state) == {"discriminator", "generator"}
  for part in ("params", "opt_state", "model_state", "step"):
    jax.tree.map(np.testing.assert_array_equal, jax.device_get(getattr(second.state, part)),
                 jax.device_get(getattr(whole.state, part)))


def test_phase_config_errors():
  config = gan_config().unlock()
  del config.phases["generator"]
  with pytest.raises(ConfigError, match="phases.<name>.optimizer"):
    loop.check_config(config.lock(), jax.devices()[:1])
  config = gan_config().unlock()
  config.phases.generator.optimizer.lr = -1.0
  with pytest.raises(ConfigError, match="phases.generator.optimizer.lr"):
    loop.check_config(config.lock(), jax.devices()[:1])
  config = load_config("vit/digits.py", "smoke").unlock()
  config.phases = gan_config().phases
  with pytest.raises(ConfigError, match="trains with one optimizer"):
    loop.check_config(config.lock(), jax.devices()[:1])


@pytest.mark.skipif(not killmatrix.SOAK, reason="the GAN's kill -9 matrix runs with PAPERS_JAX_SOAK=1 (8 runs)")
def test_gan_kill_9_in_every_phase_then_resume_equals_an_uninterrupted_run(tmp_path):
  reference = str(tmp_path / "reference")
  killmatrix.run("gan", reference)
  killmatrix.kill_in_every_phase("gan", reference, str(tmp_path / "killed"))


def test_resume_with_another_phase_schedule_is_stopped(tmp_path):
  import os
  from papers_jax.core import metrics as metrics_lib, run_config
  workdir = str(tmp_path / "run")
  os.makedirs(workdir)
  run_config.write(workdir, {"config": gan_config().to_dict()}, metrics_lib.write_json_atomic)
  new = gan_config().unlock()
  new.phases.generator.schedule.name, new.phases.generator.optimizer.lr = "cosine", 1e-3
  with pytest.raises(ConfigError) as e:
    run_config.check_resume(new, workdir, 10)
  assert "phases.generator.schedule.name 'constant' → 'cosine'" in str(e.value)
  assert "optimizer.lr" not in str(e.value)  # free to change, as config.optimizer's
  new.allow_config_change = "phases.generator.schedule"
  run_config.check_resume(new, workdir, 10)
