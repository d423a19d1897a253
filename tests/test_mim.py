"""The masked image modelling baselines (objectives/mim.py, tasks/beit.py, tasks/igpt.py, tasks/dae.py): each
loss against a numpy reference, the masks' and palette's properties, and each task's loss traced from its
smoke config (their smoke trainings run in make test-full: tests/test_configs.py FULL_ONLY)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from conftest import load_config
from papers_jax import tasks
from papers_jax.core import loop
from papers_jax.core.state import split_model
from papers_jax.objectives import mim


def np_log_softmax(x):
  x = x - x.max(-1, keepdims=True)
  return x - np.log(np.exp(x).sum(-1, keepdims=True))


def test_beit_and_masked_pixel_losses_match_numpy():
  rng = np.random.RandomState(0)
  logits = rng.randn(3, 6, 5).astype(np.float32)
  targets = rng.randint(0, 5, (3, 6))
  mask = rng.rand(3, 6) < 0.5
  mask[2] = False  # an example with nothing masked: 0
  logp = np_log_softmax(logits.astype(np.float64))
  nll = -np.take_along_axis(logp, targets[..., None], -1)[..., 0]
  want = [(nll[i] * mask[i]).sum() / max(mask[i].sum(), 1) for i in range(3)]
  np.testing.assert_allclose(mim.beit_loss(logits, targets, mask), want, rtol=1e-6, atol=1e-6)
  np.testing.assert_allclose(mim.masked_pixel_loss(logits, targets, mask), want, rtol=1e-6, atol=1e-6)
  assert want[2] == 0.0


def test_autoregressive_loss_matches_numpy():
  rng = np.random.RandomState(1)
  logits = rng.randn(2, 7, 4).astype(np.float32)
  ids = rng.randint(0, 4, (2, 7))
  want = -np.take_along_axis(np_log_softmax(logits.astype(np.float64)), ids[..., None], -1)[..., 0].mean(-1)
  np.testing.assert_allclose(mim.autoregressive_loss(logits, ids), want, rtol=1e-6)


def test_denoising_loss_and_corruption():
  rng = np.random.RandomState(2)
  pred, clean = rng.randn(2, 4, 12).astype(np.float32), rng.randn(2, 4, 12).astype(np.float32)
  np.testing.assert_allclose(mim.denoising_loss(pred, clean), ((pred - clean) ** 2).mean((1, 2)), rtol=1e-6)
  images = jnp.ones((64, 16, 16, 1))
  dropped = mim.corrupt(jax.random.key(0), images, noise_std=0.0, drop_prob=0.25)
  assert set(np.unique(np.asarray(dropped))) == {0.0, 1.0}
  assert abs(float((dropped == 0).mean()) - 0.25) < 0.01
  noisy = np.asarray(mim.corrupt(jax.random.key(0), images, noise_std=0.5, drop_prob=0.0)) - 1.0
  assert abs(noisy.std() - 0.5) < 0.01 and abs(noisy.mean()) < 0.01


def test_palette_is_k_means_and_ids_are_the_nearest_colour():
  rng = np.random.default_rng(0)
  centres = np.array([[0.1], [0.5], [0.9]])
  pixels = np.concatenate([c + 0.01 * rng.standard_normal((200, 1)) for c in centres])
  palette = mim.fit_palette(pixels, 3)
  np.testing.assert_allclose(palette, [[pixels[:200].mean()], [pixels[200:400].mean()], [pixels[400:].mean()]],
                             atol=1e-6)  # the centres of the three clusters, brightest last
  images = rng.random((2, 4, 4, 1)).astype(np.float32)
  want = np.abs(images.reshape(2, 16, 1, 1) - palette[None, None]).sum(-1).argmin(-1)
  np.testing.assert_array_equal(mim.palette_ids(images, palette), want)
  with pytest.raises(ValueError, match="distinct colours"):
    mim.fit_palette(np.zeros((10, 1)), 2)


def test_block_masks_and_bert_masks():
  bank = mim.block_mask_bank((4, 4), 0.4, 200, min_patches=2)
  counts = bank.sum(1)
  assert bank.shape == (200, 16) and counts.max() <= 6 and (counts == 6).mean() > 0.9
  rows = bank.reshape(200, 4, 4)
  assert (rows.any(2).sum(1) < 4).mean() > 0.3  # blocks, not scattered patches: often whole rows stay free
  m = np.asarray(mim.bert_mask(jax.random.key(0), (400, 64), 0.15))
  assert abs(m.mean() - 0.15) < 0.01


@pytest.fixture(scope="module")
def traced():
  """task name → (task, loss, metrics) of one step traced (not compiled) on the smoke config's batch."""
  out = {}
  for name in ("beit/digits.py", "igpt/digits.py", "igpt/digits.py:objective=bert", "mae/digits_dae.py"):
    path, _, arg = name.partition(":")
    config = load_config(path, ",".join(filter(None, [arg, "smoke"])))
    _, task = loop.check_config(config)
    model = nnx.eval_shape(lambda t=task: t.build_model(nnx.Rngs(0)))
    graphdef, params, model_state = split_model(model)
    size = config.data.image_size
    batch = {"image": jax.ShapeDtypeStruct((4, size, size, 1), jnp.uint8),
             "label": jax.ShapeDtypeStruct((4,), jnp.int32)}
    loss, (metrics, _) = jax.eval_shape(task.make_loss_fn(graphdef), params, model_state, batch, jax.random.key(0))
    out[name] = task, loss, metrics
  return out


def test_each_task_traces_a_scalar_loss(traced):
  assert set(traced["beit/digits.py"][2]) == {"token_accuracy"}
  assert set(traced["igpt/digits.py"][2]) == {"pixel_accuracy", "bits_per_pixel"}
  for name, (task, loss, _) in traced.items():
    assert loss.shape == () and loss.dtype == jnp.float32, name
  assert traced["igpt/digits.py:objective=bert"][0].causal is False
  assert tasks.get_task(load_config("igpt/digits.py", "smoke")).palette.shape == (8, 1)
