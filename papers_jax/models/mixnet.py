"""MixNet ("MixConv: Mixed Depthwise Convolutional Kernels", Tan & Le, BMVC 2019), as timm builds it. NHWC.

MixConv (nn/conv.py `MixedConv`) splits a depthwise convolution's channels into groups (timm's
`_split_channels`: equal parts, the remainder to the first) and gives each group its own kernel size
(3×3, 5×5, …, 11×11), concatenating the results. MixNet-S/M are the paper's searched networks (Fig. 9): a
3×3/2 stem, six stages of MobileNetV2 inverted-residual blocks (1×1 expansion → MixConv depthwise →
squeeze-and-excitation → 1×1 projection, a residual where the shape allows) whose expansions and projections
may themselves be split into 2 groups ("grouped 1×1", timm's `a1.1` / `p1.1`), ReLU in the early stages and
swish later, a 1×1 head conv to 1536, global pooling and a linear classifier. MixNet-L is MixNet-M with every
width × 1.3 (rounded to multiples of 8).

The block table below is timm's notation (`_gen_mixnet_s` / `_gen_mixnet_m`): ds / ir = depthwise-separable /
inverted residual, r repeats, k the depthwise kernel sizes, a / p the expansion / projection 1×1 groups,
s stride, e expansion ratio, c output channels, se the SE ratio (relative to the block's input channels),
nsw swish. BatchNorm is torch's (eps 1e-5, momentum 0.1; the TF models use 1e-3 and 0.01). Init: timm's
EfficientNet init, N(0, 2 / fan-out) with fan-out = k·k·out / groups, the classifier U(±1/√classes), biases 0.
`forward_flops(model)` counts a forward pass (models/conv_flops.py).
"""

import math

import chex
import jax
import jax.numpy as jnp
from flax import nnx

from papers_jax.core import sharding
from papers_jax.models import conv_flops, intermediates
from papers_jax.models.registry import IMAGENET_MEAN, IMAGENET_STD, Preprocessing, register
from papers_jax.nn.conv import Conv, MixedConv
from papers_jax.nn.linear import Dense
from papers_jax.nn.norms import BatchNorm

ARCH_S = (
    ("ds_r1_k3_s1_e1_c16",),
    ("ir_r1_k3_a1.1_p1.1_s2_e6_c24", "ir_r1_k3_a1.1_p1.1_s1_e3_c24"),
    ("ir_r1_k3.5.7_s2_e6_c40_se0.5_nsw", "ir_r3_k3.5_a1.1_p1.1_s1_e6_c40_se0.5_nsw"),
    ("ir_r1_k3.5.7_p1.1_s2_e6_c80_se0.25_nsw", "ir_r2_k3.5_p1.1_s1_e6_c80_se0.25_nsw"),
    ("ir_r1_k3.5.7_a1.1_p1.1_s1_e6_c120_se0.5_nsw", "ir_r2_k3.5.7.9_a1.1_p1.1_s1_e3_c120_se0.5_nsw"),
    ("ir_r1_k3.5.7.9.11_s2_e6_c200_se0.5_nsw", "ir_r2_k3.5.7.9_p1.1_s1_e6_c200_se0.5_nsw"),
)
ARCH_M = (
    ("ds_r1_k3_s1_e1_c24",),
    ("ir_r1_k3.5.7_a1.1_p1.1_s2_e6_c32", "ir_r1_k3_a1.1_p1.1_s1_e3_c32"),
    ("ir_r1_k3.5.7.9_s2_e6_c40_se0.5_nsw", "ir_r3_k3.5_a1.1_p1.1_s1_e6_c40_se0.5_nsw"),
    ("ir_r1_k3.5.7_s2_e6_c80_se0.25_nsw", "ir_r3_k3.5.7.9_a1.1_p1.1_s1_e6_c80_se0.25_nsw"),
    ("ir_r1_k3_s1_e6_c120_se0.5_nsw", "ir_r3_k3.5.7.9_a1.1_p1.1_s1_e3_c120_se0.5_nsw"),
    ("ir_r1_k3.5.7.9_s2_e6_c200_se0.5_nsw", "ir_r3_k3.5.7.9_p1.1_s1_e6_c200_se0.5_nsw"),
)
# name: (block table, stem width, width multiplier)
VARIANTS = {
    "mixnet_s": (ARCH_S, 16, 1.0),
    "mixnet_m": (ARCH_M, 24, 1.0),
    "mixnet_l": (ARCH_M, 24, 1.3),
}
NUM_FEATURES = 1536


def make_divisible(v: float, divisor: int = 8, round_limit: float = 0.9) -> int:
  """timm's `make_divisible`: the nearest multiple of `divisor`, never below round_limit · v."""
  new_v = max(divisor, int(v + divisor / 2) // divisor * divisor)
  return new_v + divisor if new_v < round_limit * v else new_v


def decode_block(text: str) -> tuple[dict, int]:
  """One entry of the block table → (block arguments, repeats)."""
  kind, *ops = text.split("_")
  args = dict(kind=kind, act="relu", se=0.0, exp_kernels=(1,), pw_kernels=(1,), exp_ratio=1.0)
  repeats = 1
  for op in ops:
    if op == "nsw":
      args["act"] = "swish"
    elif op.startswith("se"):
      args["se"] = float(op[2:])
    else:
      key, value = op[0], op[1:]
      if key == "r":
        repeats = int(value)
      elif key in "kap":
        kernels = tuple(int(k) for k in value.split("."))
        args[{"k": "dw_kernels", "a": "exp_kernels", "p": "pw_kernels"}[key]] = kernels
      elif key == "s":
        args["stride"] = int(value)
      elif key == "e":
        args["exp_ratio"] = float(value)
      elif key == "c":
        args["out_features"] = int(value)
  return args, repeats


def _goog_init(depthwise: bool):
  """timm's EfficientNet conv init: N(0, 2 / fan-out), fan-out = kh·kw·out / groups."""
  def init(key, shape, dtype=jnp.float32):
    fan_out = shape[0] * shape[1] * (1 if depthwise else shape[3])
    return jax.random.normal(key, shape, dtype) * math.sqrt(2.0 / fan_out)
  return init


def _conv(in_features, out_features, kernels, *, stride=1, depthwise=False, **kw):
  """A plain conv for one kernel size, a MixedConv for several (timm's `create_conv2d` with a list)."""
  init = _goog_init(depthwise)
  if len(kernels) == 1:
    return Conv(in_features, out_features, kernels[0], stride=stride, groups=in_features if depthwise else 1,
                kernel_init=init, **kw)
  return MixedConv(in_features, out_features, kernels, stride=stride, depthwise=depthwise, kernel_init=init, **kw)


class SqueezeExcite(nnx.Module):
  """x · sigmoid(W₂ act(W₁ mean(x))), W₁ to `reduced` channels (with biases)."""

  def __init__(self, features: int, reduced: int, act, **kw):
    self.act = act
    self.conv_reduce = Conv(features, reduced, 1, use_bias=True, kernel_init=_goog_init(False), **kw)
    self.conv_expand = Conv(reduced, features, 1, use_bias=True, kernel_init=_goog_init(False), **kw)

  def __call__(self, x):
    s = x.astype(jnp.float32).mean(axis=(1, 2), keepdims=True).astype(x.dtype)
    s = self.conv_expand(self.act(self.conv_reduce(s)))
    return x * jax.nn.sigmoid(s)


class MixBlock(nnx.Module):
  """timm's DepthwiseSeparableConv (`ds`: conv_dw → bn1-act → conv_pw → bn2) or InvertedResidual (`ir`: conv_pw
  → bn1-act → conv_dw → bn2-act → SE → conv_pwl → bn3), with MixConv where an entry lists several kernel
  sizes; timm's attribute names."""

  def __init__(self, in_features: int, *, kind: str, out_features: int, dw_kernels, exp_kernels, pw_kernels,
               exp_ratio: float, stride: int, act: str, se: float, dtype=None, param_dtype=jnp.float32,
               rngs: nnx.Rngs):
    kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
    self.kind, self.act = kind, jax.nn.silu if act == "swish" else jax.nn.relu
    self.has_skip = stride == 1 and in_features == out_features
    mid = in_features if kind == "ds" else make_divisible(in_features * exp_ratio)
    dw = _conv(mid, mid, dw_kernels, stride=stride, depthwise=True, **kw)
    se = SqueezeExcite(mid, round(mid * se / exp_ratio), self.act, **kw) if se else None
    project = _conv(mid, out_features, pw_kernels, **kw)
    if kind == "ds":
      self.conv_dw, self.bn1, self.se = dw, BatchNorm(mid, **kw), se
      self.conv_pw, self.bn2 = project, BatchNorm(out_features, **kw)
    else:
      self.conv_pw, self.bn1 = _conv(in_features, mid, exp_kernels, **kw), BatchNorm(mid, **kw)
      self.conv_dw, self.bn2, self.se = dw, BatchNorm(mid, **kw), se
      self.conv_pwl, self.bn3 = project, BatchNorm(out_features, **kw)

  def __call__(self, x, *, train: bool):
    shortcut = x
    if self.kind == "ir":
      x = self.act(self.bn1(self.conv_pw(x), train=train))
      x = self.act(self.bn2(self.conv_dw(x), train=train))
    else:
      x = self.act(self.bn1(self.conv_dw(x), train=train))
    if self.se is not None:
      x = self.se(x)
    if self.kind == "ir":
      x = self.bn3(self.conv_pwl(x), train=train)
    else:
      x = self.bn2(self.conv_pw(x), train=train)
    return x + shortcut if self.has_skip else x


class MixNet(nnx.Module):
  """`arch`: the block table (tuples of stage entries); `stem_features`; `width_multiplier` (MixNet-L: 1.3)."""

  def __init__(self, *, arch=ARCH_S, stem_features: int = 16, width_multiplier: float = 1.0,
               num_classes: int = 1000, in_chans: int = 3, img_size: int = 224, dtype=None,
               param_dtype=jnp.float32, rngs: nnx.Rngs):
    kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
    scale = (lambda c: make_divisible(c * width_multiplier)) if width_multiplier != 1.0 else (lambda c: c)
    self.num_classes, self.in_chans, self.img_size = num_classes, in_chans, img_size
    stem = scale(stem_features)
    self.conv_stem = Conv(in_chans, stem, 3, stride=2, kernel_init=_goog_init(False), **kw)
    self.bn1 = BatchNorm(stem, **kw)
    features, stages = stem, []
    for entries in arch:
      blocks = []
      for entry in entries:
        args, repeats = decode_block(entry)
        args["out_features"] = scale(args["out_features"])
        for r in range(repeats):
          blocks.append(MixBlock(features, **(args | {"stride": args["stride"] if r == 0 else 1}), **kw))
          features = args["out_features"]
      stages.append(nnx.List(blocks))
    self.blocks = nnx.List(stages)
    self.conv_head = Conv(features, NUM_FEATURES, 1, kernel_init=_goog_init(False), **kw)
    self.bn2 = BatchNorm(NUM_FEATURES, **kw)
    self.num_features = NUM_FEATURES
    bound = 1.0 / math.sqrt(num_classes) if num_classes else 0.0
    self.classifier = (Dense(NUM_FEATURES, num_classes, axes=("embed", "classes"),
                             kernel_init=lambda k, s, d=jnp.float32: jax.random.uniform(k, s, d, -bound, bound),
                             dtype=dtype, param_dtype=param_dtype, rngs=rngs) if num_classes else None)

  def _stem(self, x, train):
    chex.assert_rank(x, 4)
    chex.assert_axis_dimension(x, 3, self.in_chans)
    return jax.nn.relu(self.bn1(self.conv_stem(x), train=train))

  def _stage(self, stage, x, train):
    for block in stage:
      x = block(x, train=train)
    return sharding.constrain(x, ("act_batch", None, None, None))

  def _head_conv(self, x, train):
    return jax.nn.relu(self.bn2(self.conv_head(x), train=train))

  def forward_features(self, x, *, train: bool = False):
    x = self._stem(x, train)
    for stage in self.blocks:
      x = self._stage(stage, x, train)
    return self._head_conv(x, train)

  def forward_intermediates(self, x, *, indices=None, stop_early: bool = False, train: bool = False) -> dict:
    """Named features: "stem", "stage{i}" for the six stages (blocks.{i}), then "encoded" (after the head
    conv), "pre_logits" and "logits" unless `stop_early`."""
    picked = intermediates.select(indices, len(self.blocks))
    x = self._stem(x, train)
    out = {"stem": x}
    if stop_early and not picked:
      return out
    for i, stage in enumerate(self.blocks):
      x = self._stage(stage, x, train)
      if i in picked:
        out[f"stage{i}"] = x
      if stop_early and i == picked[-1]:
        return out
    return intermediates.add_head_outputs(out, self, self._head_conv(x, train))

  def forward_head(self, x, *, pre_logits: bool = False):
    x = x.astype(jnp.float32).mean(axis=(1, 2))
    if pre_logits or self.classifier is None:
      return x
    return self.classifier(x)

  def __call__(self, x, *, train: bool | None = None, rngs: nnx.Rngs | None = None):
    del rngs  # no dropout in timm's mixnet_s/m/l by default
    return self.forward_head(self.forward_features(x, train=bool(train))).astype(jnp.float32)


def forward_flops(model: MixNet, img_size: int | None = None, *, count_padding: bool = True,
                  elementwise: bool = True) -> float:
  """FLOPs of one forward pass per example, 2 per multiply-add; see models/conv_flops.py.

  Unlike the dense families' counters this one counts the element-wise work too (BatchNorm, swish, the SE
  gates, pooling): the depthwise convolutions do so little arithmetic that it is 9–10% of XLA's count of a
  MixNet, past the 5% every counter keeps to. `elementwise=False` gives the convolutions alone, the
  papers' convention (MixNet-S: 0.24 GMAC at 224 px against the paper's 256M FLOPs)."""
  return conv_flops.forward_flops(model, img_size or model.img_size, count_padding=count_padding,
                                  elementwise=elementwise)


# Preprocessing: timm's pretrained_cfg of its MixNets (224, crop 0.875, bicubic, ImageNet mean / std).
for _name, (_arch, _stem, _mult) in VARIANTS.items():
  register(_name, MixNet, arch=_arch, stem_features=_stem, width_multiplier=_mult,
           preprocessing=Preprocessing(224, IMAGENET_MEAN, IMAGENET_STD, crop_pct=0.875))


# The embedding parameters (models.embedding_params): none, as for any convnet.
EMBEDDINGS = ()
