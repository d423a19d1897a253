"""The SSL task's state: momentum encoders start equal to the online weights and follow them by
EMA inside the jitted step; MoCo's queue advances by the global batch; every method trains."""

import jax
import numpy as np
import pytest
from flax import nnx

from conftest import load_config
from papers_jax import tasks
from papers_jax.core import loop, sharding
from papers_jax.data import pipeline
from papers_jax.objectives import memory


def trainer_for(method, **overrides):
  config = load_config(f"ssl/{method}.py", "smoke").unlock()
  for key, value in overrides.items():
    *parents, leaf = key.split(".")
    target = config
    for p in parents:
      target = target[p]
    target[leaf] = value
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
