"""Crossformer: the Two-Stage Attention layer and segment merging against numpy references (every parameter
random, LayerNorms included), the paper configuration's parameter count against the count of the official
code's layer shapes, and the FLOP counter against XLA's cost analysis."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from scipy.special import erf

from papers_jax import models
from papers_jax.models import crossformer


class FixedKeyRngs:
  def params(self):
    return jax.random.key(0)


def _randomized(module, seed=0):
  """Every parameter replaced by N(0, 0.3) noise around its init (LayerNorm scales around 1)."""
  rng = np.random.RandomState(seed)
  for _, p in nnx.iter_graph(module):
    if isinstance(p, nnx.Param):
      p[...] = p[...] + jnp.asarray(0.3 * rng.randn(*p.shape).astype(np.float32))
  return module


def _jit_call(module, *args):
  graphdef, state = nnx.split(module)
  with jax.default_matmul_precision("highest"):
    return np.asarray(jax.jit(lambda s, *a: nnx.merge(graphdef, s)(*a))(state, *args))


# ------------------------------------------------------------------------------ numpy references


def _np(p):
  return np.asarray(p[...], np.float64)


def _dense(layer, x):
  w, b = _np(layer.kernel), _np(layer.bias)
  return x @ w.reshape(w.shape[0], -1) + b.reshape(-1)  # (in, heads, head_dim) kernels flattened


def _attention(layer, x, ctx):
  """Multi-head attention; x (n, L, d), ctx (n, S, d)."""
  heads, hd = layer.q.kernel.shape[1:]
  q, k, v = (_dense(getattr(layer, n), y).reshape(y.shape[0], y.shape[1], heads, hd)
             for n, y in (("q", x), ("k", ctx), ("v", ctx)))
  s = np.einsum("nlhe,nshe->nhls", q, k) / np.sqrt(hd)
  p = np.exp(s - s.max(-1, keepdims=True))
  p /= p.sum(-1, keepdims=True)
  out = np.einsum("nhls,nshe->nlhe", p, v).reshape(x.shape[0], x.shape[1], heads * hd)
  return out @ _np(layer.proj.kernel).reshape(heads * hd, -1) + _np(layer.proj.bias)


def _layer_norm(norm, x):
  mu, var = x.mean(-1, keepdims=True), x.var(-1, keepdims=True)
  return (x - mu) / np.sqrt(var + 1e-5) * _np(norm.scale) + _np(norm.bias)


def _mlp(mlp, x):
  h = _dense(mlp.fc1, x)
  return _dense(mlp.fc2, 0.5 * h * (1 + erf(h / np.sqrt(2))))


def _tsa_numpy(tsa, x):
  """The paper's Eq. 3–4 / the official TwoStageAttentionLayer, with explicit loops over the layout."""
  b, d, n, e = x.shape
  t = x.reshape(b * d, n, e)
  t = _layer_norm(tsa.norm1, t + _attention(tsa.time_attn, t, t))
  t = _layer_norm(tsa.norm2, t + _mlp(tsa.mlp1, t))
  t = t.reshape(b, d, n, e)
  out = np.zeros_like(t)
  router = _np(tsa.router)  # (n, c, e)
  for i in range(b):
    for s in range(n):
      y = t[i, :, s][None]                                    # the D channels of segment s
      z = _attention(tsa.sender, router[s][None], y)          # routers gather: (1, c, e)
      received = _attention(tsa.receiver, y, z)               # channels read the gathered z
      y = _layer_norm(tsa.norm3, y + received)
      out[i, :, s] = _layer_norm(tsa.norm4, y + _mlp(tsa.mlp2, y))[0]
  return out


def test_two_stage_attention_matches_numpy():
  b, d, n, e = 2, 3, 4, 8
  tsa = _randomized(crossformer.TwoStageAttention(n, 2, e, 2, 16, dropout=0.0, rngs=nnx.Rngs(params=0)))
  x = np.random.RandomState(1).randn(b, d, n, e).astype(np.float32)
  got = _jit_call(tsa, jnp.asarray(x))
  np.testing.assert_allclose(got, _tsa_numpy(tsa, x.astype(np.float64)), atol=1e-4)


def test_segment_merging_matches_numpy():
  x = np.random.RandomState(2).randn(2, 3, 5, 4).astype(np.float32)  # 5 segments, window 2: the last repeated
  merged = np.asarray(crossformer.merge_segments(jnp.asarray(x), 2))
  padded = np.concatenate([x, x[:, :, -1:]], axis=2)
  want = np.stack([np.concatenate([padded[:, :, 2 * j], padded[:, :, 2 * j + 1]], -1) for j in range(3)], axis=2)
  np.testing.assert_array_equal(merged, want)
  layer = _randomized(crossformer.SegmentMerging(4, 2, rngs=nnx.Rngs(params=0)))
  got = _jit_call(layer, jnp.asarray(x))
  ref = _dense(layer.linear, _layer_norm(layer.norm, want.astype(np.float64)))
  np.testing.assert_allclose(got, ref, atol=1e-4)


# ------------------------------------------------------------------------------ the paper configuration


def _official_param_count(data_dim, in_len, out_len, seg_len, win_size, factor, d_model, d_ff, n_heads, e_layers):
  """Parameters of Thinklab-SJTU/Crossformer's `Crossformer` from its layer shapes (cross_models/*.py):
  AttentionLayer = 4 Linear(d, d); TwoStageAttentionLayer = 3 AttentionLayer + router (seg_num, factor, d)
  + 4 LayerNorm(d) + 2 MLP (d → d_ff → d); SegMerging = LayerNorm(win·d) + Linear(win·d, d); DecoderLayer =
  TSA + AttentionLayer + 2 LayerNorm(d) + MLP (d → d → d) + Linear(d, seg_len); DSW = Linear(seg_len, d)."""
  del n_heads  # d_keys · n_heads = d_model: the head count does not change the shapes
  linear = lambda i, o: i * o + o  # noqa: E731
  attention = 4 * linear(d_model, d_model)
  norm = lambda n: 2 * n  # noqa: E731
  mlp = lambda h: linear(d_model, h) + linear(h, d_model)  # noqa: E731
  tsa = lambda seg_num: 3 * attention + seg_num * factor * d_model + 4 * norm(d_model) + 2 * mlp(d_ff)  # noqa: E731
  in_seg, out_seg = math.ceil(in_len / seg_len), math.ceil(out_len / seg_len)
  total = linear(seg_len, d_model) + data_dim * in_seg * d_model + norm(d_model)  # embedding, position, pre_norm
  total += tsa(in_seg)
  for i in range(1, e_layers):
    total += norm(win_size * d_model) + linear(win_size * d_model, d_model) + tsa(math.ceil(in_seg / win_size ** i))
  total += data_dim * out_seg * d_model
  total += (e_layers + 1) * (tsa(out_seg) + attention + 2 * norm(d_model) + mlp(d_model) + linear(d_model, seg_len))
  return total


@pytest.mark.parametrize("lookback,horizon,seg_len", [(168, 24, 6)])
def test_paper_parameter_count(lookback, horizon, seg_len):
  """The official ETTh1 script's setting (scripts/ETTh1.sh) for H = 24: L = 168, L_seg = 6; 7 channels."""
  model = nnx.eval_shape(lambda: models.create("crossformer", rngs=FixedKeyRngs(), num_channels=7,
                                               context_length=lookback, prediction_length=horizon, seg_len=seg_len))
  want = _official_param_count(7, lookback, horizon, seg_len, 2, 10, 256, 512, 4, 3)
  assert models.param_counts(model)["params"] == want
  assert len(model.encoder) == 3 and len(model.decoder) == 4  # 3 scale blocks, 4 scales to decode


# ------------------------------------------------------------------------------ compute accounting


def test_forward_flops_match_xla():
  model = nnx.eval_shape(lambda: models.create(
      "crossformer", rngs=FixedKeyRngs(), num_channels=3, context_length=96, prediction_length=24,
      d_model=64, num_heads=4, d_ff=128, encoder_layers=2))
  graphdef, state = nnx.split(model)
  x = jax.ShapeDtypeStruct((2, 96, 3), jnp.float32)
  cost = jax.jit(lambda s, x: nnx.merge(graphdef, s)(x)).lower(state, x).cost_analysis()
  xla = (cost[0] if isinstance(cost, (list, tuple)) else cost)["flops"] / 2
  ratio = xla / models.forward_flops(model)
  assert 0.95 <= ratio <= 1.05, ratio
