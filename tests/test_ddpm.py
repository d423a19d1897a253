"""The DDPM UNet (models/ddpm_unet.py) against diffusers' UNet2DModel configured as the paper's network,
through convert/diffusers_unet.py, on random weights with every tensor perturbed; the paper's parameter
counts on abstract models. The full CIFAR-10 network's parity runs with PAPERS_JAX_FULL_PARITY=1."""

import math
import os

import jax
import numpy as np
import pytest
from flax import nnx

from papers_jax import convert, models
from papers_jax.models.ddpm_unet import DDPMUNet
from diffusers_ref import diffusers_or_skip, perturbed

FULL = bool(os.environ.get("PAPERS_JAX_FULL_PARITY"))
TOL = 1e-4


def _reference(torch, diffusers, widths, attn_levels, *, meta=False, seed=0):
  """UNet2DModel as the DDPM paper's network (google/ddpm-cifar10-32's settings) with `widths` per level."""
  down = tuple("AttnDownBlock2D" if i in attn_levels else "DownBlock2D" for i in range(len(widths)))
  up = tuple("AttnUpBlock2D" if i in attn_levels else "UpBlock2D" for i in reversed(range(len(widths))))
  kwargs = dict(block_out_channels=widths, down_block_types=down, up_block_types=up, layers_per_block=2,
                attention_head_dim=None, norm_num_groups=32, norm_eps=1e-6, downsample_padding=0,
                flip_sin_to_cos=False, freq_shift=1, act_fn="silu")
  if meta:
    with torch.device("meta"):
      return diffusers.UNet2DModel(**kwargs)
  return perturbed(diffusers.UNet2DModel(**kwargs), torch, seed=seed, weight_std=0.05)


def _num_params(model) -> int:
  return sum(math.prod(v.shape) for v in jax.tree.leaves(nnx.state(model, nnx.Param)))


def _abstract(**kwargs):
  return nnx.eval_shape(lambda: DDPMUNet(rngs=nnx.Rngs(0), **kwargs))


@pytest.mark.parametrize("name,params", [("ddpm_cifar10", 35_746_307), ("ddpm_256", 113_673_219)])
def test_param_counts_are_the_papers(name, params):
  """The paper: 35.7M parameters for CIFAR-10, 114M for the 256×256 models (diffusers' google/ddpm-*-256)."""
  if name == "ddpm_256" and not FULL:
    pytest.skip("set PAPERS_JAX_FULL_PARITY=1 (the 256×256 network's abstract build, 7 s)")
  assert _num_params(nnx.eval_shape(lambda: models.create(name))) == params


@pytest.mark.torch
def test_param_counts_equal_diffusers():
  torch, diffusers = diffusers_or_skip()
  assert sum(p.numel() for p in _reference(torch, diffusers, (128, 256, 256, 256), (1,), meta=True).parameters()) \
      == 35_746_307


def _compare(torch, ref, model, x, t):
  with torch.no_grad():
    want = ref(torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2))), torch.from_numpy(t)).sample.numpy()
  with jax.default_matmul_precision("highest"):
    got = np.asarray(jax.jit(lambda m, x, t: m(x, t))(model, x, t))
  diff = np.abs(got - want.transpose(0, 2, 3, 1)).max()
  print(f"max-abs {diff:.2e} (outputs up to {np.abs(want).max():.2f})")
  return diff


@pytest.mark.torch
def test_unet_matches_diffusers_small():
  """Three levels (32, 64, 64 channels), attention at level 1, 16×16 inputs: every block type of the paper's network."""
  torch, diffusers = diffusers_or_skip()
  ref = _reference(torch, diffusers, (32, 64, 64), (1,))
  model = _abstract(ch=32, ch_mult=(1, 2, 2), attn_levels=(1,), dropout=0.0)
  report = convert.load_torch_weights(model, {k: v.numpy() for k, v in ref.state_dict().items()}, "diffusers")
  assert len(report.loaded) == len(report.ours) and not (report.missing or report.unexpected or report.mismatched)
  x = np.random.RandomState(0).randn(2, 16, 16, 3).astype(np.float32)
  t = np.array([3, 817])
  assert _compare(torch, ref, model, x, t) < TOL
  # The test sees dropped tensors: a zeroed time-MLP bias or attention-norm bias moves the output beyond TOL.
  for module in (model.time_embedding.linear_2, model.down_blocks[1].attentions[0].group_norm):
    saved = np.asarray(module.bias[...])
    module.bias[...] = np.zeros_like(saved)
    assert _compare(torch, ref, model, x, t) > 10 * TOL
    module.bias[...] = saved


@pytest.mark.torch
@pytest.mark.skipif(not FULL, reason="set PAPERS_JAX_FULL_PARITY=1 (the 35.7M-parameter network, ~1 min)")
def test_unet_matches_diffusers_cifar10():
  torch, diffusers = diffusers_or_skip()
  ref = _reference(torch, diffusers, (128, 256, 256, 256), (1,))
  model = nnx.eval_shape(lambda: models.create("ddpm_cifar10", dropout=0.0))
  report = convert.load_torch_weights(model, {k: v.numpy() for k, v in ref.state_dict().items()}, "diffusers")
  assert len(report.loaded) == len(report.ours)
  x = np.random.RandomState(1).randn(2, 32, 32, 3).astype(np.float32)
  assert _compare(torch, ref, model, x, np.array([0, 999])) < TOL


def test_dropout_only_in_training_and_bad_sizes():
  model = DDPMUNet(ch=8, ch_mult=(1, 2), attn_levels=(), num_res_blocks=1, num_groups=4, dropout=0.5,
                   rngs=nnx.Rngs(0))
  # The last conv of each branch and conv_out start at zero (the paper's init): perturb every param.
  params = nnx.state(model, nnx.Param)
  nnx.update(model, jax.tree.map(lambda p: p + 0.1 * jax.random.normal(jax.random.key(1), p.shape), params))
  x, t = np.random.RandomState(0).randn(1, 8, 8, 3).astype(np.float32), np.array([5])
  run = nnx.jit(lambda m, key, train: m(x, t, train=train, rngs=nnx.Rngs(dropout=key)), static_argnums=2)
  a, b = run(model, jax.random.key(0), True), run(model, jax.random.key(1), True)
  assert np.abs(np.asarray(a - b)).max() > 1e-4
  assert np.abs(np.asarray(a - run(model, jax.random.key(0), False))).max() > 1e-4  # eval: no dropout
  with pytest.raises(ValueError, match="divisible by 2"):
    model(np.zeros((1, 7, 7, 3), np.float32), t)
