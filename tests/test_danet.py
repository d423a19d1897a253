"""DANet: the two attention modules against numpy transcriptions of the paper's / official code's formulas,
the dilated ResNet's dilations against the official code's, the head's parameter count against the
official DANetHead's layer shapes, the align-corners upsampling against torch."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from papers_jax import models
from papers_jax.models import danet
from papers_jax.nn.conv import Conv


def _np(x):
  return np.asarray(x, np.float64)


def _softmax(x):
  e = np.exp(x - x.max(-1, keepdims=True))
  return e / e.sum(-1, keepdims=True)


def _perturbed_pam(channels: int, gamma: float, seed: int = 0):
  pam = danet.PositionAttention(channels, rngs=nnx.Rngs(seed))
  rng = np.random.default_rng(seed)
  for conv in (pam.query_conv, pam.key_conv, pam.value_conv):
    conv.kernel[...] = jnp.asarray(rng.normal(0, 0.3, conv.kernel.shape), jnp.float32)
    conv.bias[...] = jnp.asarray(rng.normal(0, 0.3, conv.bias.shape), jnp.float32)
  pam.gamma[...] = jnp.asarray([gamma], jnp.float32)
  return pam


def test_position_attention_matches_numpy():
  """The official PAM_Module in NCHW: q = Wq x (N × C/8), k likewise, energy = q kᵀ, softmax over the last axis,
  out = V · attentionᵀ, γ·out + x."""
  b, h, w, c = 2, 3, 5, 16
  pam = _perturbed_pam(c, gamma=0.7)
  x = np.random.default_rng(1).normal(size=(b, h, w, c)).astype(np.float32)
  with jax.default_matmul_precision("highest"):
    got = np.asarray(pam(jnp.asarray(x)))
  xn = _np(x).transpose(0, 3, 1, 2).reshape(b, c, h * w)  # B × C × N as the official code views it
  def conv(m):
    return np.einsum("io,bin->bon", _np(m.kernel[...])[0, 0], xn) + _np(m.bias[...])[None, :, None]
  proj_query = conv(pam.query_conv).transpose(0, 2, 1)  # B × N × C/8
  proj_key = conv(pam.key_conv)  # B × C/8 × N
  attention = _softmax(proj_query @ proj_key)  # B × N × N
  out = conv(pam.value_conv) @ attention.transpose(0, 2, 1)  # B × C × N
  want = (0.7 * out + xn).reshape(b, c, h, w).transpose(0, 2, 3, 1)
  np.testing.assert_allclose(got, want, atol=1e-5, rtol=1e-5)


def test_channel_attention_matches_numpy():
  """The official CAM_Module: energy = A Aᵀ (C × C), energy_new = max(energy, -1) − energy, softmax,
  out = attention · A, γ·out + x."""
  b, h, w, c = 2, 4, 3, 6
  cam = danet.ChannelAttention(rngs=nnx.Rngs(0))
  cam.gamma[...] = jnp.asarray([0.3], jnp.float32)
  x = np.random.default_rng(2).normal(size=(b, h, w, c)).astype(np.float32)
  with jax.default_matmul_precision("highest"):
    got = np.asarray(cam(jnp.asarray(x)))
  a = _np(x).transpose(0, 3, 1, 2).reshape(b, c, h * w)
  energy = a @ a.transpose(0, 2, 1)
  attention = _softmax(energy.max(-1, keepdims=True) - energy)
  want = (0.3 * (attention @ a) + a).reshape(b, c, h, w).transpose(0, 2, 3, 1)
  np.testing.assert_allclose(got, want, atol=1e-5, rtol=1e-5)


def test_both_modules_start_as_the_identity():
  x = jnp.asarray(np.random.default_rng(3).normal(size=(1, 3, 3, 16)), jnp.float32)
  pam, cam = danet.PositionAttention(16, rngs=nnx.Rngs(0)), danet.ChannelAttention(rngs=nnx.Rngs(0))
  assert float(pam.gamma[0]) == 0.0 and float(cam.gamma[0]) == 0.0
  np.testing.assert_array_equal(np.asarray(pam(x)), np.asarray(x))
  np.testing.assert_array_equal(np.asarray(cam(x)), np.asarray(x))


@pytest.fixture(scope="module")
def danet101():
  return nnx.eval_shape(lambda: models.create("danet_resnet101", num_classes=19, multi_grid=(4, 8, 16),
                                              rngs=nnx.Rngs(0)))


def _count(tree) -> int:
  return sum(math.prod(x.shape) for x in jax.tree.leaves(nnx.state(tree, nnx.Param)))


def test_dilations_follow_the_official_dilated_resnet(danet101):
  """encoding/dilated/resnet.py: layer3 stride 1 with dilation 2 (first block 1), layer4 with the
  Cityscapes multi-grid (4, 8, 16); layer2 keeps its stride: output stride 8."""
  backbone = danet101.backbone
  strides = [stage[0].conv2.stride for stage in backbone.stage_modules()]
  dilations = [[block.conv2.dilation for block in stage] for stage in backbone.stage_modules()]
  assert strides == [1, 2, 1, 1]
  assert dilations[:2] == [[1] * 3, [1] * 4]
  assert dilations[2] == [1] + [2] * 22 and dilations[3] == [4, 8, 16]
  plain = nnx.eval_shape(lambda: models.create("danet_resnet50", num_classes=19, rngs=nnx.Rngs(0)))
  assert [[b.conv2.dilation for b in s] for s in plain.backbone.stage_modules()][2:] == [[1] + [2] * 5, [2, 4, 4]]


def test_parameter_count_is_the_official_configuration(danet101):
  """Backbone: torchvision's resnet101 (44,549,160) less its 2048 × 1000 classifier; head: DANetHead(2048, 19)."""
  backbone = 44_549_160 - (2048 * 1000 + 1000)
  inter, k = 512, 19
  conv_bn = lambda cin, cout: cin * cout * 9 + 2 * cout  # noqa: E731  (3×3 conv without bias, BN)
  pam = 2 * (inter * inter // 8 + inter // 8) + inter * inter + inter + 1
  head = 2 * conv_bn(2048, inter) + pam + 1 + 2 * conv_bn(inter, inter) + 3 * (inter * k + k)
  assert _count(danet101.backbone) == backbone
  assert _count(danet101) == backbone + head == 66_454_779
  assert models.forward_flops(danet101, img_size=64) > models.forward_flops(danet101.backbone, img_size=64)


def test_dilated_conv_is_the_conv_with_a_spread_kernel():
  """A 3×3 conv with dilation 2 equals the 5×5 conv whose kernel holds the 3×3 taps two apart."""
  conv = Conv(3, 4, 3, dilation=2, rngs=nnx.Rngs(0))
  spread = Conv(3, 4, 5, rngs=nnx.Rngs(1))
  spread.kernel[...] = jnp.zeros_like(spread.kernel[...]).at[::2, ::2].set(conv.kernel[...])
  x = jnp.asarray(np.random.default_rng(0).normal(size=(1, 7, 9, 3)), jnp.float32)
  with jax.default_matmul_precision("highest"):
    np.testing.assert_allclose(np.asarray(conv(x)), np.asarray(spread(x)), atol=1e-5)
  assert conv(x).shape == x.shape[:3] + (4,)


def test_upsampling_matches_torch_align_corners():
  torch = pytest.importorskip("torch")
  x = np.random.default_rng(4).normal(size=(2, 5, 7, 3)).astype(np.float32)
  got = np.asarray(danet.resize_bilinear_align_corners(jnp.asarray(x), (17, 12)))
  want = torch.nn.functional.interpolate(torch.from_numpy(x).permute(0, 3, 1, 2), size=(17, 12), mode="bilinear",
                                         align_corners=True).permute(0, 2, 3, 1).numpy()
  np.testing.assert_allclose(got, want, atol=1e-5)


def test_tiny_danet_outputs_and_aux_outputs():
  """Shapes only (abstractly): the modules' numbers are checked above, the training run in test_configs."""
  small = dict(num_classes=3, layers=(1, 1, 1, 1), width=4)
  model = nnx.eval_shape(lambda: models.create("danet_resnet50", **small, rngs=nnx.Rngs(0)))
  x = jax.ShapeDtypeStruct((2, 32, 32, 3), jnp.float32)
  logits, aux = nnx.eval_shape(lambda m, x: m(x, train=True, rngs=nnx.Rngs(dropout=0), return_aux=True), model, x)
  assert logits.shape == (2, 32, 32, 3) and [a.shape for a in aux] == [(2, 32, 32, 3)] * 2
  features = nnx.eval_shape(lambda m, x: m.backbone.forward_features(x), model, x)
  assert features.shape == (2, 4, 4, 128)  # output stride 8
  fcn = nnx.eval_shape(lambda: models.create("danet_resnet50", **small, attention=False, rngs=nnx.Rngs(0)))
  assert fcn.sa is None and _count(model) - _count(fcn) == _count(model.sa) + 1
