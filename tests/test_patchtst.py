"""PatchTST: patching (the paper's end padding, HF's start trimming, the /42 and /64 patch counts), residual
attention against a numpy reference, forward parity with HF `PatchTSTForPrediction` and
`PatchTSTForPretraining` (the same mask passed in) on tiny random models with every non-matrix tensor
perturbed, and the masked-patch loss against numpy."""

import importlib.util

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from papers_jax import convert, models
from papers_jax.models import patchtst

TOL = 1e-4
C, L, P, S, H = 3, 34, 8, 4, 6  # L − P is not a multiple of S: HF trims the first 2 steps
TINY = dict(d_model=16, num_heads=4, d_ff=32, num_layers=2, dropout=0.0)


class FixedKeyRngs:
  """Stands in for nnx.Rngs in shape-only builds (see tests/timm_parity.py)."""

  def params(self):
    return jax.random.key(0)


def test_patch_counts_of_the_paper_variants():
  for name, n in (("patchtst_42", 42), ("patchtst_64", 64), ("patchtst_42_small", 42), ("patchtst_pretrain", 42)):
    model = nnx.eval_shape(lambda: models.create(name, rngs=FixedKeyRngs(), num_channels=7))
    assert model.num_patches == n, name


def test_patchify_end_padding_and_trimming():
  x = np.arange(2 * 20 * 1, dtype=np.float32).reshape(2, 20, 1)
  padded = np.asarray(patchtst.patchify(jnp.asarray(x), 8, 4, "end"))  # (2, 1, N, 8)
  assert padded.shape == (2, 1, (20 - 8) // 4 + 2, 8)
  np.testing.assert_array_equal(padded[0, 0, -1], [16, 17, 18, 19, 19, 19, 19, 19])  # the last value repeated
  trimmed = np.asarray(patchtst.patchify(jnp.asarray(x), 8, 5, None))  # (20 − 8) // 5 + 1 = 3 patches from step 2
  np.testing.assert_array_equal(trimmed[0, 0, 0], np.arange(2, 10))
  np.testing.assert_array_equal(trimmed[0, 0, -1], np.arange(12, 20))


def test_residual_attention_matches_numpy():
  """Layer 2's scores are its own q·k/√d plus layer 1's (already residual) scores; the softmax is over the sum."""
  rng = np.random.RandomState(0)
  attn = patchtst.Attention(8, 2, rngs=nnx.Rngs(params=0))
  x = rng.randn(3, 5, 8).astype(np.float32)
  prev = rng.randn(3, 2, 5, 5).astype(np.float32)
  with jax.default_matmul_precision("highest"):
    out, scores = attn(jnp.asarray(x), jnp.asarray(prev))
  w = {n: np.asarray(getattr(attn, n).kernel[...]) for n in ("q", "k", "v")}
  b = {n: np.asarray(getattr(attn, n).bias[...]) for n in ("q", "k", "v")}
  q, k, v = (np.einsum("bnd,dhe->bnhe", x, w[n]) + b[n] for n in "qkv")
  ref_scores = np.einsum("bqhd,bkhd->bhqk", q, k) / np.sqrt(4) + prev
  p = np.exp(ref_scores - ref_scores.max(-1, keepdims=True))
  p /= p.sum(-1, keepdims=True)
  ctx = np.einsum("bhqk,bkhd->bqhd", p, v)
  ref = np.einsum("bqhd,hde->bqe", ctx, np.asarray(attn.proj.kernel[...])) + np.asarray(attn.proj.bias[...])
  np.testing.assert_allclose(np.asarray(scores), ref_scores, atol=1e-5)
  np.testing.assert_allclose(np.asarray(out), ref, atol=1e-5)


def test_residual_attention_changes_the_forecast():
  kw = dict(num_channels=C, context_length=L, prediction_length=H, patch_length=P, stride=S, **TINY)
  on = patchtst.PatchTST(residual_attention=True, rngs=nnx.Rngs(params=0), **kw)
  off = patchtst.PatchTST(residual_attention=False, rngs=nnx.Rngs(params=0), **kw)
  x = jnp.asarray(np.random.RandomState(1).randn(2, L, C).astype(np.float32))
  assert np.abs(np.asarray(on(x)) - np.asarray(off(x))).max() > 1e-4


def test_masked_patch_mse_matches_numpy():
  rng = np.random.RandomState(0)
  pred, target = rng.randn(2, 3, 5, 4), rng.randn(2, 3, 5, 4)
  mask = rng.rand(2, 3, 5) < 0.4
  want = (((pred - target) ** 2).mean(-1) * mask).sum() / mask.sum()
  np.testing.assert_allclose(float(patchtst.masked_patch_mse(pred, target, mask)), want, rtol=1e-6)


def test_random_patch_mask_ratio():
  mask = np.asarray(patchtst.random_patch_mask(jax.random.key(0), (4, 3, 42), 0.4))
  assert (mask.sum(-1) == 42 - int(42 * 0.6)).all()  # HF's len_keep = int(N · (1 − ratio))
  assert len({tuple(m) for m in mask.reshape(-1, 42)}) > 1  # a mask per (example, channel)


# ------------------------------------------------------------------------------ HF parity

if importlib.util.find_spec("torch") is None or importlib.util.find_spec("transformers") is None:
  torch = None
else:
  from papers_jax.convert.torch_compat import import_timm
  import_timm()  # the torchvision shim, before transformers
  import torch
  import transformers

needs_torch = pytest.mark.skipif(torch is None, reason="needs torch and transformers")


def _hf_config(**overrides):
  return transformers.PatchTSTConfig(**dict(
      num_input_channels=C, context_length=L, patch_length=P, patch_stride=S, prediction_length=H,
      d_model=TINY["d_model"], num_attention_heads=TINY["num_heads"], ffn_dim=TINY["d_ff"],
      num_hidden_layers=TINY["num_layers"], pooling_type=None, scaling="std") | overrides)


def _perturbed(model, seed=0):
  """Every tensor random: matrices N(0, 0.2), vectors, norms and the position table N(0, 0.1) around their
  usual values, BatchNorm running statistics away from (0, 1)."""
  g = torch.Generator().manual_seed(seed)
  with torch.no_grad():
    for key, t in model.state_dict().items():
      if key.endswith("num_batches_tracked"):
        continue
      if key.endswith("running_var"):
        t.copy_(0.5 + torch.rand(t.shape, generator=g))
      elif t.ndim == 1:
        base = 1.0 if ("norm" in key and key.endswith("weight")) else 0.0
        t.copy_(base + 0.1 * torch.randn(t.shape, generator=g))
      else:
        t.copy_(0.2 * torch.randn(t.shape, generator=g))
  return model.eval()


def _ours(cls, state_dict, stride=S, **kwargs):
  model = cls(rngs=nnx.Rngs(params=0), residual_attention=False, num_channels=C, context_length=L,
              patch_length=P, stride=stride, **TINY, **kwargs)
  convert.load_torch_weights(model, {k: v.numpy() for k, v in state_dict.items()}, source="hf")
  return model


@needs_torch
@pytest.mark.parametrize("norm,pre_norm", [("batchnorm", False), ("layernorm", True)])
def test_prediction_matches_hf(norm, pre_norm):
  torch.manual_seed(0)
  hf = _perturbed(transformers.PatchTSTForPrediction(_hf_config(norm_type=norm, pre_norm=pre_norm)))
  ours = _ours(patchtst.PatchTST, hf.state_dict(), prediction_length=H, padding_patch=None, norm=norm,
               pre_norm=pre_norm)
  x = (np.random.RandomState(0).randn(4, L, C) * 3 + 2).astype(np.float32)
  with torch.no_grad():
    want = hf(past_values=torch.from_numpy(x)).prediction_outputs.numpy()
  with jax.default_matmul_precision("highest"):
    got = np.asarray(ours(jnp.asarray(x)))
  assert got.shape == want.shape == (4, H, C)
  np.testing.assert_allclose(got, want, atol=TOL, rtol=0)


@needs_torch
def test_pretraining_matches_hf_with_the_same_mask():
  config = _hf_config(patch_stride=P, mask_type="random", random_mask_ratio=0.4, pre_norm=False)
  torch.manual_seed(0)
  hf = _perturbed(transformers.PatchTSTForPretraining(config))
  ours = _ours(patchtst.PatchTSTForPretraining, hf.state_dict(), stride=P, pre_norm=False, mask_ratio=0.4)
  n = ours.num_patches
  mask = np.asarray(patchtst.random_patch_mask(jax.random.key(3), (4, C, n), 0.4))

  class FixedMask(torch.nn.Module):
    def forward(self, patch_input):
      m = torch.from_numpy(mask.copy())
      return patch_input.masked_fill(m[..., None], 0.0), m

  hf.model.masking = FixedMask()
  x = (np.random.RandomState(0).randn(4, L, C) * 3 + 2).astype(np.float32)
  with torch.no_grad():
    out = hf(past_values=torch.from_numpy(x))
  with jax.default_matmul_precision("highest"):
    pred, target, got_mask = ours(jnp.asarray(x), mask=jnp.asarray(mask))
  np.testing.assert_array_equal(np.asarray(got_mask), mask)
  np.testing.assert_allclose(np.asarray(pred), out.prediction_output.numpy(), atol=TOL, rtol=0)
  np.testing.assert_allclose(float(patchtst.masked_patch_mse(pred, target, mask)), float(out.loss), atol=TOL)


# ------------------------------------------------------------------------------ compute accounting


def _xla_forward_flops(model, forward, x) -> float:
  """XLA's FLOP count of one example's forward pass, lowered without compiling (tests/test_flops.py)."""
  graphdef, state = nnx.split(model)
  cost = jax.jit(lambda s, x: forward(nnx.merge(graphdef, s), x)).lower(state, x).cost_analysis()
  return (cost[0] if isinstance(cost, (list, tuple)) else cost)["flops"] / x.shape[0]


@pytest.mark.parametrize("name,forward", [
    ("patchtst_42", lambda m, x: m(x)),
    ("patchtst_pretrain", lambda m, x: m(x, mask=jnp.zeros((2, 2, 8), bool))[0]),
    ("nlinear", lambda m, x: m(x))])
def test_forward_flops_match_xla(name, forward):
  """Wide and shallow (matmuls dominate); residual attention off, so that XLA sees one QKᵀ per layer."""
  wide = dict(d_model=256, num_heads=4, d_ff=512, num_layers=1, residual_attention=False, revin=False)
  overrides = dict(num_channels=2, context_length=96) | ({} if name == "nlinear" else wide)
  if name == "patchtst_42":
    overrides["prediction_length"] = 24
  model = nnx.eval_shape(lambda: models.create(name, rngs=FixedKeyRngs(), **overrides))
  x = jax.ShapeDtypeStruct((2, 96, 2), jnp.float32)
  ratio = _xla_forward_flops(model, forward, x) / models.forward_flops(model)
  assert 1.0 <= ratio < 1.05, (name, ratio)
  counts = models.param_counts(model)
  assert counts["non_embedding_params"] < counts["params"] or name == "nlinear"
