"""Axial attention and Axial-ResNet (Wang et al., ECCV 2020, "Axial-DeepLab: Stand-Alone Axial-Attention for
Panoptic Segmentation").

The position-sensitive axial-attention layer (§3.1, Eq. 4) attends along one axis (a column for the height
layer, a row for the width layer) over the whole span, per head:
    y_o = Σ_p softmax_p(q_oᵀ k_p + q_oᵀ r^q_{p-o} + k_pᵀ r^k_{p-o}) (v_p + r^v_{p-o})
with q, k, v from one 1×1 projection (`qkv`, no bias) of key and query depth half the value depth per head, as
the authors' code, and learned relative embeddings r^q, r^k, r^v for the offsets -(span-1) … span-1
(`relative`, shared by the heads). As the authors' code (not spelled out in the paper's equation), BatchNorm
follows the projection (`bn_qkv`), each of the three logit terms per head (`bn_similarity`, then summed) and
each of the two retrieved outputs (`bn_output`, then summed): the norms give every term a learned scale. The
logits are not scaled by 1/√d. A shorter axis than `span` uses the central offsets of the table.

"Gated" terms are not Axial-DeepLab's: they are the Medical Transformer's (Valanarasu et al., 2021) gated axial
attention, four learned scalars on the positional terms, g_q·q_oᵀr^q, g_k·k_pᵀr^k, and on the two outputs,
g_v1·v_p + g_v2·r^v (initialised 0.1, 0.1, 1, 0.1 as its code). `gated=True` adds them; the Axial-ResNets here
do not use them.

The block (§3.2, Fig. 2) replaces a bottleneck's 3 × 3 convolution by a height-axis then a width-axis layer:
1×1 conv, BN, ReLU, height attention, width attention [then a 2 × 2 average pool where the block has stride 2],
ReLU, 1×1 conv to 2× the block's planes (expansion 2), BN (zero-initialised) plus the shortcut (a strided 1×1
projection where the shape changes), ReLU. 8 heads everywhere. The span of each layer is its input map's side
(global axial attention: 56, 28, 14, 7 at 224 input; the first block of a strided stage still sees the
larger map).

Axial-ResNet (the authors' ImageNet code): the ResNet conv stem with 64·s channels (7×7/2 conv, BN, ReLU,
3×3/2 max pool), stages of (3, 4, 6, 3) blocks (26-layer: (1, 2, 4, 1)) with 128·s, 256·s, 512·s, 1024·s planes,
average pooling and a linear classifier: Axial-ResNet-S, M and L are s = 0.5, 0.75 and 1. The official TF code
(deeplab2) builds the same layers (its bottleneck: 1×1 to 2·f, attention with key depth f and value depth 2·f,
1×1 to 4·f, f = 64·s·2^i), with two differences in size only: 64 stem channels at every width and relative tables
for 255 positions; `span=255, stem_width=64` reproduces its parameter counts exactly. This is the paper's
"Conv-Stem + Axial-Attention" network; its "Full Axial-Attention" model also replaces the stem, which is not
built here. `forward_flops(model)` traces one forward pass (models/conv_flops.py), element-wise work included.
"""

import math

import jax
import jax.numpy as jnp
from flax import nnx

from papers_jax.errors import ConfigError
from papers_jax.models import conv_flops
from papers_jax.models.registry import IMAGENET_MEAN, IMAGENET_STD, Preprocessing, register
from papers_jax.models.resnet import _uniform, _zero_scale
from papers_jax.models.staged import StagedBackbone
from papers_jax.nn.activations import relu
from papers_jax.nn.conv import Conv, avg_pool, max_pool
from papers_jax.nn.linear import Dense, param
from papers_jax.nn.norms import BatchNorm

# name: (blocks per stage, width multiplier s).
VARIANTS = {
    "axial_resnet26_s": ((1, 2, 4, 1), 0.5),
    "axial_resnet50_s": ((3, 4, 6, 3), 0.5),
    "axial_resnet50_m": ((3, 4, 6, 3), 0.75),
    "axial_resnet50_l": ((3, 4, 6, 3), 1.0),
}
# Millions of parameters the authors give: Axial-ResNet-26-S in their PyTorch code's model zoo (README).
PAPER_PARAMS_M = {"axial_resnet26_s": 5.9}
# The official TF code's (deeplab2) exact counts of its `axial_resnet_s` / `axial_resnet_l` backbones without the
# classifier (axial_resnet_instances_test.py), whose relative tables span 255 positions (its MAX_SPAN) and whose
# stem keeps 64 channels at every width: our `span=255, stem_width=64, num_classes=0`.
DEEPLAB2_BACKBONE_PARAMS = {"axial_resnet50_s": 11_466_912, "axial_resnet50_l": 43_714_048}
DEEPLAB2_SPAN, DEEPLAB2_STEM_WIDTH = 255, 64
EXPANSION = 2
MEDT_GATE_INIT = (0.1, 0.1, 1.0, 0.1)  # g_q, g_k, g_v1, g_v2


class AxialAttention(nnx.Module):
  """Position-sensitive self-attention along `axis` (1: height, 2: width) of an NHWC map (module docstring).
  `span`: the longest axis it takes (the relative table covers offsets up to span - 1)."""

  def __init__(self, in_features: int, out_features: int, *, span: int, axis: int, num_heads: int = 8,
               gated: bool = False, dtype=None, param_dtype=jnp.float32, rngs: nnx.Rngs):
    if axis not in (1, 2):
      raise ConfigError(f"AxialAttention: axis={axis}; choose 1 (height) or 2 (width) of an NHWC map")
    if out_features % num_heads or (out_features // num_heads) % 2:
      raise ConfigError(f"num_heads={num_heads}: the attention's {out_features} channels must split into heads of "
                        "an even width (queries and keys take half of each head's value width)")
    kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
    self.span, self.axis, self.num_heads = span, axis, num_heads
    self.out_features, self.head_dim = out_features, out_features // num_heads
    # The authors' init: N(0, 1/in) for the projection, N(0, 1/head_dim) for the relative embeddings.
    self.qkv = Conv(in_features, 2 * out_features, 1, kernel_init=nnx.initializers.normal(in_features ** -0.5), **kw)
    self.bn_qkv = BatchNorm(2 * out_features, **kw)
    self.relative = param(rngs, nnx.initializers.normal(self.head_dim ** -0.5), (2 * span - 1, 2 * self.head_dim),
                          param_dtype, (None, None))
    self.bn_similarity = BatchNorm(3 * num_heads, **kw)
    self.bn_output = BatchNorm(2 * out_features, **kw)
    self.gates = (param(rngs, lambda *_: jnp.asarray(MEDT_GATE_INIT, param_dtype), (4,), param_dtype, (None,))
                  if gated else None)

  def embeddings(self, length: int):
    """(r^q, r^k, r^v) for every (query o, key p) pair of an axis of `length`: (L, L, d/2), (L, L, d/2), (L, L, d)."""
    if length > self.span:
      raise ConfigError(f"AxialAttention built for span {self.span} got an axis of {length}; build it with "
                        f"span ≥ {length} (the map side it attends over)")
    pos = jnp.arange(length)
    table = self.relative[...][pos[None, :] - pos[:, None] + self.span - 1]  # [o, p] → r_{p-o}
    half = self.head_dim // 2
    return table[..., :half], table[..., half:2 * half], table[..., 2 * half:]

  def __call__(self, x, *, train: bool = False):
    if self.axis == 2:  # attend along rows: make the width the sequence axis
      x = x.transpose(0, 2, 1, 3)
    b, length, other, _ = x.shape
    n, d = self.num_heads, self.head_dim
    qkv = self.bn_qkv(self.qkv(x), train=train).reshape(b, length, other, n, 2 * d)
    q, k, v = qkv[..., :d // 2], qkv[..., d // 2:d], qkv[..., d:]
    rq, rk, rv = (r.astype(qkv.dtype) for r in self.embeddings(length))
    g = self.gates[...].astype(qkv.dtype) if self.gates is not None else jnp.ones((4,), qkv.dtype)
    # (B, other, heads, o, p) for each term
    qk = jnp.einsum("bownd,bpwnd->bwnop", q, k)
    qr = g[0] * jnp.einsum("bownd,opd->bwnop", q, rq)
    kr = g[1] * jnp.einsum("bpwnd,opd->bwnop", k, rk)
    terms = jnp.stack([qk, qr, kr], axis=-1).transpose(0, 1, 3, 4, 5, 2)  # (B, W, o, p, 3, heads)
    terms = self.bn_similarity(terms.reshape(terms.shape[:4] + (3 * n,)), train=train)
    logits = terms.reshape(terms.shape[:4] + (3, n)).sum(-2).astype(jnp.float32)  # (B, W, o, p, heads)
    weights = jax.nn.softmax(logits, axis=3).astype(v.dtype)
    sv = g[2] * jnp.einsum("bwopn,bpwnd->bownd", weights, v)
    sve = g[3] * jnp.einsum("bwopn,opd->bownd", weights, rv)
    out = jnp.stack([sv, sve], axis=-1).reshape(b, length, other, 2 * self.out_features)
    out = self.bn_output(out, train=train).reshape(b, length, other, self.out_features, 2).sum(-1)
    return out.transpose(0, 2, 1, 3) if self.axis == 2 else out


class AxialAttention2D(nnx.Module):
  """A height-axis then a width-axis layer (the paper's Fig. 2 pair), then a 2 × 2 average pool if `stride` 2."""

  def __init__(self, in_features: int, out_features: int, *, span: int, num_heads: int = 8, stride: int = 1,
               gated: bool = False, dtype=None, param_dtype=jnp.float32, rngs: nnx.Rngs):
    kw = dict(num_heads=num_heads, gated=gated, dtype=dtype, param_dtype=param_dtype, rngs=rngs)
    self.stride = stride
    self.height = AxialAttention(in_features, out_features, span=span, axis=1, **kw)
    self.width = AxialAttention(out_features, out_features, span=span, axis=2, **kw)

  def __call__(self, x, *, train: bool = False):
    y = self.width(self.height(x, train=train), train=train)
    return avg_pool(y, 2, 2) if self.stride > 1 else y


class AxialBlock(nnx.Module):
  """The axial-attention bottleneck (module docstring): 1×1, BN, ReLU, height + width attention, ReLU, 1×1 to
  2·planes, BN, plus the shortcut."""

  def __init__(self, in_features: int, planes: int, stride: int, *, span: int, num_heads: int = 8,
               gated: bool = False, zero_init_last: bool = True, bn_group_size=None, dtype=None,
               param_dtype=jnp.float32, rngs: nnx.Rngs):
    kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
    bn = lambda c: BatchNorm(c, group_size=bn_group_size, **kw)
    out = EXPANSION * planes
    self.conv_down, self.bn1 = Conv(in_features, planes, 1, **kw), bn(planes)
    self.attention = AxialAttention2D(planes, planes, span=span, num_heads=num_heads, stride=stride, gated=gated,
                                      **kw)
    self.conv_up = Conv(planes, out, 1, **kw)
    self.bn2 = _zero_scale(bn(out)) if zero_init_last else bn(out)
    if stride != 1 or in_features != out:
      self.downsample_conv, self.downsample_bn = Conv(in_features, out, 1, stride=stride, **kw), bn(out)
    else:
      self.downsample_conv = self.downsample_bn = None

  def __call__(self, x, *, train: bool):
    y = relu(self.bn1(self.conv_down(x), train=train))
    y = relu(self.attention(y, train=train))
    y = self.bn2(self.conv_up(y), train=train)
    shortcut = x if self.downsample_conv is None else self.downsample_bn(self.downsample_conv(x), train=train)
    return relu(y + shortcut)


class AxialResNet(StagedBackbone, nnx.Module):
  """Axial-ResNet (module docstring). `layers`: blocks per stage; `width_multiplier`: s (S 0.5, M 0.75, L 1);
  `stem`: "imagenet" (7×7/2 conv + 3×3/2 max pool, the authors') or "cifar" (3×3/1 conv, for small images, not in
  the paper); `img_size` sets every layer's span (the map side it sees, as the PyTorch code) and what
  `forward_flops` assumes; a smaller input works, a larger one does not. `span` instead sizes every relative
  table for that many positions (the TF code's 255); `stem_width` overrides the stem's 64·s channels (the TF
  code keeps 64)."""

  def __init__(self, *, layers=(3, 4, 6, 3), width_multiplier: float = 0.5, num_classes: int = 1000,
               in_chans: int = 3, stem: str = "imagenet", num_heads: int = 8, gated: bool = False,
               zero_init_last: bool = True, img_size: int = 224, span: int | None = None, stem_width: int | None = None,
               bn_group_size=None, dtype=None, param_dtype=jnp.float32, rngs: nnx.Rngs):
    if stem not in ("imagenet", "cifar"):
      raise ConfigError(f"stem={stem!r}; choose 'imagenet' (7×7/2 conv + max pool) or 'cifar' (3×3/1 conv)")
    if not (0 < width_multiplier <= 64 and int(64 * width_multiplier) >= 1):
      raise ConfigError(f"width_multiplier={width_multiplier}; choose s in [1/64, 64] (S 0.5, M 0.75, L 1)")
    kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
    self.stem, self.num_classes, self.in_chans, self.img_size = stem, num_classes, in_chans, img_size
    s = width_multiplier
    stem_width = stem_width or int(64 * s)
    self.conv1 = (Conv(in_chans, stem_width, 7, stride=2, **kw) if stem == "imagenet"
                  else Conv(in_chans, stem_width, 3, **kw))
    self.bn1 = BatchNorm(stem_width, group_size=bn_group_size, **kw)
    side = (img_size + 3) // 4 if stem == "imagenet" else img_size  # the map side after the stem
    stages, features = [], stem_width
    for i, depth in enumerate(layers):
      planes = int(128 * s) * 2 ** i
      blocks = []
      for j in range(depth):
        stride = 2 if (i > 0 and j == 0) else 1
        blocks.append(AxialBlock(features, planes, stride, span=span or side, num_heads=num_heads, gated=gated,
                                 zero_init_last=zero_init_last, bn_group_size=bn_group_size, **kw))
        features, side = EXPANSION * planes, side // stride
      stages.append(nnx.List(blocks))
    self.stages = nnx.List(stages)
    self.num_features = features
    bound = 1.0 / math.sqrt(features)
    self.fc = (Dense(features, num_classes, axes=("embed", "classes"), kernel_init=_uniform(bound),
                     bias_init=_uniform(bound), **kw) if num_classes else None)

  def _stem(self, x, train: bool):
    if x.shape[-1] != self.in_chans:
      raise ConfigError(f"AxialResNet built for {self.in_chans} input channels got images with {x.shape[-1]}")
    x = relu(self.bn1(self.conv1(x), train=train))
    return max_pool(x) if self.stem == "imagenet" else x


PAPER_IN1K = Preprocessing(224, IMAGENET_MEAN, IMAGENET_STD, crop_pct=0.875)
for _name, (_layers, _s) in VARIANTS.items():
  register(_name, AxialResNet, layers=_layers, width_multiplier=_s, preprocessing=PAPER_IN1K)


def forward_flops(model: AxialResNet, img_size: int | None = None, *, count_padding: bool = True) -> float:
  """FLOPs of one forward pass per example (2 per multiply-add), traced from the program, element-wise work
  (softmax, the in-attention BatchNorms) included."""
  return conv_flops.forward_flops(model, img_size or model.img_size, count_padding=count_padding, elementwise=True)


# No embedding table (models.embedding_params); the relative position tables are part of every layer.
EMBEDDINGS = ()
