"""The VQ layer (nn/quantize.py): indices, quantised output, loss and straight-through gradients against
diffusers' VectorQuantizer (legacy=False: β on the commitment term, as the paper) on the same codebook and
inputs; the losses, metrics and the EMA codebook update against numpy; dead-code restarts."""

import importlib.util

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from papers_jax.nn.quantize import VectorQuantizer

K, D = 16, 4


def _layer(**kwargs):
  return VectorQuantizer(K, D, rngs=nnx.Rngs(0), **kwargs)


def _z(seed=0, shape=(2, 3, 3, D)):
  return np.random.RandomState(seed).randn(*shape).astype(np.float32) * 0.5


def _numpy_reference(z, codebook, beta):
  flat = z.reshape(-1, D).astype(np.float64)
  d = ((flat[:, None, :] - codebook[None].astype(np.float64)) ** 2).sum(-1)
  idx = d.argmin(1)
  e = codebook[idx]
  mse = ((flat - e) ** 2).mean()
  p = np.bincount(idx, minlength=K) / len(idx)
  perplexity = np.exp(-(p[p > 0] * np.log(p[p > 0])).sum())
  return idx, e, mse, perplexity, (p > 0).mean()


def test_losses_and_metrics_match_numpy():
  layer = _layer()
  layer.embedding[...] = jnp.asarray(np.random.RandomState(1).randn(K, D).astype(np.float32) * 0.5)
  z = _z()
  z_q, aux = layer(z)
  idx, e, mse, perplexity, usage = _numpy_reference(z, np.asarray(layer.embedding[...]), 0.25)
  np.testing.assert_array_equal(np.asarray(aux["indices"]).reshape(-1), idx)
  np.testing.assert_allclose(np.asarray(z_q).reshape(-1, D), e, rtol=0, atol=1e-6)
  for name in ("codebook_loss", "commitment_loss"):  # equal values, different gradients
    np.testing.assert_allclose(float(aux[name]), mse, rtol=1e-5)
  np.testing.assert_allclose(float(aux["loss"]), 1.25 * mse, rtol=1e-5)
  np.testing.assert_allclose(float(aux["perplexity"]), perplexity, rtol=1e-5)
  np.testing.assert_allclose(float(aux["usage"]), usage, rtol=1e-6)


def test_straight_through_and_loss_gradients():
  layer = _layer()
  graphdef, params = nnx.split(layer)
  z = _z(2)
  g = np.random.RandomState(3).randn(*z.shape).astype(np.float32)

  def objective(params, z):
    z_q, aux = nnx.merge(graphdef, params)(z)
    return jnp.sum(z_q * g) + aux["loss"]

  grads_params, grad_z = jax.grad(objective, argnums=(0, 1))(params, z)
  idx, e, *_ = _numpy_reference(z, np.asarray(layer.embedding[...]), 0.25)
  n = z.size
  # d/dz: the decoder's gradient copied straight through, plus β · 2 (z − e) / n from the commitment term.
  np.testing.assert_allclose(np.asarray(grad_z), g + (0.25 * 2 * (z.reshape(-1, D) - e) / n).reshape(z.shape),
                             rtol=1e-5, atol=1e-6)
  # d/de_k: only the codebook term, 2 Σ_{z → k} (e_k − z) / n.
  want = np.zeros((K, D))
  np.add.at(want, idx, 2 * (e - z.reshape(-1, D)) / n)
  np.testing.assert_allclose(np.asarray(grads_params["embedding"][...]), want, rtol=1e-5, atol=1e-7)


@pytest.mark.torch
def test_matches_diffusers_vector_quantizer():
  torch = pytest.importorskip("torch")
  if importlib.util.find_spec("diffusers") is None:
    pytest.skip("diffusers is not installed")
  from papers_jax.convert.torch_compat import _define_torchvision_ops
  _define_torchvision_ops()
  from diffusers.models.autoencoders.vae import VectorQuantizer as Reference
  torch.manual_seed(0)
  ref = Reference(K, D, beta=0.25, legacy=False)
  with torch.no_grad():
    ref.embedding.weight.copy_(torch.randn(K, D) * 0.5)
  z = _z(4, (2, 4, 4, D))
  g = np.random.RandomState(5).randn(*z.shape).astype(np.float32)
  z_t = torch.from_numpy(np.ascontiguousarray(z.transpose(0, 3, 1, 2))).requires_grad_(True)
  z_q_t, loss_t, (_, _, idx_t) = ref(z_t)
  ((z_q_t * torch.from_numpy(np.ascontiguousarray(g.transpose(0, 3, 1, 2)))).sum() + loss_t).backward()

  layer = _layer()
  layer.embedding[...] = jnp.asarray(ref.embedding.weight.detach().numpy())
  graphdef, params = nnx.split(layer)

  def objective(params, z):
    z_q, aux = nnx.merge(graphdef, params)(z)
    return jnp.sum(z_q * g) + aux["loss"], (z_q, aux)

  (_, (z_q, aux)), (grads, grad_z) = jax.value_and_grad(objective, argnums=(0, 1), has_aux=True)(params, z)
  np.testing.assert_array_equal(np.asarray(aux["indices"]).reshape(-1), idx_t.numpy())
  np.testing.assert_allclose(np.asarray(z_q), z_q_t.detach().numpy().transpose(0, 2, 3, 1), rtol=0, atol=1e-6)
  np.testing.assert_allclose(float(aux["loss"]), float(loss_t.detach()), rtol=1e-5)
  np.testing.assert_allclose(np.asarray(grad_z), z_t.grad.numpy().transpose(0, 2, 3, 1), rtol=0, atol=1e-6)
  np.testing.assert_allclose(np.asarray(grads["embedding"][...]), ref.embedding.weight.grad.numpy(), rtol=0,
                             atol=1e-6)


def test_ema_codebook_update_matches_numpy_and_only_in_training():
  layer = _layer(ema_decay=0.99)
  assert not nnx.state(layer, nnx.Param)  # the EMA codebook is not trained by gradients
  z = _z(6)
  codebook = np.asarray(layer.embedding[...]).copy()
  layer(z)  # evaluation: no update
  np.testing.assert_array_equal(np.asarray(layer.embedding[...]), codebook)
  z_q, aux = layer(z, train=True)
  np.testing.assert_allclose(float(aux["codebook_loss"]), float(aux["commitment_loss"]))
  np.testing.assert_allclose(float(aux["loss"]), 0.25 * float(aux["commitment_loss"]), rtol=1e-6)
  idx, e, *_ = _numpy_reference(z, codebook, 0.25)
  np.testing.assert_allclose(np.asarray(z_q).reshape(-1, D), e, rtol=0, atol=1e-6)  # quantised with the old codes
  flat = z.reshape(-1, D)
  onehot = np.eye(K)[idx]
  count = 0.01 * onehot.sum(0)
  total = 0.99 * codebook + 0.01 * onehot.T @ flat
  n = count.sum()
  smoothed = (count + 1e-5) / (n + K * 1e-5) * n
  np.testing.assert_allclose(np.asarray(layer.ema_count[...]), count, rtol=1e-6)
  np.testing.assert_allclose(np.asarray(layer.embedding[...]), total / smoothed[:, None], rtol=1e-4)


def test_dead_code_restarts_move_unused_codes_onto_encoder_outputs():
  layer = _layer(ema_decay=0.99, restart_threshold=0.5)
  z = _z(7) + 5.0  # far from every initial code: after one step every code is below the threshold
  layer(z, train=True, rngs=nnx.Rngs(dropout=0))
  flat = z.reshape(-1, D)
  codes = np.asarray(layer.embedding[...])
  distance = np.abs(codes[:, None, :] - flat[None]).max(-1).min(1)
  assert distance.max() < 1e-3  # every code now sits (almost) on one of the batch's vectors
  _, aux = layer(z)
  assert float(aux["usage"]) > 0.3
  with pytest.raises(ValueError, match="need the EMA codebook"):
    _layer(restart_threshold=0.5)
