"""DANet ("Dual Attention Network for Scene Segmentation", Fu et al., CVPR 2019).

A dilated ResNet FCN (output stride 8: the last two stages trade their stride for dilation 2 and 4,
models/resnet.py's `output_stride`) whose last feature map feeds two parallel attention branches:

  - position attention (PAM, §3.2): query and key 1×1 convs to C/8, value 1×1 conv to C,
    S = softmax_j(q_i · k_j) over the H·W positions, out_i = Σ_j S_ij v_j, then γ·out + x;
  - channel attention (CAM, §3.3): energy = A·Aᵀ over the C channels (A: C × HW),
    softmax(max_d energy_cd − energy_cd) over d, out = attention · A, then β·out + x.
γ and β are learned scalars initialised to 0, so both modules start as the identity.

The head follows the official code (junfu1115/DANet, encoding/models/danet.py `DANetHead`, the 2018
release and the 2020 rewrite alike): per branch a 3×3 conv-BN-ReLU from 2048 to 512 channels
(`conv5a`, `conv5c`), the attention module (`sa`, `sc`), a 3×3 conv-BN-ReLU (`conv51`, `conv52`); the
sum of the two branches goes through dropout 0.1 (channel-wise, torch's Dropout2d) and a 1×1
classifier (`conv8`); each branch also has its own dropout + 1×1 classifier (`conv6` on PAM's,
`conv7` on CAM's). All three outputs are upsampled bilinearly (align_corners=True, the code's
`up_kwargs`) to the input size. The official training loss (2018 release, `SegmentationMultiLosses`)
is the plain sum of the three cross-entropies: the branch outputs are auxiliary outputs with weight 1
(`AUX_LOSS_WEIGHT`); evaluation reads the fused output only.

The backbone is the official code's dilated ResNet: the 7×7 stem (the 2018 release; its 2020 rewrite
runs with `--no-deepstem` for the Cityscapes model), layer3 with dilation 2 and layer4 with 4, the
first block of each dilated stage keeping the previous dilation; the Cityscapes model uses multi-grid
dilations (4, 8, 16) in layer4 (`multi_grid`, README's `--multi-grid --multi-dilation 4 8 16`). The
backbone's BatchNorms start at (1, 0) as the official ResNet's (no zero-initialised last BN).

Departures: the convolutions of the head take the project's He-normal (fan-out) init rather than
torch's default uniform one (the paper trains the head from scratch either way; the backbone is
ImageNet-pretrained in the paper, here it starts random unless `init_from` gives weights). BatchNorm
is synchronised over the global batch (the code's SyncBN, the paper's setting).

Parameter count (`danet_resnet101`, 19 Cityscapes classes): 42,500,160 in the backbone (torchvision's
resnet101 less its classifier) + 23,954,619 in the head = 66,454,779, checked in tests/test_danet.py
against the official head's layer shapes.
"""

import chex
import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from papers_jax.models.registry import IMAGENET_MEAN, IMAGENET_STD, Preprocessing, register
from papers_jax.models.resnet import VARIANTS as RESNET_VARIANTS
from papers_jax.models.resnet import ResNet
from papers_jax.models.resnet import forward_flops as resnet_flops
from papers_jax.nn.activations import relu
from papers_jax.nn.conv import Conv, conv_flops
from papers_jax.nn.drop import Dropout
from papers_jax.nn.linear import param
from papers_jax.nn.norms import BatchNorm

AUX_LOSS_WEIGHT = 1.0  # the official SegmentationMultiLosses: loss1 + loss2 + loss3
HEAD_REDUCTION = 4  # DANetHead: inter_channels = in_channels // 4
QK_REDUCTION = 8  # PAM: query / key to in_dim // 8


class PositionAttention(nnx.Module):
  """PAM: out = γ · (softmax over positions of q·kᵀ) v + x on NHWC maps, γ initialised to 0.

  Written out rather than through nn/attention.py: that op takes equal query/key/value widths, and
  PAM's value is C wide while its query and key are C/8 (and PAM has no 1/√d scale)."""

  def __init__(self, channels: int, *, dtype=None, param_dtype=jnp.float32, rngs: nnx.Rngs):
    kw = dict(use_bias=True, dtype=dtype, param_dtype=param_dtype, rngs=rngs)
    self.query_conv = Conv(channels, channels // QK_REDUCTION, 1, **kw)
    self.key_conv = Conv(channels, channels // QK_REDUCTION, 1, **kw)
    self.value_conv = Conv(channels, channels, 1, **kw)
    self.gamma = param(rngs, nnx.initializers.zeros, (1,), param_dtype, (None,))

  def __call__(self, x):
    b, h, w, c = x.shape
    q = self.query_conv(x).reshape(b, h * w, -1).astype(jnp.float32)
    k = self.key_conv(x).reshape(b, h * w, -1).astype(jnp.float32)
    v = self.value_conv(x).reshape(b, h * w, c)
    attention = jax.nn.softmax(jnp.einsum("bic,bjc->bij", q, k), axis=-1)  # (B, HW, HW), rows: queries
    out = jnp.einsum("bij,bjc->bic", attention.astype(v.dtype), v).reshape(x.shape)
    return (self.gamma[...].astype(x.dtype) * out + x).astype(x.dtype)


class ChannelAttention(nnx.Module):
  """CAM: out = β · softmax(max(E) − E) A + x with E = A·Aᵀ over channels (no convolutions), β from 0."""

  def __init__(self, *, param_dtype=jnp.float32, rngs: nnx.Rngs):
    self.gamma = param(rngs, nnx.initializers.zeros, (1,), param_dtype, (None,))

  def __call__(self, x):
    b, h, w, c = x.shape
    a = x.reshape(b, h * w, c).astype(jnp.float32)
    energy = jnp.einsum("bnc,bnd->bcd", a, a)  # (B, C, C)
    # The paper's max − energy; softmax is shift-invariant, so the max only keeps the exponents ≤ 0.
    energy_new = energy.max(axis=-1, keepdims=True) - energy
    attention = jax.nn.softmax(energy_new, axis=-1)
    out = jnp.einsum("bcd,bnd->bnc", attention, a).reshape(x.shape)
    return (self.gamma[...] * out + x.astype(jnp.float32)).astype(x.dtype)


class ConvBNReLU(nnx.Module):
  """3×3 conv (no bias) → BatchNorm → ReLU, the head's `nn.Sequential(Conv2d, norm_layer, ReLU)`."""

  def __init__(self, in_features: int, out_features: int, *, bn_group_size=None, dtype=None, param_dtype=jnp.float32,
               rngs: nnx.Rngs):
    kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
    self.conv = Conv(in_features, out_features, 3, **kw)
    self.bn = BatchNorm(out_features, group_size=bn_group_size, **kw)

  def __call__(self, x, *, train: bool):
    return relu(self.bn(self.conv(x), train=train))


class ChannelDropout(Dropout):
  """torch's Dropout2d on NHWC maps: whole channels of each example are dropped."""

  def mask_shape(self, x) -> tuple[int, ...]:
    return (x.shape[0], 1, 1, x.shape[-1])


def _align_corners_matrix(size: int, out: int) -> np.ndarray:
  """(out, size) weights of 1-D linear interpolation with align_corners=True (the ends map to the ends)."""
  m = np.zeros((out, size), np.float32)
  if size == 1 or out == 1:
    m[:, 0] = 1.0
    return m
  pos = np.arange(out) * (size - 1) / (out - 1)
  lo = np.minimum(np.floor(pos).astype(int), size - 2)
  frac = pos - lo
  m[np.arange(out), lo] = 1.0 - frac
  m[np.arange(out), lo + 1] += frac
  return m


def resize_bilinear_align_corners(x, size: tuple[int, int]):
  """torch's F.interpolate(mode="bilinear", align_corners=True) on NHWC maps, as two small matmuls."""
  h, w = x.shape[1:3]
  rows = jnp.asarray(_align_corners_matrix(h, size[0]))
  cols = jnp.asarray(_align_corners_matrix(w, size[1]))
  return jnp.einsum("oh,bhwc,pw->bopc", rows, x.astype(jnp.float32), cols, precision=jax.lax.Precision.HIGHEST)


class DANet(nnx.Module):
  """`layers`: the ResNet's blocks per stage (bottleneck blocks); `output_stride` 8 (the paper) or 16/32;
  `multi_grid`: layer4's dilations (Cityscapes: (4, 8, 16)); `width`: the ResNet's base width (64; the
  demo shrinks it); `attention=False` leaves PAM and CAM out (the same head without them: the ablation's
  dilated-FCN baseline). Returns per-pixel logits (B, H, W, num_classes) at the input size; with
  `return_aux=True` also the list [PAM branch logits, CAM branch logits]."""

  def __init__(self, *, layers=(3, 4, 23, 3), num_classes: int = 19, in_chans: int = 3, output_stride: int = 8,
               multi_grid=None, width: int = 64, drop_rate: float = 0.1, attention: bool = True, img_size: int = 768,
               bn_group_size=None,
               dtype=None, param_dtype=jnp.float32, rngs: nnx.Rngs):
    kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
    self.num_classes, self.in_chans, self.img_size = num_classes, in_chans, img_size
    self.backbone = ResNet(block="bottleneck", layers=tuple(layers), num_classes=0, in_chans=in_chans, width=width,
                           zero_init_last=False, output_stride=output_stride, multi_grid=multi_grid,
                           img_size=img_size, bn_group_size=bn_group_size, **kw)
    features = self.backbone.num_features
    inter = features // HEAD_REDUCTION
    self.num_features = inter
    conv_bn = lambda: ConvBNReLU(features, inter, bn_group_size=bn_group_size, **kw)  # noqa: E731
    self.conv5a, self.conv5c = conv_bn(), conv_bn()
    self.sa = PositionAttention(inter, **kw) if attention else None
    self.sc = ChannelAttention(param_dtype=param_dtype, rngs=rngs) if attention else None
    self.conv51 = ConvBNReLU(inter, inter, bn_group_size=bn_group_size, **kw)
    self.conv52 = ConvBNReLU(inter, inter, bn_group_size=bn_group_size, **kw)
    self.dropout = ChannelDropout(drop_rate)
    classifier = lambda: Conv(inter, num_classes, 1, use_bias=True, **kw)  # noqa: E731
    self.conv6, self.conv7, self.conv8 = classifier(), classifier(), classifier()  # PAM, CAM, fused

  def forward_head(self, features, *, train: bool, rngs: nnx.Rngs | None = None):
    """The last backbone map → (fused, PAM-branch, CAM-branch) logits at the feature resolution."""
    sa_feat, sc_feat = self.conv5a(features, train=train), self.conv5c(features, train=train)
    if self.sa is not None:
      sa_feat, sc_feat = self.sa(sa_feat), self.sc(sc_feat)
    sa_conv, sc_conv = self.conv51(sa_feat, train=train), self.conv52(sc_feat, train=train)
    drop = lambda y: self.dropout(y, deterministic=not train, rngs=rngs)  # noqa: E731
    return self.conv8(drop(sa_conv + sc_conv)), self.conv6(drop(sa_conv)), self.conv7(drop(sc_conv))

  def __call__(self, x, *, train: bool | None = None, rngs: nnx.Rngs | None = None, return_aux: bool = False):
    chex.assert_rank(x, 4)
    train = bool(train)
    features = self.backbone.forward_features(x, train=train)
    outputs = [resize_bilinear_align_corners(y, x.shape[1:3])
               for y in self.forward_head(features, train=train, rngs=rngs)]
    chex.assert_shape(outputs[0], (*x.shape[:3], self.num_classes))
    return (outputs[0], outputs[1:]) if return_aux else outputs[0]


# Cityscapes' preprocessing in the official code: ImageNet mean / std, the whole image (no resize).
CITYSCAPES = Preprocessing(768, IMAGENET_MEAN, IMAGENET_STD, crop_pct=1.0, interpolation="bilinear")

for _depth in (50, 101):
  register(f"danet_resnet{_depth}", DANet, layers=RESNET_VARIANTS[f"resnet{_depth}"][1], preprocessing=CITYSCAPES)


def forward_flops(model: DANet, img_size: int | None = None, *, count_padding: bool = True) -> float:
  """Matmul FLOPs of one forward pass per example (2 per multiply-add): the dilated backbone, the head's
  convolutions, PAM's two (HW × HW) products, CAM's two (C × C) products and the three upsamplings'
  matmuls. Works on an abstract model."""
  size = img_size or model.img_size
  total = resnet_flops(model.backbone, size, count_padding=count_padding)
  h = w = size
  h, w = (h + 6 - 7) // 2 + 1, (w + 6 - 7) // 2 + 1  # the stem conv
  h, w = (h + 2 - 3) // 2 + 1, (w + 2 - 3) // 2 + 1  # its max pool
  for stage in model.backbone.stage_modules():
    stride = stage[0].conv2.stride
    h, w = (h - 1) // stride + 1, (w - 1) // stride + 1
  for block in (model.conv5a, model.conv5c, model.conv51, model.conv52):
    total += conv_flops(block.conv, h, w, count_padding=count_padding)[0]
  for conv in (model.conv6, model.conv7, model.conv8):
    total += conv_flops(conv, h, w)[0]
  n, c, k = h * w, model.num_features, model.num_classes
  if model.sa is not None:
    for conv in (model.sa.query_conv, model.sa.key_conv, model.sa.value_conv):
      total += conv_flops(conv, h, w)[0]
    total += 2 * n * n * (model.sa.query_conv.kernel.shape[-1] + c)  # PAM: q·kᵀ and attention · v
    total += 2 * 2 * n * c * c  # CAM: A·Aᵀ and attention · A
  total += 3 * 2 * k * (size * h * w + size * size * w)  # the three upsamplings, rows then columns
  return float(total)


EMBEDDINGS = ()
