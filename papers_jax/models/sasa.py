"""Stand-alone self-attention (Ramachandran et al., NeurIPS 2019, "Stand-Alone Self-Attention in Vision Models").

The layer (§2.2, Eq. 3). Each output pixel (i, j) attends over the k × k neighbourhood N_k(i, j) around it
(k = 7 in the paper's ResNets), per head:
    y_ij = Σ_{(a,b) ∈ N_k(i,j)} softmax_ab(q_ijᵀ k_ab + q_ijᵀ r_{a-i, b-j}) v_ab
with q = W_Q x, k = W_K x, v = W_V x (1×1 projections without bias, `query`, `key`, `value`) and the channels
split depthwise into `num_heads` groups. The relative embedding r_{a-i,b-j} is the concatenation of a row-offset
embedding r_{a-i} (`rel_row`, the first half of each head's dimensions) and a column-offset embedding r_{b-j}
(`rel_col`, the second half), as the paper splits it; they are shared by the heads (the paper does not say
whether heads share them; a per-head table adds k·d parameters per layer, 0.03M in ResNet-50). As the paper's
Eq. 2, the logits are not scaled by 1/√d. Neighbours outside the map are left out of the softmax (masked), not
zero-padded keys. A layer with stride 2 is followed by a 2 × 2 average pool (§3.1).

The networks (§3.1). Every spatial (3 × 3) convolution of a ResNet bottleneck becomes this layer: 1×1 conv,
BN, ReLU, attention (k = 7, 8 heads) [then the 2×2 average pool], BN, ReLU, 1×1 conv, BN (zero-initialised, as
timm's ResNet) plus the shortcut (a strided 1×1 projection where the shape changes). ResNet-26, -38 and -50
have (1, 2, 4, 1), (2, 3, 5, 2) and (3, 4, 6, 3) bottlenecks per stage at widths 64/128/256/512 (×4 out).
`stem`:
  - "attention" (the paper's full-attention model, §3.2): attention within each 4 × 4 block of the image with
    spatially-aware values v_ab = (Σ_m p(a,b,m) W_V^m) x_ab, p(a,b,m) = softmax_m((emb_row(a) + emb_col(b))ᵀ ν^m)
    (row and column embeddings of the position inside the 4 × 4 pooling window, `value_mixtures` = M value
    matrices), the same split relative logits inside the block, then BatchNorm and a 4 × 4 max pool (stride 4,
    as the 7×7/2 conv + 3×3/2 pool of the conv stem). No ReLU: the paper names BN and the pool only. 4 heads,
    which share p(a,b,m) (Appendix A.1: "shared across the 4 attention heads" of the stem). The paper does not
    give M (M = 4 is our choice), and A.1 writes the stem's logits as q·k only: the relative term is ours.
  - "imagenet": the ResNet conv stem (7×7/2 conv, BN, ReLU, 3×3/2 max pool): the paper's "Conv-stem + Attention".
  - "cifar": a 3×3/1 conv, BN, ReLU for small images (not in the paper).
The paper's ImageNet table (Table 1; params in millions; both attention models have the same count to 0.1M):
`PAPER_PARAMS_M`, read in a translation of the paper found with the search tool (the English text was not in
the index): baselines 13.7 / 19.6 / 25.6, attention 10.3 / 14.1 / 18.0 (our ResNet-38 gives 19.63).
`forward_flops(model)` traces one forward pass (models/conv_flops.py), element-wise work included.
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
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

# name: bottlenecks per stage (§3.1: ResNet-26, -38, -50).
VARIANTS = {"sasa_resnet26": (1, 2, 4, 1), "sasa_resnet38": (2, 3, 5, 2), "sasa_resnet50": (3, 4, 6, 3)}
# Table 1 of the paper, millions of parameters: (conv baseline, conv-stem + attention, full attention).
PAPER_PARAMS_M = {"sasa_resnet26": (13.7, 10.3, 10.3), "sasa_resnet38": (19.6, 14.1, 14.1),
                  "sasa_resnet50": (25.6, 18.0, 18.0)}
STEMS = ("attention", "imagenet", "cifar")
EMBED_INIT = nnx.initializers.normal(1.0)


def _neighbourhoods(x, k: int):
  """The k × k neighbours of every pixel of x (B, H, W, C) as (B, H, W, k², C), zero outside the map (one gather),
  and the (H, W, k²) mask of the neighbours inside it. Offsets run from -(k-1)//2 to k//2 (centred for odd k)."""
  lo = (k - 1) // 2
  h, w = x.shape[1:3]
  xp = jnp.pad(x, ((0, 0), (lo, k - 1 - lo), (lo, k - 1 - lo), (0, 0)))
  dy, dx = np.divmod(np.arange(k * k), k)  # row-major over the window
  rows = np.arange(h)[:, None, None] + dy[None, None, :]  # (H, 1, k²) into the padded map
  cols = np.arange(w)[None, :, None] + dx[None, None, :]  # (1, W, k²)
  inside = (rows >= lo) & (rows < h + lo) & (cols >= lo) & (cols < w + lo)
  return xp[:, rows, cols], np.broadcast_to(inside, (h, w, k * k))


class LocalSelfAttention(nnx.Module):
  """The paper's attention layer over k × k neighbourhoods (module docstring). NHWC in, NHWC out."""

  def __init__(self, in_features: int, out_features: int, *, kernel_size: int = 7, num_heads: int = 8,
               stride: int = 1, dtype=None, param_dtype=jnp.float32, rngs: nnx.Rngs):
    if out_features % num_heads or (out_features // num_heads) < 2:
      raise ConfigError(f"num_heads={num_heads}: the attention's {out_features} channels do not split into heads of "
                        "≥ 2 dimensions (each head's are halved between row and column offsets)")
    if not 1 <= kernel_size <= 63:
      raise ConfigError(f"kernel_size={kernel_size}; the local attention window takes 1 to 63 (the paper: 7)")
    kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
    self.kernel_size, self.num_heads, self.stride = kernel_size, num_heads, stride
    self.head_dim = out_features // num_heads
    self.query = Conv(in_features, out_features, 1, **kw)
    self.key = Conv(in_features, out_features, 1, **kw)
    self.value = Conv(in_features, out_features, 1, **kw)
    row = self.head_dim // 2
    self.rel_row = param(rngs, EMBED_INIT, (kernel_size, row), param_dtype, (None, None))
    self.rel_col = param(rngs, EMBED_INIT, (kernel_size, self.head_dim - row), param_dtype, (None, None))

  def relative_embeddings(self):
    """(k², head_dim): r_{a-i,b-j} = [r_row(a-i), r_col(b-j)] for the neighbours in row-major order."""
    k = self.kernel_size
    row = jnp.repeat(self.rel_row[...], k, axis=0)
    col = jnp.tile(self.rel_col[...], (k, 1))
    return jnp.concatenate([row, col], axis=-1)

  def __call__(self, x):
    b, h, w, _ = x.shape
    split = lambda t: t.reshape(b, h, w, self.num_heads, self.head_dim)
    q = split(self.query(x))
    keys, mask = _neighbourhoods(self.key(x), self.kernel_size)
    values, _ = _neighbourhoods(self.value(x), self.kernel_size)
    window = lambda t: t.reshape(b, h, w, -1, self.num_heads, self.head_dim)  # (B, H, W, k², heads, d)
    keys, values = window(keys), window(values)
    rel = self.relative_embeddings().astype(q.dtype)
    # (B, H, W, heads, k²): content logits per neighbour, plus the relative logits qᵀr.
    logits = jnp.einsum("bhwnd,bhwmnd->bhwnm", q, keys) + jnp.einsum("bhwnd,md->bhwnm", q, rel)
    logits = jnp.where(mask[:, :, None, :], logits.astype(jnp.float32), jnp.finfo(jnp.float32).min)
    weights = jax.nn.softmax(logits, axis=-1).astype(q.dtype)
    y = jnp.einsum("bhwnm,bhwmnd->bhwnd", weights, values).reshape(b, h, w, -1)
    return avg_pool(y, 2, 2) if self.stride > 1 else y


class AttentionStem(nnx.Module):
  """The paper's attention stem (§3.2): attention inside each `block` × `block` window with spatially-aware
  values and the split relative logits, then BatchNorm and a `block` × `block` max pool."""

  def __init__(self, in_features: int, out_features: int, *, block: int = 4, value_mixtures: int = 4,
               num_heads: int = 1, dtype=None, param_dtype=jnp.float32, rngs: nnx.Rngs):
    if out_features % num_heads or (out_features // num_heads) < 2:
      raise ConfigError(f"stem_heads={num_heads}: the stem's {out_features} channels do not split into heads of ≥ 2 "
                        "dimensions")
    kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
    self.block, self.num_heads, self.head_dim = block, num_heads, out_features // num_heads
    self.query = Conv(in_features, out_features, 1, **kw)
    self.key = Conv(in_features, out_features, 1, **kw)
    # M value matrices W_V^m, stacked on the output axis: (1, 1, in, M·out).
    self.value = Conv(in_features, value_mixtures * out_features, 1, **kw)
    self.value_mixtures, self.out_features = value_mixtures, out_features
    emb = out_features  # the embeddings' width (ours: the stem's width)
    self.emb_row = param(rngs, EMBED_INIT, (block, emb), param_dtype, (None, None))
    self.emb_col = param(rngs, EMBED_INIT, (block, emb), param_dtype, (None, None))
    self.mixture = param(rngs, EMBED_INIT, (emb, value_mixtures), param_dtype, (None, None))  # ν^m
    row = self.head_dim // 2
    self.rel_row = param(rngs, EMBED_INIT, (2 * block - 1, row), param_dtype, (None, None))
    self.rel_col = param(rngs, EMBED_INIT, (2 * block - 1, self.head_dim - row), param_dtype, (None, None))
    self.norm = BatchNorm(out_features, **kw)

  def mixture_weights(self):
    """p(a, b, m): (block, block, M), a softmax over the mixtures at each position of the window."""
    emb = self.emb_row[...][:, None, :] + self.emb_col[...][None, :, :]
    return jax.nn.softmax(emb @ self.mixture[...], axis=-1)

  def relative_embeddings(self):
    """(block², block², head_dim): r for every (query, key) pair of positions inside a block."""
    s = self.block
    pos = np.arange(s)
    dy = (pos[None, :] - pos[:, None]) + s - 1  # [query row, key row] → index of the offset key − query
    row = self.rel_row[...][dy]  # (s, s, d/2)
    col = self.rel_col[...][dy]
    rel = jnp.concatenate([row[:, None, :, None, :].repeat(s, 1).repeat(s, 3),
                           col[None, :, None, :, :].repeat(s, 0).repeat(s, 2)], axis=-1)  # (qy, qx, ky, kx, d)
    return rel.reshape(s * s, s * s, -1)

  def __call__(self, x, *, train: bool = False):
    b, h, w, _ = x.shape
    s, n, d = self.block, self.num_heads, self.head_dim
    if h % s or w % s:
      raise ConfigError(f"the attention stem needs image sides divisible by its {s}×{s} blocks, got {h}×{w}")
    blocks = lambda t, c: t.reshape(b, h // s, s, w // s, s, c).transpose(0, 1, 3, 2, 4, 5).reshape(
        b, h // s, w // s, s * s, c)
    q = blocks(self.query(x), n * d).reshape(b, h // s, w // s, s * s, n, d)
    k = blocks(self.key(x), n * d).reshape(b, h // s, w // s, s * s, n, d)
    vm = blocks(self.value(x), self.value_mixtures * n * d).reshape(b, h // s, w // s, s * s, self.value_mixtures,
                                                                     n * d)
    p = self.mixture_weights().reshape(s * s, self.value_mixtures).astype(vm.dtype)
    v = jnp.einsum("bhwpmc,pm->bhwpc", vm, p).reshape(b, h // s, w // s, s * s, n, d)
    rel = self.relative_embeddings().astype(q.dtype)
    logits = jnp.einsum("bhwpnd,bhwqnd->bhwnpq", q, k) + jnp.einsum("bhwpnd,pqd->bhwnpq", q, rel)
    weights = jax.nn.softmax(logits.astype(jnp.float32), axis=-1).astype(v.dtype)
    y = jnp.einsum("bhwnpq,bhwqnd->bhwpnd", weights, v).reshape(b, h // s, w // s, s, s, n * d)
    y = y.transpose(0, 1, 3, 2, 4, 5).reshape(b, h, w, n * d)
    return max_pool(self.norm(y, train=train), s, s, 0)


class AttentionBottleneck(nnx.Module):
  """A ResNet bottleneck whose 3 × 3 convolution is the local attention layer (module docstring)."""

  def __init__(self, in_features: int, planes: int, stride: int, *, kernel_size: int, num_heads: int,
               zero_init_last: bool = True, bn_group_size=None, dtype=None, param_dtype=jnp.float32, rngs: nnx.Rngs):
    kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
    bn = lambda c: BatchNorm(c, group_size=bn_group_size, **kw)
    out = 4 * planes
    self.conv1, self.bn1 = Conv(in_features, planes, 1, **kw), bn(planes)
    self.attention = LocalSelfAttention(planes, planes, kernel_size=kernel_size, num_heads=num_heads, stride=stride,
                                        **kw)
    self.bn2 = bn(planes)
    self.conv3 = Conv(planes, out, 1, **kw)
    self.bn3 = _zero_scale(bn(out)) if zero_init_last else bn(out)
    if stride != 1 or in_features != out:
      self.downsample_conv, self.downsample_bn = Conv(in_features, out, 1, stride=stride, **kw), bn(out)
    else:
      self.downsample_conv = self.downsample_bn = None

  def __call__(self, x, *, train: bool):
    y = relu(self.bn1(self.conv1(x), train=train))
    y = relu(self.bn2(self.attention(y), train=train))
    y = self.bn3(self.conv3(y), train=train)
    shortcut = x if self.downsample_conv is None else self.downsample_bn(self.downsample_conv(x), train=train)
    return relu(y + shortcut)


class SAResNet(StagedBackbone, nnx.Module):
  """A stand-alone self-attention ResNet (module docstring). `layers`: bottlenecks per stage (stage i has
  width·2^i planes and, after the first, starts with a stride-2 block); `stem`: "attention", "imagenet" or
  "cifar"; `img_size`: the resolution `forward_flops` assumes."""

  def __init__(self, *, layers=(3, 4, 6, 3), num_classes: int = 1000, in_chans: int = 3, stem: str = "attention",
               width: int = 64, kernel_size: int = 7, num_heads: int = 8, stem_value_mixtures: int = 4,
               stem_heads: int = 4, zero_init_last: bool = True, img_size: int | None = None, bn_group_size=None,
               dtype=None, param_dtype=jnp.float32, rngs: nnx.Rngs):
    if stem not in STEMS:
      raise ConfigError(f"stem={stem!r}; choose 'attention' (the paper's attention stem), 'imagenet' (7×7/2 conv + "
                        "max pool: the paper's conv stem) or 'cifar' (3×3/1 conv)")
    if not 1 <= stem_value_mixtures <= 64:
      raise ConfigError(f"stem_value_mixtures={stem_value_mixtures}; the attention stem needs 1 to 64 value matrices")
    kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
    self.stem_kind, self.num_classes, self.in_chans = stem, num_classes, in_chans
    self.img_size = img_size or (32 if stem == "cifar" else 224)
    if stem == "attention":
      self.stem = AttentionStem(in_chans, width, value_mixtures=stem_value_mixtures, num_heads=stem_heads, **kw)
      self.conv1 = self.bn1 = None
    else:
      self.stem = None
      self.conv1 = Conv(in_chans, width, 7, stride=2, **kw) if stem == "imagenet" else Conv(in_chans, width, 3, **kw)
      self.bn1 = BatchNorm(width, group_size=bn_group_size, **kw)
    stages, features = [], width
    for i, depth in enumerate(layers):
      planes = width * 2 ** i
      blocks = []
      for j in range(depth):
        blocks.append(AttentionBottleneck(features, planes, 2 if (i > 0 and j == 0) else 1, kernel_size=kernel_size,
                                          num_heads=num_heads, zero_init_last=zero_init_last,
                                          bn_group_size=bn_group_size, **kw))
        features = 4 * planes
      stages.append(nnx.List(blocks))
    self.stages = nnx.List(stages)
    self.num_features = features
    bound = 1.0 / math.sqrt(features)  # torch Linear's default init, as models/resnet.py
    self.fc = (Dense(features, num_classes, axes=("embed", "classes"), kernel_init=_uniform(bound),
                     bias_init=_uniform(bound), **kw) if num_classes else None)

  def _stem(self, x, train: bool):
    if x.shape[-1] != self.in_chans:
      raise ConfigError(f"SAResNet built for {self.in_chans} input channels got images with {x.shape[-1]}")
    if self.stem is not None:
      return self.stem(x, train=train)
    x = relu(self.bn1(self.conv1(x), train=train))
    return max_pool(x) if self.stem_kind == "imagenet" else x


PAPER_IN1K = Preprocessing(224, IMAGENET_MEAN, IMAGENET_STD, crop_pct=0.875)
for _name, _layers in VARIANTS.items():
  register(_name, SAResNet, layers=_layers, stem="attention", preprocessing=PAPER_IN1K)
  register(f"{_name}_convstem", SAResNet, layers=_layers, stem="imagenet", preprocessing=PAPER_IN1K)


def forward_flops(model: SAResNet, img_size: int | None = None, *, count_padding: bool = True) -> float:
  """FLOPs of one forward pass per example (2 per multiply-add), traced from the program: the projections, the
  attention logits and weighted sums, the convolutions and the classifier, plus the element-wise work (softmax,
  norms, masks), a large share of an attention network. The logits of neighbours outside the map are computed
  and masked, so they count."""
  return conv_flops.forward_flops(model, img_size or model.img_size, count_padding=count_padding, elementwise=True)


# A convnet-style backbone has no embedding table (models.embedding_params).
EMBEDDINGS = ()
