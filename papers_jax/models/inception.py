"""GoogLeNet (Inception v1, "Going Deeper with Convolutions", Szegedy et al. 2015) and Inception-v3
("Rethinking the Inception Architecture for Computer Vision", Szegedy et al. 2016), NHWC.

GoogLeNet: a 7×7/2 stem, nine Inception modules (parallel 1×1, 1×1→3×3, 1×1→5×5 and 3×3-max-pool→1×1
branches concatenated; Table 1's widths), global average pooling, dropout and a linear classifier, with two
auxiliary classifiers on inception4a and inception4d (average pool → 1×1 conv with 128 filters → FC 1024 →
dropout 0.7 → FC), used in training only with loss weight 0.3 (tasks/classification.py `aux_loss_weight`).
  - `googlenet`: torchvision's model: BatchNorm (eps 1e-3) after every conv, no LRN, the aux pool an
    adaptive 4×4 average, dropout 0.2, and a 3×3 conv in the "5×5" branch (a bug kept for its weights,
    pytorch/vision#906).
  - `googlenet_paper`: the paper's: convs with biases and no BatchNorm, LRN after the stem's first pool and
    after conv3 (as in Caffe's bvlc_googlenet: n=5, α=1e-4, β=0.75, k=1 with Caffe's α/n), the 5×5 branch,
    the aux pool 5×5/3, dropout 0.4.

Inception-v3: factorised convolutions (5×5 as two 3×3, n×n as 1×n then n×1), grid reduction by parallel
stride-2 convs and pooling, BatchNorm everywhere (eps 1e-3), one auxiliary classifier on Mixed_6e (weight
0.4 in TF-slim's and torchvision's recipes; the paper gives none) and label smoothing 0.1 in the recipe
(configs/inception/imagenet.py). The layout is the released TF model's, which torchvision and timm port and
which differs from the paper's Table 1 in places (a 5×5 branch in the 35×35 modules). Needs ≥ 75 px; the aux
head needs ≥ 299 px (Mixed_6e at 17×17).

`transform_input=True` is torchvision's flag for its ported weights: inputs normalised with ImageNet's
mean/std are re-mapped to the (x − 0.5) / 0.5 normalisation the TF weights expect.
Init: torchvision's (normal std 0.01 for GoogLeNet; 0.1 for Inception-v3, 0.01 for its aux 5×5 conv and
0.001 for its aux classifier), biases 0.
`forward_flops(model)` counts a forward pass (models/conv_flops.py).
"""

import chex
import jax
import jax.numpy as jnp
from flax import nnx

from papers_jax.core import sharding
from papers_jax.models import conv_flops, intermediates
from papers_jax.models.registry import INCEPTION_MEAN, INCEPTION_STD, Preprocessing, register
from papers_jax.models.alexnet import TORCHVISION_IN1K
from papers_jax.nn.conv import Conv, adaptive_avg_pool, avg_pool, max_pool
from papers_jax.nn.drop import Dropout
from papers_jax.nn.linear import Dense
from papers_jax.nn.norms import BatchNorm, local_response_norm

# GoogLeNet, Table 1: name → (#1×1, #3×3 reduce, #3×3, #5×5 reduce, #5×5, pool proj).
GOOGLENET_MODULES = {
    "inception3a": (64, 96, 128, 16, 32, 32), "inception3b": (128, 128, 192, 32, 96, 64),
    "inception4a": (192, 96, 208, 16, 48, 64), "inception4b": (160, 112, 224, 24, 64, 64),
    "inception4c": (128, 128, 256, 24, 64, 64), "inception4d": (112, 144, 288, 32, 64, 64),
    "inception4e": (256, 160, 320, 32, 128, 128), "inception5a": (256, 160, 320, 32, 128, 128),
    "inception5b": (384, 192, 384, 48, 128, 128),
}
POOL_BEFORE = {"inception4a": 3, "inception5a": 2}  # max-pool window (stride 2) before these modules
# name: (BatchNorm, LRN, "5×5" branch kernel, aux pool, dropout)
GOOGLENET_VARIANTS = {
    "googlenet": (True, False, 3, "adaptive", 0.2),
    "googlenet_paper": (False, True, 5, "avg5s3", 0.4),
}
GOOGLENET_LRN = dict(size=5, alpha=1e-4 / 5, beta=0.75, k=1.0)  # Caffe's LRN: α/n with α = 1e-4
# Inception-v3: Mixed_5b … Mixed_7c as (kind, in channels, option).
INCEPTION_V3_MODULES = (
    ("Mixed_5b", "A", 192, 32), ("Mixed_5c", "A", 256, 64), ("Mixed_5d", "A", 288, 64),
    ("Mixed_6a", "B", 288, None), ("Mixed_6b", "C", 768, 128), ("Mixed_6c", "C", 768, 160),
    ("Mixed_6d", "C", 768, 160), ("Mixed_6e", "C", 768, 192),
    ("Mixed_7a", "D", 768, None), ("Mixed_7b", "E", 1280, None), ("Mixed_7c", "E", 2048, None),
)
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def transform_input(x):
  """torchvision's `transform_input`: ImageNet mean/std normalisation → (x − 0.5) / 0.5."""
  mean, std = jnp.asarray(IMAGENET_MEAN, x.dtype), jnp.asarray(IMAGENET_STD, x.dtype)
  return x * (std / 0.5) + (mean - 0.5) / 0.5


class BasicConv(nnx.Module):
  """conv → BatchNorm (eps 1e-3) → ReLU (torchvision's BasicConv2d); `bn=False`: conv with bias → ReLU."""

  def __init__(self, in_features: int, out_features: int, kernel_size, *, stride: int = 1, padding=0,
               bn: bool = True, std: float = 0.1, dtype=None, param_dtype=jnp.float32, rngs: nnx.Rngs):
    kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
    self.conv = Conv(in_features, out_features, kernel_size, stride=stride, padding=padding, use_bias=not bn,
                     kernel_init=nnx.initializers.normal(std), **kw)
    self.bn = BatchNorm(out_features, eps=1e-3, **kw) if bn else None

  def __call__(self, x, *, train: bool):
    x = self.conv(x)
    if self.bn is not None:
      x = self.bn(x, train=train)
    return jax.nn.relu(x)


def _run(layers, x, train):
  for layer in layers:
    x = layer(x, train=train)
  return x


def _cat(parts):
  return sharding.constrain(jnp.concatenate(parts, axis=-1), ("act_batch", None, None, None))


# ------------------------------------------------------------------------------------ GoogLeNet


class InceptionModule(nnx.Module):
  """GoogLeNet's module (Fig. 2b): 1×1 | 1×1→3×3 | 1×1→5×5 | 3×3/1 max pool→1×1, concatenated."""

  def __init__(self, in_features, widths, *, branch3_kernel: int, **kw):
    c1, c3r, c3, c5r, c5, pool_proj = widths
    self.branch1 = BasicConv(in_features, c1, 1, **kw)
    self.branch2 = nnx.List([BasicConv(in_features, c3r, 1, **kw), BasicConv(c3r, c3, 3, padding=1, **kw)])
    self.branch3 = nnx.List([BasicConv(in_features, c5r, 1, **kw),
                             BasicConv(c5r, c5, branch3_kernel, padding=branch3_kernel // 2, **kw)])
    self.branch4 = BasicConv(in_features, pool_proj, 1, **kw)
    self.out_features = c1 + c3 + c5 + pool_proj

  def __call__(self, x, *, train: bool):
    pooled = max_pool(x, 3, 1, padding=1, ceil_mode=True)
    return _cat([self.branch1(x, train=train), _run(self.branch2, x, train), _run(self.branch3, x, train),
                 self.branch4(pooled, train=train)])


class GoogLeNetAux(nnx.Module):
  """Auxiliary classifier: 4×4 average pool → 1×1 conv (128) → FC 1024 → ReLU → dropout 0.7 → FC."""

  def __init__(self, in_features: int, num_classes: int, *, pool: str, bn: bool, std: float, dtype=None,
               param_dtype=jnp.float32, rngs: nnx.Rngs):
    kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
    dense = dict(kernel_init=nnx.initializers.normal(std), **kw)
    self.pool = pool
    self.conv = BasicConv(in_features, 128, 1, bn=bn, std=std, **kw)
    self.fc1 = Dense(4 * 4 * 128, 1024, axes=("embed", "mlp"), **dense)
    self.fc2 = Dense(1024, num_classes, axes=("embed", "classes"), **dense)
    self.dropout = Dropout(0.7)

  def __call__(self, x, *, train: bool, rngs=None):
    x = adaptive_avg_pool(x, 4) if self.pool == "adaptive" else avg_pool(x, 5, 3)
    if x.shape[1:3] != (4, 4):
      raise ValueError(f"the paper's auxiliary classifier pools inception4a/4d's 14×14 maps (224 px inputs) to "
                       f"4×4, not {tuple(x.shape[1:3])}; use 224 px images, aux_pool='adaptive' or aux_logits=False")
    x = self.conv(x, train=train).reshape(x.shape[0], -1)
    x = self.dropout(jax.nn.relu(self.fc1(x)), deterministic=not train, rngs=rngs)
    return self.fc2(x).astype(jnp.float32)


class GoogLeNet(nnx.Module):
  """See the module docstring. `aux_logits`: build the two auxiliary classifiers (their logits come back
  from `model(x, train=True, return_aux=True)`)."""

  def __init__(self, *, bn: bool = True, lrn: bool = False, branch3_kernel: int = 3, aux_pool: str = "adaptive",
               drop_rate: float = 0.2, aux_logits: bool = True, transform_input: bool = False,
               num_classes: int = 1000, in_chans: int = 3, img_size: int = 224, dtype=None,
               param_dtype=jnp.float32, rngs: nnx.Rngs):
    kw = dict(bn=bn, std=0.01, dtype=dtype, param_dtype=param_dtype, rngs=rngs)
    self.lrn, self.transform_input = lrn, transform_input
    self.num_classes, self.in_chans, self.img_size = num_classes, in_chans, img_size
    self.conv1 = BasicConv(in_chans, 64, 7, stride=2, padding=3, **kw)
    self.conv2 = BasicConv(64, 64, 1, **kw)
    self.conv3 = BasicConv(64, 192, 3, padding=1, **kw)
    features = 192
    for name, widths in GOOGLENET_MODULES.items():
      module = InceptionModule(features, widths, branch3_kernel=branch3_kernel, **kw)
      setattr(self, name, module)
      features = module.out_features
    self.num_features = features
    aux_kw = dict(pool=aux_pool, bn=bn, std=0.01, dtype=dtype, param_dtype=param_dtype, rngs=rngs)
    self.aux1 = GoogLeNetAux(512, num_classes, **aux_kw) if aux_logits and num_classes else None
    self.aux2 = GoogLeNetAux(528, num_classes, **aux_kw) if aux_logits and num_classes else None
    self.dropout = Dropout(drop_rate)
    self.fc = (Dense(features, num_classes, axes=("embed", "classes"), kernel_init=nnx.initializers.normal(0.01),
                     dtype=dtype, param_dtype=param_dtype, rngs=rngs) if num_classes else None)

  def _stem(self, x, train):
    chex.assert_rank(x, 4)
    chex.assert_axis_dimension(x, 3, self.in_chans)
    if self.transform_input:
      x = transform_input(x)
    x = max_pool(self.conv1(x, train=train), 3, 2, padding=0, ceil_mode=True)
    if self.lrn:
      x = local_response_norm(x, **GOOGLENET_LRN)
    x = self.conv3(self.conv2(x, train=train), train=train)
    if self.lrn:
      x = local_response_norm(x, **GOOGLENET_LRN)
    return max_pool(x, 3, 2, padding=0, ceil_mode=True)

  def _modules(self, x, train, picked=None, stop_early=False, rngs=None):
    """Runs the Inception modules; returns (features, {name: output} of those `picked`, aux logits)."""
    outs, aux = {}, []
    for i, name in enumerate(GOOGLENET_MODULES):
      if name in POOL_BEFORE:
        x = max_pool(x, POOL_BEFORE[name], 2, padding=0, ceil_mode=True)
      x = getattr(self, name)(x, train=train)
      if picked is not None and i in picked:
        outs[f"stage{i}"] = x
        if stop_early and i == picked[-1]:
          return x, outs, aux
      if rngs is not False and name in ("inception4a", "inception4d") and self.aux1 is not None:
        head = self.aux1 if name == "inception4a" else self.aux2
        aux.append(head(x, train=train, rngs=rngs))
    return x, outs, aux

  def forward_features(self, x, *, train: bool = False):
    return self._modules(self._stem(x, train), train, rngs=False)[0]

  def forward_intermediates(self, x, *, indices=None, stop_early: bool = False, train: bool = False) -> dict:
    """Named features: "stem" (after the stem's pools), "stage{i}" for Inception module i (inception3a = 0 …
    inception5b = 8), then "encoded", "pre_logits", "logits" unless `stop_early`."""
    picked = intermediates.select(indices, len(GOOGLENET_MODULES))
    x = self._stem(x, train)
    out = {"stem": x}
    if stop_early and not picked:
      return out
    x, stages, _ = self._modules(x, train, picked, stop_early, rngs=False)
    out.update(stages)
    if stop_early:
      return out
    return intermediates.add_head_outputs(out, self, x)

  def forward_head(self, x, *, pre_logits: bool = False, train: bool = False, rngs=None):
    x = x.astype(jnp.float32).mean(axis=(1, 2))
    if pre_logits or self.fc is None:
      return x
    return self.fc(self.dropout(x, deterministic=not train, rngs=rngs))

  def __call__(self, x, *, train: bool | None = None, rngs: nnx.Rngs | None = None, return_aux: bool = False):
    """Logits; with `return_aux` (training), (logits, [aux1 logits, aux2 logits])."""
    train = bool(train)
    x, _, aux = self._modules(self._stem(x, train), train, rngs=rngs if return_aux else False)
    logits = self.forward_head(x, train=train, rngs=rngs).astype(jnp.float32)
    return (logits, aux) if return_aux else logits


# --------------------------------------------------------------------------------- Inception-v3


class InceptionA(nnx.Module):
  """35×35: 1×1 | 1×1→5×5 | 1×1→3×3→3×3 | 3×3 avg pool→1×1."""

  def __init__(self, c, pool_features, **kw):
    self.branch1x1 = BasicConv(c, 64, 1, **kw)
    self.branch5x5_1, self.branch5x5_2 = BasicConv(c, 48, 1, **kw), BasicConv(48, 64, 5, padding=2, **kw)
    self.branch3x3dbl_1 = BasicConv(c, 64, 1, **kw)
    self.branch3x3dbl_2 = BasicConv(64, 96, 3, padding=1, **kw)
    self.branch3x3dbl_3 = BasicConv(96, 96, 3, padding=1, **kw)
    self.branch_pool = BasicConv(c, pool_features, 1, **kw)

  def __call__(self, x, *, train):
    t = dict(train=train)
    return _cat([self.branch1x1(x, **t), self.branch5x5_2(self.branch5x5_1(x, **t), **t),
                 _run([self.branch3x3dbl_1, self.branch3x3dbl_2, self.branch3x3dbl_3], x, train),
                 self.branch_pool(avg_pool(x, 3, 1, 1), **t)])


class InceptionB(nnx.Module):
  """35 → 17 grid reduction: 3×3/2 | 1×1→3×3→3×3/2 | 3×3/2 max pool."""

  def __init__(self, c, **kw):
    self.branch3x3 = BasicConv(c, 384, 3, stride=2, **kw)
    self.branch3x3dbl_1 = BasicConv(c, 64, 1, **kw)
    self.branch3x3dbl_2 = BasicConv(64, 96, 3, padding=1, **kw)
    self.branch3x3dbl_3 = BasicConv(96, 96, 3, stride=2, **kw)

  def __call__(self, x, *, train):
    return _cat([self.branch3x3(x, train=train),
                 _run([self.branch3x3dbl_1, self.branch3x3dbl_2, self.branch3x3dbl_3], x, train),
                 max_pool(x, 3, 2, padding=0)])


class InceptionC(nnx.Module):
  """17×17, 7×7 factorised into 1×7 and 7×1 (Fig. 6): 1×1 | 1×1→1×7→7×1 | 1×1→7×1→1×7→7×1→1×7 | pool→1×1."""

  def __init__(self, c, c7, **kw):
    row, col = dict(padding=(0, 3)), dict(padding=(3, 0))
    self.branch1x1 = BasicConv(c, 192, 1, **kw)
    self.branch7x7_1 = BasicConv(c, c7, 1, **kw)
    self.branch7x7_2 = BasicConv(c7, c7, (1, 7), **row, **kw)
    self.branch7x7_3 = BasicConv(c7, 192, (7, 1), **col, **kw)
    self.branch7x7dbl_1 = BasicConv(c, c7, 1, **kw)
    self.branch7x7dbl_2 = BasicConv(c7, c7, (7, 1), **col, **kw)
    self.branch7x7dbl_3 = BasicConv(c7, c7, (1, 7), **row, **kw)
    self.branch7x7dbl_4 = BasicConv(c7, c7, (7, 1), **col, **kw)
    self.branch7x7dbl_5 = BasicConv(c7, 192, (1, 7), **row, **kw)
    self.branch_pool = BasicConv(c, 192, 1, **kw)

  def __call__(self, x, *, train):
    return _cat([self.branch1x1(x, train=train),
                 _run([self.branch7x7_1, self.branch7x7_2, self.branch7x7_3], x, train),
                 _run([self.branch7x7dbl_1, self.branch7x7dbl_2, self.branch7x7dbl_3, self.branch7x7dbl_4,
                       self.branch7x7dbl_5], x, train),
                 self.branch_pool(avg_pool(x, 3, 1, 1), train=train)])


class InceptionD(nnx.Module):
  """17 → 8 grid reduction: 1×1→3×3/2 | 1×1→1×7→7×1→3×3/2 | 3×3/2 max pool."""

  def __init__(self, c, **kw):
    self.branch3x3_1, self.branch3x3_2 = BasicConv(c, 192, 1, **kw), BasicConv(192, 320, 3, stride=2, **kw)
    self.branch7x7x3_1 = BasicConv(c, 192, 1, **kw)
    self.branch7x7x3_2 = BasicConv(192, 192, (1, 7), padding=(0, 3), **kw)
    self.branch7x7x3_3 = BasicConv(192, 192, (7, 1), padding=(3, 0), **kw)
    self.branch7x7x3_4 = BasicConv(192, 192, 3, stride=2, **kw)

  def __call__(self, x, *, train):
    return _cat([_run([self.branch3x3_1, self.branch3x3_2], x, train),
                 _run([self.branch7x7x3_1, self.branch7x7x3_2, self.branch7x7x3_3, self.branch7x7x3_4], x, train),
                 max_pool(x, 3, 2, padding=0)])


class InceptionE(nnx.Module):
  """8×8 with expanded filter banks (Fig. 7): 1×1 | 1×1→(1×3, 3×1) | 1×1→3×3→(1×3, 3×1) | pool→1×1."""

  def __init__(self, c, **kw):
    row, col = dict(padding=(0, 1)), dict(padding=(1, 0))
    self.branch1x1 = BasicConv(c, 320, 1, **kw)
    self.branch3x3_1 = BasicConv(c, 384, 1, **kw)
    self.branch3x3_2a = BasicConv(384, 384, (1, 3), **row, **kw)
    self.branch3x3_2b = BasicConv(384, 384, (3, 1), **col, **kw)
    self.branch3x3dbl_1 = BasicConv(c, 448, 1, **kw)
    self.branch3x3dbl_2 = BasicConv(448, 384, 3, padding=1, **kw)
    self.branch3x3dbl_3a = BasicConv(384, 384, (1, 3), **row, **kw)
    self.branch3x3dbl_3b = BasicConv(384, 384, (3, 1), **col, **kw)
    self.branch_pool = BasicConv(c, 192, 1, **kw)

  def __call__(self, x, *, train):
    t = dict(train=train)
    b3 = self.branch3x3_1(x, **t)
    bd = self.branch3x3dbl_2(self.branch3x3dbl_1(x, **t), **t)
    return _cat([self.branch1x1(x, **t), self.branch3x3_2a(b3, **t), self.branch3x3_2b(b3, **t),
                 self.branch3x3dbl_3a(bd, **t), self.branch3x3dbl_3b(bd, **t),
                 self.branch_pool(avg_pool(x, 3, 1, 1), **t)])


class InceptionV3Aux(nnx.Module):
  """Auxiliary classifier on the 17×17 grid: 5×5/3 avg pool → 1×1 conv (128) → 5×5 conv (768) → mean → FC."""

  def __init__(self, in_features: int, num_classes: int, *, dtype=None, param_dtype=jnp.float32, rngs: nnx.Rngs):
    kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
    self.conv0 = BasicConv(in_features, 128, 1, **kw)
    self.conv1 = BasicConv(128, 768, 5, std=0.01, **kw)
    self.fc = Dense(768, num_classes, axes=("embed", "classes"), kernel_init=nnx.initializers.normal(0.001),
                    **kw)

  def __call__(self, x, *, train: bool, rngs=None):
    del rngs
    x = self.conv1(self.conv0(avg_pool(x, 5, 3), train=train), train=train)
    return self.fc(x.astype(jnp.float32).mean(axis=(1, 2))).astype(jnp.float32)


class InceptionV3(nnx.Module):
  """See the module docstring. Stage names follow torchvision / timm (Conv2d_1a_3x3 … Mixed_7c, AuxLogits, fc)."""

  def __init__(self, *, aux_logits: bool = True, transform_input: bool = False, drop_rate: float = 0.5,
               num_classes: int = 1000, in_chans: int = 3, img_size: int = 299, dtype=None,
               param_dtype=jnp.float32, rngs: nnx.Rngs):
    kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
    self.transform_input = transform_input
    self.num_classes, self.in_chans, self.img_size = num_classes, in_chans, img_size
    self.Conv2d_1a_3x3 = BasicConv(in_chans, 32, 3, stride=2, **kw)
    self.Conv2d_2a_3x3 = BasicConv(32, 32, 3, **kw)
    self.Conv2d_2b_3x3 = BasicConv(32, 64, 3, padding=1, **kw)
    self.Conv2d_3b_1x1 = BasicConv(64, 80, 1, **kw)
    self.Conv2d_4a_3x3 = BasicConv(80, 192, 3, **kw)
    kinds = {"A": InceptionA, "B": InceptionB, "C": InceptionC, "D": InceptionD, "E": InceptionE}
    for name, kind, c, option in INCEPTION_V3_MODULES:
      setattr(self, name, kinds[kind](c, option, **kw) if option else kinds[kind](c, **kw))
    self.num_features = 2048
    self.AuxLogits = InceptionV3Aux(768, num_classes, **kw) if aux_logits and num_classes else None
    self.dropout = Dropout(drop_rate)
    self.fc = (Dense(2048, num_classes, axes=("embed", "classes"), kernel_init=nnx.initializers.normal(0.1),
                     **kw) if num_classes else None)

  def _stem(self, x, train):
    chex.assert_rank(x, 4)
    chex.assert_axis_dimension(x, 3, self.in_chans)
    if self.transform_input:
      x = transform_input(x)
    x = _run([self.Conv2d_1a_3x3, self.Conv2d_2a_3x3, self.Conv2d_2b_3x3], x, train)
    x = _run([self.Conv2d_3b_1x1, self.Conv2d_4a_3x3], max_pool(x, 3, 2, padding=0), train)
    return max_pool(x, 3, 2, padding=0)

  def _modules(self, x, train, picked=None, stop_early=False, rngs=False):
    outs, aux = {}, []
    for i, (name, *_) in enumerate(INCEPTION_V3_MODULES):
      x = getattr(self, name)(x, train=train)
      if picked is not None and i in picked:
        outs[f"stage{i}"] = x
        if stop_early and i == picked[-1]:
          return x, outs, aux
      if name == "Mixed_6e" and rngs is not False and self.AuxLogits is not None:
        aux.append(self.AuxLogits(x, train=train, rngs=rngs))
    return x, outs, aux

  def forward_features(self, x, *, train: bool = False):
    return self._modules(self._stem(x, train), train)[0]

  def forward_intermediates(self, x, *, indices=None, stop_early: bool = False, train: bool = False) -> dict:
    """Named features: "stem" (after Conv2d_4a_3x3 and its pool), "stage{i}" for Mixed module i (Mixed_5b = 0
    … Mixed_7c = 10), then "encoded", "pre_logits", "logits" unless `stop_early`."""
    picked = intermediates.select(indices, len(INCEPTION_V3_MODULES))
    x = self._stem(x, train)
    out = {"stem": x}
    if stop_early and not picked:
      return out
    x, stages, _ = self._modules(x, train, picked, stop_early)
    out.update(stages)
    if stop_early:
      return out
    return intermediates.add_head_outputs(out, self, x)

  def forward_head(self, x, *, pre_logits: bool = False, train: bool = False, rngs=None):
    x = x.astype(jnp.float32).mean(axis=(1, 2))
    if pre_logits or self.fc is None:
      return x
    return self.fc(self.dropout(x, deterministic=not train, rngs=rngs))

  def __call__(self, x, *, train: bool | None = None, rngs: nnx.Rngs | None = None, return_aux: bool = False):
    """Logits; with `return_aux` (training), (logits, [aux logits])."""
    train = bool(train)
    x, _, aux = self._modules(self._stem(x, train), train, rngs=rngs if return_aux else False)
    logits = self.forward_head(x, train=train, rngs=rngs).astype(jnp.float32)
    return (logits, aux) if return_aux else logits


def forward_flops(model, img_size: int | None = None, *, count_padding: bool = True) -> float:
  """Matmul FLOPs of one eval-mode forward pass per example (no aux heads), 2 per multiply-add; see
  models/conv_flops.py."""
  return conv_flops.forward_flops(model, img_size or model.img_size, count_padding=count_padding)


# Preprocessing: GoogLeNet takes torchvision's; Inception-v3 timm's pretrained_cfg for the name (299, crop
# 0.875, bicubic, inputs in [-1, 1]). torchvision's own Inception-v3 weights take ImageNet's mean / std
# with `transform_input=True`, which maps them to [-1, 1] inside the model.
for _name, (_bn, _lrn, _k, _pool, _drop) in GOOGLENET_VARIANTS.items():
  register(_name, GoogLeNet, bn=_bn, lrn=_lrn, branch3_kernel=_k, aux_pool=_pool, drop_rate=_drop,
           preprocessing=TORCHVISION_IN1K)
register("inception_v3", InceptionV3, preprocessing=Preprocessing(299, INCEPTION_MEAN, INCEPTION_STD, crop_pct=0.875))


# The embedding parameters (models.embedding_params): none, as for any convnet.
EMBEDDINGS = ()
