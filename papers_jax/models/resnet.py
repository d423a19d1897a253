"""ResNet ("Deep Residual Learning for Image Recognition", He et al. 2016), as timm builds it.

BasicBlock (ResNet-18/34) and Bottleneck (ResNet-50/101/152, stride on the 3×3 conv, "v1.5");
7×7/2 stem with a 3×3/2 max pool, or the CIFAR stem (3×3/1 conv, no pool) for 32×32 inputs; global
average pooling and a linear classifier. BatchNorm follows torch's conventions and by default
normalises over the whole global batch (see nn/norms.py; `bn_group_size` gives per-device
statistics). timm's init: He-normal (fan-out) convolutions, BatchNorm (1, 0) with the last BN of
every residual branch at zero, torch's default uniform init for the classifier. NHWC layout.
"""

import math

import jax
import jax.numpy as jnp
from flax import nnx

from papers_jax.core import sharding
from papers_jax.models import intermediates
from papers_jax.models.registry import register
from papers_jax.nn.conv import Conv, max_pool
from papers_jax.nn.linear import Dense
from papers_jax.nn.norms import BatchNorm

# name: (block, layers per stage) — Table 1 of the paper.
VARIANTS = {
    "resnet18": ("basic", (2, 2, 2, 2)),
    "resnet34": ("basic", (3, 4, 6, 3)),
    "resnet50": ("bottleneck", (3, 4, 6, 3)),
    "resnet101": ("bottleneck", (3, 4, 23, 3)),
    "resnet152": ("bottleneck", (3, 8, 36, 3)),
}
EXPANSION = {"basic": 1, "bottleneck": 4}


class Block(nnx.Module):
  """A residual block: BasicBlock (two 3×3) or Bottleneck (1×1, 3×3 with the stride, 1×1 ×4)."""

  def __init__(self, kind: str, in_features: int, planes: int, stride: int, *, zero_init_last: bool,
               bn_group_size=None, dtype=None, param_dtype=jnp.float32, rngs: nnx.Rngs):
    out = planes * EXPANSION[kind]
    kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
    bn = lambda c, last=False: BatchNorm(c, group_size=bn_group_size, **kw) if not (last and zero_init_last) else \
        _zero_scale(BatchNorm(c, group_size=bn_group_size, **kw))
    self.kind = kind
    if kind == "basic":
      self.conv1, self.bn1 = Conv(in_features, planes, 3, stride=stride, **kw), bn(planes)
      self.conv2, self.bn2 = Conv(planes, planes, 3, **kw), bn(planes, last=True)
      self.conv3 = self.bn3 = None
    else:
      self.conv1, self.bn1 = Conv(in_features, planes, 1, **kw), bn(planes)
      self.conv2, self.bn2 = Conv(planes, planes, 3, stride=stride, **kw), bn(planes)
      self.conv3, self.bn3 = Conv(planes, out, 1, **kw), bn(out, last=True)
    if stride != 1 or in_features != out:
      self.downsample_conv, self.downsample_bn = Conv(in_features, out, 1, stride=stride, **kw), bn(out)
    else:
      self.downsample_conv = self.downsample_bn = None

  def __call__(self, x, *, train: bool):
    shortcut = x
    y = jax.nn.relu(self.bn1(self.conv1(x), train=train))
    if self.kind == "basic":
      y = self.bn2(self.conv2(y), train=train)
    else:
      y = jax.nn.relu(self.bn2(self.conv2(y), train=train))
      y = self.bn3(self.conv3(y), train=train)
    if self.downsample_conv is not None:
      shortcut = self.downsample_bn(self.downsample_conv(x), train=train)
    return jax.nn.relu(y + shortcut)


def _zero_scale(bn: BatchNorm) -> BatchNorm:
  bn.scale[...] = jnp.zeros_like(bn.scale[...])
  return bn


class ResNet(nnx.Module):

  def __init__(self, *, block: str = "bottleneck", layers=(3, 4, 6, 3), num_classes: int = 1000, in_chans: int = 3,
               stem: str = "imagenet", width: int = 64, zero_init_last: bool = True, bn_group_size=None,
               dtype=None, param_dtype=jnp.float32, rngs: nnx.Rngs):
    if stem not in ("imagenet", "cifar"):
      raise ValueError(f"stem={stem!r}; choose 'imagenet' (7×7/2 conv + max pool) or 'cifar' (3×3/1 conv)")
    kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
    self.stem, self.num_classes = stem, num_classes
    self.conv1 = Conv(in_chans, width, 7, stride=2, **kw) if stem == "imagenet" else Conv(in_chans, width, 3, **kw)
    self.bn1 = BatchNorm(width, group_size=bn_group_size, **kw)
    stages, features = [], width
    for i, depth in enumerate(layers):
      planes = width * 2 ** i
      blocks = []
      for j in range(depth):
        stride = 2 if (i > 0 and j == 0) else 1
        blocks.append(Block(block, features, planes, stride, zero_init_last=zero_init_last,
                            bn_group_size=bn_group_size, **kw))
        features = planes * EXPANSION[block]
      stages.append(nnx.List(blocks))
    self.layer1, self.layer2, self.layer3, self.layer4 = stages
    self.num_features = features
    bound = 1.0 / math.sqrt(features)  # torch Linear's default init
    self.fc = (Dense(features, num_classes, axes=("embed", "classes"), dtype=dtype, param_dtype=param_dtype,
                     kernel_init=_uniform(bound),
                     bias_init=_uniform(bound), rngs=rngs) if num_classes else None)

  def stages(self, x, *, train: bool = False):
    """Images (B, H, W, C) → the four stage outputs (strides 4, 8, 16, 32; 1, 2, 4, 8 for CIFAR)."""
    x = jax.nn.relu(self.bn1(self.conv1(x), train=train))
    if self.stem == "imagenet":
      x = max_pool(x)
    outs = []
    for stage in (self.layer1, self.layer2, self.layer3, self.layer4):
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
    stages = (self.layer1, self.layer2, self.layer3, self.layer4)
    picked = intermediates.select(indices, len(stages))
    x = jax.nn.relu(self.bn1(self.conv1(x), train=train))
    if self.stem == "imagenet":
      x = max_pool(x)
    out = {"stem": x}
    if stop_early and not picked:
      return out
    for i, stage in enumerate(stages):
      for block in stage:
        x = block(x, train=train)
      x = sharding.constrain(x, ("act_batch", None, None, None))
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
    return self.forward_head(self.forward_features(x, train=bool(train)))


def _uniform(bound: float):
  def init(key, shape, dtype=jnp.float32):
    return jax.random.uniform(key, shape, dtype, -bound, bound)
  return init


for _name, (_block, _layers) in VARIANTS.items():
  register(_name, ResNet, block=_block, layers=_layers)


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
