"""PoolFormer against timm's `MetaFormer` (the poolformer_* names): parameter counts of every variant (and the
paper's Table 1), logits with every tensor perturbed in timm's head order, the official head order against a
torch reference built from timm's modules, the pooling mixer against numpy, and the FLOP counter against XLA."""

import importlib.util
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

torch = pytest.importorskip("torch")
if importlib.util.find_spec("timm") is None:
  pytest.skip("timm is not installed", allow_module_level=True)

from papers_jax import models  # noqa: E402
from papers_jax.errors import ConfigError  # noqa: E402
from papers_jax.models import conv_flops, poolformer  # noqa: E402
from timm_parity import (TOL, abstract, images, load_ours, modified, num_params, numpy_state_dict,  # noqa: E402
                         our_logits, random_timm, timm, timm_logits, timm_param_count)

pytestmark = pytest.mark.torch
NAMES = models.list_models("poolformer_*")
FULL = bool(os.environ.get("PAPERS_JAX_FULL_PARITY"))


def test_variant_table_matches_timm_and_the_paper():
  assert NAMES == sorted(n for n in timm.list_models("poolformer_*") if "v2" not in n)
  # The S and M widths by default (suite time); S24, S36 and M48 only change the depths and layer scale.
  for name in NAMES if FULL else ("poolformer_s12", "poolformer_m36"):
    count = num_params(abstract(name))
    assert count == timm_param_count(name), name
    assert round(count / 1e6) == poolformer.PAPER_PARAMS_M[name], (name, count)


TINY = dict(depths=(1, 2), dims=(8, 16), num_classes=5)


def _tiny_timm(seed=1):
  """timm's MetaFormer with PoolFormer v1's settings at a tiny size, every tensor random (1-D ones around 1)."""
  ref = timm.models.metaformer.MetaFormer(
      **TINY, downsample_norm=None, mlp_act=torch.nn.GELU, mlp_bias=True, norm_layers=timm.layers.GroupNorm1,
      layer_scale_init_values=1e-5, res_scale_init_values=None, use_mlp_head=False).eval()
  generator = torch.Generator().manual_seed(seed)
  with torch.no_grad():
    for p in ref.parameters():
      p.copy_((1.0 if p.ndim == 1 else 0.0) + 0.1 * torch.randn(p.shape, generator=generator))
  return ref


@pytest.fixture(scope="module")
def tiny():
  ref = _tiny_timm()
  x = images(32, batch=2, seed=1)
  return ref, numpy_state_dict(ref), x, timm_logits(ref, x)


def _check_timm_order(ref, state_dict, x, want, name="poolformer_s12", **overrides):
  ours, report = load_ours(name, state_dict, head_norm="post_pool", **overrides)
  assert not (report.missing or report.unexpected or report.mismatched or report.resized)
  assert len(report.loaded) == len(report.ours) == len(state_dict)
  assert np.abs(our_logits(ours, x) - want).max() < TOL
  return ours


def test_logits_match_timm_with_every_tensor_perturbed(tiny):
  ref, state_dict, x, want = tiny
  ours = _check_timm_order(ref, state_dict, x, want, **TINY)
  # Each kind of small tensor shapes the logits: resetting one to its init moves them beyond TOL.
  for path, reset in (("stages/1/blocks/1/layer_scale1/scale", np.ones_like),
                      ("stages/1/blocks/0/norm2/bias", np.zeros_like),
                      ("stages/1/blocks/1/mlp/fc2/bias", np.zeros_like),
                      ("stages/1/downsample/conv/bias", np.zeros_like),
                      ("stem/conv/bias", np.zeros_like),
                      ("head/norm/scale", np.ones_like)):
    assert np.abs(our_logits(modified(ours, path, reset), x) - want).max() > 3 * TOL, path
  # norm1's bias adds a constant per channel that the mixer removes (the mean over valid neighbours of a
  # constant is the constant): no output can see it, in timm either, so its value is checked directly.
  assert np.abs(our_logits(modified(ours, "stages/1/blocks/0/norm1/bias", np.zeros_like), x) - want).max() < TOL
  np.testing.assert_array_equal(ours.stages[1].blocks[0].norm1.bias[...],
                                ref.stages[1].blocks[0].norm1.bias.detach().numpy())
  # Named intermediates (the k-NN / probe evaluators read "pre_logits") end in the same logits.
  graphdef, state = nnx.split(ours)
  out = jax.jit(lambda s, x: nnx.merge(graphdef, s).forward_intermediates(x, train=False))(state, x)
  assert set(out) == {"stem", "stage0", "stage1", "encoded", "pre_logits", "logits"}
  assert out["stage1"].shape == (2, 4, 4, 16) and out["pre_logits"].shape == (2, 16)
  np.testing.assert_allclose(out["logits"], want, atol=TOL)


@pytest.mark.skipif(not FULL, reason="set PAPERS_JAX_FULL_PARITY=1 for PoolFormer-S12 at full size")
def test_s12_logits_match_timm():
  ref = random_timm("poolformer_s12")
  x = images(64, batch=2)
  _check_timm_order(ref, numpy_state_dict(ref), x, timm_logits(ref, x))


def test_official_head_normalises_the_map_before_the_mean(tiny):
  ref, state_dict, x, timm_order = tiny
  with torch.no_grad():
    feats = ref.forward_features(torch.from_numpy(x.transpose(0, 3, 1, 2).copy()))
    norm = ref.head.norm
    pooled = torch.nn.functional.group_norm(feats, 1, norm.weight, norm.bias, 1e-5).mean((2, 3))
    want = ref.head.fc(pooled).numpy()
  ours, _ = load_ours("poolformer_s12", state_dict, **TINY)  # head_norm="pre_pool", the default
  assert np.abs(our_logits(ours, x) - want).max() < TOL
  assert np.abs(want - timm_order).max() > 100 * TOL  # the two orders are different functions


def test_pool_mixer_is_the_mean_over_valid_neighbours_minus_the_input():
  x = np.random.RandomState(0).randn(2, 5, 4, 3).astype(np.float32)
  want = np.zeros_like(x)
  for i in range(5):
    for j in range(4):
      window = x[:, max(i - 1, 0):i + 2, max(j - 1, 0):j + 2]
      want[:, i, j] = window.mean(axis=(1, 2)) - x[:, i, j]
  np.testing.assert_allclose(np.asarray(poolformer.pool_mixer(jnp.asarray(x))), want, atol=1e-6)


def test_flop_counter_matches_xla_and_bad_settings_are_config_errors():
  model = nnx.eval_shape(lambda: models.create("poolformer_s12", depths=(1, 1), dims=(8, 16), num_classes=10,
                                               img_size=32, rngs=nnx.Rngs(0)))
  graphdef, state = nnx.split(model)
  x = jax.ShapeDtypeStruct((2, 32, 32, 3), jnp.float32)
  xla = conv_flops.xla_flops(lambda s, x: nnx.merge(graphdef, s)(x, train=False), state, x) / 2
  analytic = models.forward_flops(model, count_padding=False)
  assert 0.95 < xla / analytic < 1.05, xla / analytic
  with pytest.raises(ConfigError, match="head_norm"):
    models.create("poolformer_s12", head_norm="post", rngs=nnx.Rngs(0))
  with pytest.raises(ConfigError, match="same number of stages"):
    models.create("poolformer_s12", depths=(1, 1), rngs=nnx.Rngs(0))
