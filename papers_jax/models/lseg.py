"""LSeg (Li et al., ICLR 2022, "Language-driven Semantic Segmentation"): a dense image encoder whose
per-pixel embeddings are compared with the text embeddings of any label set.

  - Image encoder: a ViT (here with CLIP's parts, models/clip.py: patch embedding without bias, a
    LayerNorm before the blocks, quick_gelu) read at four blocks (`hooks`) by a DPT-style decoder
    (Ranftl et al. 2021): each hooked token map is "reassembled" (the class token's readout
    concatenated to every patch token and projected back, as DPT's `project` readout; a 1×1 conv;
    resampled ×4, ×2, ×1, ×½ by a stride-f transposed conv / identity / a stride-2 3×3 conv; a 3×3
    conv to `features` channels) and fused from coarse to fine by RefineNet-style blocks (two
    residual conv units, ×2 bilinear upsampling with aligned corners, a 1×1 conv); the blocks are
    DPT's own (models/dpt.py, compared with HF's DPT there). A 1×1 conv
    (`head`) maps the finest map to the text width: the per-pixel embeddings.
  - Logits: the temperature times the cosine of each pixel embedding with each label's text
    embedding (from a frozen CLIP text tower; computed outside this module), (B, h, w, K).
  - Spatial regularisation (the paper's §3.3 blocks, `spatial_blocks`, 2 by default): one 3×3 conv
    with one input and one output channel, applied to every label's logit map alike (so it works
    for any label set), with the "bottleneck" variant adding each pixel's maximum over the labels;
    a ReLU after each block but the last. Then bilinear upsampling (aligned corners) to the input size.

CLIPSeg (Lüddecke & Ecker 2022, HF's CLIPSegForImageSegmentation) shares the frozen CLIP text
embeddings of the prompts and a CLIP ViT read at intermediate blocks; its decoder is different (a
projection of three blocks' tokens to 64-d, FiLM conditioning on the text embedding, three
Transformer layers and a transposed conv producing one logit map per prompt), so only those shared
parts are compared with HF (tests/test_clip_family.py).

  model = models.create("lseg_vit_tiny", embed_dim=64)
  logits = model(images_nhwc, text_features)      # (B, H, W, K)
"""

import math

import jax
import jax.numpy as jnp
from flax import nnx

from papers_jax.errors import ConfigError
from papers_jax.models import conv_flops
from papers_jax.models.dpt import FusionBlock, Reassemble, resize_align_corners
from papers_jax.models.registry import Preprocessing, register
from papers_jax.models.vit import BlockOptions, VisionTransformer
from papers_jax.nn import LayerNorm, PatchEmbed, param
from papers_jax.nn.conv import Conv

VARIANTS = {
    # The paper's LSeg: ViT-L/16 (DPT-Large) hooks 5, 11, 17, 23, 256 decoder features, CLIP ViT-B/32's 512-d texts.
    "lseg_vit_large_patch16": dict(img_size=384, patch_size=16, width=1024, depth=24, num_heads=16,
                                   hooks=(5, 11, 17, 23), reassemble=(256, 512, 1024, 1024), features=256,
                                   embed_dim=512),
    # A demo size for the 64×64 generated scenes.
    "lseg_vit_tiny": dict(img_size=64, patch_size=8, width=64, depth=4, num_heads=4, hooks=(0, 1, 2, 3),
                          reassemble=(32, 64, 64, 64), features=32, embed_dim=64, mlp_ratio=2.0),
}


class LSeg(nnx.Module):
  """ViT + DPT-style decoder → per-pixel embeddings → logits against label text embeddings (module docstring)."""

  def __init__(self, *, img_size: int = 384, patch_size: int = 16, in_chans: int = 3, width: int = 1024,
               depth: int = 24, num_heads: int = 16, mlp_ratio: float = 4.0, hooks=(5, 11, 17, 23),
               reassemble=(256, 512, 1024, 1024), features: int = 256, embed_dim: int = 512,
               spatial_blocks: int = 2, spatial_block: str = "bottleneck", act: str = "quick_gelu",
               norm_eps: float = 1e-5, logit_scale_init: float = math.log(1 / 0.07), max_logit_scale: float = 100.0,
               drop_path_rate: float = 0.0, dtype=None, param_dtype=jnp.float32, rngs: nnx.Rngs):
    if len(hooks) != 4 or len(reassemble) != 4 or max(hooks) >= depth:
      raise ConfigError(f"LSeg reads four blocks (hooks {hooks}, all below depth {depth}) with four reassemble "
                        f"widths (got {reassemble})")
    if spatial_block not in ("bottleneck", "depthwise"):
      raise ConfigError(f"spatial_block must be 'bottleneck' or 'depthwise', got {spatial_block!r}")
    kw = dict(dtype=dtype, param_dtype=param_dtype)
    self.hooks, self.spatial_blocks, self.spatial_block = tuple(hooks), spatial_blocks, spatial_block
    self.max_logit_scale = float(max_logit_scale)
    self.backbone = VisionTransformer(
        num_classes=0, global_pool="token", embed_dim=width, depth=depth, num_heads=num_heads,
        drop_path_rate=drop_path_rate,
        block=BlockOptions(mlp_ratio=mlp_ratio, act=act, norm_eps=norm_eps),
        patch_embed=PatchEmbed(img_size, patch_size, in_chans, width, bias=False, rngs=rngs, **kw),
        norm_pre=LayerNorm(width, eps=norm_eps, rngs=rngs, **kw), rngs=rngs, **kw)
    grid = self.backbone.patch_embed.grid_size
    self.reassemble = nnx.List([Reassemble(width, c, features, f, grid, rngs=rngs, **kw)
                                for c, f in zip(reassemble, (4, 2, 1, 0.5))])
    self.fusion = nnx.List([FusionBlock(features, with_skip=i > 0, rngs=rngs, **kw) for i in range(4)])
    self.head = Conv(features, embed_dim, 1, use_bias=True, rngs=rngs, **kw)
    self.spatial = Conv(1, 1, 3, padding=1, use_bias=True, rngs=rngs, **kw) if spatial_blocks else None
    self.logit_scale = param(rngs, nnx.initializers.constant(logit_scale_init), (), param_dtype, ())

  def hooked_tokens(self, images, *, train: bool | None = None, rngs=None) -> list:
    out = self.backbone.forward_intermediates(images, indices=list(self.hooks), stop_early=True, train=train,
                                              rngs=rngs)
    return [out[f"block{i:02d}/+mlp"] for i in self.hooks]

  def pixel_embeddings(self, images, *, train: bool | None = None, rngs=None):
    """(B, h, w, embed_dim) per-pixel embeddings (not normalised); h = 16·grid / 2 = 8 × the patch grid."""
    maps = [r(t) for r, t in zip(self.reassemble, self.hooked_tokens(images, train=train, rngs=rngs))]
    x = self.fusion[0](maps[3])
    for block, skip in zip(self.fusion[1:], (maps[2], maps[1], maps[0])):
      x = block(x, skip)
    return self.head(x)

  def temperature_scale(self):
    return jnp.exp(jnp.minimum(self.logit_scale[...].astype(jnp.float32), math.log(self.max_logit_scale)))

  def regularize(self, logits):
    """The spatial regularisation blocks on (B, h, w, K) logits: one shared 3×3 conv per label map."""
    b, h, w, k = logits.shape
    for i in range(self.spatial_blocks):
      x = self.spatial(jnp.moveaxis(logits, 3, 1).reshape(b * k, h, w, 1)).reshape(b, k, h, w)
      x = jnp.moveaxis(x, 1, 3)
      if self.spatial_block == "bottleneck":
        x = x + x.max(axis=-1, keepdims=True)
      logits = jax.nn.relu(x) if i < self.spatial_blocks - 1 else x
    return logits

  def __call__(self, images, text_features, *, train: bool | None = None, rngs=None):
    """Images (B, H, W, C), normalised, and label text features (K, D) → logits (B, H, W, K) float32."""
    x = self.pixel_embeddings(images, train=train, rngs=rngs).astype(jnp.float32)
    x = x * jax.lax.rsqrt(jnp.sum(x * x, axis=-1, keepdims=True) + 1e-12)
    t = text_features.astype(jnp.float32)
    t = t * jax.lax.rsqrt(jnp.sum(t * t, axis=-1, keepdims=True))
    logits = self.regularize(self.temperature_scale() * jnp.einsum("bhwd,kd->bhwk", x, t))
    return resize_align_corners(logits, *images.shape[1:3])


for _name, _row in VARIANTS.items():
  _size = _row["img_size"]
  register(_name, LSeg, **_row, preprocessing=Preprocessing(_size, (0.5,) * 3, (0.5,) * 3, crop_pct=1.0))


def forward_flops(model, num_labels: int = 8) -> float:
  """FLOPs of one forward pass per image against `num_labels` label embeddings, counted on its jaxpr
  with the element-wise operations (models/conv_flops.py); works on an abstract model."""
  h, w = model.backbone.patch_embed.img_size
  chans = model.backbone.patch_embed.proj["kernel"].shape[2]
  dim = model.head.kernel.shape[-1]
  graphdef, state = nnx.split(model)

  def fn(state, images, text):
    return nnx.merge(graphdef, state)(images, text)

  jaxpr = jax.make_jaxpr(fn)(state, jax.ShapeDtypeStruct((1, h, w, chans), jnp.float32),
                             jax.ShapeDtypeStruct((num_labels, dim), jnp.float32))
  return float(conv_flops.jaxpr_flops(jaxpr, elementwise=True))


EMBEDDINGS = tuple(f"backbone.{name}" for name in ("pos_embed", "cls_token"))
