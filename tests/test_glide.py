"""GLIDE's UNet and unCLIP's decoder (models/glide.py): the ADM UNet against diffusers' `UNet2DConditionModel` in
Karlo's unCLIP-decoder layout (scale-shift residual blocks, BigGAN resampling, attention with added context keys and
values) on random weights with every tensor perturbed; its attention against numpy; the text encoder's padding; the
paper's parameter count against the GLIDE code's."""

import math
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from papers_jax import convert, models
from papers_jax.models import glide
from diffusers_ref import diffusers_or_skip, perturbed

FULL = bool(os.environ.get("PAPERS_JAX_FULL_PARITY"))
TOL = 1e-4


def _num_params(model) -> int:
  return sum(math.prod(v.shape) for v in jax.tree.leaves(nnx.state(model, nnx.Param)))


def _perturb(model, seed=0):
  """Every parameter to random values, the zero-initialised output convs and projections included; norm scales
  1 + N(0, 0.1), the rest N(0, 0.1)."""
  params = nnx.state(model, nnx.Param)
  leaves, treedef = jax.tree_util.tree_flatten_with_path(params)
  keys = jax.random.split(jax.random.key(seed), len(leaves))
  nnx.update(model, jax.tree.unflatten(treedef, [
      (1.0 if "['scale']" in jax.tree_util.keystr(path) else 0.0) + 0.1 * jax.random.normal(k, p.shape)
      for (path, p), k in zip(leaves, keys)]))
  return model


def test_attention_block_matches_numpy():
  """Multi-head attention over [context; positions] after a GroupNorm, with a residual: numpy in float64."""
  block = _perturb(glide.AttentionBlock(8, head_channels=4, context_dim=6, num_groups=2, eps=1e-5,
                                        rngs=nnx.Rngs(0)))
  rng = np.random.RandomState(0)
  x, ctx = rng.randn(2, 3, 3, 8).astype(np.float32), rng.randn(2, 5, 6).astype(np.float32)
  got = np.asarray(block(x, ctx))
  p = {k: np.asarray(v, np.float64) for k, v in nnx.to_flat_state(nnx.state(block, nnx.Param))
       for k in ["/".join(map(str, k))]}
  xf = x.reshape(2, 9, 8).astype(np.float64)
  g = xf.reshape(2, 9, 2, 4)
  g = (g - g.mean((1, 3), keepdims=True)) / np.sqrt(g.var((1, 3), keepdims=True) + 1e-5)
  g = g.reshape(2, 9, 8) * p["group_norm/scale"] + p["group_norm/bias"]
  lin = lambda a, name: a @ p[f"{name}/kernel"] + p[f"{name}/bias"]  # noqa: E731
  q = lin(g, "to_q")
  k = np.concatenate([lin(ctx, "add_k_proj"), lin(g, "to_k")], axis=1)
  v = np.concatenate([lin(ctx, "add_v_proj"), lin(g, "to_v")], axis=1)
  out = np.zeros_like(q)
  for h in range(2):
    s = slice(4 * h, 4 * h + 4)
    logits = q[..., s] @ k[..., s].transpose(0, 2, 1) / 2.0
    w = np.exp(logits - logits.max(-1, keepdims=True))
    out[..., s] = (w / w.sum(-1, keepdims=True)) @ v[..., s]
  want = xf + lin(out, "to_out")
  np.testing.assert_allclose(got, want.reshape(x.shape), atol=1e-5)


@pytest.mark.skipif(not FULL, reason="make test-full (PAPERS_JAX_FULL_PARITY=1): the decoder's compile, ~10 s")
def test_text_encoder_padding_and_decoder_conditioning():
  """Padded positions carry the learned padding embedding whatever their token; the CLIP embedding reaches the
  output through the time embedding and through the context tokens, each on its own."""
  dec = _perturb(models.create("unclip_decoder", text=dict(vocab_size=30, context=6, width=16, depth=1,
                                                           num_heads=2)))
  rng = np.random.RandomState(0)
  tokens = rng.randint(0, 30, (2, 6))
  mask = np.array([[1, 1, 1, 0, 0, 0], [1, 1, 1, 1, 1, 0]], bool)
  other = np.where(mask, tokens, (tokens + 7) % 30)
  enc = nnx.jit(lambda m, tok, mk: m.text_encoder(tok, mk))
  np.testing.assert_allclose(np.asarray(enc(dec, tokens, mask)), np.asarray(enc(dec, other, mask)), atol=1e-6)
  changed = tokens.copy()
  changed[:, 0] = (changed[:, 0] + 1) % 30
  assert np.abs(np.asarray(enc(dec, changed, mask) - enc(dec, tokens, mask))).max() > 1e-3
  x = rng.randn(2, 8, 8, 3).astype(np.float32)
  t, z = np.array([3, 500]), rng.randn(2, dec.clip_to_time.in_features[0]).astype(np.float32)
  run = nnx.jit(lambda m, z: m(x, t, z, tokens, mask))
  base = np.asarray(run(dec, z))
  for proj in (dec.clip_to_time, dec.clip_to_tokens):
    saved = np.asarray(proj.kernel[...])
    proj.kernel[...] = np.zeros_like(saved)
    assert np.abs(np.asarray(run(dec, z)) - base).max() > 1e-3
    proj.kernel[...] = saved
  assert base.shape == (2, 8, 8, 6)


def _reference(torch, diffusers, *, ch, mult, blocks, attn_levels, head, context_dim, groups, seed=0):
  """UNet2DConditionModel as ADM / GLIDE's UNet (Karlo's unCLIP decoder layout): every tensor perturbed."""
  n = len(mult)
  down = tuple("SimpleCrossAttnDownBlock2D" if i in attn_levels else "ResnetDownsampleBlock2D" for i in range(n))
  up = tuple("SimpleCrossAttnUpBlock2D" if i in attn_levels else "ResnetUpsampleBlock2D" for i in reversed(range(n)))
  ref = diffusers.UNet2DConditionModel(
      sample_size=16, in_channels=3, out_channels=6, block_out_channels=tuple(ch * m for m in mult),
      down_block_types=down, up_block_types=up, mid_block_type="UNetMidBlock2DSimpleCrossAttn",
      layers_per_block=blocks, attention_head_dim=head, cross_attention_dim=context_dim, norm_num_groups=groups,
      norm_eps=1e-5, resnet_time_scale_shift="scale_shift", class_embed_type="identity", flip_sin_to_cos=True,
      freq_shift=0, act_fn="silu")
  return perturbed(ref, torch, seed=seed, weight_std=0.05)


@pytest.mark.torch
@pytest.mark.skipif(not FULL, reason="make test-full (PAPERS_JAX_FULL_PARITY=1): the UNet's compile, ~30 s")
def test_adm_unet_matches_diffusers():
  """Three levels (16, 32, 48 channels), two blocks a level, attention with context at levels 1 and 2 and in the
  middle, 16-channel heads, 16×16 inputs, six output channels (ε and v)."""
  torch, diffusers = diffusers_or_skip()
  cfg = dict(ch=16, mult=(1, 2, 3), blocks=2, attn_levels=(1, 2), head=16, context_dim=12, groups=8)
  ref = _reference(torch, diffusers, **cfg)
  model = nnx.eval_shape(lambda: glide.ADMUNet(ch=16, ch_mult=(1, 2, 3), num_res_blocks=2, attn_levels=(1, 2),
                                               head_channels=16, context_dim=12, num_groups=8, dropout=0.0,
                                               rngs=nnx.Rngs(0)))
  report = convert.load_torch_weights(model, {k: v.numpy() for k, v in ref.state_dict().items()}, "diffusers")
  assert len(report.loaded) == len(report.ours) and not (report.missing or report.unexpected or report.mismatched)
  rng = np.random.RandomState(0)
  x, t = rng.randn(2, 16, 16, 3).astype(np.float32), np.array([3, 817])
  emb, ctx = rng.randn(2, 64).astype(np.float32), rng.randn(2, 5, 12).astype(np.float32)
  with torch.no_grad():
    want = ref(torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2))), torch.from_numpy(t),
               encoder_hidden_states=torch.from_numpy(ctx), class_labels=torch.from_numpy(emb)).sample.numpy()
  want = want.transpose(0, 2, 3, 1)
  run = jax.jit(lambda m, e, c: m(x, t, emb=e, context=c))
  with jax.default_matmul_precision("highest"):
    got = np.asarray(run(model, emb, ctx))
    diff = np.abs(got - want).max()
    print(f"max-abs {diff:.2e} (outputs up to {np.abs(want).max():.2f})")
    assert diff < TOL
    # The comparison sees the conditioning: other context tokens or another embedding move the output.
    assert np.abs(np.asarray(run(model, emb, ctx + 1.0)) - want).max() > 10 * TOL
    assert np.abs(np.asarray(run(model, emb + 1.0, ctx)) - want).max() > 10 * TOL


@pytest.mark.parametrize("name,total,glide_code", [
    ("glide_unclip_paper", 3_565_434_374, 3_554_938_374),  # unCLIP's Table 3: "3.5B"
    pytest.param("glide_unclip_base", 387_917_126, 385_030_726,  # GLIDE's released base model: 385M
                 marks=pytest.mark.skipif(not FULL, reason="make test-full (PAPERS_JAX_FULL_PARITY=1): CI time"))])
def test_param_counts(name, total, glide_code):
  """The totals, and without unCLIP's two CLIP projections the count of the GLIDE code's `Text2ImUNet` built on the
  meta device at the same configuration (glide-text2im, `xf_padding=True, xf_final_ln=True`, 50,257 tokens)."""
  model = nnx.eval_shape(lambda: models.create(name))
  assert _num_params(model) == total
  assert total - _num_params(model.clip_to_time) - _num_params(model.clip_to_tokens) == glide_code


@pytest.mark.skipif(not FULL, reason="make test-full (PAPERS_JAX_FULL_PARITY=1): CI time")
def test_bad_input():
  unet = glide.ADMUNet(ch=8, ch_mult=(1, 2), num_res_blocks=1, attn_levels=(), head_channels=8, num_groups=4,
                       rngs=nnx.Rngs(0))
  with pytest.raises(ValueError, match="divisible by 2"):
    unet(jnp.zeros((1, 7, 7, 3)), jnp.array([1]))
  with pytest.raises(ValueError, match="head_channels"):
    glide.AttentionBlock(12, head_channels=8, context_dim=0, num_groups=4, eps=1e-5, rngs=nnx.Rngs(0))
