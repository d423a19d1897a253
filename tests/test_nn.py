"""Layers against numpy references."""

import math
import os
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from papers_jax import nn
from papers_jax.errors import ConfigError


def np_attention(q, k, v, bias=None, mask=None):
  logits = np.einsum("btnh,bsnh->bnts", q, k) / np.sqrt(q.shape[-1])
  if bias is not None:
    logits = logits + bias
  if mask is not None:
    logits = np.where(mask, logits, -1e30)
  p = np.exp(logits - logits.max(-1, keepdims=True))
  p = p / p.sum(-1, keepdims=True)
  return np.einsum("bnts,bsnh->btnh", p, v)


@pytest.mark.parametrize("with_bias, with_mask", [(False, False), (True, False), (False, True)])
def test_dot_product_attention_matches_numpy(with_bias, with_mask):
  rng = np.random.default_rng(0)
  q, k, v = (rng.normal(size=(2, 5, 3, 4)).astype(np.float32) for _ in range(3))
  bias = rng.normal(size=(1, 3, 5, 5)).astype(np.float32) if with_bias else None
  mask = (rng.uniform(size=(2, 1, 5, 5)) > 0.3) | np.eye(5, dtype=bool) if with_mask else None
  with jax.default_matmul_precision("highest"):
    got = nn.dot_product_attention(q, k, v, bias=bias, mask=mask, implementation="xla")
  np.testing.assert_allclose(got, np_attention(q, k, v, bias, mask), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("bias_shape, mask_shape", [(None, None), ((1, 3, 5, 7), (2, 1, 5, 7)), ((3, 5, 7), (5, 7)),
                                                     ((2, 1, 1, 7), None)])
def test_attention_gradient_matches_autodiff_of_jax(bias_shape, mask_shape):
  # The XLA path has a hand-written backward pass; it must give autodiff's gradients of
  # jax.nn.dot_product_attention for q, k, v and a broadcast bias, masks included.
  rng = np.random.default_rng(3)
  b, t, s, n, h = 2, 5, 7, 3, 4
  q = jnp.asarray(rng.normal(size=(b, t, n, h)), jnp.float32)
  k, v = (jnp.asarray(rng.normal(size=(b, s, n, h)), jnp.float32) for _ in range(2))
  bias = None if bias_shape is None else jnp.asarray(rng.normal(size=bias_shape), jnp.float32)
  mask = None if mask_shape is None else jnp.asarray(rng.uniform(size=mask_shape) > 0.3).at[..., 0].set(True)
  full = lambda x: None if x is None else jnp.broadcast_to(x, (b, n, t, s))
  cotangent = jnp.asarray(rng.normal(size=q.shape), jnp.float32)
  ours = lambda q, k, v, bias: jnp.sum(nn.dot_product_attention(q, k, v, bias=bias, mask=mask) * cotangent)
  theirs = lambda q, k, v, bias: jnp.sum(jax.nn.dot_product_attention(q, k, v, bias=full(bias), mask=full(mask),
                                                                      implementation="xla") * cotangent)
  argnums = (0, 1, 2) if bias is None else (0, 1, 2, 3)
  with jax.default_matmul_precision("highest"):
    got, want = jax.grad(ours, argnums)(q, k, v, bias), jax.grad(theirs, argnums)(q, k, v, bias)
  assert got[-1].shape == want[-1].shape
  for g, w in zip(got, want):
    np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-5)


def test_attention_causal_and_fully_masked_rows_match_jax():
  rng = np.random.default_rng(4)
  q, k, v = (jnp.asarray(rng.normal(size=(2, 6, 2, 8)), jnp.float32) for _ in range(3))
  row_masked = jnp.ones((6, 6), bool).at[2].set(False)  # query 2 sees nothing: a uniform row, no gradient
  cases = [dict(is_causal=True), dict(mask=row_masked)]
  for kw in cases:
    jkw = dict(kw, mask=jnp.broadcast_to(kw["mask"], (2, 2, 6, 6))) if "mask" in kw else kw
    ours = lambda q, k, v: jnp.sum(nn.dot_product_attention(q, k, v, **kw) ** 2)
    theirs = lambda q, k, v: jnp.sum(jax.nn.dot_product_attention(q, k, v, implementation="xla", **jkw) ** 2)
    with jax.default_matmul_precision("highest"):
      np.testing.assert_allclose(ours(q, k, v), theirs(q, k, v), rtol=1e-5)
      for g, w in zip(jax.grad(ours, (0, 1, 2))(q, k, v), jax.grad(theirs, (0, 1, 2))(q, k, v)):
        np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-5)


def test_attention_dropout_matches_numpy_and_autodiff():
  # Probabilities are dropped with a (batch, heads, length, keys) Bernoulli keep-mask drawn from
  # dropout_rng and scaled by 1 / keep; the value against numpy, the gradient against autodiff
  # of the same computation written out in jnp.
  rng = np.random.default_rng(5)
  q, k, v = (jnp.asarray(rng.normal(size=(2, 4, 3, 8)), jnp.float32) for _ in range(3))
  rate, key = 0.3, jax.random.PRNGKey(7)
  keep = jax.random.bernoulli(key, 1.0 - rate, (2, 3, 4, 4))
  assert 0 < int(keep.sum()) < keep.size

  def written_out(q, k, v):
    p = jax.nn.softmax(jnp.einsum("btnh,bsnh->bnts", q, k) / np.sqrt(8.0), axis=-1)
    return jnp.einsum("bnts,bsnh->btnh", jnp.where(keep, p / (1.0 - rate), 0.0), v)

  ours = lambda q, k, v: nn.dot_product_attention(q, k, v, dropout_rate=rate, dropout_rng=key)
  with jax.default_matmul_precision("highest"):
    logits = np.einsum("btnh,bsnh->bnts", q, k) / np.sqrt(8.0)
    p = np.exp(logits - logits.max(-1, keepdims=True))
    p = p / p.sum(-1, keepdims=True)
    want = np.einsum("bnts,bsnh->btnh", np.where(keep, p / (1.0 - rate), 0.0), v)
    np.testing.assert_allclose(ours(q, k, v), want, rtol=1e-5, atol=1e-6)
    loss = lambda f: lambda q, k, v: jnp.sum(f(q, k, v) ** 2)
    for g, w in zip(jax.grad(loss(ours), (0, 1, 2))(q, k, v), jax.grad(loss(written_out), (0, 1, 2))(q, k, v)):
      np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-5)
  with pytest.raises(ValueError, match="dropout_rng"):
    nn.dot_product_attention(q, k, v, dropout_rate=rate)
  with pytest.raises(ValueError, match="equal batch, heads"):
    nn.dot_product_attention(q, k[:, :, :2], v[:, :, :2])


def test_cpu_reduce_fusion_with_a_leading_broadcast():
  # jaxlib 0.10.2's CPU reduce fusion (YNNPACK) got this wrong by up to 150 here; papers_jax turns that
  # fusion kind off on import for the jaxlib versions in XLA_CPU_WORKAROUNDS. This fails again if a
  # jaxlib with the same fault is installed and not listed there.
  rng = np.random.default_rng(6)
  x = rng.normal(size=(8, 197, 768)).astype(np.float32)
  b = rng.normal(size=(1, 197, 768)).astype(np.float32)
  got = jax.jit(lambda x, b: x - jnp.sum(b * x, axis=-1, keepdims=True))(x, b)
  want = x - np.sum(b.astype(np.float64) * x, axis=-1, keepdims=True)
  np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-3)


def test_sincos_matches_mae_reference():
  def mae_1d(dim, pos):
    omega = 1.0 / 10000 ** (np.arange(dim // 2, dtype=np.float64) / (dim / 2.0))
    out = np.einsum("m,d->md", pos.reshape(-1), omega)
    return np.concatenate([np.sin(out), np.cos(out)], axis=1)
  gh, gw, dim = 3, 5, 16
  grid = np.meshgrid(np.arange(gw, dtype=np.float64), np.arange(gh, dtype=np.float64))  # MAE: (w, h) order
  expected = np.concatenate([mae_1d(dim // 2, grid[0]), mae_1d(dim // 2, grid[1])], axis=1)
  np.testing.assert_allclose(nn.sincos_pos_embed_2d((gh, gw), dim)[0], expected, rtol=1e-6, atol=1e-6)


def test_resample_pos_embed_keeps_prefix_and_identity():
  pe = jnp.asarray(np.random.default_rng(2).normal(size=(1, 1 + 16, 8)), jnp.float32)
  np.testing.assert_array_equal(nn.resample_pos_embed(pe, (4, 4)), pe)
  out = nn.resample_pos_embed(pe, (6, 6))
  assert out.shape == (1, 37, 8)
  np.testing.assert_array_equal(out[:, :1], pe[:, :1])
  # A constant grid stays constant under bicubic resampling.
  const = jnp.concatenate([pe[:, :1], jnp.ones((1, 16, 8))], axis=1)
  np.testing.assert_allclose(nn.resample_pos_embed(const, (7, 7))[:, 1:], 1.0, rtol=1e-5)


def test_drop_path_drops_whole_examples_and_rescales():
  layer = nn.DropPath(0.25)
  x = jnp.ones((4000, 3, 2))
  y = np.asarray(layer(x, rngs=nnx.Rngs(dropout=0)))
  per_example = y.reshape(4000, -1)
  assert set(np.unique(per_example).tolist()) <= {0.0, float(np.float32(1 / 0.75))}
  assert np.all(per_example.min(1) == per_example.max(1))  # all-or-nothing per example
  assert abs(per_example.mean() - 1.0) < 0.05
  layer.eval()
  np.testing.assert_array_equal(layer(x), x)
  with pytest.raises(ValueError, match="needs `rngs`"):
    nn.DropPath(0.1)(x)


def test_layernorm_matches_numpy_and_keeps_dtype():
  x = np.random.default_rng(3).normal(size=(2, 5, 8)).astype(np.float32) * 4 + 1
  ln = nn.LayerNorm(8, rngs=nnx.Rngs(0))
  expected = (x - x.mean(-1, keepdims=True)) / np.sqrt(x.var(-1, keepdims=True) + 1e-6)
  np.testing.assert_allclose(ln(jnp.asarray(x)), expected, rtol=1e-5, atol=1e-5)
  assert ln(jnp.asarray(x, jnp.bfloat16)).dtype == jnp.bfloat16


def test_patch_embed_equals_strided_convolution():
  rngs = nnx.Rngs(0)
  pe = nn.PatchEmbed(8, 4, 3, 5, rngs=rngs)
  x = jnp.asarray(np.random.default_rng(4).normal(size=(2, 8, 8, 3)), jnp.float32)
  with jax.default_matmul_precision("highest"):
    conv = jax.lax.conv_general_dilated(x, pe.proj["kernel"][...], (4, 4), "VALID",
                                        dimension_numbers=("NHWC", "HWIO", "NHWC"))
    got = pe(x)
  np.testing.assert_allclose(got, conv.reshape(2, 4, 5) + pe.proj["bias"][...], rtol=1e-5, atol=1e-5)
  with pytest.raises(ConfigError, match="not divisible by the patch size"):
    nn.PatchEmbed(10, 4, 3, 5, rngs=rngs)


def test_gelu_is_the_exact_erf_form_in_value_and_gradient():
  from papers_jax.nn.mlp import ACTIVATIONS
  x = np.linspace(-9.0, 9.0, 20001, dtype=np.float32)
  erf = np.vectorize(math.erf)
  z = x.astype(np.float64)
  want = 0.5 * z * (1.0 + erf(z / math.sqrt(2.0)))
  want_grad = 0.5 * (1.0 + erf(z / math.sqrt(2.0))) + z * np.exp(-0.5 * z * z) / math.sqrt(2.0 * math.pi)
  gelu = ACTIVATIONS["gelu"]
  np.testing.assert_allclose(np.asarray(jax.jit(gelu)(x)), want, rtol=0, atol=2e-6)
  np.testing.assert_allclose(np.asarray(jax.jit(jax.vmap(jax.grad(gelu)))(x)), want_grad, rtol=0, atol=2e-6)
  assert gelu(jnp.ones(3, jnp.bfloat16)).dtype == jnp.bfloat16


def test_mlp_and_dense_shapes_carry_logical_axes():
  mlp = nn.Mlp(8, 16, rngs=nnx.Rngs(0))
  assert mlp.fc1.kernel.get_metadata()["axes"] == ("embed", "mlp")
  assert mlp.fc2.kernel.get_metadata()["axes"] == ("mlp", "embed")
  attn = nn.Attention(8, 2, rngs=nnx.Rngs(0))
  assert attn.qkv.kernel.shape == (8, 3, 2, 4)
  assert attn.proj.kernel.get_metadata()["axes"] == ("heads", "kv", "embed")


def test_gradient_barrier_is_the_identity_in_value_and_gradient():
  x = jnp.asarray(np.random.default_rng(2).normal(size=(2, 3, 5)), jnp.float32)
  np.testing.assert_array_equal(jax.jit(nn.gradient_barrier)(x), x)
  grad = jax.jit(jax.grad(lambda x: jnp.sum(jnp.sin(nn.gradient_barrier(x * 3.0)))))(x)
  np.testing.assert_array_equal(grad, jax.jit(jax.grad(lambda x: jnp.sum(jnp.sin(x * 3.0))))(x))


def _largest_fusion_in_train_grad(depth: int) -> int:
  """Operands of the widest fusion XLA builds for a ViT's parameter gradient at this depth."""
  from papers_jax.models.vit import VisionTransformer
  model = VisionTransformer(img_size=16, patch_size=8, num_classes=4, embed_dim=16, depth=depth, num_heads=2,
                            rngs=nnx.Rngs(0))
  graphdef, params = nnx.split(model)
  images = jnp.ones((2, 16, 16, 3))

  def loss(params):
    return jnp.sum(nnx.merge(graphdef, params)(images) ** 2)

  hlo = jax.jit(jax.grad(loss)).lower(params).compile().as_text()
  return max(line.split("fusion(", 1)[1].split("), kind=")[0].count("%")
             for line in hlo.splitlines() if re.search(r"= \S+ fusion\(", line))


def test_gradient_barrier_keeps_the_widest_fusion_from_growing_with_depth():
  # With the barrier, no fusion of a ViT's parameter gradient takes operands from every later block
  # (nn/barrier.py): the widest one is (about) as wide at depth 8 as at depth 2, whatever XLA's version.
  with_barrier = [_largest_fusion_in_train_grad(depth) for depth in (2, 8)]
  assert with_barrier[1] <= with_barrier[0] + 2, with_barrier


@pytest.mark.skipif(not os.environ.get("PAPERS_JAX_PLATFORM_CHECKS"),
                    reason="counts XLA fusion operands without the barrier, which depends on the XLA version's CPU "
                    "fusion heuristics (jaxlib 0.10.2 duplicates the residual gradient per block); set "
                    "PAPERS_JAX_PLATFORM_CHECKS=1 to check whether this jaxlib still needs the barrier")
def test_without_the_gradient_barrier_xla_duplicates_the_residual_gradient(monkeypatch):
  # XLA's CPU fusion copies the residual stream's gradient (a sum over all later blocks) into each
  # consumer, so the widest fusion grows with depth: the reason nn/barrier.py exists.
  from papers_jax.models import vit
  monkeypatch.setattr(vit, "gradient_barrier", lambda x: x)
  without = [_largest_fusion_in_train_grad(depth) for depth in (2, 8)]
  assert without[1] > 2 * without[0], without
