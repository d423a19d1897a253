"""DPT (Ranftl, Bochkovskiy & Koltun, ICCV 2021, "Vision Transformers for Dense Prediction"): a ViT read
at four blocks, each token map "reassembled" into an image-like map at 1/4, 1/8, 1/16 and 1/32 of the
input, and fused from coarse to fine by RefineNet-style blocks; a small convolutional head on the finest map.

  - Reassemble (`Reassemble`): the class token's readout concatenated to every patch token and projected
    back (`project` readout: Linear(2D → D) + GELU), the tokens laid out on the patch grid, a 1×1 conv to
    the stage's width, resampled ×4, ×2, ×1, ×½ (a stride-f transposed conv / identity / a stride-2 3×3
    conv), a 3×3 conv (no bias) to `features` channels.
  - Fusion (`FusionBlock`): (coarser path + residual conv unit(skip)) → residual conv unit → ×2 bilinear
    upsampling with aligned corners → 1×1 conv. A residual conv unit is x + conv(relu(conv(relu(x)))).
  - Segmentation head (the paper's, HF's DPTSemanticSegmentationHead): 3×3 conv (no bias), BatchNorm,
    ReLU, dropout 0.1, 1×1 conv to the classes, ×2 bilinear upsampling (aligned corners): logits at 16/p
    times the input size (the input size for p = 16). `return_aux=True` adds the auxiliary head (the same
    layers without the upsampling) on the finest fused map, as HF's `use_auxiliary_head` (weight 0.4).
    `__call__` resizes both to the input size (bilinear, half-pixel centres: torch's align_corners=False,
    as HF's loss does).

The backbone is the project's VisionTransformer (models/vit.py) with HF's DPT settings (LayerNorm eps
1e-12, exact GELU, qkv bias); its final norm exists (HF's `dpt.layernorm`) but the neck reads the blocks'
outputs before it. LSeg (models/lseg.py) uses the same Reassemble / FusionBlock / ResidualConvUnit.
Parity with HF's DPTForSemanticSegmentation on random weights: tests/test_dense_prediction.py; weights
from HF: convert/hf_dpt.py.

  model = models.create("dpt_vit_tiny", num_classes=5)
  logits = model(images_nhwc)                       # (B, H, W, K)
"""

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from papers_jax.errors import ConfigError
from papers_jax.models import conv_flops
from papers_jax.models.registry import Preprocessing, register
from papers_jax.models.vit import BlockOptions, VisionTransformer
from papers_jax.nn import Dropout
from papers_jax.nn.conv import Conv, ConvTranspose
from papers_jax.nn.linear import Dense
from papers_jax.nn.norms import BatchNorm

VARIANTS = {
    # DPT-Large (HF Intel/dpt-large-ade's architecture): ViT-L/16 at 384, hooks 5, 11, 17, 23.
    "dpt_vit_large_patch16_384": dict(img_size=384, patch_size=16, width=1024, depth=24, num_heads=16,
                                      hooks=(5, 11, 17, 23), reassemble=(256, 512, 1024, 1024), features=256),
    # DPT-Base: ViT-B/16, hooks 2, 5, 8, 11 (HF DPTConfig's defaults).
    "dpt_vit_base_patch16_384": dict(img_size=384, patch_size=16, width=768, depth=12, num_heads=12,
                                     hooks=(2, 5, 8, 11), reassemble=(96, 192, 384, 768), features=256),
    # A demo size for the 64×64 generated scenes.
    "dpt_vit_tiny": dict(img_size=64, patch_size=8, width=64, depth=4, num_heads=4, hooks=(0, 1, 2, 3),
                         reassemble=(16, 32, 64, 64), features=16, mlp_ratio=2.0),
}


def resize_align_corners(x, height: int, width: int):
  """Bilinear resize of (B, h, w, C) with aligned corners (torch's align_corners=True), as two matmuls."""
  def matrix(n_out, n_in):
    if n_in == 1:
      return np.ones((n_out, 1), np.float32)
    pos = np.arange(n_out) * (n_in - 1) / max(n_out - 1, 1)
    lo = np.minimum(np.floor(pos).astype(int), n_in - 2)
    frac = (pos - lo).astype(np.float32)
    m = np.zeros((n_out, n_in), np.float32)
    m[np.arange(n_out), lo] = 1 - frac
    m[np.arange(n_out), lo + 1] += frac
    return m
  mh, mw = matrix(height, x.shape[1]), matrix(width, x.shape[2])
  return jnp.einsum("Hh,bhwc,Ww->bHWc", jnp.asarray(mh, x.dtype), x, jnp.asarray(mw, x.dtype))


def resize_half_pixel(x, height: int, width: int):
  """Bilinear resize of (B, h, w, C) with half-pixel centres (torch's align_corners=False, no antialiasing)."""
  if x.shape[1:3] == (height, width):
    return x
  return jax.image.resize(x, (x.shape[0], height, width, x.shape[3]), "bilinear", antialias=False)


class ResidualConvUnit(nnx.Module):
  """x + conv(relu(conv(relu(x)))), 3×3 convs with bias (DPT's pre-activation residual unit)."""

  def __init__(self, features: int, *, rngs, **kw):
    self.conv1 = Conv(features, features, 3, padding=1, use_bias=True, rngs=rngs, **kw)
    self.conv2 = Conv(features, features, 3, padding=1, use_bias=True, rngs=rngs, **kw)

  def __call__(self, x):
    return x + self.conv2(jax.nn.relu(self.conv1(jax.nn.relu(x))))


class FusionBlock(nnx.Module):
  """RefineNet-style fusion: (coarser path [+ RCU(skip)]) → RCU → ×2 bilinear (aligned corners) → 1×1 conv."""

  def __init__(self, features: int, *, with_skip: bool, rngs, **kw):
    self.skip_unit = ResidualConvUnit(features, rngs=rngs, **kw) if with_skip else None
    self.unit = ResidualConvUnit(features, rngs=rngs, **kw)
    self.out_conv = Conv(features, features, 1, use_bias=True, rngs=rngs, **kw)

  def __call__(self, x, skip=None):
    if skip is not None:
      x = x + self.skip_unit(skip)
    x = self.unit(x)
    x = resize_align_corners(x, 2 * x.shape[1], 2 * x.shape[2])
    return self.out_conv(x)


class Reassemble(nnx.Module):
  """Tokens (B, 1 + N, width) → a (B, f·g, f·g, features) map (DPT's reassemble with the `project` readout)."""

  def __init__(self, width: int, channels: int, features: int, factor: float, grid, *, rngs, **kw):
    self.grid, self.factor = grid, factor
    self.readout = Dense(2 * width, width, axes=("embed", None), rngs=rngs, **kw)
    self.project = Conv(width, channels, 1, use_bias=True, rngs=rngs, **kw)
    if factor > 1:
      self.resample = ConvTranspose(channels, channels, int(factor), stride=int(factor), use_bias=True, rngs=rngs, **kw)
    elif factor < 1:
      self.resample = Conv(channels, channels, 3, stride=2, padding=1, use_bias=True, rngs=rngs, **kw)
    else:
      self.resample = None
    self.to_features = Conv(channels, features, 3, padding=1, rngs=rngs, **kw)

  def __call__(self, tokens):
    cls, patches = tokens[:, :1], tokens[:, 1:]
    x = jax.nn.gelu(self.readout(jnp.concatenate([patches, jnp.broadcast_to(cls, patches.shape)], -1)),
                    approximate=False)
    x = self.project(x.reshape(x.shape[0], *self.grid, x.shape[-1]))
    if self.resample is not None:
      x = self.resample(x)
    return self.to_features(x)


class DPTDecoder(nnx.Module):
  """The four reassembles and fusion blocks: hooked token maps → the finest fused map (8 × the patch grid)."""

  def __init__(self, width: int, reassemble, features: int, grid, *, rngs, **kw):
    self.reassemble = nnx.List([Reassemble(width, c, features, f, grid, rngs=rngs, **kw)
                                for c, f in zip(reassemble, (4, 2, 1, 0.5))])
    self.fusion = nnx.List([FusionBlock(features, with_skip=i > 0, rngs=rngs, **kw) for i in range(4)])

  def __call__(self, hooked_tokens):
    maps = [r(t) for r, t in zip(self.reassemble, hooked_tokens)]
    x = self.fusion[0](maps[3])
    for block, skip in zip(self.fusion[1:], (maps[2], maps[1], maps[0])):
      x = block(x, skip)
    return x


class SegmentationHead(nnx.Module):
  """3×3 conv (no bias) → BatchNorm → ReLU → dropout → 1×1 conv to the classes [→ ×2 bilinear, aligned]."""

  def __init__(self, features: int, num_classes: int, *, upsample: bool, drop_rate: float, rngs, **kw):
    self.conv = Conv(features, features, 3, padding=1, rngs=rngs, **kw)
    kw.pop("kernel_init", None)
    self.bn = BatchNorm(features, rngs=rngs, **kw)
    self.drop = Dropout(drop_rate)
    self.classifier = Conv(features, num_classes, 1, use_bias=True, rngs=rngs, **kw)
    self.upsample = upsample

  def __call__(self, x, *, train: bool, rngs=None):
    x = jax.nn.relu(self.bn(self.conv(x), train=train))
    x = self.classifier(self.drop(x, deterministic=not train, rngs=rngs))
    return resize_align_corners(x, 2 * x.shape[1], 2 * x.shape[2]) if self.upsample else x


class DPT(nnx.Module):
  """ViT + DPT decoder + segmentation head (module docstring). `model(images)` → logits (B, H, W, K)."""

  def __init__(self, *, img_size: int = 384, patch_size: int = 16, in_chans: int = 3, width: int = 1024,
               depth: int = 24, num_heads: int = 16, mlp_ratio: float = 4.0, hooks=(5, 11, 17, 23),
               reassemble=(256, 512, 1024, 1024), features: int = 256, num_classes: int = 150,
               aux_head: bool = True, norm_eps: float = 1e-12, drop_rate: float = 0.1, drop_path_rate: float = 0.0,
               decoder_init_std: float = 0.0, dtype=None, param_dtype=jnp.float32, rngs: nnx.Rngs):
    if len(hooks) != 4 or len(reassemble) != 4 or max(hooks) >= depth:
      raise ConfigError(f"DPT reads four blocks (hooks {hooks}, all below depth {depth}) with four reassemble "
                        f"widths (got {reassemble})")
    kw = dict(dtype=dtype, param_dtype=param_dtype)
    self.hooks, self.num_classes = tuple(hooks), num_classes
    self.img_size = img_size
    self.backbone = VisionTransformer(
        img_size=img_size, patch_size=patch_size, in_chans=in_chans, num_classes=0, global_pool="token",
        embed_dim=width, depth=depth, num_heads=num_heads, drop_path_rate=drop_path_rate,
        block=BlockOptions(mlp_ratio=mlp_ratio, act="gelu", norm_eps=norm_eps), rngs=rngs, **kw)
    grid = self.backbone.patch_embed.grid_size
    if min(grid) < 2:
      raise ConfigError(f"DPT needs a patch grid of at least 2×2 (its coarsest map is half of it); got {grid}")
    # decoder_init_std > 0: every decoder and head conv / linear drawn from N(0, std²) as HF's DPT (0.02);
    # 0: the project's defaults (He-normal convolutions).
    init = dict(kernel_init=nnx.initializers.normal(decoder_init_std)) if decoder_init_std else {}
    self.decoder = DPTDecoder(width, reassemble, features, grid, rngs=rngs, **kw, **init)
    self.head = SegmentationHead(features, num_classes, upsample=True, drop_rate=drop_rate, rngs=rngs, **kw, **init)
    self.aux_head = (SegmentationHead(features, num_classes, upsample=False, drop_rate=0.1, rngs=rngs, **kw, **init)
                     if aux_head else None)

  def hooked_tokens(self, images, *, train: bool | None = None, rngs=None) -> list:
    out = self.backbone.forward_intermediates(images, indices=list(self.hooks), stop_early=True, train=train,
                                              rngs=rngs)
    return [out[f"block{i:02d}/+mlp"] for i in self.hooks]

  def head_logits(self, images, *, train: bool = False, rngs=None, return_aux: bool = False):
    """The heads' logits at their own sizes (16 / 8 × the patch grid), as HF returns them."""
    fused = self.decoder(self.hooked_tokens(images, train=train, rngs=rngs))
    logits = self.head(fused, train=train, rngs=rngs)
    if not return_aux:
      return logits
    return logits, ([self.aux_head(fused, train=train, rngs=rngs)] if self.aux_head is not None else [])

  def __call__(self, images, *, train: bool | None = None, rngs=None, return_aux: bool = False):
    h, w = images.shape[1:3]
    logits, aux = self.head_logits(images, train=bool(train), rngs=rngs, return_aux=True)
    logits = resize_half_pixel(logits, h, w).astype(jnp.float32)
    if not return_aux:
      return logits
    return logits, [resize_half_pixel(a, h, w).astype(jnp.float32) for a in aux]


for _name, _row in VARIANTS.items():
  register(_name, DPT, **_row, preprocessing=Preprocessing(_row["img_size"], (0.5,) * 3, (0.5,) * 3, crop_pct=1.0))


def image_forward_flops(model, img_size) -> float:
  """FLOPs of one forward pass of `model(images)` per image, counted on its jaxpr with the element-wise
  operations (models/conv_flops.py); works on an abstract model."""
  h, w = img_size
  chans = model.backbone.patch_embed.proj["kernel"].shape[2]
  graphdef, state = nnx.split(model)

  def fn(state, images):
    return nnx.merge(graphdef, state)(images)

  jaxpr = jax.make_jaxpr(fn)(state, jax.ShapeDtypeStruct((1, h, w, chans), jnp.float32))
  return float(conv_flops.jaxpr_flops(jaxpr, elementwise=True))


def forward_flops(model: DPT) -> float:
  return image_forward_flops(model, model.backbone.patch_embed.img_size)


EMBEDDINGS = tuple(f"backbone.{name}" for name in ("pos_embed", "cls_token"))
