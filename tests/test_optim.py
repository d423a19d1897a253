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


def test_exponential_schedule_decays_in_stairs():
  # Inception-v3's "0.94 every two epochs" over 100 epochs of 10 steps: stairs of 20 steps, after 5 warm-up steps.
  sched = optim.make_schedule(ml_collections.ConfigDict(dict(name="exponential", warmup_steps=5, decay_every=0.02,
                                                             decay_factor=0.94)), 0.045, 1000)
  np.testing.assert_allclose([sched(5), sched(24), sched(25), sched(5 + 200)], [0.045, 0.045, 0.045 * 0.94,
                                                                               0.045 * 0.94 ** 10], rtol=1e-6)


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


def test_lr_multipliers_scale_the_whole_update_of_matching_parameters():
  # AdamW's first step moves a parameter by lr · (sign(g) + wd · p); a multiplier scales all of it.
  opt, sched = configs(name="adamw", lr=0.1, weight_decay=0.5, clip_grad_norm=0.0,
                       lr_multipliers=((r"^blocks/0/", 0.1), (r"^blocks/", 0.0)))
  sched.name = "constant"
  tx, _ = optim.make_optimizer(opt, sched, PARAMS, 10)
  new = one_step(tx, jax.tree.map(jnp.ones_like, PARAMS))
  np.testing.assert_allclose(1 - new["head"]["kernel"], 0.1 * (1 + 0.5), rtol=1e-5)
  np.testing.assert_allclose(1 - new["blocks"][0]["mlp"]["fc1"]["kernel"], 0.01 * (1 + 0.5), rtol=1e-5)
  np.testing.assert_array_equal(new["blocks"][1]["mlp"]["fc1"]["kernel"], 1.0)  # the first match decides
  with pytest.raises(ConfigError, match="pairs"):
    optim.make_optimizer(configs(lr_multipliers=("^blocks/",))[0], sched, PARAMS, 10)


def test_lr_multipliers_combine_with_frozen_parameters():
  # DETR's recipe: the backbone at 0.1× the rate with its stem frozen (freeze's masked updates pass through).
  opt, sched = configs(name="adamw", lr=0.1, weight_decay=0.0, clip_grad_norm=0.0,
                       lr_multipliers=((r"^blocks/", 0.1),), freeze=(r"^blocks/0/",))
  sched.name = "constant"
  tx, _ = optim.make_optimizer(opt, sched, PARAMS, 10)
  new = one_step(tx, jax.tree.map(jnp.ones_like, PARAMS))
  np.testing.assert_array_equal(new["blocks"][0]["mlp"]["fc1"]["kernel"], 1.0)
  np.testing.assert_allclose(1 - new["blocks"][1]["mlp"]["fc1"]["kernel"], 0.01, rtol=1e-5)
  np.testing.assert_allclose(1 - new["head"]["kernel"], 0.1, rtol=1e-5)


def numpy_steps(name, params, grads_list, *, lr, wd, decay_mask, scales, b1, b2, eps, momentum, trust):
  """The update rules as the papers write them, in float64, one leaf at a time: AdamW (Loshchilov & Hutter,
  decoupled decay), Adam, SGD with momentum and L2 decay, LARS (You et al. 2017: per-layer trust ratio
  η‖w‖/‖g + βw‖, momentum on the scaled step; biases excluded from decay and trust ratio, as SimCLR/BYOL),
  LAMB (You et al. 2019: Adam direction plus decay, scaled by ‖w‖/‖that‖), BertAdam (Adam without bias
  correction, decoupled decay), RMSProp as TensorFlow's (mean square from 1 with decay 0.9, ε inside the root,
  momentum on the scaled step; L2 decay). `scales`: the layer-decay
  factor multiplying each leaf's whole update."""
  p = [np.asarray(x, np.float64) for x in jax.tree.leaves(params)]
  mask, scale = jax.tree.leaves(decay_mask), jax.tree.leaves(scales)
  m, v, trace = ([np.zeros_like(x) for x in p] for _ in range(3))
  ratio = lambda w, u: np.linalg.norm(w) / np.linalg.norm(u) if np.linalg.norm(w) > 0 and np.linalg.norm(u) > 0 else 1.0
  for t, grads in enumerate(grads_list, 1):
    for i, g in enumerate(np.asarray(x, np.float64) for x in jax.tree.leaves(grads)):
      decay = wd * p[i] if mask[i] else 0.0
      if name == "bert_adam":  # BERT's BertAdam: no bias correction, decoupled decay
        m[i] = b1 * m[i] + (1 - b1) * g
        v[i] = b2 * v[i] + (1 - b2) * g * g
        step = -lr * (m[i] / (np.sqrt(v[i]) + eps) + decay)
      elif name in ("adamw", "adam", "lamb"):
        m[i] = b1 * m[i] + (1 - b1) * g
        v[i] = b2 * v[i] + (1 - b2) * g * g
        u = (m[i] / (1 - b1 ** t)) / (np.sqrt(v[i] / (1 - b2 ** t)) + eps)
        if name == "adamw":
          u = u + decay
        if name == "lamb":
          u = u + decay
          u = ratio(p[i], u) * u
        step = -lr * u
      elif name == "sgd":
        trace[i] = (g + decay) + momentum * trace[i]
        step = -lr * trace[i]
      elif name == "rmsprop":
        u = g + decay
        v[i] = 0.9 * (1.0 if t == 1 else v[i]) + 0.1 * u * u
        trace[i] = momentum * trace[i] + lr * u / np.sqrt(v[i] + eps)
        step = -trace[i]
      else:  # lars
        u = g + decay
        u = (trust * ratio(p[i], u) if mask[i] else 1.0) * lr * u
        trace[i] = u + momentum * trace[i]
        step = -trace[i]
      p[i] = p[i] + scale[i] * step
  return p


@pytest.mark.parametrize("name, layer_decay", [(n, 1.0) for n in optim.OPTIMIZERS] + [("adamw", 0.75), ("lars", 0.75)])
def test_every_optimizer_matches_a_numpy_reference(name, layer_decay):
  """Two steps (so the moments and momentum carry over) from random params with random gradients."""
  rng = np.random.default_rng(0)
  params = jax.tree.map(lambda x: jnp.asarray(rng.standard_normal(x.shape), jnp.float32), PARAMS)
  grads_list = [jax.tree.map(lambda x: jnp.asarray(rng.standard_normal(x.shape), jnp.float32), PARAMS)
                for _ in range(2)]
  opt, sched = configs(name=name, lr=0.01, weight_decay=0.1, clip_grad_norm=0.0, layer_decay=layer_decay)
  sched.name = "constant"
  tx, _ = optim.make_optimizer(opt, sched, params, 10)
  state, new = tx.init(params), params
  moved = jax.tree.map(lambda x: np.zeros(x.shape), params)  # the sum of the updates, compared (not new − old,
  for grads in grads_list:                                   # whose float32 rounding would swamp LARS's small steps)
    updates, state = jax.jit(tx.update)(grads, state, new)
    new = jax.tree.map(lambda a, u: a + u, new, updates)
    moved = jax.tree.map(lambda a, u: a + np.asarray(u, np.float64), moved, updates)
  # Default wd_exclude: biases get no decay (nor, for LARS, a trust ratio). Layer ids as in
  # test_layer_decay_scales_updates_by_depth.
  decay_mask = {"patch_embed": {"proj": {"kernel": True, "bias": False}},
                "blocks": {i: {"mlp": {"fc1": {"kernel": True, "bias": False}}} for i in (0, 1)},
                "head": {"kernel": True, "bias": False}}
  d = layer_decay
  scales = {"patch_embed": {"proj": {"kernel": d ** 3, "bias": d ** 3}},
            "blocks": {i: {"mlp": {"fc1": {"kernel": d ** (2 - i), "bias": d ** (2 - i)}}} for i in (0, 1)},
            "head": {"kernel": 1.0, "bias": 1.0}}
  want = numpy_steps(name, params, grads_list, lr=0.01, wd=0.1, decay_mask=decay_mask, scales=scales, b1=opt.b1,
                     b2=opt.b2, eps=opt.eps, momentum=opt.momentum, trust=opt.trust_coefficient)
  start = [np.asarray(x, np.float64) for x in jax.tree.leaves(params)]
  for got, w, p0 in zip(jax.tree.leaves(moved), want, start):
    np.testing.assert_allclose(got, w - p0, rtol=1e-4, atol=1e-9)


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


def test_bert_adam_matches_a_numpy_reference_without_bias_correction():
  """Two steps of BERT's AdamWeightDecayOptimizer written out in numpy: no 1 - b^t correction, decay
  decoupled and skipped on biases, lr from the schedule at each step."""
  opt, sched = configs(name="bert_adam", lr=0.1, b1=0.9, b2=0.999, eps=1e-6, weight_decay=0.01, clip_grad_norm=0.0)
  sched.update(name="linear", warmup_steps=0)
  params = {"head": {"kernel": jnp.asarray([[0.5, -1.0], [2.0, 0.25]]), "bias": jnp.asarray([0.3, -0.2])}}
  grads = [{"head": {"kernel": jnp.asarray([[0.1, -0.3], [0.02, 0.4]]), "bias": jnp.asarray([1.0, -0.5])}},
           {"head": {"kernel": jnp.asarray([[-0.2, 0.1], [0.3, 0.0]]), "bias": jnp.asarray([0.5, 0.5])}}]
  tx, schedule = optim.make_optimizer(opt, sched, params, 4)
  state, got = tx.init(params), params
  for g in grads:
    updates, state = tx.update(g, state, got)
    got = optax.apply_updates(got, updates)

  for name, decay in (("kernel", 0.01), ("bias", 0.0)):
    p = np.asarray(params["head"][name], np.float64)
    m = v = np.zeros_like(p)
    for step, g in enumerate(grads):
      g = np.asarray(g["head"][name], np.float64)
      m, v = 0.9 * m + 0.1 * g, 0.999 * v + 0.001 * g * g
      lr = 0.1 * (1 - step / 4)  # linear decay to 0 over the 4 steps
      p = p - lr * (m / (np.sqrt(v) + 1e-6) + decay * p)
    np.testing.assert_allclose(got["head"][name], p, rtol=1e-5, err_msg=name)
  # Bias correction would make the first step lr · sign(g); without it the step is (1 - b1) / sqrt(1 - b2) ≈ 3.16 lr.
  first, _ = tx.update(grads[0], tx.init(params), params)
  np.testing.assert_allclose(-first["head"]["bias"], 0.1 * 0.1 / np.sqrt(0.001) * np.sign([1.0, -0.5]), rtol=1e-4)
  np.testing.assert_allclose(schedule(1), 0.075, rtol=1e-6)


def test_bert_phase_two_continues_phase_one_schedule():
  """configs/bert/wikipedia.py: one schedule over the 1,000,000 steps (10,000 warm-up, linear decay to 0);
  phase 2's step s has the whole schedule's lr at step 900,000 + s."""
  from papers_jax.core.config import load
  whole = lambda t: 1e-4 * np.minimum(t / 10_000, (1_000_000 - t) / 990_000)  # noqa: E731
  schedules = {}
  for phase in (1, 2):
    c = load(f"configs/bert/wikipedia.py:phase={phase}")
    assert c.optimizer.name == "bert_adam"
    params = {"bias": jnp.zeros(2)}
    schedules[phase] = optim.make_optimizer(c.optimizer, c.schedule, params, c.num_steps)[1]
    assert c.num_steps == (900_000 if phase == 1 else 100_000)
  steps1 = np.array([0, 5_000, 10_000, 400_000, 899_999])
  np.testing.assert_allclose([schedules[1](s) for s in steps1], whole(steps1), rtol=1e-5, atol=1e-12)
  steps2 = np.array([0, 1, 50_000, 99_999, 100_000])
  np.testing.assert_allclose([schedules[2](s) for s in steps2], whole(900_000 + steps2), rtol=1e-5, atol=1e-12)
  assert float(schedules[2](0)) > 9e-6 and float(schedules[2](100_000)) == 0.0
  with pytest.raises(ConfigError, match="step_offset"):
    optim.make_schedule(ml_collections.ConfigDict(dict(name="linear", total_steps=100, step_offset=90)), 1.0, 20)
