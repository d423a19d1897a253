"""ResNet ("Deep Residual Learning for Image Recognition", He et al. 2016), as timm builds it.

BasicBlock (ResNet-18/34) and Bottleneck (ResNet-50/101/152, stride on the 3×3 conv, "v1.5");
7×7/2 stem with a 3×3/2 max pool, or the CIFAR stem (3×3/1 conv, no pool) for 32×32 inputs; global
average pooling and a linear classifier. BatchNorm follows torch's conventions and by default
normalises over the whole global batch (see nn/norms.py; `bn_group_size` gives per-device
statistics). timm's init: He-normal (fan-out) convolutions, BatchNorm (1, 0) with the last BN of
every residual branch at zero, torch's default uniform init for the classifier. NHWC layout.

The paper's other networks (§3.3, §4.1, §4.2):
  - shortcuts where the shape changes (`shortcut`): "A" zero-pads the extra channels of a
    stride-2-subsampled identity (no parameters), "B" projects (1×1 conv + BN) only there (timm's
    and the paper's default for the deep nets), "C" projects every shortcut;
  - plain networks (`residual=False`): the same stacks without any shortcut (`plain18`, `plain34`);
  - the CIFAR-10 networks of §4.2: a 3×3 conv with 16 filters, then 3 stages of n basic blocks at
    widths 16/32/64 (feature maps 32/16/8), global pooling and a 10-way classifier: 6n+2 layers,
    option-A shortcuts (`resnet20_cifar` … `resnet110_cifar`, `plain20_cifar` … `plain110_cifar`).
    These are built without timm's zero-initialised last BN, as in the paper.
`forward_flops(model)` counts one forward pass analytically (models.forward_flops picks it).
"""

import math

import chex
import jax
import jax.numpy as jnp
from flax import nnx

from papers_jax.core import sharding
from papers_jax.errors import ConfigError
from papers_jax.models import intermediates
from papers_jax.models.registry import IMAGENET_MEAN, IMAGENET_STD, Preprocessing, register
from papers_jax.nn.activations import relu
from papers_jax.nn.conv import Conv, conv_flops, max_pool
from papers_jax.nn.linear import Dense
from papers_jax.nn.norms import BatchNorm, FrozenBatchNorm

# name: (block, layers per stage) — Table 1 of the paper.
VARIANTS = {
    "resnet18": ("basic", (2, 2, 2, 2)),
    "resnet34": ("basic", (3, 4, 6, 3)),
    "resnet50": ("bottleneck", (3, 4, 6, 3)),
    "resnet101": ("bottleneck", (3, 4, 23, 3)),
    "resnet152": ("bottleneck", (3, 8, 36, 3)),
}
EXPANSION = {"basic": 1, "bottleneck": 4}
SHORTCUTS = ("A", "B", "C")

# The paper's CIFAR-10 networks (§4.2, Table 6): n blocks per stage, 6n+2 layers, and the paper's
# parameter counts in millions (the residual and plain nets have the same count under option A).
CIFAR_VARIANTS = {20: 3, 32: 5, 44: 7, 56: 9, 110: 18}
CIFAR_PAPER_PARAMS_M = {20: 0.27, 32: 0.46, 44: 0.66, 56: 0.85, 110: 1.7}


class Block(nnx.Module):
  """A residual block: BasicBlock (two 3×3) or Bottleneck (1×1, 3×3 with the stride, 1×1 ×4), with the
  shortcut of option A, B or C, or none (`residual=False`, a plain block). A bottleneck's 3×3 may be grouped
  (ResNeXt, torchvision's layout: int(planes · base_width / 64) · groups inner channels)."""

  def __init__(self, kind: str, in_features: int, planes: int, stride: int, *, zero_init_last: bool,
               shortcut: str = "B", residual: bool = True, dilation: int = 1, bn_group_size=None, norm: str = "batch",
               groups: int = 1, base_width: int = 64, dtype=None,
               param_dtype=jnp.float32, rngs: nnx.Rngs):
    out = planes * EXPANSION[kind]
    kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
    zero_init_last = zero_init_last and residual  # a plain block has no branch to start at zero
    bn = lambda c, last=False: _norm(norm, c, bn_group_size, kw) if not (last and zero_init_last) else \
        _zero_scale(_norm(norm, c, bn_group_size, kw))
    self.kind = kind
    if kind == "basic":
      self.conv1, self.bn1 = Conv(in_features, planes, 3, stride=stride, dilation=dilation, **kw), bn(planes)
      self.conv2, self.bn2 = Conv(planes, planes, 3, dilation=dilation, **kw), bn(planes, last=True)
      self.conv3 = self.bn3 = None
    else:
      inner = int(planes * base_width / 64) * groups
      self.conv1, self.bn1 = Conv(in_features, inner, 1, **kw), bn(inner)
      self.conv2, self.bn2 = Conv(inner, inner, 3, stride=stride, dilation=dilation, groups=groups, **kw), bn(inner)
      self.conv3, self.bn3 = Conv(inner, out, 1, **kw), bn(out, last=True)
    self.residual, self.stride, self.pad_channels = residual, stride, 0
    changes_shape = stride != 1 or in_features != out
    if residual and (shortcut == "C" or (shortcut == "B" and changes_shape)):
      self.downsample_conv, self.downsample_bn = Conv(in_features, out, 1, stride=stride, **kw), bn(out)
    else:
      self.downsample_conv = self.downsample_bn = None
      if residual and shortcut == "A":
        self.pad_channels = out - in_features

  def __call__(self, x, *, train: bool):
    shortcut = x
    y = relu(self.bn1(self.conv1(x), train=train))
    if self.kind == "basic":
      y = self.bn2(self.conv2(y), train=train)
    else:
      y = relu(self.bn2(self.conv2(y), train=train))
      y = self.bn3(self.conv3(y), train=train)
    if not self.residual:
      return relu(y)
    if self.downsample_conv is not None:
      shortcut = self.downsample_bn(self.downsample_conv(x), train=train)
    else:  # identity; option A subsamples it and appends zero channels where the shape changes
      shortcut = x[:, ::self.stride, ::self.stride, :]
      if self.pad_channels:
        shortcut = jnp.pad(shortcut, ((0, 0), (0, 0), (0, 0), (0, self.pad_channels)))
    return relu(y + shortcut)


def _norm(kind: str, c: int, group_size, kw):
  if kind == "frozen":  # DETR's backbone: statistics and affine fixed (nn/norms.py)
    return FrozenBatchNorm(c, **kw)
  return BatchNorm(c, group_size=group_size, **kw)


def _zero_scale(bn: BatchNorm) -> BatchNorm:
  bn.scale[...] = jnp.zeros_like(bn.scale[...])
  return bn


class ResNet(nnx.Module):
  """`layers`: blocks per stage (any number of stages; stage i has width·2^i planes and, after the
  first, starts with a stride-2 block). `shortcut`: "A", "B" or "C" (see the module docstring);
  `residual=False` builds the plain network. `img_size`: the input resolution that `forward_flops` assumes
  (the network takes any size). `norm`: "batch" (BatchNorm) or "frozen" (FrozenBatchNorm: fixed statistics
  and affine, not trained; DETR's backbone).
  `output_stride` 8 or 16 (default: the full stride, 32 after the ImageNet stem) replaces the stride of the
  last stages by dilation, as the segmentation networks' dilated FCN does (DANet, DeepLab): each such
  stage doubles the dilation, its first block keeping the previous one (torchvision's
  `replace_stride_with_dilation`, DANet's code).
  `multi_grid` gives the last stage's dilations block by block, cycled (DANet's Cityscapes model: 4, 8, 16).
  `groups` / `width_per_group` make the bottlenecks ResNeXt's (timm's cardinality / base_width)."""

  def __init__(self, *, block: str = "bottleneck", layers=(3, 4, 6, 3), num_classes: int = 1000, in_chans: int = 3,
               stem: str = "imagenet", width: int = 64, zero_init_last: bool = True, shortcut: str = "B",
               residual: bool = True, img_size: int | None = None, output_stride: int | None = None, multi_grid=None,
               bn_group_size=None, norm: str = "batch", groups: int = 1, width_per_group: int = 64, dtype=None,
               param_dtype=jnp.float32, rngs: nnx.Rngs):
    if stem not in ("imagenet", "cifar"):
      raise ConfigError(f"stem={stem!r}; choose 'imagenet' (7×7/2 conv + max pool) or 'cifar' (3×3/1 conv)")
    if shortcut not in SHORTCUTS:
      raise ConfigError(f"shortcut={shortcut!r}; choose 'A' (zero-padded identity), 'B' (projection where the "
                       f"shape changes) or 'C' (projection everywhere)")
    if norm not in ("batch", "frozen"):
      raise ConfigError(f"norm={norm!r}; choose 'batch' (BatchNorm) or 'frozen' (FrozenBatchNorm)")
    total_stride = (4 if stem == "imagenet" else 1) * 2 ** (len(layers) - 1)
    output_stride = output_stride or total_stride
    if output_stride > total_stride or total_stride % output_stride or output_stride < (4 if stem == "imagenet" else 1):
      raise ConfigError(f"output_stride={output_stride}; this ResNet reaches stride {total_stride}: choose "
                        f"{total_stride} or a power-of-two fraction of it down to the stem's stride")
    kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
    self.stem, self.num_classes, self.in_chans = stem, num_classes, in_chans
    self.shortcut, self.residual = shortcut, residual
    self.img_size = img_size or (224 if stem == "imagenet" else 32)
    self.conv1 = Conv(in_chans, width, 7, stride=2, **kw) if stem == "imagenet" else Conv(in_chans, width, 3, **kw)
    self.bn1 = _norm(norm, width, bn_group_size, kw)
    stages, features = [], width
    stride_so_far, dilation = total_stride // 2 ** (len(layers) - 1), 1
    for i, depth in enumerate(layers):
      planes = width * 2 ** i
      stage_stride, dilations = 1, [dilation] * depth
      if i > 0 and stride_so_far < output_stride:
        stage_stride, stride_so_far = 2, stride_so_far * 2
      elif i > 0:  # dilate instead: the first block keeps the previous dilation
        dilation *= 2
        dilations = [dilations[0]] + [dilation] * (depth - 1)
      if multi_grid and i == len(layers) - 1 and dilation > 1:
        dilations = [multi_grid[j % len(multi_grid)] for j in range(depth)]
      blocks = []
      for j in range(depth):
        stride = stage_stride if j == 0 else 1
        blocks.append(Block(block, features, planes, stride, zero_init_last=zero_init_last, shortcut=shortcut,
                            residual=residual, dilation=dilations[j], bn_group_size=bn_group_size, norm=norm,
                            groups=groups, base_width=width_per_group, **kw))
        features = planes * EXPANSION[block]
      stages.append(nnx.List(blocks))
    self.num_stages = len(stages)
    for i, stage in enumerate(stages):  # layer1 … layer4 as timm names them (layer1 … layer3 for CIFAR)
      setattr(self, f"layer{i + 1}", stage)
    self.num_features = features
    bound = 1.0 / math.sqrt(features)  # torch Linear's default init
    self.fc = (Dense(features, num_classes, axes=("embed", "classes"), dtype=dtype, param_dtype=param_dtype,
                     kernel_init=_uniform(bound),
                     bias_init=_uniform(bound), rngs=rngs) if num_classes else None)

  def stage_modules(self) -> list:
    return [getattr(self, f"layer{i + 1}") for i in range(self.num_stages)]

  def stages(self, x, *, train: bool = False):
    """Images (B, H, W, C) → the stage outputs (strides 4, 8, 16, 32 after the ImageNet stem; 1, 2, 4, 8
    after the CIFAR stem)."""
    chex.assert_rank(x, 4)
    chex.assert_axis_dimension(x, 3, self.in_chans)
    x = relu(self.bn1(self.conv1(x), train=train))
    if self.stem == "imagenet":
      x = max_pool(x)
    outs = []
    for stage in self.stage_modules():
      for block in stage:
        x = block(x, train=train)
      x = sharding.constrain(x, ("act_batch", None, None, None))
      outs.append(x)
    return outs

  def forward_features(self, x, *, train: bool = False):
    return self.stages(x, train=train)[-1]

  def forward_intermediates(self, x, *, indices=None, stop_early: bool = False, train: bool = False) -> dict:
    """Named features, NHWC (models/intermediates.py): "stem" (after the max pool), "stage{i}" for the
    stages `indices` picks (layer{i+1}), then "encoded", "pre_logits" and "logits" unless `stop_early`."""
    stages = self.stage_modules()
    picked = intermediates.select(indices, len(stages))
    x = relu(self.bn1(self.conv1(x), train=train))
    if self.stem == "imagenet":
      x = max_pool(x)
    out = {"stem": (x := intermediates.tap("stem", x))}
    if stop_early and not picked:
      return out
    for i, stage in enumerate(stages):
      for block in stage:
        x = block(x, train=train)
      x = sharding.constrain(x, ("act_batch", None, None, None))
      x = intermediates.tap(f"stage{i}", x)
      if i in picked:
        out[f"stage{i}"] = x
      if stop_early and i == picked[-1]:
        return out
    return intermediates.add_head_outputs(out, self, x)

  def forward_head(self, x, *, pre_logits: bool = False):
    x = x.astype(jnp.float32).mean(axis=(1, 2))
    if pre_logits or self.fc is None:
      return x
    return self.fc(x)

  def __call__(self, x, *, train: bool | None = None, rngs: nnx.Rngs | None = None):
    del rngs  # no dropout
    out = self.forward_head(self.forward_features(x, train=bool(train)))
    chex.assert_shape(out, (x.shape[0], self.num_classes or self.num_features))
    chex.assert_type(out, float)
    return out


def _uniform(bound: float):
  def init(key, shape, dtype=jnp.float32):
    return jax.random.uniform(key, shape, dtype, -bound, bound)
  return init


# Preprocessing: timm's pretrained_cfg of its ResNet checkpoints (the "A1" recipe's, test crop 0.95);
# the plain nets have no published weights and take the paper's 224 crop of a 256 shorter side; the
# CIFAR nets take CIFAR-10's per-channel statistics, no crop.
TIMM_IN1K = Preprocessing(224, IMAGENET_MEAN, IMAGENET_STD, crop_pct=0.95)
PAPER_IN1K = Preprocessing(224, IMAGENET_MEAN, IMAGENET_STD, crop_pct=0.875)
CIFAR10 = Preprocessing(32, (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616), crop_pct=1.0)

for _name, (_block, _layers) in VARIANTS.items():
  register(_name, ResNet, block=_block, layers=_layers, preprocessing=TIMM_IN1K)
# The paper's plain baselines (Table 1's 18- and 34-layer stacks without shortcuts; Fig. 4 left).
for _depth in (18, 34):
  register(f"plain{_depth}", ResNet, block="basic", layers=VARIANTS[f"resnet{_depth}"][1], residual=False,
           preprocessing=PAPER_IN1K)
for _depth, _n in CIFAR_VARIANTS.items():
  _cifar = dict(block="basic", layers=(_n, _n, _n), num_classes=10, stem="cifar", width=16, shortcut="A",
                zero_init_last=False, preprocessing=CIFAR10)
  register(f"resnet{_depth}_cifar", ResNet, **_cifar)
  register(f"plain{_depth}_cifar", ResNet, **_cifar, residual=False)


def shuffle_batch(x, key):
  """MoCo's shuffle-BN, the SPMD way: a random permutation of the global batch, so that each
  device's BatchNorm group holds other devices' examples. Returns (shuffled, permutation)."""
  perm = jax.random.permutation(key, x.shape[0])
  shuffled = sharding.constrain(x[perm], ("act_batch",) + (None,) * (x.ndim - 1))
  return shuffled, perm


def unshuffle_batch(y, perm):
  """Undoes `shuffle_batch` on the encoder's output."""
  out = jnp.zeros_like(y).at[perm].set(y)
  return sharding.constrain(out, ("act_batch",) + (None,) * (y.ndim - 1))


def forward_flops(model: ResNet, img_size: int | None = None, *, count_padding: bool = True) -> float:
  """Matmul FLOPs of one forward pass per example at img_size × img_size (default `model.img_size`):
  every convolution and the classifier, 2 per multiply-add (the paper's "FLOPs" count multiply-adds:
  its 1.8·10⁹ for ResNet-18 at 224 are 3.6·10⁹ here). BatchNorm, ReLU, pooling and the shortcuts'
  additions are left out. `count_padding=False` leaves out the kernel taps that land on the zero
  padding, as XLA's cost analysis does (a 3×3 conv on a 7×7 map: 18% fewer). Works on an abstract
  model (`nnx.eval_shape`). A convnet has no embedding: every parameter is a non-embedding one."""
  h = w = img_size or model.img_size
  total, h, w = conv_flops(model.conv1, h, w, count_padding=count_padding)
  if model.stem == "imagenet":
    h, w = (h + 2 - 3) // 2 + 1, (w + 2 - 3) // 2 + 1  # the 3×3/2 max pool, padding 1
  for stage in model.stage_modules():
    for block in stage:
      h_in, w_in = h, w
      for conv in (block.conv1, block.conv2, block.conv3):
        if conv is not None:
          f, h, w = conv_flops(conv, h, w, count_padding=count_padding)
          total += f
      if block.downsample_conv is not None:
        total += conv_flops(block.downsample_conv, h_in, w_in, count_padding=count_padding)[0]
  if model.fc is not None:
    total += 2 * model.num_features * model.num_classes
  return float(total)


# A convnet has no embedding (models.embedding_params): its stem is compute like any other convolution.
EMBEDDINGS = ()
