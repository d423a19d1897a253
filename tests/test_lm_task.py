"""The language-model task through the trainer: tensor parallelism equals one device, and the eval sums."""

import jax
import numpy as np
import pytest

from conftest import load_config
from papers_jax.core import loop, sharding
from test_core import run_steps


def gpt_smoke(**mesh):
  config = load_config("gpt/python_docs.py", "smoke").unlock()
  # Dropout masks depend on how the random bits are partitioned; the comparison needs none.
  config.model.update(drop_rate=0.0, embed_drop_rate=0.0, attn_drop_rate=0.0)
  config.model.num_heads = 4  # so that 4 tensor shards divide the heads (else they stay replicated)
  config.mesh.update(mesh)
  config.optimizer.lr = 3e-3
  return config.lock()


@pytest.fixture(scope="module")
def single_device():
  return run_steps(gpt_smoke(), jax.devices()[:1], num_steps=5)


def test_tensor_parallel_losses_equal_single_device(single_device):
  """GPT on a data=2 × tensor=4 mesh: heads, MLP and vocabulary split over 4 devices; same losses."""
  ref_losses, ref_params, _ = single_device
  losses, params, trainer = run_steps(gpt_smoke(data=2, fsdp=1, tensor=4), jax.devices(), num_steps=5)
  assert dict(trainer.mesh.shape) == {"data": 2, "fsdp": 1, "tensor": 4}
  qkv = trainer.state.params["blocks"][0]["attn"]["qkv"]["kernel"]
  assert qkv.sharding.spec[2] == "tensor"  # (embed, 3, heads, head_dim): heads over the tensor axis
  assert np.all(np.isfinite(losses)) and losses[-1] < losses[0]
  np.testing.assert_allclose(losses, ref_losses, rtol=1e-5)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5), params, ref_params)


def test_eval_sums_count_real_tokens_only():
  """Padded eval rows (mask 0) add nothing: the sums over a batch with padding rows equal the sums over
  the real rows alone, and `count` is the number of target tokens."""
  trainer = loop.Trainer(gpt_smoke(), "/nonexistent-workdir-unused", devices=jax.devices()[:1])
  source = trainer.eval_source
  rows = [source[i] for i in range(4)]
  batch = {k: np.stack([r[k] for r in rows]) for k in rows[0]}
  padded = {k: np.concatenate([v, v[:2]]) for k, v in batch.items()}
  batch["mask"] = np.ones(4, bool)
  padded["mask"] = np.array([1, 1, 1, 1, 0, 0], bool)
  with sharding.use_mesh(trainer.mesh, trainer.rules):
    real = jax.device_get(trainer.eval_step(trainer.state, sharding.global_batch(batch, trainer.mesh)))
    with_padding = jax.device_get(trainer.eval_step(trainer.state, sharding.global_batch(padded, trainer.mesh)))
  assert real["count"] == batch["loss_mask"][:, 1:].sum() > 0
  for key in real:
    np.testing.assert_allclose(with_padding[key], real[key], rtol=1e-6)
