"""Super-resolution (issue 33): the L1 loss and the Y-channel PSNR / SSIM against numpy and skimage, MATLAB's
bicubic against torch's, the pairs and folders of data/super_resolution.py, DAT's channel attention and
spatial gate and ATD's token-dictionary and category attentions against numpy, the parameter counts of every
paper configuration against the official code's, and the task's pieces.

The official counts were taken from the official modules themselves (torch, random init, parameters summed):
zhengchen1999/DAT 1645c64, LabShuHangGU/Adaptive-Token-Dictionary d25fd84, JingyunLiang/SwinIR 6545850.
The paper-size models build in the default suite only shape-wise (nnx.eval_shape with FixedKeyRngs).
"""

import math
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from scipy.special import erf

from papers_jax import models
from papers_jax.data import super_resolution as data
from papers_jax.models import atd, dat, sr_common
from papers_jax.objectives import super_resolution as objective
from timm_parity import FixedKeyRngs

FULL = bool(os.environ.get("PAPERS_JAX_FULL_PARITY"))
RNG = np.random.default_rng(0)


# ------------------------------------------------------------------------------------------ numpy references

def np_softmax(x, axis=-1):
  e = np.exp(x - x.max(axis, keepdims=True))
  return e / e.sum(axis, keepdims=True)


def np_normalize(x, axis):
  return x / np.maximum(np.linalg.norm(x, axis=axis, keepdims=True), 1e-12)


def np_gelu(x):
  return 0.5 * x * (1 + erf(x / math.sqrt(2)))


def np_layer_norm(x, scale, bias, eps=1e-5):
  mu, var = x.mean(-1, keepdims=True), x.var(-1, keepdims=True)
  return (x - mu) / np.sqrt(var + eps) * scale + bias


def np_depthwise3(x, kernel, bias):
  """(B, H, W, C) depthwise 3×3 conv with zero padding 1; kernel (3, 3, 1, C)."""
  b, h, w, c = x.shape
  p = np.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
  out = np.zeros_like(x)
  for i in range(3):
    for j in range(3):
      out += p[:, i:i + h, j:j + w] * kernel[i, j, 0]
  return out + bias


def np_ssim(x, y):
  """Wang et al.'s SSIM of two 2-D float images in [0, 255]: 11×11 Gaussian σ = 1.5, valid positions."""
  g = np.exp(-(np.arange(11) - 5.0) ** 2 / (2 * 1.5 ** 2))
  w = np.outer(g, g) / np.outer(g, g).sum()
  win = lambda a: np.lib.stride_tricks.sliding_window_view(a, (11, 11))  # noqa: E731
  f = lambda a: np.einsum("ijkl,kl->ij", win(a), w)  # noqa: E731
  mx, my = f(x), f(y)
  sxx, syy, sxy = f(x * x) - mx ** 2, f(y * y) - my ** 2, f(x * y) - mx * my
  c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
  return (((2 * mx * my + c1) * (2 * sxy + c2)) / ((mx ** 2 + my ** 2 + c1) * (sxx + syy + c2))).mean()


def np_y(rgb):
  return 16 + rgb.astype(np.float64) @ np.array([65.481, 128.553, 24.966]) / 255


# ------------------------------------------------------------------------------------------ loss and metrics

def test_l1_psnr_ssim_against_numpy_and_skimage():
  from skimage.color import rgb2ycbcr
  from skimage.metrics import peak_signal_noise_ratio, structural_similarity
  hr = RNG.integers(0, 256, (2, 40, 36, 3)).astype(np.uint8)
  pred = np.clip(hr / 255 + RNG.normal(0, 0.05, hr.shape), -0.1, 1.1).astype(np.float32)
  assert np.isclose(float(jax.jit(objective.l1_loss)(pred, hr / 255)), np.abs(pred - hr / 255).mean(), rtol=1e-5)
  metrics = jax.jit(lambda p, t: objective.y_metrics(p, t, crop_border=2))
  got = metrics(jnp.asarray(pred), jnp.asarray(hr))
  for i in range(2):
    pred_u8 = np.round(np.clip(pred[i], 0, 1) * 255).astype(np.uint8)  # the saved image
    y_pred, y_hr = np_y(pred_u8), np_y(hr[i])
    np.testing.assert_allclose(y_hr, rgb2ycbcr(hr[i])[..., 0], atol=1e-3)  # BT.601 studio-swing luma
    y_pred, y_hr = y_pred[2:-2, 2:-2], y_hr[2:-2, 2:-2]
    mse = np.mean((y_pred - y_hr) ** 2)
    assert np.isclose(float(got["psnr"][i]), 10 * np.log10(255 ** 2 / mse), atol=2e-3)
    assert np.isclose(float(got["psnr"][i]), peak_signal_noise_ratio(y_hr, y_pred, data_range=255), atol=2e-3)
    assert np.isclose(float(got["ssim"][i]), np_ssim(y_pred, y_hr), atol=2e-5)
    ref = structural_similarity(y_pred, y_hr, gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
                                data_range=255)
    assert np.isclose(float(got["ssim"][i]), ref, atol=2e-5)
  perfect = metrics(jnp.asarray(hr / 255.0, jnp.float32), jnp.asarray(hr))
  assert np.allclose(perfect["ssim"], 1.0) and np.all(perfect["psnr"] > 140)  # MSE floor 1e-10: finite


# ------------------------------------------------------------------------------------------ data

def test_matlab_bicubic_against_torch_and_patches_against_the_whole_image():
  import torch
  import torch.nn.functional as F
  img = RNG.integers(0, 256, (48, 40, 3)).astype(np.float64)
  for scale in (0.5, 2.0):
    ours = data.imresize(img, scale, round_to_uint8=False)
    ref = F.interpolate(torch.tensor(img).permute(2, 0, 1)[None], size=ours.shape[:2], mode="bicubic",
                        antialias=True, align_corners=False)[0].permute(1, 2, 0).numpy()
    b = 6  # torch renormalises the kernel at the border where MATLAB mirrors: compare the interior
    np.testing.assert_allclose(ours[b:-b, b:-b], ref[b:-b, b:-b], atol=1e-9)
  assert np.allclose(data.imresize(np.full((12, 10), 77.0), 0.5, round_to_uint8=False), 77.0)
  hr = RNG.integers(0, 256, (50, 45, 3)).astype(np.uint8)  # not a multiple of 2: modcrop
  whole = data.imresize(data.modcrop(hr, 2), 0.5)
  for rng in (None, np.random.default_rng(1), np.random.default_rng(2)):
    lr, hr_patch = data.degrade_patch(hr, 2, 10, rng)
    rows, cols = np.nonzero(np.all(np.lib.stride_tricks.sliding_window_view(whole, (10, 10, 3))[..., 0, :, :, :]
                                   == lr, axis=(2, 3, 4)))
    assert len(rows) == 1  # the patch is the whole image's LR, cut
    assert np.array_equal(hr_patch, hr[2 * rows[0]:2 * rows[0] + 20, 2 * cols[0]:2 * cols[0] + 20])


def test_sr_folder_pairs_lr_images_by_name(tmp_path):
  from PIL import Image
  from papers_jax.errors import DataError
  (tmp_path / "Set5" / "HR").mkdir(parents=True)
  (tmp_path / "Set5" / "LR_bicubic" / "X2").mkdir(parents=True)
  hr = RNG.integers(0, 256, (33, 30, 3)).astype(np.uint8)
  Image.fromarray(hr).save(tmp_path / "Set5" / "HR" / "baby.png")
  Image.fromarray(data.imresize(data.modcrop(hr, 2), 0.5)).save(tmp_path / "Set5" / "LR_bicubic" / "X2" / "babyx2.png")
  example = data.SRFolderSource(str(tmp_path), "Set5", 2)[0]
  assert example["image"].shape == (32, 30, 3) and example["lr"].shape == (16, 15, 3)
  assert np.array_equal(example["image"], hr[:32])
  (tmp_path / "train").mkdir()
  Image.fromarray(hr).save(tmp_path / "train" / "0001.png")  # HR only: LR made by the task
  assert set(data.SRFolderSource(str(tmp_path), "train", 2)[0]) == {"image"}
  with pytest.raises(DataError, match="does not exist"):
    data.SRFolderSource(str(tmp_path), "Set14", 2)


# ------------------------------------------------------------------------------------------ DAT

def test_dat_channel_attention_against_numpy():
  q, k, v = (RNG.normal(size=(2, 12, 3, 4)).astype(np.float32) for _ in range(3))
  t = np.array([0.5, 1.0, 2.0], np.float32)
  got = np.asarray(jax.jit(dat.channel_self_attention)(*(jnp.asarray(a) for a in (q, k, v, t))))
  ref = np.zeros_like(q)
  for b in range(2):
    for h in range(3):
      qn, kn = np_normalize(q[b, :, h].T, 1), np_normalize(k[b, :, h].T, 1)  # (d, N): channels over tokens
      ref[b, :, h] = (np_softmax(qn @ kn.T * t[h]) @ v[b, :, h].T).T
  np.testing.assert_allclose(got, ref, atol=1e-5)


def _jit_call(module, **kw):
  """module(*args, **kw) compiled once (eager calls compile every op on its own: slower on 2 cores)."""
  graphdef, state = nnx.split(module)
  call = jax.jit(lambda s, *args: nnx.merge(graphdef, s)(*args, **kw))
  return lambda *args: call(state, *args)


def _perturb(module, rng):
  """Every parameter and BatchNorm statistic away from its initial value."""
  for path, var in nnx.iter_graph(module):
    if isinstance(var, (nnx.Param, nnx.BatchStat)):
      value = rng.normal(0, 0.5, var.shape).astype(np.float32)
      var[...] = jnp.abs(jnp.asarray(value)) + 0.5 if path[-1] == "var" else jnp.asarray(value)


def test_dat_channel_block_and_spatial_gate_against_numpy():
  rng = np.random.default_rng(3)
  dim, heads = 32, 4
  mixer = dat.AdaptiveChannelAttention(dim, heads, rngs=nnx.Rngs(0))
  _perturb(mixer, rng)
  x = rng.normal(size=(2, 4, 5, dim)).astype(np.float32)
  got = np.asarray(_jit_call(mixer, train=False)(jnp.asarray(x)))
  p = jax.tree.map(np.asarray, nnx.to_pure_dict(nnx.state(mixer)))
  qkv = x @ p["qkv"]["kernel"] + p["qkv"]["bias"]
  q, k, v = np.split(qkv, 3, -1)
  tok = lambda a: a.reshape(2, 20, heads, dim // heads)  # noqa: E731
  att = np.zeros((2, 20, heads, dim // heads))
  for b in range(2):
    for h in range(heads):
      qn, kn = np_normalize(tok(q)[b, :, h].T, 1), np_normalize(tok(k)[b, :, h].T, 1)
      att[b, :, h] = (np_softmax(qn @ kn.T * p["temperature"][h]) @ tok(v)[b, :, h].T).T
  att = att.reshape(2, 4, 5, dim)

  def bn(z, s):
    return (z - s["mean"]) / np.sqrt(s["var"] + 1e-5) * s["scale"] + s["bias"]

  conv_x = np_gelu(bn(np_depthwise3(v, p["dwconv"]["conv"]["kernel"], p["dwconv"]["conv"]["bias"]), p["dwconv"]["bn"]))
  lin = lambda z, c: z @ c["kernel"][0, 0] + c["bias"]  # noqa: E731  (1×1 conv)
  si, ci = p["spatial_interaction"], p["channel_interaction"]
  spatial = lin(np_gelu(bn(lin(conv_x, si["conv1"]), si["bn"])), si["conv2"])
  channel = lin(np_gelu(bn(lin(att.mean((1, 2), keepdims=True), ci["conv1"]), ci["bn"])), ci["conv2"])
  sig = lambda z: 1 / (1 + np.exp(-z))  # noqa: E731
  ref = (att * sig(spatial) + conv_x * sig(channel)) @ p["proj"]["kernel"] + p["proj"]["bias"]
  np.testing.assert_allclose(got, ref, atol=1e-4)

  gate = dat.SpatialGate(8, rngs=nnx.Rngs(1))
  _perturb(gate, rng)
  h = rng.normal(size=(2, 5, 6, 16)).astype(np.float32)
  g = jax.tree.map(np.asarray, nnx.to_pure_dict(nnx.state(gate)))
  ref = h[..., :8] * np_depthwise3(np_layer_norm(h[..., 8:], g["norm"]["scale"], g["norm"]["bias"]),
                                   g["conv"]["kernel"], g["conv"]["bias"])
  np.testing.assert_allclose(np.asarray(_jit_call(gate)(jnp.asarray(h))), ref, atol=1e-5)


def test_dat_shifts_every_other_spatial_block_as_the_code():
  shifted = [[b for b in range(12) if b % 2 == 0 and dat.is_shifted(g, b)] for g in (0, 1)]
  assert shifted == [[2, 6, 10], [0, 4, 8]]


# ------------------------------------------------------------------------------------------ ATD

def test_atd_token_dictionary_attention_against_numpy():
  q = RNG.normal(size=(2, 10, 4)).astype(np.float32)
  k = RNG.normal(size=(2, 6, 4)).astype(np.float32)
  v = RNG.normal(size=(2, 6, 8)).astype(np.float32)
  s = np.array([-0.5, 0.0, 0.3, 0.5, 1.0, 2.0], np.float32)  # clamped to [0, 1]
  out, attn = jax.jit(atd.token_dictionary_attention)(*(jnp.asarray(a) for a in (q, k, v, s)))
  logits = np_normalize(q, -1) @ np_normalize(k, -1).transpose(0, 2, 1) * (1 + np.clip(s, 0, 1) * np.log(6))
  np.testing.assert_allclose(np.asarray(attn), np_softmax(logits), atol=1e-6)
  np.testing.assert_allclose(np.asarray(out), np_softmax(logits) @ v, atol=1e-5)


def test_atd_category_attention_against_numpy():
  b, n, c, heads, size = 2, 11, 8, 2, 4  # 11 tokens in groups of 4: the last group padded with one token
  qkv = RNG.normal(size=(b, n, 3 * c)).astype(np.float32)
  sim = RNG.normal(size=(b, n, 5)).astype(np.float32)
  logit_scale = np.float32(np.log(10.0))
  got = np.asarray(jax.jit(atd.category_attention, static_argnums=(2, 3))(jnp.asarray(qkv), jnp.asarray(sim), heads,
                                                                          size, jnp.asarray(logit_scale)))
  ref = np.zeros((b, n, c), np.float32)
  for i in range(b):
    order = np.argsort(np.argmax(sim[i], -1), kind="stable")
    x = qkv[i, order]
    x = np.concatenate([x, x[n - 1:][::-1]])  # 12 = 3 groups of 4
    out = np.zeros((12, c))
    for g in range(3):
      q, k, v = np.split(x[4 * g:4 * g + 4], 3, -1)
      for h in range(heads):
        sl = slice(h * c // heads, (h + 1) * c // heads)
        out[4 * g:4 * g + 4, sl] = np_softmax(q[:, sl] @ k[:, sl].T * 10.0) @ v[:, sl]
    ref[i, order] = out[:n]
  np.testing.assert_allclose(got, ref, atol=1e-5)


def test_atd_dictionary_refinement_against_numpy():
  layer = atd.ATDLayer(16, 2, 4, shifted=True, category_size=8, num_tokens=6, reducted_dim=4, convffn_kernel_size=3,
                       mlp_ratio=1.0, is_last=False, rngs=nnx.Rngs(0))
  _perturb(layer, np.random.default_rng(4))
  x = RNG.normal(size=(1, 4, 8, 16)).astype(np.float32)
  td = RNG.normal(size=(1, 6, 16)).astype(np.float32)
  y, new_td = _jit_call(layer)(jnp.asarray(x), jnp.asarray(td))
  p = jax.tree.map(np.asarray, nnx.to_pure_dict(nnx.state(layer)))
  normed = np_layer_norm(x.reshape(1, 32, 16), p["norm1"]["scale"], p["norm1"]["bias"])
  _, sim = jax.jit(atd.token_dictionary_attention)(jnp.asarray(normed @ p["wq"]["kernel"] + p["wq"]["bias"]),
                                          jnp.asarray(td @ p["wk"]["kernel"] + p["wk"]["bias"]),
                                          jnp.asarray(td @ p["wv"]["kernel"] + p["wv"]["bias"]), p["td_scale"])
  a = np.asarray(sim).transpose(0, 2, 1)  # (1, m, n)
  a = (a - a.mean(-1, keepdims=True)) / np.sqrt(a.var(-1, keepdims=True) + 1e-5)
  a = a * p["norm3_scale"][:, None] + p["norm3_bias"][:, None]
  keep = 1 / (1 + np.exp(-p["sigma"]))[None, :, None]
  ref = keep * td + (1 - keep) * (np_softmax(a) @ np.asarray(y).reshape(1, 32, 16))
  np.testing.assert_allclose(np.asarray(new_td), ref, atol=1e-4)


# ------------------------------------------------------------------------------------------ parameter counts

# (name, scale): parameters of the official code's module (module docstring); the papers' tables agree where
# they give one: DAT's README (×4) 11.21M / 14.80M / 11.21M / 573K; SwinIR's Table (lightweight, ×2) 878K,
# which leaves out the relative-position bias tables (4 × 6 blocks × 15² × 6 heads = 32,400).
OFFICIAL_PARAMS = {
    ("swinir_light", 2): 910_152, ("swinir_classical", 2): 11_752_487,
    ("dat_light", 4): 572_766, ("dat_s", 4): 11_212_131, ("dat", 4): 14_802_051, ("dat_2", 4): 11_212_131,
    ("atd_light", 2): 753_204, ("atd_light", 4): 768_792, ("atd", 2): 20_113_217, ("atd", 4): 20_260_929,
}
PAPER_PARAMS = {("dat_s", 4): 11.21e6, ("dat", 4): 14.80e6, ("dat_2", 4): 11.21e6, ("dat_light", 4): 573e3}
DEFAULT_COUNTS = [("swinir_light", 2), ("dat_light", 4), ("atd_light", 4)]  # the rest: make test-full


def _count(name, scale):
  model = nnx.eval_shape(lambda: models.create(name, upscale=scale, rngs=FixedKeyRngs()))
  return sum(math.prod(p.shape) for p in jax.tree.leaves(nnx.state(model, nnx.Param)))


@pytest.mark.parametrize("key", DEFAULT_COUNTS if not FULL else sorted(OFFICIAL_PARAMS))
def test_parameter_counts_match_the_official_code(key):
  n = _count(*key)
  assert n == OFFICIAL_PARAMS[key], (key, n)
  if key in PAPER_PARAMS:
    digits = 2 if PAPER_PARAMS[key] > 1e6 else 0
    assert round(n / 1e6 if digits else n / 1e3, digits) == round(PAPER_PARAMS[key] / (1e6 if digits else 1e3), digits)
  if key == ("swinir_light", 2):
    assert round((n - 4 * 6 * 15 ** 2 * 6) / 1e3) == 878


def test_paper_size_counts_recorded():
  """The paper-size counts (DAT, DAT-S, DAT-2, ATD, SwinIR-classical) run under PAPERS_JAX_FULL_PARITY=1;
  here their table rows at least name registered models with the official settings."""
  for name, _ in OFFICIAL_PARAMS:
    assert name in models.list_models()
  assert models.model_config("atd") | {} == dict(atd.VARIANTS["atd"])
  assert models.model_config("dat_light")["depths"] == (18,)


# ------------------------------------------------------------------------------------------ the task

def test_task_pairs_losses_and_metrics():
  from conftest import load_config
  from papers_jax.core import loop
  config = load_config("super_resolution/photos.py", "smoke")
  _, task = loop.check_config(config)
  source = task.source("test")
  example = dict(source[0])
  train = task.preprocess(True)(dict(example), np.random.default_rng(0))
  evaluation = task.preprocess(False)(dict(example), np.random.default_rng(0))
  assert train["lr"].shape == (24, 24, 3) and train["hr"].shape == (48, 48, 3) and "bicubic" not in train
  assert np.array_equal(evaluation["lr"], data.imresize(example["image"], 0.5))  # the LR of the whole crop
  assert np.array_equal(evaluation["bicubic"], data.imresize(evaluation["lr"], 2.0))
  model = task.build_model(nnx.Rngs(params=0))
  assert (model.img_size, model.upscale) == (24, 2)
  graphdef, params, rest = nnx.split(model, nnx.Param, ...)
  batch = {k: jnp.asarray(np.stack([evaluation[k]] * 2)) for k in ("lr", "hr", "bicubic")} | {
      "mask": jnp.asarray([1, 0])}
  sums = jax.jit(task.make_eval_fn(graphdef))(nnx.to_pure_dict(params), nnx.to_pure_dict(rest), batch)
  y_bic, y_hr = np_y(evaluation["bicubic"])[2:-2, 2:-2], np_y(evaluation["hr"])[2:-2, 2:-2]
  assert float(sums["count"]) == 1.0
  assert np.isclose(float(sums["bicubic_psnr"]), 10 * np.log10(255 ** 2 / np.mean((y_bic - y_hr) ** 2)), atol=2e-3)
  assert np.isclose(float(sums["bicubic_ssim"]), np_ssim(y_bic, y_hr), atol=2e-5)
  # The demo's bicubic residual with the last conv at zero: the untrained model is bicubic upscaling (unrounded).
  assert task.bicubic_residual
  upscaled = np.einsum("ah,bw,hwc->abc", task.upscale_matrix, task.upscale_matrix, evaluation["lr"] / 255.0)
  np.testing.assert_allclose(upscaled, data.imresize(evaluation["lr"], 2.0, round_to_uint8=False) / 255.0, atol=1e-6)
  assert abs(float(sums["psnr"]) - float(sums["bicubic_psnr"])) < 0.02
  loss, _ = jax.eval_shape(task.make_loss_fn(graphdef), nnx.to_pure_dict(params), nnx.to_pure_dict(rest),
                           {k: batch[k] for k in ("lr", "hr")}, jax.random.key(0))
  assert loss.shape == ()


def test_pixel_shuffle_is_torchs():
  import torch
  x = RNG.normal(size=(1, 3, 4, 2 * 2 * 5)).astype(np.float32)
  ref = torch.nn.functional.pixel_shuffle(torch.tensor(x).permute(0, 3, 1, 2), 2).permute(0, 2, 3, 1).numpy()
  np.testing.assert_array_equal(np.asarray(sr_common.pixel_shuffle(jnp.asarray(x), 2)), ref)


@pytest.mark.skipif(not FULL, reason="lowers three models (CI time); make test-full runs it")
@pytest.mark.parametrize("name, overrides", [
    ("swinir_light", dict(embed_dim=16, depths=(2,), num_heads=(2,))),
    ("dat_light", dict(embed_dim=32, depths=(2,), num_heads=(2,), split_size=(4, 8))),
    ("atd_light", dict(embed_dim=16, depths=(2,), num_heads=(2,), window_size=8, category_size=32, num_tokens=8)),
])
def test_forward_flops_match_xla(name, overrides):
  from papers_jax.models import conv_flops
  model = nnx.eval_shape(lambda: models.create(name, img_size=16, upscale=2, rngs=FixedKeyRngs(), **overrides))
  analytic = models.forward_flops(model, count_padding=False)
  graphdef, state = nnx.split(model)
  x = jax.ShapeDtypeStruct((2, 16, 16, 3), jnp.float32)
  xla = conv_flops.xla_flops(lambda s, a: nnx.merge(graphdef, s)(a, train=False), state, x) / 2
  assert 0.95 < xla / analytic < 1.05, (name, xla / analytic)
