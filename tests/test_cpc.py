"""CPC: the InfoNCE loss against a numpy reference, the encoder's 10 ms frames, and the task's probes."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from papers_jax import models
from papers_jax.objectives import speech as objective


def numpy_infonce(predictions, z, valid, same):
  total, count = 0.0, 0
  k_max, b, t, _ = predictions.shape
  for k in range(1, k_max + 1):
    for i in range(b):
      for s in range(t - k):
        if not valid[i, s + k]:
          continue
        pred = predictions[k - 1, i, s]
        cands = [z[n, s + k] for n in range(b) if valid[n, s + k]]
        pos = [n for n in range(b) if valid[n, s + k]].index(i)
        cands += [z[i, j] for j in same[k - 1, i, s]]
        scores = np.array([c @ pred for c in cands], np.float64)
        total += np.log(np.exp(scores - scores.max()).sum()) + scores.max() - scores[pos]
        count += 1
  return total / count


def test_infonce_matches_numpy():
  rng = np.random.RandomState(0)
  k, b, t, c = 3, 3, 7, 4
  predictions, z = rng.randn(k, b, t, c).astype(np.float32), rng.randn(b, t, c).astype(np.float32)
  valid = np.arange(t)[None] < np.array([[7], [5], [7]])
  same = np.asarray(objective.cpc_negative_indices(jax.random.key(0), jnp.asarray(valid), k, 2))
  assert (same < valid.sum(-1)[None, :, None, None]).all()  # drawn among the sequence's valid frames
  got = jax.jit(objective.cpc_infonce)(jnp.asarray(predictions), jnp.asarray(z), jnp.asarray(valid), jnp.asarray(same))
  np.testing.assert_allclose(float(got), numpy_infonce(predictions, z, valid, same), rtol=1e-5)
  got = jax.jit(objective.cpc_infonce)(jnp.asarray(predictions), jnp.asarray(z), jnp.asarray(valid))
  np.testing.assert_allclose(float(got), numpy_infonce(predictions, z, valid, np.zeros((k, b, t, 0), int)),
                             rtol=1e-5)


def test_encoder_gives_10ms_frames_and_gru_matches_torch():
  torch = pytest.importorskip("torch")
  model = models.create("cpc_audio", channels=8, context_dim=6, num_offsets=12, rngs=nnx.Rngs(0))
  audio = np.random.RandomState(0).randn(2, 16000).astype(np.float32)
  predictions, z, c = model(jnp.asarray(audio))
  assert z.shape == (2, 100, 8) and c.shape == (2, 100, 6) and predictions.shape == (12, 2, 100, 8)
  mask = np.arange(16000)[None] < np.array([[16000], [8000]])
  assert np.asarray(model.frame_mask(jnp.asarray(mask), 100)).sum(-1).tolist() == [100, 50]
  # Our GRU against torch.nn.GRU with the same weights (gate order r, z, n).
  gru = torch.nn.GRU(8, 6, batch_first=True)
  wi = np.asarray(model.gru.input_proj.kernel[...]).reshape(8, 18).T
  wh = np.asarray(model.gru.hidden_proj.kernel[...]).reshape(6, 18).T
  with torch.no_grad():
    gru.weight_ih_l0.copy_(torch.from_numpy(wi))
    gru.weight_hh_l0.copy_(torch.from_numpy(wh))
    gru.bias_ih_l0.copy_(torch.from_numpy(np.asarray(model.gru.input_proj.bias[...]).reshape(-1) + 0.1))
    gru.bias_hh_l0.copy_(torch.from_numpy(np.asarray(model.gru.hidden_proj.bias[...]).reshape(-1) - 0.2))
    model.gru.input_proj.bias[...] = model.gru.input_proj.bias[...] + 0.1
    model.gru.hidden_proj.bias[...] = model.gru.hidden_proj.bias[...] - 0.2
    theirs = gru(torch.from_numpy(np.asarray(z)))[0].numpy()
  with jax.default_matmul_precision("highest"):
    np.testing.assert_allclose(np.asarray(model.gru(z)), theirs, atol=1e-5)
