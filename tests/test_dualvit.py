"""Dual-ViT (models/dualvit.py): the semantic pathway and the dual attention against numpy, the paper's parameter
counts, the FLOP counter against XLA, the named features.

Forward parity with the official PyTorch model is a script run by hand (tests/dualvit_official_parity.py; its last
result is in docs/vision_variants.md).
"""

import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from papers_jax import models
from papers_jax.errors import ConfigError
from papers_jax.models import conv_flops, dualvit
from timm_parity import FixedKeyRngs, abstract, num_params

# The official code's models (YehLi/ImageNetModel, classification/dualvit.py, token-labeling head included),
# counted in PyTorch: the paper's 25.1M / 42.6M / 73.0M.
OFFICIAL_PARAMS = {"dualvit_s": 25_054_000, "dualvit_b": 42_627_024, "dualvit_l": 72_966_544}
FULL = bool(os.environ.get("PAPERS_JAX_FULL_PARITY"))  # B and L too (make test-full)


def perturb(module, seed=0):
  """Every parameter random (layer scales, norms and biases too), so that no term hides behind its init."""
  rng = np.random.default_rng(seed)
  for _, v in nnx.to_flat_state(nnx.state(module, nnx.Param)):
    v[...] = jnp.asarray(rng.normal(0, 0.5, v.shape), jnp.float32)
  return module


def p(module, *names):
  return [np.asarray(getattr(module, n)[...], np.float64) for n in names]


def dense(layer, x):
  kernel, bias = p(layer, "kernel", "bias")
  return x @ kernel + bias


def layer_norm(layer, x, eps):
  scale, bias = p(layer, "scale", "bias")
  mean = x.mean(-1, keepdims=True)
  return (x - mean) / np.sqrt(((x - mean) ** 2).mean(-1, keepdims=True) + eps) * scale + bias


def softmax(x, axis=-1):
  e = np.exp(x - x.max(axis, keepdims=True))
  return e / e.sum(axis, keepdims=True)


def attention(q, k, v, heads):
  """Loops over batch and heads: softmax(q kᵀ / √d) v."""
  b, lq, c = q.shape
  d = c // heads
  out = np.zeros_like(q)
  for i in range(b):
    for h in range(heads):
      s = slice(h * d, (h + 1) * d)
      out[i, :, s] = softmax(q[i, :, s] @ k[i, :, s].T / np.sqrt(d)) @ v[i, :, s]
  return out


def gelu(x):
  from scipy.special import erf
  return 0.5 * x * (1 + erf(x / np.sqrt(2)))


@pytest.fixture(scope="module")
def tiny():
  return perturb(dualvit.DualViT(stem_width=4, dims=(8, 16, 16, 16), num_heads=(2, 2, 4, 4), mlp_ratios=(2, 2, 2, 2),
                                 depths=(1, 1, 2, 1), num_classes=3, img_size=16, semantic_pool=2, rngs=nnx.Rngs(0)))


def test_semantic_tokens_of_stage_one_match_numpy(tiny):
  m = tiny.semantic_init
  x = np.random.default_rng(1).normal(size=(2, 4, 4, 8))
  pooled = x.reshape(2, 2, 2, 2, 2, 8).mean(axis=(2, 4)).reshape(2, 4, 8)  # 2×2 average pool, row-major tokens
  kv = dense(m.kv, pooled)
  k, v = kv[..., :8], kv[..., 8:]
  q = dense(m.query_proj, layer_norm(m.query_norm, p(m, "queries")[0], 1e-5))
  attended = softmax(np.einsum("mc,bnc->bmn", q, k) / np.sqrt(8)) @ v  # one head, scale C^-1/2
  se = dense(m.se_fc2, np.maximum(dense(m.se_fc1, (attended + pooled).mean(1)), 0)).reshape(2, 2, 8)
  w = softmax(se, axis=1)  # per channel, over {attended, pooled}
  expected = layer_norm(m.norm, attended * w[:, None, 0] + pooled * w[:, None, 1], 1e-5)
  np.testing.assert_allclose(np.asarray(m(jnp.asarray(x, jnp.float32))), expected, rtol=1e-4, atol=1e-4)


def test_dual_attention_matches_numpy(tiny):
  """Semantic self-attention, semantic → pixel cross-attention and MLP (each under its layer scale), then the
  pixels attend to the updated semantic tokens only."""
  m = tiny.stages[0][0].attn
  rng = np.random.default_rng(2)
  x, sem0 = rng.normal(size=(2, 16, 8)), rng.normal(size=(2, 4, 8))
  g1, g2, g3 = (p(g, "scale")[0] for g in (m.gamma1, m.gamma2, m.gamma3))
  qkv = dense(m.qkv_proxy, layer_norm(m.qkv_proxy_norm, sem0, 1e-5))
  sem = sem0 + g1 * attention(qkv[..., :8], qkv[..., 8:16], qkv[..., 16:], 2)
  kv = dense(m.kv_proxy, x)
  sem = sem + g2 * attention(dense(m.q_proxy, layer_norm(m.q_proxy_norm, sem, 1e-5)), kv[..., :8], kv[..., 8:], 2)
  mlp = dense(m.mlp_proxy_fc2, np.maximum(dense(m.mlp_proxy_fc1, layer_norm(m.mlp_proxy_norm, sem, 1e-5)), 0))
  sem = sem + g3 * mlp
  kv = dense(m.kv, layer_norm(m.proxy_norm, sem, 1e-5))
  out = dense(m.proj, attention(dense(m.q, x), kv[..., :8], kv[..., 8:], 2))
  got_out, got_sem = m(jnp.asarray(x, jnp.float32), jnp.asarray(sem0, jnp.float32))
  np.testing.assert_allclose(np.asarray(got_sem), sem, rtol=1e-4, atol=1e-4)
  np.testing.assert_allclose(np.asarray(got_out), out, rtol=1e-4, atol=1e-4)


def test_merge_block_attends_over_both_pathways_and_splits_the_ffn(tiny):
  m = tiny.stages[2][0]
  rng = np.random.default_rng(3)
  x, sem = rng.normal(size=(2, 1, 1, 16)), rng.normal(size=(2, 4, 16))
  tokens = np.concatenate([x.reshape(2, 1, 16), sem], axis=1)
  g1, g2 = p(m.gamma1, "scale")[0], p(m.gamma2, "scale")[0]
  y = layer_norm(m.norm1, tokens, 1e-6)
  kv = dense(m.kv, y)
  tokens = tokens + g1 * dense(m.proj, attention(dense(m.q, y), kv[..., :16], kv[..., 16:], 4))
  y = layer_norm(m.norm2, tokens, 1e-6)
  # A 1×1 map: the 3×3 depthwise conv sees only its centre tap.
  centre, dw_bias = p(m.mlp.dwconv, "kernel", "bias")
  pixel = dense(m.mlp.fc2, gelu(dense(m.mlp.fc1, y[:, :1]) * centre[1, 1, 0] + dw_bias))
  proxy = dense(m.mlp_proxy_fc2, gelu(dense(m.mlp_proxy_fc1, y[:, 1:])))
  tokens = tokens + g2 * np.concatenate([pixel, proxy], axis=1)
  got_x, got_sem = m(jnp.asarray(x, jnp.float32), jnp.asarray(sem, jnp.float32))
  np.testing.assert_allclose(np.asarray(got_x).reshape(2, 1, 16), tokens[:, :1], rtol=1e-4, atol=1e-4)
  np.testing.assert_allclose(np.asarray(got_sem), tokens[:, 1:], rtol=1e-4, atol=1e-4)


def test_parameter_counts_equal_the_official_models_and_the_paper():
  for name, official in OFFICIAL_PARAMS.items() if FULL else [("dualvit_s", OFFICIAL_PARAMS["dualvit_s"])]:
    count = num_params(abstract(name))
    assert count == official, (name, count)
    assert round(count / 1e6, 1) == dualvit.PAPER_PARAMS_M[name], name


@pytest.mark.skipif(not FULL, reason="make test-full (CI time)")
def test_forward_flops_match_xla(tiny):
  analytic = models.forward_flops(tiny, count_padding=False)
  graphdef, state = nnx.split(tiny)
  x = jax.ShapeDtypeStruct((2, 16, 16, 3), jnp.float32)
  xla = conv_flops.xla_flops(lambda s, x: nnx.merge(graphdef, s)(x, train=False), state, x) / 2
  assert 0.95 < xla / analytic < 1.05, xla / analytic


def test_named_features_end_in_the_logits(tiny):
  images = jnp.asarray(np.random.default_rng(5).normal(size=(2, 16, 16, 3)), jnp.float32)
  named = tiny.forward_intermediates(images, train=False)
  assert [named[f"stage{i}"].shape[1] for i in range(4)] == [4, 2, 1, 1]
  np.testing.assert_allclose(named["logits"], tiny(images, train=False), rtol=1e-5, atol=1e-5)
  # The token-labeling head: half its maximum over the last pixel tokens is added to the class head.
  aux = tiny.aux_head(named["encoded"][:, 1:]).max(axis=1)
  np.testing.assert_allclose(named["logits"], tiny.head(named["encoded"][:, 0]) + 0.5 * aux, rtol=1e-5, atol=1e-5)


def test_an_input_too_small_for_the_semantic_pool_or_of_another_size_is_named():
  with pytest.raises(ConfigError, match="semantic_pool"):
    abstract("dualvit_s", img_size=16, semantic_pool=7)

  def build_and_call():
    model = models.create("dualvit_s", img_size=16, semantic_pool=2, rngs=FixedKeyRngs())
    return model(jnp.zeros((1, 32, 32, 3)), train=False)

  with pytest.raises(ConfigError, match="img_size"):
    nnx.eval_shape(build_and_call)
