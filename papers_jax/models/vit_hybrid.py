"""The hybrid ViT of the paper (Dosovitskiy et al., 2021, Sec. 3.1 "Hybrid Architecture"), as timm builds it.

A ResNet computes a feature map and the transformer's tokens are its 1×1 patches (patch_size=1),
projected to the embedding width. The ResNet is the paper's (Appendix D.4): BiT's ResNet-V2 layout
without pre-activation (timm's `ResNetV2(preact=False)`), with Group Normalization (32 groups) and
weight-standardised convolutions (eps 1e-8) in place of BatchNorm, TensorFlow "SAME" padding, a
7×7/2 stem and a 3×3/2 max pool. R50 keeps three stages of (3, 4, 9) bottlenecks (stride 16), so
that a 384 image gives 24×24 tokens; R26 has four stages of (2, 2, 2, 2) (stride 32).

Parameter names follow timm's (patch_embed.backbone.stem.conv, ...stages.N.blocks.M.conv1, ...,
patch_embed.proj), so `convert.load_torch_weights(model, sd, "timm")` maps them one to one.
"""

import math

import jax
import jax.numpy as jnp
from flax import nnx

from papers_jax.models import vit
from papers_jax.models.registry import register
from papers_jax.models.vit import WIDTHS, VisionTransformer, timm_preprocessing
from papers_jax.nn.activations import relu
from papers_jax.nn.conv import StdConv, conv_flops, max_pool
from papers_jax.nn.embed import PatchEmbed, _pair
from papers_jax.nn.norms import GroupNorm

CHANNELS = (256, 512, 1024, 2048)  # output channels of the stages (4× their bottleneck width)


class Bottleneck(nnx.Module):
  """1×1, 3×3 (with the stride), 1×1: each a StdConv + GroupNorm, ReLU after the sum (v1.5 order)."""

  def __init__(self, in_features: int, out_features: int, stride: int, *, dtype=None, param_dtype=jnp.float32,
               rngs: nnx.Rngs):
    mid = out_features // 4
    kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
    self.conv1, self.norm1 = StdConv(in_features, mid, 1, **kw), GroupNorm(mid, **kw)
    self.conv2, self.norm2 = StdConv(mid, mid, 3, stride=stride, **kw), GroupNorm(mid, **kw)
    self.conv3, self.norm3 = StdConv(mid, out_features, 1, **kw), GroupNorm(out_features, **kw)
    self.downsample = (nnx.Dict(conv=StdConv(in_features, out_features, 1, stride=stride, **kw),
                                norm=GroupNorm(out_features, **kw))
                       if stride != 1 or in_features != out_features else None)

  def __call__(self, x):
    shortcut = x if self.downsample is None else self.downsample["norm"](self.downsample["conv"](x))
    y = relu(self.norm1(self.conv1(x)))
    y = relu(self.norm2(self.conv2(y)))
    y = self.norm3(self.conv3(y))
    return relu(y + shortcut)


class ResNetV2(nnx.Module):
  """The hybrids' backbone: stem (7×7/2 StdConv, GroupNorm, ReLU, 3×3/2 max pool) and bottleneck stages."""

  def __init__(self, layers=(3, 4, 9), *, in_chans: int = 3, stem_width: int = 64, dtype=None,
               param_dtype=jnp.float32, rngs: nnx.Rngs):
    kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
    self.stem = nnx.Dict(conv=StdConv(in_chans, stem_width, 7, stride=2, **kw), norm=GroupNorm(stem_width, **kw))
    stages, features = [], stem_width
    for i, depth in enumerate(layers):
      blocks = []
      for j in range(depth):
        blocks.append(Bottleneck(features, CHANNELS[i], 2 if (i > 0 and j == 0) else 1, **kw))
        features = CHANNELS[i]
      stages.append(nnx.Dict(blocks=nnx.List(blocks)))
    self.stages = nnx.List(stages)
    self.num_features = features
    self.reduction = 4 * 2 ** (len(layers) - 1)  # stem 4, then 2 per stage after the first

  def feature_size(self, img_size) -> tuple[int, int]:
    """The output map's (H, W) for an input of `img_size`: every stride-2 op rounds up ("SAME")."""
    return tuple(math.ceil(s / self.reduction) for s in _pair(img_size))

  def __call__(self, x):
    """Images (B, H, W, C) → the last stage's map (B, H/stride, W/stride, num_features)."""
    x = relu(self.stem["norm"](self.stem["conv"](x)))
    x = max_pool(x, padding="SAME")
    for stage in self.stages:
      for block in stage["blocks"]:
        x = block(x)
    return x


class HybridEmbed(PatchEmbed):
  """Backbone feature map → p×p patches (p = 1 in the paper) → linear embedding (timm's `HybridEmbed`).

  `img_size` is the input image's; `grid_size` and `num_patches` count the tokens.
  """

  def __init__(self, backbone: ResNetV2, img_size, patch_size, embed_dim: int, *, dtype=None,
               param_dtype=jnp.float32, rngs: nnx.Rngs):
    super().__init__(backbone.feature_size(img_size), patch_size, backbone.num_features, embed_dim, dtype=dtype,
                     param_dtype=param_dtype, rngs=rngs)
    self.backbone = backbone
    self.feature_size, self.img_size = self.img_size, _pair(img_size)

  def __call__(self, x):
    h, w = x.shape[1:3]
    if (h, w) != self.img_size:
      raise ValueError(f"input images are {h}x{w} but the model was built for {self.img_size[0]}x{self.img_size[1]}"
                       " (create the model with img_size=... to change it)")
    return self.project(self.backbone(x))


class HybridVisionTransformer(VisionTransformer):
  """A ViT whose tokens come from a ResNet-V2 feature map. `backbone_layers` are the bottlenecks per
  stage; every other argument is the VisionTransformer's."""

  def __init__(self, *, backbone_layers=(3, 4, 9), img_size=224, patch_size=1, in_chans: int = 3,
               embed_dim: int = 768, dtype=None, param_dtype=jnp.float32, rngs: nnx.Rngs, **kwargs):
    kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
    backbone = ResNetV2(backbone_layers, in_chans=in_chans, **kw)
    embed = HybridEmbed(backbone, img_size, patch_size, embed_dim, **kw)
    super().__init__(img_size=img_size, patch_size=patch_size, in_chans=in_chans, embed_dim=embed_dim,
                     patch_embed=embed, **kw, **kwargs)


# name: (ViT width, backbone stages, image size) — timm's names for the paper's hybrids.
VARIANTS = {
    "vit_small_r26_s32_224": ("small", (2, 2, 2, 2), 224),
    "vit_small_r26_s32_384": ("small", (2, 2, 2, 2), 384),
    "vit_base_r26_s32_224": ("base", (2, 2, 2, 2), 224),
    "vit_base_r50_s16_224": ("base", (3, 4, 9), 224),
    "vit_base_r50_s16_384": ("base", (3, 4, 9), 384),
    "vit_large_r50_s32_224": ("large", (3, 4, 6, 3), 224),
    "vit_large_r50_s32_384": ("large", (3, 4, 6, 3), 384),
}

# timm builds this one without a head (its weights are ImageNet-21k features), so the name does here too.
HEADLESS = ("vit_base_r50_s16_224",)

for _name, (_width, _layers, _img) in VARIANTS.items():
  register(_name, HybridVisionTransformer, **WIDTHS[_width], backbone_layers=_layers, img_size=_img,
           preprocessing=timm_preprocessing(_img), **({"num_classes": 0} if _name in HEADLESS else {}))


def backbone_flops(backbone: ResNetV2, img_size, *, count_padding: bool = True) -> int:
  """The ResNet-V2's convolutions on an image of `img_size` (2 per multiply-add; GroupNorm, ReLU,
  pooling and the kernels' standardisation left out)."""
  h, w = _pair(img_size)
  total, h, w = conv_flops(backbone.stem["conv"], h, w, count_padding=count_padding)
  h, w = -(-h // 2), -(-w // 2)  # the 3×3/2 "SAME" max pool
  for stage in backbone.stages:
    for block in stage["blocks"]:
      h_in, w_in = h, w
      for conv in (block.conv1, block.conv2, block.conv3):
        f, h, w = conv_flops(conv, h, w, count_padding=count_padding)
        total += f
      if block.downsample is not None:
        total += conv_flops(block.downsample["conv"], h_in, w_in, count_padding=count_padding)[0]
  return total


def forward_flops(model: HybridVisionTransformer, *, count_padding: bool = True) -> float:
  """Matmul FLOPs of one hybrid forward pass per example: the ResNet backbone's convolutions, then
  the ViT on its feature map (the token projection, the blocks, the head). `count_padding=False`
  leaves out the kernel taps on the zero padding, as XLA's cost analysis does (see nn/conv.py)."""
  embed = model.patch_embed
  return float(backbone_flops(embed.backbone, embed.img_size, count_padding=count_padding) + vit.forward_flops(model))


# The embedding parameters (models.embedding_params): the token projection of the backbone's map, the
# position embedding and the class token. The backbone is compute, as any layer: non-embedding.
EMBEDDINGS = vit.EMBEDDINGS
