"""PKINet ("Poly Kernel Inception Network for Remote Sensing Detection", Cai et al., CVPR 2024).

Built as the official code builds it (NUST-Machine-Intelligence-Laboratory/PKINet,
mmrotate/models/backbones/pkinet.py), NHWC:

  - Context Anchor Attention (CAA, §3.3): 7×7 average pooling (stride 1, padding 3), 1×1 conv, depthwise
    1×K and K×1 strip convolutions, 1×1 conv, sigmoid; K = 11 + 2·l for the l-th block of a stage
    (the code's `caa_kernel_size + 2 * i`). In the network its convolutions have biases and no
    normalisation or activation (`CAA(..., norm_cfg=None, act_cfg=None)`), as the paper's Eq. 6–8.
  - the Poly Kernel Inception module (§3.2, the code's `InceptionBottleneck`): 1×1 conv-BN-SiLU, a 3×3
    depthwise conv, then parallel 5×5, 7×7, 9×9, 11×11 depthwise convs (no dilation) summed with their
    input, a 1×1 conv-BN-SiLU; the CAA factor of the module's input gates it (x + x·CAA(input)),
    then a 1×1 conv-BN-SiLU.
  - the PKI block: BN → PKI module and BN → ConvFFN (LayerNorm, 1×1, 3×3 depthwise, global
    sigmoid-gated linear unit, 1×1; the FFN's convolutions have biases, no norm or activation), each
    residual with layer scale (1.0) and stochastic depth.
  - the PKI stage (CSP-like): a 3×3/2 conv-BN-SiLU, a 1×1 conv split into halves; one half through a
    ConvFFN shortcut, the other through the stage's PKI blocks; concatenated, then two 1×1 conv-BN-SiLU.
    The official code applies every block of a stage to the same half and sums their outputs
    (`t = t + block(y)`), which is what this module does; the paper's figure draws them one after
    another. The parameter count is the same either way.
  - the stem: 3×3/2, 3×3, 3×3 conv-BN-SiLU. BatchNorm as mmcv's (momentum 0.03, eps 1e-3).

Variants (the code's `arch_settings`, the paper's Table 1): PKINet-T with widths 32/64/128/256 and
depths 4/14/22/4, PKINet-S with 64/128/256/512 and 4/12/20/4; stem widths 16 and 32; expansion 0.5 in
every stage, FFN ratio 4, shortcut-FFN ratios 8/8/4/4 with kernels 5/7/9/11, dropout 0.1 in the FFNs,
stochastic depth rising linearly to 0.1. The backbone (no classifier) has 4,156,896 parameters (T)
and 13,739,584 (S); the paper states 4.1M and 13.7M, i.e. both truncated to 0.1M
(tests/test_pkinet.py).

As a classifier (`pkinet_t`, `pkinet_s`, this project's addition for the classification task; the
paper pretrains on ImageNet with the code's own recipe but ships no classification head in its
detector): global average pooling and a linear layer on the last stage. Init: the code's default
(Kaiming-uniform with a = √5 on every conv, i.e. torch's default bound 1/√fan_in, biases 0);
the classifier takes a truncated normal (std 0.02).
"""

import chex
import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from papers_jax.core import sharding
from papers_jax.errors import ConfigError
from papers_jax.models import intermediates
from papers_jax.models.registry import IMAGENET_MEAN, IMAGENET_STD, Preprocessing, register
from papers_jax.nn.conv import Conv, avg_pool, conv_flops
from papers_jax.nn.drop import Dropout, DropPath
from papers_jax.nn.linear import Dense, param
from papers_jax.nn.norms import BatchNorm, LayerNorm

# name: (stem width, per stage (width, depth, shortcut FFN ratio, shortcut FFN kernel)).
VARIANTS = {
    "T": (16, ((32, 4, 8.0, 5), (64, 14, 8.0, 7), (128, 22, 4.0, 9), (256, 4, 4.0, 11))),
    "S": (32, ((64, 4, 8.0, 5), (128, 12, 8.0, 7), (256, 20, 4.0, 9), (512, 4, 4.0, 11))),
}
PAPER_BACKBONE_PARAMS_M = {"T": 4.1, "S": 13.7}
KERNEL_SIZES = (3, 5, 7, 9, 11)
CAA_KERNEL_SIZE = 11
BN = dict(momentum=0.03, eps=1e-3)  # mmcv's BN(momentum=0.03, eps=0.001)
# torch's default conv init, the code's Kaiming(a=√5, uniform, fan_in): bound 1/√fan_in.
TORCH_CONV_INIT = nnx.initializers.variance_scaling(1.0 / 3.0, "fan_in", "uniform", in_axis=(0, 1, 2), out_axis=3)


def make_divisible(value: float, divisor: int = 8, min_ratio: float = 0.9) -> int:
  """The code's channel rounding: the nearest multiple of `divisor`, never below 90% of `value`."""
  new = max(divisor, int(value + divisor / 2) // divisor * divisor)
  return new + divisor if new < min_ratio * value else new


class ConvModule(nnx.Module):
  """mmcv's ConvModule: conv (bias only without a norm) → optional BN → optional SiLU; `groups=-1`: depthwise."""

  def __init__(self, in_features: int, out_features: int, kernel_size, *, stride: int = 1, groups: int = 1,
               norm: bool = True, act: bool = True, bn_group_size=None, dtype=None, param_dtype=jnp.float32,
               rngs: nnx.Rngs):
    kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
    groups = in_features if groups == -1 else groups
    self.conv = Conv(in_features, out_features, kernel_size, stride=stride, groups=groups, use_bias=not norm,
                     kernel_init=TORCH_CONV_INIT, **kw)
    self.bn = BatchNorm(out_features, group_size=bn_group_size, **BN, **kw) if norm else None
    self.act = act

  def __call__(self, x, *, train: bool = False):
    x = self.conv(x)
    if self.bn is not None:
      x = self.bn(x, train=train)
    return jax.nn.silu(x) if self.act else x


class ContextAnchorAttention(nnx.Module):
  """CAA: sigmoid(conv1×1(dw K×1(dw 1×K(conv1×1(avgpool7×7(x)))))), the attention factor (same shape as x)."""

  def __init__(self, channels: int, kernel_size: int = CAA_KERNEL_SIZE, *, dtype=None, param_dtype=jnp.float32,
               rngs: nnx.Rngs):
    kw = dict(norm=False, act=False, dtype=dtype, param_dtype=param_dtype, rngs=rngs)
    self.conv1 = ConvModule(channels, channels, 1, **kw)
    self.h_conv = ConvModule(channels, channels, (1, kernel_size), groups=-1, **kw)
    self.v_conv = ConvModule(channels, channels, (kernel_size, 1), groups=-1, **kw)
    self.conv2 = ConvModule(channels, channels, 1, **kw)

  def __call__(self, x):
    y = avg_pool(x, 7, 1, 3)
    return jax.nn.sigmoid(self.conv2(self.v_conv(self.h_conv(self.conv1(y)))).astype(jnp.float32)).astype(x.dtype)


class PolyKernelInception(nnx.Module):
  """The PKI module (the code's InceptionBottleneck with expansion 1): see the module docstring."""

  def __init__(self, in_features: int, out_features: int, *, caa_kernel_size: int = CAA_KERNEL_SIZE,
               kernel_sizes=KERNEL_SIZES, with_caa: bool = True, bn_group_size=None, dtype=None,
               param_dtype=jnp.float32, rngs: nnx.Rngs):
    kw = dict(bn_group_size=bn_group_size, dtype=dtype, param_dtype=param_dtype, rngs=rngs)
    hidden = make_divisible(out_features)
    self.pre_conv = ConvModule(in_features, hidden, 1, **kw)
    dw = lambda k: ConvModule(hidden, hidden, k, groups=-1, norm=False, act=False, **kw)  # noqa: E731
    self.dw_conv = dw(kernel_sizes[0])
    self.dw_convs = nnx.List([dw(k) for k in kernel_sizes[1:]])  # the code's dw_conv1 … dw_conv4
    self.pw_conv = ConvModule(hidden, hidden, 1, **kw)
    self.caa_factor = (ContextAnchorAttention(hidden, caa_kernel_size, dtype=dtype, param_dtype=param_dtype,
                                              rngs=rngs) if with_caa else None)
    self.add_identity = in_features == out_features
    self.post_conv = ConvModule(hidden, out_features, 1, **kw)

  def __call__(self, x, *, train: bool = False):
    x = self.pre_conv(x, train=train)
    y = x
    x = self.dw_conv(x)
    x = x + sum(conv(x) for conv in self.dw_convs)
    x = self.pw_conv(x, train=train)
    if self.caa_factor is not None:
      y = self.caa_factor(y)
    x = x + x * y if self.add_identity else x * y
    return self.post_conv(x, train=train)


class ConvFFN(nnx.Module):
  """LayerNorm (channels) → 1×1 → k×k depthwise → GSiLU (x·sigmoid(mean over positions)) → dropout → 1×1
  → dropout, optionally plus the input. The convolutions have biases and no norm or activation, as the code
  builds them (`norm_cfg=None, act_cfg=None`)."""

  def __init__(self, in_features: int, out_features: int, *, hidden_scale: float = 4.0, kernel_size: int = 3,
               drop_rate: float = 0.0, add_identity: bool = True, dtype=None, param_dtype=jnp.float32,
               rngs: nnx.Rngs):
    kw = dict(norm=False, act=False, dtype=dtype, param_dtype=param_dtype, rngs=rngs)
    hidden = int(in_features * hidden_scale)
    self.norm = LayerNorm(in_features, eps=1e-5, dtype=dtype, param_dtype=param_dtype, rngs=rngs)
    self.fc1 = ConvModule(in_features, hidden, 1, **kw)
    self.dw_conv = ConvModule(hidden, hidden, kernel_size, groups=-1, **kw)
    self.fc2 = ConvModule(hidden, out_features, 1, **kw)
    self.dropout = Dropout(drop_rate)
    self.add_identity = add_identity

  def __call__(self, x, *, train: bool = False, rngs: nnx.Rngs | None = None):
    y = self.dw_conv(self.fc1(self.norm(x)))
    y = y * jax.nn.sigmoid(y.astype(jnp.float32).mean(axis=(1, 2), keepdims=True)).astype(y.dtype)  # GSiLU
    y = self.dropout(y, deterministic=not train, rngs=rngs)
    y = self.dropout(self.fc2(y), deterministic=not train, rngs=rngs)
    return x + y if self.add_identity else y


class PKIBlock(nnx.Module):
  """x + DropPath(γ₁ · PKI(BN(x))), then x + DropPath(γ₂ · ConvFFN(BN(x)))."""

  def __init__(self, channels: int, *, caa_kernel_size: int, ffn_scale: float = 4.0, drop_rate: float = 0.1,
               drop_path_rate: float = 0.0, layer_scale: float = 1.0, bn_group_size=None, dtype=None,
               param_dtype=jnp.float32, rngs: nnx.Rngs):
    kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
    self.norm1 = BatchNorm(channels, group_size=bn_group_size, **BN, **kw)
    self.norm2 = BatchNorm(channels, group_size=bn_group_size, **BN, **kw)
    self.block = PolyKernelInception(channels, channels, caa_kernel_size=caa_kernel_size, bn_group_size=bn_group_size,
                                     **kw)
    self.ffn = ConvFFN(channels, channels, hidden_scale=ffn_scale, drop_rate=drop_rate, add_identity=False, **kw)
    self.gamma1 = param(rngs, nnx.initializers.constant(layer_scale), (channels,), param_dtype, ("norm",))
    self.gamma2 = param(rngs, nnx.initializers.constant(layer_scale), (channels,), param_dtype, ("norm",))
    self.drop_path = DropPath(drop_path_rate)

  def __call__(self, x, *, train: bool = False, rngs: nnx.Rngs | None = None):
    dp = lambda y: self.drop_path(y, deterministic=not train, rngs=rngs)  # noqa: E731
    x = x + dp(self.gamma1[...].astype(x.dtype) * self.block(self.norm1(x, train=train), train=train))
    return x + dp(self.gamma2[...].astype(x.dtype) * self.ffn(self.norm2(x, train=train), train=train, rngs=rngs))


class PKIStage(nnx.Module):
  """Downsampling, then the CSP-like split: see the module docstring."""

  def __init__(self, in_features: int, out_features: int, depth: int, *, shortcut_ffn_scale: float,
               shortcut_ffn_kernel: int, drop_path_rates, expansion: float = 0.5, bn_group_size=None, dtype=None,
               param_dtype=jnp.float32, rngs: nnx.Rngs):
    kw = dict(bn_group_size=bn_group_size, dtype=dtype, param_dtype=param_dtype, rngs=rngs)
    dk = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
    hidden = make_divisible(out_features * expansion)
    self.downsample = ConvModule(in_features, out_features, 3, stride=2, **kw)
    self.conv1 = ConvModule(out_features, 2 * hidden, 1, **kw)
    self.conv2 = ConvModule(2 * hidden, out_features, 1, **kw)
    self.conv3 = ConvModule(out_features, out_features, 1, **kw)
    self.ffn = ConvFFN(hidden, hidden, hidden_scale=shortcut_ffn_scale, kernel_size=shortcut_ffn_kernel, **dk)
    self.blocks = nnx.List([
        PKIBlock(hidden, caa_kernel_size=CAA_KERNEL_SIZE + 2 * i, drop_path_rate=drop_path_rates[i], **kw)
        for i in range(depth)])

  def __call__(self, x, *, train: bool = False, rngs: nnx.Rngs | None = None):
    x, y = jnp.split(self.conv1(self.downsample(x, train=train), train=train), 2, axis=-1)
    x = self.ffn(x, train=train, rngs=rngs)
    t = sum(block(y, train=train, rngs=rngs) for block in self.blocks)  # the code sums the blocks' outputs
    return self.conv3(self.conv2(jnp.concatenate([x, t], axis=-1), train=train), train=train)


class Stem(nnx.Module):
  def __init__(self, in_features: int, out_features: int, *, bn_group_size=None, dtype=None, param_dtype=jnp.float32,
               rngs: nnx.Rngs):
    kw = dict(bn_group_size=bn_group_size, dtype=dtype, param_dtype=param_dtype, rngs=rngs)
    hidden = make_divisible(out_features)
    self.down_conv = ConvModule(in_features, hidden, 3, stride=2, **kw)
    self.conv1 = ConvModule(hidden, hidden, 3, **kw)
    self.conv2 = ConvModule(hidden, out_features, 3, **kw)

  def __call__(self, x, *, train: bool = False):
    return self.conv2(self.conv1(self.down_conv(x, train=train), train=train), train=train)


class PKINet(nnx.Module):
  """`arch` "T" or "S" (`VARIANTS`); `depths` overrides its blocks per stage (tests, smoke runs);
  `num_classes=0` gives the backbone alone (pooled features)."""

  def __init__(self, *, arch: str = "S", depths=None, num_classes: int = 1000, in_chans: int = 3,
               drop_path_rate: float = 0.1, img_size: int = 224, bn_group_size=None, dtype=None,
               param_dtype=jnp.float32, rngs: nnx.Rngs):
    if arch not in VARIANTS:
      raise ConfigError(f"PKINet arch={arch!r}; choose one of {sorted(VARIANTS)}")
    stem_width, stages = VARIANTS[arch]
    if depths is not None:
      if len(depths) != len(stages):
        raise ConfigError(f"PKINet depths={depths}: give one depth per stage ({len(stages)})")
      stages = tuple((w, int(d), r, k) for (w, _, r, k), d in zip(stages, depths))
    kw = dict(bn_group_size=bn_group_size, dtype=dtype, param_dtype=param_dtype, rngs=rngs)
    self.num_classes, self.in_chans, self.img_size = num_classes, in_chans, img_size
    self.stem = Stem(in_chans, stem_width, **kw)
    depths = [depth for _, depth, _, _ in stages]
    rates = np.linspace(0.0, drop_path_rate, sum(depths)).tolist()
    features, blocks = stem_width, []
    for i, (width, depth, ffn_scale, ffn_kernel) in enumerate(stages):
      start = sum(depths[:i])
      blocks.append(PKIStage(features, width, depth, shortcut_ffn_scale=ffn_scale, shortcut_ffn_kernel=ffn_kernel,
                             drop_path_rates=rates[start:start + depth], **kw))
      features = width
    self.stages = nnx.List(blocks)
    self.num_features = features
    self.head = (Dense(features, num_classes, axes=("embed", "classes"), dtype=dtype, param_dtype=param_dtype,
                       kernel_init=nnx.initializers.truncated_normal(0.02), rngs=rngs) if num_classes else None)

  def forward_features(self, x, *, train: bool = False, rngs: nnx.Rngs | None = None):
    chex.assert_rank(x, 4)
    chex.assert_axis_dimension(x, 3, self.in_chans)
    x = self.stem(x, train=train)
    for stage in self.stages:
      x = sharding.constrain(stage(x, train=train, rngs=rngs), ("act_batch", None, None, None))
    return x

  def forward_intermediates(self, x, *, indices=None, stop_early: bool = False, train: bool = False) -> dict:
    """Named features, NHWC: "stem", "stage{i}" for the stages `indices` picks, then "encoded", "pre_logits"
    and "logits" unless `stop_early`."""
    picked = intermediates.select(indices, len(self.stages))
    x = intermediates.tap("stem", self.stem(x, train=train))
    out = {"stem": x}
    if stop_early and not picked:
      return out
    for i, stage in enumerate(self.stages):
      x = intermediates.tap(f"stage{i}", stage(x, train=train))
      if i in picked:
        out[f"stage{i}"] = x
      if stop_early and i == picked[-1]:
        return out
    return intermediates.add_head_outputs(out, self, x)

  def forward_head(self, x, *, pre_logits: bool = False):
    x = x.astype(jnp.float32).mean(axis=(1, 2))
    return x if pre_logits or self.head is None else self.head(x)

  def __call__(self, x, *, train: bool | None = None, rngs: nnx.Rngs | None = None):
    out = self.forward_head(self.forward_features(x, train=bool(train), rngs=rngs))
    chex.assert_shape(out, (x.shape[0], self.num_classes or self.num_features))
    return out


# ImageNet preprocessing as the code's classification pretraining (timm-style, crop 0.875 at 224).
IN1K = Preprocessing(224, IMAGENET_MEAN, IMAGENET_STD, crop_pct=0.875)
for _arch in VARIANTS:
  register(f"pkinet_{_arch.lower()}", PKINet, arch=_arch, preprocessing=IN1K)


def forward_flops(model: PKINet, img_size: int | None = None, *, count_padding: bool = True) -> float:
  """FLOPs of one forward pass per example (2 per multiply-add): every convolution (depthwise ones
  included), the classifier, and CAA's 7×7 average pooling (one add per tap: with the cheap depthwise
  convolutions it is no longer negligible); norms, gates and sums are left out. Works on an abstract model."""
  h = w = img_size or model.img_size
  total = 0

  def run(module, h, w):
    nonlocal total
    f, h, w = conv_flops(module.conv, h, w, count_padding=count_padding)
    total += f
    return h, w

  for conv in (model.stem.down_conv, model.stem.conv1, model.stem.conv2):
    h, w = run(conv, h, w)
  for stage in model.stages:
    h, w = run(stage.downsample, h, w)
    convs = [stage.conv1, stage.conv2, stage.conv3, stage.ffn.fc1, stage.ffn.dw_conv, stage.ffn.fc2]
    for block in stage.blocks:
      pki = block.block
      convs += [pki.pre_conv, pki.dw_conv, *pki.dw_convs, pki.pw_conv, pki.post_conv, block.ffn.fc1,
                block.ffn.dw_conv, block.ffn.fc2]
      if pki.caa_factor is not None:
        caa = pki.caa_factor
        convs += [caa.conv1, caa.h_conv, caa.v_conv, caa.conv2]
        total += 49 * h * w * caa.conv1.conv.kernel.shape[-1]
    for conv in convs:
      run(conv, h, w)
  if model.head is not None:
    total += 2 * model.num_features * model.num_classes
  return float(total)


EMBEDDINGS = ()
