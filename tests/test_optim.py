"""Optimizers and schedules built from config."""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest

from papers_jax.core import optim
from papers_jax.core.config import base_config
from papers_jax.errors import ConfigError

PARAMS = {"patch_embed": {"proj": {"kernel": jnp.ones((2, 4)), "bias": jnp.ones(4)}},
          "blocks": {0: {"mlp": {"fc1": {"kernel": jnp.ones((4, 4)), "bias": jnp.ones(4)}}},
                     1: {"mlp": {"fc1": {"kernel": jnp.ones((4, 4)), "bias": jnp.ones(4)}}}},
          "head": {"kernel": jnp.ones((4, 3)), "bias": jnp.ones(3)}}


def configs(**opt):
  c = base_config()
  c.optimizer.update(opt)
  return c.optimizer, c.schedule


def one_step(tx, grads=None, params=PARAMS):
  grads = jax.tree.map(jnp.zeros_like, params) if grads is None else grads
  updates, _ = tx.update(grads, tx.init(params), params)
  return jax.tree.map(lambda p, u: p + u, params, updates)


def test_cosine_schedule_with_warmup():
  sched = optim.make_schedule(ml_collections.ConfigDict(dict(name="cosine", warmup_steps=10, end_lr_ratio=0.0)),
                              1.0, 110)
  np.testing.assert_allclose([sched(0), sched(5), sched(10)], [0.0, 0.5, 1.0], atol=1e-6)
  np.testing.assert_allclose(sched(60), 0.5 * (1 + np.cos(np.pi * 0.5)), atol=1e-6)
  np.testing.assert_allclose(sched(110), 0.0, atol=1e-6)


def test_rsqrt_and_step_schedules():
  rsqrt = optim.make_schedule(ml_collections.ConfigDict(dict(name="rsqrt", warmup_steps=4)), 1.0, 100)
  np.testing.assert_allclose([rsqrt(2), rsqrt(4), rsqrt(4 + 12)], [0.5, 1.0, 0.5], atol=1e-6)
  step = optim.make_schedule(ml_collections.ConfigDict(dict(name="step", warmup_steps=0, boundaries=(0.5, 0.75),
                                                            decay_factor=0.1)), 1.0, 100)
  np.testing.assert_allclose([step(10), step(60), step(80)], [1.0, 0.1, 0.01], rtol=1e-6)


def test_weight_decay_skips_biases():
  opt, sched = configs(name="adamw", lr=0.1, weight_decay=0.5, clip_grad_norm=0.0)
  sched.name = "constant"
  tx, _ = optim.make_optimizer(opt, sched, PARAMS, 10)
  new = one_step(tx)  # zero gradients: only weight decay moves parameters
  np.testing.assert_allclose(new["head"]["kernel"], 1 - 0.1 * 0.5)
  np.testing.assert_allclose(new["head"]["bias"], 1.0)


def test_layer_decay_scales_updates_by_depth():
  opt, sched = configs(name="sgd", lr=1.0, momentum=0.0, weight_decay=0.0, clip_grad_norm=0.0, layer_decay=0.5)
  sched.name = "constant"
  tx, _ = optim.make_optimizer(opt, sched, PARAMS, 10)
  new = one_step(tx, jax.tree.map(jnp.ones_like, PARAMS))
  # 2 blocks: embeddings layer 0 → 0.5^3, blocks.0 → 0.5^2, blocks.1 → 0.5, head → 1.
  np.testing.assert_allclose(1 - new["patch_embed"]["proj"]["kernel"], 0.125)
  np.testing.assert_allclose(1 - new["blocks"][0]["mlp"]["fc1"]["kernel"], 0.25)
  np.testing.assert_allclose(1 - new["blocks"][1]["mlp"]["fc1"]["kernel"], 0.5)
  np.testing.assert_allclose(1 - new["head"]["kernel"], 1.0)


def test_freeze_by_regex():
  opt, sched = configs(name="adamw", lr=0.1, freeze=(r"^blocks/",))
  tx, _ = optim.make_optimizer(opt, sched, PARAMS, 10)
  new = one_step(tx, jax.tree.map(jnp.ones_like, PARAMS))
  np.testing.assert_array_equal(new["blocks"][0]["mlp"]["fc1"]["kernel"], 1.0)
  assert float(new["head"]["kernel"][0, 0]) < 1.0
  with pytest.raises(ConfigError, match="matches every parameter"):
    optim.make_optimizer(configs(freeze=(".*",))[0], sched, PARAMS, 10)


@pytest.mark.parametrize("name", optim.OPTIMIZERS)
def test_every_optimizer_takes_a_step(name):
  opt, sched = configs(name=name, lr=0.01)
  tx, _ = optim.make_optimizer(opt, sched, PARAMS, 10)
  new = one_step(tx, jax.tree.map(jnp.ones_like, PARAMS))
  assert float(new["head"]["kernel"][0, 0]) < 1.0


def test_clipping_bounds_the_update():
  opt, sched = configs(name="sgd", lr=1.0, momentum=0.0, weight_decay=0.0, clip_grad_norm=1.0)
  sched.name = "constant"
  tx, _ = optim.make_optimizer(opt, sched, PARAMS, 10)
  new = one_step(tx, jax.tree.map(lambda p: 100 * jnp.ones_like(p), PARAMS))
  moved = jax.tree.map(lambda a, b: a - b, PARAMS, new)
  np.testing.assert_allclose(optax.tree.norm(moved), 1.0, rtol=1e-5)


def test_bad_names_are_config_errors():
  with pytest.raises(ConfigError, match="unknown optimizer"):
    optim.make_optimizer(configs(name="adagradx")[0], base_config().schedule, PARAMS, 10)
  with pytest.raises(ConfigError, match="warmup_steps"):
    optim.make_schedule(ml_collections.ConfigDict(dict(name="cosine", warmup_steps=20)), 1.0, 10)
