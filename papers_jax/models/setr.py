"""SETR (Zheng et al., CVPR 2021, "Rethinking Semantic Segmentation from a Sequence-to-Sequence Perspective
with Transformers"): a plain ViT encoder over 16×16 patches (no class token: the sequence is the patch
embeddings plus learned position embeddings) and one of three decoders, each ending in bilinear
upsampling to the input size (half-pixel centres, the official code's align_corners=False):

  - `decoder="naive"` (SETR-Naïve): LayerNorm on the last layer's tokens laid out on the patch grid, 1×1 conv
    (`channels`, bias) → BatchNorm → ReLU → 1×1 conv to the classes.
  - `decoder="pup"` (SETR-PUP, progressive upsampling): LayerNorm, then four 3×3 convs (`channels`, bias),
    each followed by BatchNorm and ReLU, with a ×2 bilinear upsampling after the first three and after the
    final 1×1 classifier conv (four ×2 steps: 1/16 → full size at patch 16).
  - `decoder="mla"` (SETR-MLA, multi-level aggregation): the tokens of `mla_layers` (Z6, Z12, Z18, Z24 of
    ViT-L), each LayerNorm'd and 1×1-conv'd (no bias, BN, ReLU) to `mla_channels`; top-down aggregation
    by element-wise addition (deepest first), a 3×3 conv (BN, ReLU) after each sum; then per stream two 3×3
    convs (`mla_head_channels`, BN, ReLU) and ×4 bilinear upsampling (aligned corners), concatenation and
    a 3×3 classifier conv.

Auxiliary heads (`return_aux=True`, the task weighs their losses by `segmentation.aux_loss_weight`, 0.4 in
the official configs): for Naïve at `aux_layers` Z10, Z15, Z20, each a Naïve head; for PUP at Z10, Z15,
Z20, Z24, each LayerNorm → 3×3 conv → BN → ReLU → ×4 upsampling → 1×1 classifier conv; for MLA one 1×1
conv (no bias) on each of the four aggregated streams. These follow the official code's configs
(github.com/fudan-zvg/SETR, Cityscapes 768×768). That code keeps the pre-trained ViT's class token in the
Naïve / PUP encoders (and drops it in MLA's); here there is none, as in the paper's text.

The LayerNorm on the last layer (Naïve / PUP's decoder, MLA's deepest stream) is the ViT's final norm.
Parameter counts against the paper's Table 2: tests/test_dense_prediction.py.

  model = models.create("setr_pup_vit_tiny", num_classes=5)
  logits = model(images_nhwc)                       # (B, H, W, K)
"""

import jax
import jax.numpy as jnp
from flax import nnx

from papers_jax.errors import ConfigError
from papers_jax.models.dpt import image_forward_flops, resize_align_corners, resize_half_pixel
from papers_jax.models.registry import Preprocessing, register
from papers_jax.models.vit import BlockOptions, VisionTransformer
from papers_jax.nn import LayerNorm
from papers_jax.nn.conv import Conv
from papers_jax.nn.norms import BatchNorm

DECODERS = ("naive", "pup", "mla")
# The official Cityscapes configs' auxiliary heads on ViT-L (0-based block indices: Z10, Z15, Z20 [, Z24]).
PAPER_AUX_LAYERS = {"naive": (9, 14, 19), "pup": (9, 14, 19, 23), "mla": ()}
_LARGE = dict(img_size=768, patch_size=16, width=1024, depth=24, num_heads=16, num_classes=19)
# A demo size for the 64×64 generated scenes.
_TINY = dict(img_size=64, patch_size=8, width=64, depth=4, num_heads=4, mlp_ratio=2.0, num_classes=5, channels=32,
             mla_channels=32, mla_head_channels=16)
VARIANTS = {
    **{f"setr_{d}_vit_large_patch16": dict(_LARGE, decoder=d, aux_layers=PAPER_AUX_LAYERS[d]) for d in DECODERS},
    "setr_naive_vit_tiny": dict(_TINY, decoder="naive", aux_layers=(1, 2)),
    "setr_pup_vit_tiny": dict(_TINY, decoder="pup", aux_layers=(1, 2, 3)),
    "setr_mla_vit_tiny": dict(_TINY, decoder="mla"),
}


class ConvBNReLU(nnx.Module):
  """k×k conv → BatchNorm → ReLU."""

  def __init__(self, in_features: int, out_features: int, kernel_size: int, *, use_bias: bool, rngs, **kw):
    self.conv = Conv(in_features, out_features, kernel_size, use_bias=use_bias, rngs=rngs, **kw)
    self.bn = BatchNorm(out_features, rngs=rngs, **kw)

  def __call__(self, x, *, train: bool):
    return jax.nn.relu(self.bn(self.conv(x), train=train))


def _upsample(x, scale: int):
  return x if scale == 1 else resize_half_pixel(x, scale * x.shape[1], scale * x.shape[2])


class UpHead(nnx.Module):
  """Optional LayerNorm on the tokens → convs (ConvBNReLU, bias) each followed by ×`scales[i]` upsampling →
  1×1 classifier → ×`final_scale`: SETR-Naïve (kernel 1, scales (1,)), SETR-PUP (kernel 3, scales
  (2, 2, 2, 1), final 2) and PUP's auxiliary heads (kernel 3, scales (4,))."""

  def __init__(self, width: int, channels: int, num_classes: int, *, kernel_size: int, scales, final_scale: int = 1,
               norm: bool, norm_eps: float, rngs, **kw):
    self.norm = LayerNorm(width, eps=norm_eps, rngs=rngs, **kw) if norm else None
    self.scales, self.final_scale = tuple(scales), final_scale
    self.convs = nnx.List([ConvBNReLU(width if i == 0 else channels, channels, kernel_size, use_bias=True,
                                      rngs=rngs, **kw) for i in range(len(self.scales))])
    self.classifier = Conv(channels, num_classes, 1, use_bias=True, rngs=rngs, **kw)

  def __call__(self, tokens, grid, *, train: bool):
    x = self.norm(tokens) if self.norm is not None else tokens
    x = x.reshape(x.shape[0], *grid, x.shape[-1])
    for conv, scale in zip(self.convs, self.scales):
      x = _upsample(conv(x, train=train), scale)
    return _upsample(self.classifier(x), self.final_scale)


class MLA(nnx.Module):
  """SETR-MLA's aggregation and head (module docstring); also returns the aggregated streams (for the aux heads)."""

  def __init__(self, width: int, mla_channels: int, head_channels: int, num_classes: int, *, norm_eps: float, rngs,
               **kw):
    # Three own LayerNorms; the deepest stream's is the ViT's final norm.
    self.norms = nnx.List([LayerNorm(width, eps=norm_eps, rngs=rngs, **kw) for _ in range(3)])
    self.lateral = nnx.List([ConvBNReLU(width, mla_channels, 1, use_bias=False, rngs=rngs, **kw) for _ in range(4)])
    self.smooth = nnx.List([ConvBNReLU(mla_channels, mla_channels, 3, use_bias=False, rngs=rngs, **kw)
                            for _ in range(4)])
    self.heads = nnx.List([nnx.List([ConvBNReLU(mla_channels, head_channels, 3, use_bias=False, rngs=rngs, **kw),
                                     ConvBNReLU(head_channels, head_channels, 3, use_bias=False, rngs=rngs, **kw)])
                           for _ in range(4)])
    self.classifier = Conv(4 * head_channels, num_classes, 3, use_bias=True, rngs=rngs, **kw)

  def __call__(self, tokens, grid, *, train: bool):
    """tokens: four (B, N, width) maps, shallow to deep, the deepest already normalised."""
    maps = [n(t) for n, t in zip(self.norms, tokens[:3])] + [tokens[3]]
    maps = [m.reshape(m.shape[0], *grid, m.shape[-1]) for m in maps]
    lateral = [conv(m, train=train) for conv, m in zip(self.lateral, maps)]
    summed = [lateral[3]]
    for x in reversed(lateral[:3]):  # top-down: each sum adds the deeper sum
      summed.insert(0, summed[0] + x)
    streams = [conv(x, train=train) for conv, x in zip(self.smooth, summed)]
    outs = []
    for (conv1, conv2), x in zip(self.heads, streams):
      x = conv2(conv1(x, train=train), train=train)
      outs.append(resize_align_corners(x, 4 * x.shape[1], 4 * x.shape[2]))
    return self.classifier(jnp.concatenate(outs, axis=-1)), streams


class SETR(nnx.Module):
  """ViT encoder + a SETR decoder (module docstring). `model(images)` → logits (B, H, W, K) float32."""

  def __init__(self, *, img_size: int = 768, patch_size: int = 16, in_chans: int = 3, width: int = 1024,
               depth: int = 24, num_heads: int = 16, mlp_ratio: float = 4.0, decoder: str = "pup",
               num_classes: int = 19, channels: int = 256, aux_layers=(), mla_layers=None, mla_channels: int = 256,
               mla_head_channels: int = 128, norm_eps: float = 1e-6, drop_rate: float = 0.0,
               drop_path_rate: float = 0.0, dtype=None, param_dtype=jnp.float32, rngs: nnx.Rngs):
    if decoder not in DECODERS:
      raise ConfigError(f"SETR decoder must be one of {DECODERS}, got {decoder!r}")
    mla_layers = tuple(mla_layers) if mla_layers is not None else tuple(depth * k // 4 - 1 for k in range(1, 5))
    if decoder == "mla" and (len(mla_layers) != 4 or mla_layers[-1] != depth - 1 or depth < 4):
      raise ConfigError(f"SETR-MLA reads four layers ending at the last (depth {depth}); got mla_layers={mla_layers}")
    if decoder == "mla" and aux_layers:
      raise ConfigError("SETR-MLA's auxiliary heads sit on its four streams; aux_layers must be empty")
    if any(not 0 <= i < depth for i in aux_layers):
      raise ConfigError(f"aux_layers {tuple(aux_layers)} must be block indices in [0, {depth})")
    kw = dict(dtype=dtype, param_dtype=param_dtype)
    self.decoder_kind, self.num_classes, self.img_size = decoder, num_classes, img_size
    self.aux_layers, self.mla_layers = tuple(aux_layers), mla_layers
    self.backbone = VisionTransformer(
        img_size=img_size, patch_size=patch_size, in_chans=in_chans, num_classes=0, global_pool="avg",
        class_token=False, fc_norm=False, embed_dim=width, depth=depth, num_heads=num_heads, drop_rate=drop_rate,
        drop_path_rate=drop_path_rate, block=BlockOptions(mlp_ratio=mlp_ratio, norm_eps=norm_eps), rngs=rngs, **kw)
    self.grid = self.backbone.patch_embed.grid_size
    head_kw = dict(norm_eps=norm_eps, rngs=rngs, **kw)
    if decoder == "naive":
      self.decoder = UpHead(width, channels, num_classes, kernel_size=1, scales=(1,), norm=False, **head_kw)
      self.aux_heads = nnx.List([UpHead(width, channels, num_classes, kernel_size=1, scales=(1,), norm=True,
                                        **head_kw) for _ in self.aux_layers])
    elif decoder == "pup":
      self.decoder = UpHead(width, channels, num_classes, kernel_size=3, scales=(2, 2, 2, 1), final_scale=2,
                            norm=False, **head_kw)
      self.aux_heads = nnx.List([UpHead(width, channels, num_classes, kernel_size=3, scales=(4,), norm=True,
                                        **head_kw) for _ in self.aux_layers])
    else:
      self.decoder = MLA(width, mla_channels, mla_head_channels, num_classes, **head_kw)
      self.aux_heads = nnx.List([Conv(mla_channels, num_classes, 1, rngs=rngs, **kw) for _ in range(4)])

  def __call__(self, images, *, train: bool | None = None, rngs=None, return_aux: bool = False):
    train = bool(train)
    h, w = images.shape[1:3]
    last = len(self.backbone.blocks) - 1
    wanted = {last} | (set(self.mla_layers) if self.decoder_kind == "mla" else set())
    if return_aux and self.decoder_kind != "mla":
      wanted |= set(self.aux_layers)
    out = self.backbone.forward_intermediates(images, indices=sorted(wanted), stop_early=True, train=train,
                                              rngs=rngs)
    tokens = {i: out[f"block{i:02d}/+mlp"] for i in wanted}
    encoded = self.backbone.norm(tokens[last])
    if self.decoder_kind == "mla":
      logits, streams = self.decoder([tokens[i] for i in self.mla_layers[:3]] + [encoded], self.grid, train=train)
      aux = [head(s) for head, s in zip(self.aux_heads, streams)] if return_aux else []
    else:
      logits = self.decoder(encoded, self.grid, train=train)
      aux = ([head(tokens[i], self.grid, train=train) for head, i in zip(self.aux_heads, self.aux_layers)]
             if return_aux else [])
    logits = resize_half_pixel(logits, h, w).astype(jnp.float32)
    if not return_aux:
      return logits
    return logits, [resize_half_pixel(a, h, w).astype(jnp.float32) for a in aux]


for _name, _row in VARIANTS.items():
  register(_name, SETR, **_row, preprocessing=Preprocessing(_row["img_size"], (0.5,) * 3, (0.5,) * 3, crop_pct=1.0))


def forward_flops(model: SETR) -> float:
  """FLOPs of one forward pass per image (the auxiliary heads, used in training only, left out), counted on
  its jaxpr with the element-wise operations; works on an abstract model."""
  return image_forward_flops(model, model.backbone.patch_embed.img_size)


EMBEDDINGS = ("backbone.pos_embed",)
