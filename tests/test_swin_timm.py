"""Swin against timm: parameter counts, key maps, logits parity, resolution change, shift masks.

Logits are compared at full size for swin_tiny_patch4_window7_224 (224/W7, every stage geometry
of the 224 names), for Swin-T at 384/W12 (224 weights, bias tables resampled; every stage geometry
of the 384 names) and for a non-square, padded input. Each registered name's exact architecture
is checked without a forward: parameter count, a strict conversion of timm's full-size state
dict (every tensor's shape) and every block's resolution / window / shift against timm's blocks.
Full-size logits for every name (compiling Swin-B/L costs about a minute each on a 2-core CPU)
run with PAPERS_JAX_FULL_PARITY=1.
"""

import importlib.util
import os

import numpy as np
import pytest

torch = pytest.importorskip("torch")
if importlib.util.find_spec("timm") is None:
  pytest.skip("timm is not installed", allow_module_level=True)

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
from flax import nnx  # noqa: E402

from papers_jax import convert, models  # noqa: E402
from papers_jax.models import swin  # noqa: E402
from timm_parity import (TOL, abstract, images, load_ours, modified, num_params, numpy_state_dict,  # noqa: E402
                         our_logits, random_timm, timm, timm_logits)

timm_swin = timm.models.swin_transformer
pytestmark = pytest.mark.torch
NAMES = models.list_models("swin_*")


def test_registered_names():
  assert NAMES == sorted(["swin_tiny_patch4_window7_224", "swin_small_patch4_window7_224",
                          "swin_base_patch4_window7_224", "swin_large_patch4_window7_224",
                          "swin_base_patch4_window12_384", "swin_large_patch4_window12_384"])
  assert set(NAMES) <= set(timm.list_models("swin_*"))


# ----------------------------------------------------------------- param counts, key maps


@pytest.mark.parametrize("name", NAMES)
def test_exact_architecture(name):
  ours = abstract(name)
  with torch.device("meta"):
    ref = timm.create_model(name, pretrained=False)
  assert num_params(ours) == sum(p.numel() for p in ref.parameters())
  # Every block's token grid, window and shift equal timm's (they set the bias-table shapes and masks).
  assert len(ours.layers) == len(ref.layers)
  for stage, ref_stage in zip(ours.layers, ref.layers):
    assert len(stage.blocks) == len(ref_stage.blocks)
    for block, ref_block in zip(stage.blocks, ref_stage.blocks):
      assert (block.resolution, block.window, block.shift) == (
          tuple(ref_block.input_resolution), tuple(ref_block.window_size), tuple(ref_block.shift_size))
  # Every tensor of timm's full-size state dict lands on a param of the same shape (zeros: only
  # shapes matter here; values are checked by the logits tests below).
  sd = {k: np.zeros(v.shape, np.float32) for k, v in ref.state_dict().items()}
  report = convert.load_torch_weights(ours, sd, "timm")
  assert not (report.missing or report.unexpected or report.mismatched or report.resized)
  assert len(report.loaded) == len(report.ours)
  # The constants are not state: every variable of the model is a param.
  variables = jax.tree.leaves(nnx.state(ours), is_leaf=lambda v: isinstance(v, nnx.Variable))
  assert {type(v) for v in variables} == {nnx.Param}


# ------------------------------------------------------------------------- logits parity


@pytest.fixture(scope="module")
def tiny():
  """A randomised timm swin_tiny_patch4_window7_224 (1000 classes), its state dict, our copy."""
  ref = random_timm("swin_tiny_patch4_window7_224")
  sd = numpy_state_dict(ref)
  ours, report = load_ours("swin_tiny_patch4_window7_224", sd)
  return ref, sd, ours, report


@pytest.mark.skipif(not os.environ.get("PAPERS_JAX_FULL_PARITY"), reason="make test-full (CI time)")
def test_tiny_full_size_logits(tiny):
  ref, _, ours, report = tiny
  assert not (report.missing or report.unexpected or report.mismatched or report.resized)
  x = images(224)
  want, got = timm_logits(ref, x), our_logits(ours, x)
  assert got.shape == (1, 1000)
  diff = np.abs(got - want).max()
  print(f"swin_tiny_patch4_window7_224 max-abs {diff:.2e} (logits up to {np.abs(want).max():.2f})")
  assert diff < TOL
  # The test sees dropped tensors: resetting any one of these to timm's init moves the logits well beyond TOL.
  for path in ("patch_norm/bias", "layers/2/blocks/3/attn/relative_position_bias_table",
               "layers/1/downsample/norm/bias", "layers/2/blocks/5/attn/qkv/bias", "layers/3/blocks/1/mlp/fc2/bias",
               "norm/scale", "head/bias"):
    reset = np.ones_like if path.endswith("scale") else np.zeros_like
    moved = np.abs(our_logits(modified(ours, path, reset), x) - want).max()
    print(f"  {path} reset: logits move {moved:.2e}")
    assert moved > 10 * TOL, path


@pytest.mark.skipif(not os.environ.get("PAPERS_JAX_FULL_PARITY"), reason="set PAPERS_JAX_FULL_PARITY=1 (minutes)")
@pytest.mark.parametrize("name", NAMES)
def test_full_size_logits_every_name(name):
  ref = random_timm(name, seed=1)
  ours, report = load_ours(name, numpy_state_dict(ref))
  assert not (report.missing or report.unexpected or report.mismatched or report.resized)
  x = images(models.model_config(name)["img_size"], seed=1)
  want = timm_logits(ref, x)
  diff = np.abs(our_logits(ours, x) - want).max()
  print(f"{name} max-abs {diff:.2e} (logits up to {np.abs(want).max():.2f})")
  assert diff < TOL


def test_non_square_padded_input_matches_timm():
  """A 72×104 image with 5×5 windows: grids 18×26, 9×13 (padded), 5×7 (one window high, so unshifted
  there), 3×4 (one window). timm shifts before it pads, which `pad_before_shift=False` reproduces."""
  kwargs = dict(embed_dim=24, img_size=(72, 104), window_size=5, num_classes=10)
  ref = random_timm("swin_tiny_patch4_window7_224", seed=2, **kwargs)
  ours, report = load_ours("swin_tiny_patch4_window7_224", numpy_state_dict(ref), pad_before_shift=False, **kwargs)
  assert not (report.missing or report.unexpected or report.mismatched)
  geometry = [(b.resolution, b.window, b.shift, b.padded) for stage in ours.layers for b in stage.blocks[:2]]
  assert geometry[2:4] == [((9, 13), (5, 5), (0, 0), (10, 15)), ((9, 13), (5, 5), (2, 2), (10, 15))]
  assert geometry[4:8] == [((5, 7), (5, 5), (0, 0), (5, 10)), ((5, 7), (5, 5), (0, 2), (5, 10)),
                           ((3, 4), (3, 4), (0, 0), (3, 4)), ((3, 4), (3, 4), (0, 0), (3, 4))]
  x = images(72, 104, seed=2)
  diff = np.abs(our_logits(ours, x) - timm_logits(ref, x)).max()
  print(f"swin 72x104 W5 (timm order) max-abs {diff:.2e}")
  assert diff < TOL


# -------------------------------------------------------------------- resolution change


def test_224_w7_weights_at_384_w12(tiny):
  """224/W7 weights load into a 384/W12 model with every bias table resampled as timm's filter does."""
  ref224, sd, _, _ = tiny
  ours, report = load_ours("swin_tiny_patch4_window7_224", sd, img_size=384, window_size=12)
  assert len(report.resized) == 12 and all(k.endswith("relative_position_bias_table") for k in report.resized)
  assert "resized  layers/0/blocks/0/attn/relative_position_bias_table (169, 3) -> (529, 3)" in str(report)
  assert not (report.missing or report.unexpected or report.mismatched)
  with torch.device("meta"):
    ref = timm.create_model("swin_tiny_patch4_window7_224", pretrained=False, img_size=384, window_size=12)
  ref = ref.to_empty(device="cpu").eval()
  for module in ref.modules():
    if hasattr(module, "init_non_persistent_buffers"):
      module.init_non_persistent_buffers()
  ref.load_state_dict(timm_swin.checkpoint_filter_fn(ref224.state_dict(), ref))
  x = images(384, seed=3)
  diff = np.abs(our_logits(ours, x) - timm_logits(ref, x)).max()
  print(f"swin_tiny 224/W7 -> 384/W12 max-abs {diff:.2e}")
  assert diff < TOL


@pytest.mark.parametrize("old,new", [(7, 12), (12, 7), (7, (5, 7))])
def test_bias_table_resize_matches_timm(old, new):
  table = np.random.RandomState(0).randn((2 * old - 1) ** 2, 4).astype(np.float32)
  new2 = swin._pair(new)
  shape = ((2 * new2[0] - 1) * (2 * new2[1] - 1), 4)
  want = timm.layers.resize_rel_pos_bias_table(torch.from_numpy(table), new_window_size=new2, new_bias_shape=shape)
  got = swin.resize_relative_position_bias(table, new)
  assert got.shape == shape
  np.testing.assert_allclose(got, want.numpy(), rtol=1e-5, atol=1e-5)


# --------------------------------------------------------------------- masks and indices


@pytest.mark.parametrize("resolution,window,shift", [((14, 14), 7, 3), ((10, 13), 4, 2), ((9, 13), 5, 2)])
def test_mask_and_index_match_timm_buffers(resolution, window, shift):
  block = timm_swin.SwinTransformerBlock(dim=8, input_resolution=resolution, num_heads=2, window_size=window,
                                         shift_size=shift)
  win, sh, padded = swin.window_geometry(resolution, (window, window), shifted=True)
  assert sh == (shift, shift)
  ours = swin.shifted_window_mask(padded, win, sh)
  np.testing.assert_array_equal(ours, block.attn_mask.numpy() == 0)
  np.testing.assert_array_equal(swin.relative_position_index(win), block.attn.relative_position_index.numpy())


def _random_block(resolution, window, shifted, seed=0):
  block = nnx.eval_shape(lambda: swin.SwinBlock(8, 2, resolution, window, shifted=shifted, rngs=nnx.Rngs(0)))
  rng = np.random.RandomState(seed)
  state = nnx.state(block, nnx.Param)
  nnx.update(block, jax.tree.map(lambda v: jnp.asarray(rng.randn(*v.shape).astype(np.float32) * 0.5), state))
  block.eval()
  return block


@pytest.mark.parametrize("resolution,shifted", [((12, 12), True), ((10, 13), True), ((10, 13), False)])
def test_attention_reachability_brute_force(resolution, shifted):
  """Which input tokens each output token depends on (exact zeros of the Jacobian) equals the
  shifted-window partition computed from token coordinates: tokens (y, x) and (y', x') meet iff
  floor((y - s) / M) and floor((x - s) / M) agree, on grids the window does or does not divide."""
  window = (4, 4)
  block = _random_block(resolution, window, shifted)
  h, w = resolution
  x = jnp.asarray(np.random.RandomState(1).randn(1, h, w, 8).astype(np.float32))
  jac = jax.jit(jax.jacfwd(lambda x: block(x)))(x)[0]  # (h, w, 8, 1, h, w, 8)
  reach = np.abs(np.asarray(jac)).sum(axis=(2, 3, 6)).reshape(h * w, h * w) > 0
  s = 2 if shifted else 0
  ys, xs = np.divmod(np.arange(h * w), w)
  cell = ((ys - s) // window[0]) * 1000 + (xs - s) // window[1]
  expected = cell[:, None] == cell[None, :]
  assert block.shift == ((s, s) if shifted else (0, 0))
  np.testing.assert_array_equal(reach, expected)


def test_masks_built_once_per_shape():
  swin.shifted_window_mask.cache_clear()
  swin.relative_position_index.cache_clear()
  kwargs = dict(embed_dim=24, img_size=(72, 104), window_size=5, num_classes=10, pad_before_shift=False)
  model = abstract("swin_tiny_patch4_window7_224", **kwargs)
  model.eval()
  blocks = [b for stage in model.layers for b in stage.blocks]
  shapes = {(b.padded, b.window, b.shift) for b in blocks if any(b.shift)}
  windows = {b.window for b in blocks}
  assert len(shapes) == 3 and len(windows) == 2  # 12 blocks, 5 of them shifted, in 3 geometries
  built = swin.shifted_window_mask.cache_info().misses, swin.relative_position_index.cache_info().misses
  assert built == (len(shapes), len(windows))
  # Another model of the same shapes builds nothing; calls (traced, or compiled and run) only look
  # the constants up.
  abstract("swin_tiny_patch4_window7_224", **kwargs)
  x = images(72, 104)
  for _ in range(2):
    nnx.eval_shape(lambda m, x: m(x), model, x)
  hits = swin.shifted_window_mask.cache_info().hits
  assert hits >= 3 * 5
  nnx.update(model, jax.tree.map(lambda v: jnp.zeros(v.shape, v.dtype), nnx.state(model, nnx.Param)))
  our_logits(model, x)  # the same structure as the non-square test: its compiled function
  assert (swin.shifted_window_mask.cache_info().misses, swin.relative_position_index.cache_info().misses) == built


def test_forward_intermediates_and_geometry():
  model = abstract("swin_tiny_patch4_window7_224", embed_dim=24, num_classes=0)
  model.eval()
  x = jnp.zeros((2, 224, 224, 3))
  out = nnx.eval_shape(lambda m, x: m.forward_intermediates(x), model, x)
  assert [out[f"stage{i}"].shape for i in range(4)] == [(2, 56, 56, 24), (2, 28, 28, 48), (2, 14, 14, 96),
                                                        (2, 7, 7, 192)]
  assert out["stem"].shape == (2, 56, 56, 24) and out["encoded"].shape == (2, 7, 7, 192)
  assert "logits" not in out and out["pre_logits"].shape == (2, 192)
  # The stage outputs are the blocks' (un-normalised) outputs; features are their final LayerNorm.
  assert nnx.eval_shape(lambda m, x: m(x), model, x).shape == (2, 192)
  # The paper's stochastic depth: rates rise linearly from 0 to drop_path_rate over all 12 blocks.
  rates = [b.drop_path1.rate for stage in abstract("swin_tiny_patch4_window7_224", drop_path_rate=0.2).layers
           for b in stage.blocks]
  np.testing.assert_allclose(rates, np.linspace(0, 0.2, 12))


def test_partition_roundtrip_and_merging_order():
  x = np.arange(2 * 6 * 8 * 3).reshape(2, 6, 8, 3)
  windows = swin.window_partition(x, (3, 4))
  assert windows.shape == (8, 12, 3)
  np.testing.assert_array_equal(windows[1].reshape(3, 4, 3), x[0, :3, 4:])  # second window: top right
  np.testing.assert_array_equal(swin.window_reverse(windows, (3, 4), (6, 8)), x)
  # Patch merging concatenates (row, col) offsets (0,0), (1,0), (0,1), (1,1): timm's / the paper's order.
  merge = nnx.eval_shape(lambda: swin.PatchMerging(3, 6, rngs=nnx.Rngs(0)))
  nnx.update(merge, jax.tree.map(lambda v: jnp.ones(v.shape) if v.ndim == 1 else jnp.eye(12, 6), nnx.state(merge)))
  merge.norm.scale[...] = jnp.ones(12)
  merge.norm.bias[...] = jnp.zeros(12)
  y = np.asarray(merge(jnp.asarray(x, jnp.float32)))
  # With LayerNorm, only order matters: the first 6 merged channels are x[0,0] (3) then x[1,0] (3).
  concat = np.concatenate([x[:, 0::2, 0::2], x[:, 1::2, 0::2], x[:, 0::2, 1::2], x[:, 1::2, 1::2]], -1)
  normed = (concat - concat.mean(-1, keepdims=True)) / np.sqrt(concat.var(-1, keepdims=True) + swin.NORM_EPS)
  np.testing.assert_allclose(y, normed[..., :6], rtol=1e-5, atol=1e-5)


def test_analytic_flops_match_the_paper_and_grow_linearly():
  spec = importlib.util.spec_from_file_location("benchmark", os.path.join(os.path.dirname(__file__), "..", "tools",
                                                                          "benchmark.py"))
  benchmark = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(benchmark)
  # The paper's Table 1 counts multiply-adds: 4.5 / 8.7 / 15.4 / 47.0 G (T, S, B at 224, B at 384).
  for name, gmacs in (("swin_tiny_patch4_window7_224", 4.5), ("swin_small_patch4_window7_224", 8.7),
                      ("swin_base_patch4_window7_224", 15.4), ("swin_base_patch4_window12_384", 47.0)):
    assert abs(benchmark.forward_flops(abstract(name)) / 2e9 / gmacs - 1) < 0.01, name
  # Linear in H·W for a fixed window: twice the side, four times the FLOPs (the head aside).
  head = 2 * 768 * 1000
  small, large = (benchmark.forward_flops(abstract("swin_tiny_patch4_window7_224", img_size=s)) for s in (224, 448))
  assert large - head == 4 * (small - head)
