"""unCLIP (models/unclip.py, objectives/unclip.py).

Default suite (numpy references): the cosine schedule, the prior's x₀ loss, the guidance formula, the best-of-K
choice, the ancestral and DDIM steps from an x₀ prediction (the posterior, eq. 7; no noise at t = 0), the scanned
x₀ sampler against a Python loop, and the paper-size prior's parameter count (the decoder: tests/test_glide.py).
With PAPERS_JAX_FULL_PARITY=1: the prior against diffusers' PriorTransformer (the
released unCLIP prior's layout) on random perturbed weights with a padding mask, float32; the schedule and both
steps against diffusers' DDPMScheduler / DDIMScheduler with prediction_type="sample"; the prior's padding mask
(padded tokens change nothing, kept ones do)."""

import math
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from papers_jax import models
from papers_jax.models import unclip
from papers_jax.objectives import diffusion
from papers_jax.objectives import unclip as objective
from diffusers_ref import diffusers_or_skip, perturbed

FULL = bool(os.environ.get("PAPERS_JAX_FULL_PARITY"))
TOL = 1e-4
COSINE = diffusion.cosine_schedule(1000)


def test_cosine_schedule_is_nichol_and_dhariwals():
  f = lambda t: np.cos((t / 1000 + 0.008) / 1.008 * np.pi / 2) ** 2  # noqa: E731
  want = np.minimum(1 - f(np.arange(1, 1001)) / f(np.arange(1000)), 0.999)
  np.testing.assert_allclose(COSINE.betas, want, rtol=1e-12)
  np.testing.assert_allclose(COSINE.alphas_cumprod[:999], f(np.arange(1, 1000)) / f(0), rtol=1e-9)
  assert COSINE.betas[-1] == 0.999 and COSINE.alphas_cumprod[-1] < 1e-8


def test_prior_loss_guidance_and_best_of_match_numpy():
  rng = np.random.RandomState(0)
  pred, z0 = rng.randn(3, 5).astype(np.float32), rng.randn(3, 5).astype(np.float32)
  np.testing.assert_allclose(objective.prior_loss(pred, z0), ((pred - z0) ** 2).mean(1), rtol=1e-6)
  u, c = rng.randn(2, 4), rng.randn(2, 4)
  for s in (0.0, 1.0, 3.0):
    np.testing.assert_allclose(objective.guided(u, c, s), u + s * (c - u), rtol=1e-12)
  np.testing.assert_allclose(objective.guided(u, c, 1.0), c, rtol=1e-12)  # scale 1: the conditional model
  cands, text = rng.randn(2, 3, 5).astype(np.float32), rng.randn(3, 5).astype(np.float32)
  best = np.argmax(np.einsum("kbd,bd->kb", cands, text), axis=0)
  np.testing.assert_array_equal(objective.best_of(cands, text), cands[best, np.arange(3)])
  keep = objective.keep_mask(jax.random.key(0), 20000, 0.1)
  assert abs(1 - float(keep.mean()) - 0.1) < 0.01


def _posterior_numpy(s, x0, xt, t, variance, z):
  abar, abar_prev = s.alphas_cumprod[t], s.alphas_cumprod_prev[t]
  mean = (np.sqrt(abar_prev) * s.betas[t] / (1 - abar)) * x0 + \
      (np.sqrt(1 - s.betas[t]) * (1 - abar_prev) / (1 - abar)) * xt
  var = s.betas[t] if variance == "beta" else s.posterior_variance[t]
  return mean + (t > 0) * np.sqrt(var) * z


@pytest.mark.parametrize("t", [0, 1, 500, 999])
def test_x0_steps_match_numpy(t):
  rng = np.random.RandomState(t)
  x0, xt, z = (rng.randn(2, 6).astype(np.float32) for _ in range(3))
  tb = np.full((2,), t, np.int32)
  for variance in ("beta", "posterior"):
    got = objective.x0_step(COSINE, xt, tb, x0, z, variance=variance)
    np.testing.assert_allclose(got, _posterior_numpy(COSINE, x0, xt, t, variance, z), rtol=1e-4, atol=1e-5)
  t_prev = t - 20
  abar = COSINE.alphas_cumprod[t]
  abar_prev = COSINE.alphas_cumprod[t_prev] if t_prev >= 0 else 1.0
  eps = (xt - np.sqrt(abar) * x0) / np.sqrt(1 - abar)
  got = objective.x0_ddim_step(COSINE, xt, tb, np.full((2,), t_prev, np.int32), x0)
  np.testing.assert_allclose(got, np.sqrt(abar_prev) * x0 + np.sqrt(1 - abar_prev) * eps, rtol=1e-4, atol=1e-5)


def test_x0_sampler_is_one_scan_matching_a_python_loop():
  s = diffusion.cosine_schedule(12)
  fn = lambda x, t: 0.5 * x + 0.01 * t[:, None].astype(jnp.float32)  # noqa: E731
  key = jax.random.key(3)
  got = objective.sample_from_x0(fn, s, (2, 3), key, method="ancestral")
  x = jax.random.normal(jax.random.fold_in(key, 0), (2, 3))
  for i, t in enumerate(range(11, -1, -1)):
    tb = jnp.full((2,), t, jnp.int32)
    x = objective.x0_step(s, x, tb, fn(x, tb), jax.random.normal(jax.random.fold_in(key, i + 1), (2, 3)))
  np.testing.assert_allclose(got, x, rtol=1e-5, atol=1e-6)


@pytest.mark.skipif(not FULL, reason="make test-full (PAPERS_JAX_FULL_PARITY=1): CI time (the diffusers parity in "
                    "make test-full also runs a padding mask)")
def test_prior_masks_padding_and_reads_every_kept_input():
  prior = unclip.DiffusionPrior(embed_dim=8, text_dim=6, num_text_tokens=5, width=16, depth=2, num_heads=2,
                                rngs=nnx.Rngs(0))
  rng = np.random.RandomState(0)
  z, e = rng.randn(2, 8).astype(np.float32), rng.randn(2, 8).astype(np.float32)
  tok = rng.randn(2, 5, 6).astype(np.float32)
  mask = np.array([[True, True, True, False, False]] * 2)
  t = np.array([3, 700])
  call = jax.jit(lambda m, *a: m(*a))
  base = np.asarray(call(prior, z, t, e, tok, mask))
  padded = tok.copy()
  padded[:, 3:] += 5.0
  np.testing.assert_allclose(call(prior, z, t, e, padded, mask), base, rtol=1e-5, atol=1e-6)
  kept = tok.copy()
  kept[:, 1] += 1.0
  assert np.abs(np.asarray(call(prior, z, t, e, kept, mask)) - base).min() > 1e-4
  assert np.abs(np.asarray(call(prior, z + 1.0, t, e, tok, mask)) - base).min() > 1e-4


def test_paper_prior_parameter_count():
  """width 2048, 24 blocks on 1024-d embeddings and 77 caption tokens: 1.23B (the paper's prior is "1B")."""
  w, d, depth, n = 2048, 1024, 24, 77
  block = 4 * w + (3 * w * w + 3 * w) + (w * w + w) + (4 * w * w + 4 * w) + (4 * w * w + w)
  stem = 2 * (w * w + w) + 3 * (d * w + w) + (n + 4) * w + w
  want = stem + depth * block + 2 * w + (w * d + d)
  model = nnx.eval_shape(lambda: models.create("unclip_prior_paper", rngs=nnx.Rngs(0)))
  got = sum(math.prod(x.shape) for x in jax.tree.leaves(nnx.state(model, nnx.Param)))
  assert got == want == 1_225_559_040


# ------------------------------------------------------------------ diffusers (make test-full)
def _load_prior(ours, sd, heads):
  """diffusers PriorTransformer state dict → our DiffusionPrior (in place)."""
  t = lambda k: sd[k].detach().numpy().astype(np.float32)  # noqa: E731

  def dense(layer, name):
    layer.kernel[...] = t(f"{name}.weight").T
    layer.bias[...] = t(f"{name}.bias")

  for name in ("proj_in", "embedding_proj", "encoder_hidden_states_proj", "proj_to_clip_embeddings",
               "time_embedding.linear_1", "time_embedding.linear_2"):
    obj = ours
    for part in name.split("."):
      obj = getattr(obj, part)
    dense(obj, name)
  ours.positional_embedding[...] = t("positional_embedding")[0]
  ours.prd_embedding[...] = t("prd_embedding")[0, 0]
  ours.norm_out.scale[...], ours.norm_out.bias[...] = t("norm_out.weight"), t("norm_out.bias")
  for i, block in enumerate(ours.blocks):
    p = f"transformer_blocks.{i}."
    w = block.norm1.scale.shape[0]
    block.norm1.scale[...], block.norm1.bias[...] = t(p + "norm1.weight"), t(p + "norm1.bias")
    block.norm2.scale[...], block.norm2.bias[...] = t(p + "norm3.weight"), t(p + "norm3.bias")
    qkv = [t(p + f"attn1.to_{x}.weight").T.reshape(w, heads, w // heads) for x in "qkv"]
    block.attn.qkv.kernel[...] = np.stack(qkv, axis=1)
    block.attn.qkv.bias[...] = np.stack([t(p + f"attn1.to_{x}.bias").reshape(heads, w // heads) for x in "qkv"])
    block.attn.proj.kernel[...] = t(p + "attn1.to_out.0.weight").T.reshape(heads, w // heads, w)
    block.attn.proj.bias[...] = t(p + "attn1.to_out.0.bias")
    dense(block.mlp.fc1, p + "ff.net.0.proj")
    dense(block.mlp.fc2, p + "ff.net.2")


@pytest.mark.torch
@pytest.mark.skipif(not FULL, reason="make test-full (PAPERS_JAX_FULL_PARITY=1): torch + diffusers imports")
def test_prior_matches_diffusers_prior_transformer():
  torch, diffusers = diffusers_or_skip()
  heads, head_dim, d, n = 2, 16, 24, 6
  ref = perturbed(diffusers.PriorTransformer(num_attention_heads=heads, attention_head_dim=head_dim, num_layers=2,
                                             embedding_dim=d, num_embeddings=n, additional_embeddings=4), torch,
                  weight_std=0.1)
  ours = unclip.DiffusionPrior(embed_dim=d, text_dim=d, num_text_tokens=n, width=heads * head_dim, depth=2,
                               num_heads=heads, rngs=nnx.Rngs(0))
  _load_prior(ours, ref.state_dict(), heads)
  rng = np.random.RandomState(0)
  z, e, tok = rng.randn(3, d).astype(np.float32), rng.randn(3, d).astype(np.float32), rng.randn(3, n, d)
  tok = tok.astype(np.float32)
  mask = np.array([[1, 1, 1, 1, 0, 0], [1, 1, 1, 1, 1, 1], [1, 0, 0, 0, 0, 0]], bool)
  t = np.array([0, 17, 999])
  with torch.no_grad():
    want = ref(torch.from_numpy(z), torch.from_numpy(t), proj_embedding=torch.from_numpy(e),
               encoder_hidden_states=torch.from_numpy(tok), attention_mask=torch.from_numpy(mask)
               ).predicted_image_embedding.numpy()
  with jax.default_matmul_precision("highest"):
    got = np.asarray(ours(z, t, e, tok, mask))
  assert np.abs(got - want).max() < TOL, np.abs(got - want).max()


def _float64(scheduler, torch):
  """The scheduler's constants in float64, from our schedule (its float32 rounding of 1 − ᾱ_t near t = 0 alone
  moves a step by ~1e-4; tests/test_diffusion.py does the same); the float32 betas are compared above."""
  betas = torch.from_numpy(COSINE.betas)
  scheduler.betas, scheduler.alphas = betas, 1.0 - betas
  scheduler.alphas_cumprod = torch.cumprod(scheduler.alphas, 0)
  for name in ("one", "final_alpha_cumprod"):
    if hasattr(scheduler, name):
      setattr(scheduler, name, torch.tensor(1.0, dtype=torch.float64))
  return scheduler


@pytest.mark.torch
@pytest.mark.skipif(not FULL, reason="make test-full (PAPERS_JAX_FULL_PARITY=1): torch + diffusers imports")
@pytest.mark.parametrize("t", [0, 1, 500, 998])
def test_x0_steps_match_diffusers_schedulers(t):
  torch, diffusers = diffusers_or_skip()
  rng = np.random.RandomState(t)
  x0, xt, z = (rng.randn(2, 3, 4, 4).astype(np.float32) for _ in range(3))
  for variance, theirs in (("beta", "fixed_large"), ("posterior", "fixed_small")):
    ref = diffusers.DDPMScheduler(num_train_timesteps=1000, beta_schedule="squaredcos_cap_v2",
                                  prediction_type="sample", variance_type=theirs, clip_sample=False)
    np.testing.assert_allclose(COSINE.betas, ref.betas.numpy(), rtol=0, atol=1e-6)
    np.testing.assert_allclose(COSINE.alphas_cumprod, ref.alphas_cumprod.numpy(), rtol=0, atol=1e-5)
    _float64(ref, torch)
    # diffusers draws its noise from the generator; with the variance zeroed we read its mean alone
    gen = torch.Generator().manual_seed(0)
    out = ref.step(torch.from_numpy(x0), t, torch.from_numpy(xt), generator=gen).prev_sample.numpy()
    noise = torch.randn(x0.shape, generator=torch.Generator().manual_seed(0)).numpy()
    got = objective.x0_step(COSINE, xt, np.full((2,), t, np.int32), x0, noise if t > 0 else z, variance=variance)
    np.testing.assert_allclose(got, out, rtol=0, atol=1e-5)
  ddim = diffusers.DDIMScheduler(num_train_timesteps=1000, beta_schedule="squaredcos_cap_v2", prediction_type="sample",
                                 clip_sample=False, set_alpha_to_one=True)
  _float64(ddim, torch)
  ddim.set_timesteps(50)
  prev = t - 1000 // 50
  want = ddim.step(torch.from_numpy(x0), t, torch.from_numpy(xt), eta=0.0).prev_sample.numpy()
  got = objective.x0_ddim_step(COSINE, xt, np.full((2,), t, np.int32), np.full((2,), prev, np.int32), x0)
  np.testing.assert_allclose(got, want, rtol=0, atol=1e-5)
