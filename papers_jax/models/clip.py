"""CLIP (Radford et al., 2021, "Learning Transferable Visual Models From Natural Language Supervision").

Two towers map images and texts into one joint space, trained so that each image's embedding is
closest to its own caption's among every caption in the global batch (objectives/contrastive.py's
`clip_loss`; N positive pairs and N² − N negatives per batch).

  - Image tower (`vision="vit"`): a ViT as CLIP builds it, models/vit.py's VisionTransformer
    composed with CLIP's parts: a patch embedding without bias, class token, learned position
    embeddings, a LayerNorm before the transformer (ln_pre, the ViT's `norm_pre`), pre-LN blocks with
    quick_gelu and LayerNorm eps 1e-5 (`BlockOptions`), the final LayerNorm read at the class token
    (ln_post). Then a linear projection without bias into the joint space.
  - Image tower (`vision="resnet"`): the paper's modified ResNet (§2.4): a stem of three 3×3 convs
    and a 2×2 average pool instead of one 7×7 conv and a max pool; anti-aliased strided convolutions
    (every stride-2 step is a 2×2 average pool followed by a stride-1 convolution, in the residual
    branch before the last 1×1 conv and in the shortcut); attention pooling instead of global
    average pooling: the mean of the final feature map, prepended to it, with a learned position
    embedding over all of them, is the one query of a multi-head QKV attention, whose output
    projection (c_proj) maps into the joint space.
  - Text tower: token + learned position embeddings, pre-LN Transformer blocks under a causal mask
    (so the [EOS] token sees the whole caption and nothing after it), a final LayerNorm; the output
    at the [EOS] position is the text feature, projected without bias into the joint space.
  - A learned temperature: `logit_scale` = log(1/τ), initialised at log(1/0.07); the logits are
    exp(logit_scale) · cos(image, text) with exp(logit_scale) clipped at 100. The clip is applied in
    the forward pass (no gradient beyond the bound), which for the logits is what the reference
    training code's in-place clamp after each step does.

Some summaries of the paper swap the towers ("Text Encoder (resnet/vit)"); in the paper, as here, the
image tower is the ResNet or ViT and the text tower the Transformer.

[EOS] position: with `eos_token_id=None` it is the position of the largest token id in each row
(OpenAI's BPE vocabulary puts <|endoftext|> last; HF transformers keeps this rule for configs with
eos_token_id=2); otherwise the first position holding `eos_token_id` (HF's rule for newer configs).

Initialisation follows OpenAI's `initialize_parameters`: token embeddings N(0, 0.02²), text
positions N(0, 0.01²); text blocks N(0, σ²) with σ = w^-½ for the qkv kernel, w^-½·(2L)^-½ for the
attention and MLP output kernels and (2w)^-½ for the MLP input kernel; both projections, the class
token and the image position embeddings N(0, 1/w); attention pooling kernels N(0, 1/C); the last
BatchNorm of every bottleneck starts at zero. The ViT tower's blocks keep vit.py's Xavier init
(the reference leaves them at PyTorch's defaults).

Names: `visual` (vit.py's names for the ViT; the reference's for the ResNet: conv1-3/bn1-3, layer1-4,
attnpool.{pos_embed, q_proj, k_proj, v_proj, c_proj}), `text` (token_embed, pos_embed, blocks, norm),
`visual_projection`, `text_projection`, `logit_scale`. convert/hf_clip.py loads HF's `CLIPModel` (ViT
variants), convert/openai_clip.py OpenAI's released state dicts (ResNet and ViT).

  model = models.create("clip_vit_base_patch16")
  image_features = model.encode_image(images_nhwc)       # (B, embed_dim), not normalised
  text_features = model.encode_text(tokens)              # tokens (B, 77) int32
  logits_per_image, logits_per_text = model(images_nhwc, tokens)
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from papers_jax.core import sharding
from papers_jax.errors import ConfigError
from papers_jax.models import intermediates
from papers_jax.models.registry import OPENAI_CLIP_MEAN, OPENAI_CLIP_STD, Preprocessing, register
from papers_jax.models import vit
from papers_jax.models.vit import Block, BlockOptions, VisionTransformer, apply_blocks, check_remat
from papers_jax.nn import LayerNorm, PatchEmbed, dot_product_attention, param
from papers_jax.nn.conv import Conv, conv_flops
from papers_jax.nn.linear import Dense
from papers_jax.nn.norms import BatchNorm

# The released models (the paper's Tables 19 and 20): joint-space width, image tower, text tower.
# Every text tower reads 77 tokens of a 49,408-token BPE vocabulary, with width/64 heads.
VARIANTS = {
    "clip_rn50": dict(embed_dim=1024, vision="resnet", vision_layers=(3, 4, 6, 3), vision_width=64,
                      text_width=512, text_layers=12),
    "clip_vit_base_patch32": dict(embed_dim=512, vision="vit", patch_size=32, vision_layers=12, vision_width=768,
                                  text_width=512, text_layers=12),
    "clip_vit_base_patch16": dict(embed_dim=512, vision="vit", patch_size=16, vision_layers=12, vision_width=768,
                                  text_width=512, text_layers=12),
    "clip_vit_large_patch14": dict(embed_dim=768, vision="vit", patch_size=14, vision_layers=24, vision_width=1024,
                                   text_width=768, text_layers=12),
}


def _renormal(p: nnx.Param, std: float, rngs: nnx.Rngs):
  """Redraws a parameter from N(0, std²) (the reference's per-layer init, applied after construction)."""
  p[...] = std * jax.random.normal(rngs.params(), p[...].shape, p[...].dtype)


def avg_pool(x, k: int):
  """torch's AvgPool2d(k): k×k windows with stride k, no padding (NHWC)."""
  zero = np.zeros((), x.dtype)  # a constant: with a traced init value, reduce_window has no gradient under jit
  return jax.lax.reduce_window(x, zero, jax.lax.add, (1, k, k, 1), (1, k, k, 1), "VALID") / (k * k)


# ----------------------------------------------------------------------------- modified ResNet


class Bottleneck(nnx.Module):
  """1×1 → 3×3 → [2×2 avg pool when strided] → 1×1 (×4); the shortcut is [avg pool] → 1×1 → BN."""

  expansion = 4

  def __init__(self, in_features: int, planes: int, stride: int, *, bn_group_size=None, dtype=None,
               param_dtype=jnp.float32, rngs: nnx.Rngs):
    out = planes * self.expansion
    kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
    bn = lambda c: BatchNorm(c, group_size=bn_group_size, **kw)  # noqa: E731
    self.stride = stride
    self.conv1, self.bn1 = Conv(in_features, planes, 1, **kw), bn(planes)
    self.conv2, self.bn2 = Conv(planes, planes, 3, **kw), bn(planes)
    self.conv3, self.bn3 = Conv(planes, out, 1, **kw), bn(out)
    self.bn3.scale[...] = jnp.zeros_like(self.bn3.scale[...])  # each block starts as the identity
    if stride > 1 or in_features != out:
      self.downsample_conv, self.downsample_bn = Conv(in_features, out, 1, **kw), bn(out)
    else:
      self.downsample_conv = self.downsample_bn = None

  def __call__(self, x, *, train: bool):
    y = jax.nn.relu(self.bn1(self.conv1(x), train=train))
    y = jax.nn.relu(self.bn2(self.conv2(y), train=train))
    if self.stride > 1:
      y = avg_pool(y, self.stride)
    y = self.bn3(self.conv3(y), train=train)
    shortcut = x
    if self.downsample_conv is not None:
      if self.stride > 1:
        shortcut = avg_pool(shortcut, self.stride)
      shortcut = self.downsample_bn(self.downsample_conv(shortcut), train=train)
    return jax.nn.relu(y + shortcut)


class AttentionPool2d(nnx.Module):
  """The mean token, prepended to the H·W feature tokens, plus a learned position embedding over
  all 1 + H·W; multi-head attention with the mean token as the only query; c_proj to `out_dim`."""

  def __init__(self, grid: int, dim: int, num_heads: int, out_dim: int, *, attention_impl: str | None = None,
               dtype=None, param_dtype=jnp.float32, rngs: nnx.Rngs):
    if dim % num_heads:
      raise ConfigError(f"attention pooling width {dim} is not divisible by its {num_heads} heads")
    head_dim = dim // num_heads
    init = nnx.initializers.normal(dim ** -0.5)
    kw = dict(kernel_init=init, dtype=dtype, param_dtype=param_dtype, rngs=rngs)
    self.grid, self.implementation, self.dtype = grid, attention_impl, dtype
    self.pos_embed = param(rngs, init, (grid * grid + 1, dim), param_dtype, (None, "embed"))
    self.q_proj = Dense(dim, (num_heads, head_dim), axes=("embed", "heads", "kv"), **kw)
    self.k_proj = Dense(dim, (num_heads, head_dim), axes=("embed", "heads", "kv"), **kw)
    self.v_proj = Dense(dim, (num_heads, head_dim), axes=("embed", "heads", "kv"), **kw)
    self.c_proj = Dense((num_heads, head_dim), out_dim, axes=("heads", "kv", "embed"), **kw)

  def __call__(self, x):
    b, h, w, c = x.shape
    if (h, w) != (self.grid, self.grid):
      raise ValueError(f"the final feature map is {h}x{w} but attention pooling was built for "
                       f"{self.grid}x{self.grid} (create the model with img_size={self.grid * 32})")
    x = x.reshape(b, h * w, c)
    x = jnp.concatenate([x.mean(axis=1, keepdims=True), x], axis=1)
    x = x + self.pos_embed[...].astype(x.dtype)
    q, k, v = self.q_proj(x[:, :1]), self.k_proj(x), self.v_proj(x)  # (B, tokens, heads, head_dim)
    y = dot_product_attention(q, k, v, implementation=self.implementation)
    return self.c_proj(y)[:, 0]


class ModifiedResNet(nnx.Module):
  """CLIP's ResNet image tower: images (B, H, W, C) → (B, out_dim)."""

  def __init__(self, *, layers=(3, 4, 6, 3), width: int = 64, out_dim: int = 1024, num_heads: int = 32,
               img_size: int = 224, in_chans: int = 3, bn_group_size=None, attention_impl: str | None = None,
               dtype=None, param_dtype=jnp.float32, rngs: nnx.Rngs):
    if img_size % 32:
      raise ConfigError(f"the ResNet image tower downsamples 32 times; img_size={img_size} is not a multiple of 32")
    kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
    bn = lambda c: BatchNorm(c, group_size=bn_group_size, **kw)  # noqa: E731
    self.conv1, self.bn1 = Conv(in_chans, width // 2, 3, stride=2, **kw), bn(width // 2)
    self.conv2, self.bn2 = Conv(width // 2, width // 2, 3, **kw), bn(width // 2)
    self.conv3, self.bn3 = Conv(width // 2, width, 3, **kw), bn(width)
    stages, features = [], width
    for i, depth in enumerate(layers):
      planes = width * 2 ** i
      blocks = []
      for j in range(depth):
        blocks.append(Bottleneck(features, planes, 2 if (i > 0 and j == 0) else 1, bn_group_size=bn_group_size, **kw))
        features = planes * Bottleneck.expansion
      stages.append(nnx.List(blocks))
    self.layer1, self.layer2, self.layer3, self.layer4 = stages
    self.num_features = features
    self.attnpool = AttentionPool2d(img_size // 32, features, num_heads, out_dim, attention_impl=attention_impl,
                                    **kw)

  def __call__(self, x, *, train: bool = False):
    return self.forward_intermediates(x, train=train)["pre_logits"]

  def forward_intermediates(self, x, *, indices=None, stop_early: bool = False, train: bool = False) -> dict:
    """Named features (models/intermediates.py): "stem" (after the 2×2 average pool), "stage{i}" (NHWC)
    for the stages `indices` picks, then "encoded" (the last map) and "pre_logits" (attention
    pooling's output, the tower's output) unless `stop_early`."""
    stages = (self.layer1, self.layer2, self.layer3, self.layer4)
    picked = intermediates.select(indices, len(stages))
    for conv, bn in ((self.conv1, self.bn1), (self.conv2, self.bn2), (self.conv3, self.bn3)):
      x = jax.nn.relu(bn(conv(x), train=train))
    x = avg_pool(x, 2)
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
    out["encoded"], out["pre_logits"] = x, self.attnpool(x)
    return out


# ----------------------------------------------------------------------------- text tower


def eos_positions(tokens, eos_token_id: int | None = None):
  """(B, T) token ids → (B,) index of each row's [EOS] (see the module docstring)."""
  if eos_token_id is None:
    return jnp.argmax(tokens, axis=-1)
  return jnp.argmax(tokens == eos_token_id, axis=-1)


class TextTransformer(nnx.Module):
  """Causal pre-LN Transformer: tokens (B, T ≤ context_length) → features (B, width) at [EOS]."""

  def __init__(self, *, vocab_size: int, context_length: int, width: int, layers: int, num_heads: int,
               mlp_ratio: float = 4.0, act: str = "quick_gelu", norm_eps: float = 1e-5, eos_token_id=None,
               attention_impl: str | None = None, remat: str = "", scan: bool = False, dtype=None,
               param_dtype=jnp.float32, rngs: nnx.Rngs):
    if width % num_heads:
      raise ConfigError(f"text width {width} is not divisible by its {num_heads} heads")
    kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
    self.context_length, self.eos_token_id = context_length, eos_token_id
    self.remat, self.scan, self.dtype = remat, scan, dtype
    self.token_embed = param(rngs, nnx.initializers.normal(0.02), (vocab_size, width), param_dtype, ("vocab", "embed"))
    self.pos_embed = param(rngs, nnx.initializers.normal(0.01), (context_length, width), param_dtype,
                           (None, "embed"))
    self.blocks = nnx.List([Block(width, num_heads, mlp_ratio=mlp_ratio, norm_eps=norm_eps, act=act,
                                  attention_impl=attention_impl, **kw) for _ in range(layers)])
    self.norm = LayerNorm(width, eps=norm_eps, **kw)
    attn_std, fc_std = width ** -0.5, (2 * width) ** -0.5
    proj_std = attn_std * (2 * max(layers, 1)) ** -0.5
    for block in self.blocks:
      _renormal(block.attn.qkv.kernel, attn_std, rngs)
      _renormal(block.attn.proj.kernel, proj_std, rngs)
      _renormal(block.mlp.fc1.kernel, fc_std, rngs)
      _renormal(block.mlp.fc2.kernel, proj_std, rngs)

  def forward_intermediates(self, tokens, *, indices=None, stop_early: bool = False, return_attention: bool = False,
                            train: bool | None = None, rngs=None) -> dict:
    """Named features (models/intermediates.py): "stem" (token + position embeddings),
    "block{i:02d}/+sa", "block{i:02d}/+mlp" [and "/attn"] for the blocks `indices` picks, then
    "encoded" (after the final norm) and "pre_logits" (the [EOS] feature, the tower's output) unless
    `stop_early`. The blocks run one by one (no scan, no remat)."""
    deterministic = None if train is None else not train  # as in __call__
    picked = intermediates.select(indices, len(self.blocks))
    x, causal = self._embed(tokens)
    out = {"stem": x}
    if stop_early and not picked:
      return out
    for i, block in enumerate(self.blocks):
      x, block_out = block.forward_intermediates(x, mask=causal, return_attention=return_attention and i in picked,
                                                 deterministic=deterministic, rngs=rngs)
      if i in picked:
        out.update({intermediates.block_key(i, k): v for k, v in block_out.items()})
      if stop_early and i == picked[-1]:
        return out
    out["encoded"] = x = self.norm(x)
    out["pre_logits"] = self._at_eos(x, tokens)
    return out

  def _embed(self, tokens):
    """(tokens + positions (B, T, width), the causal mask)."""
    if tokens.ndim != 2:
      raise ValueError(f"tokens must be (batch, length) ids, got shape {tokens.shape}")
    b, t = tokens.shape
    if t > self.context_length:
      raise ValueError(f"{t} tokens exceed the context length {self.context_length}; truncate the captions")
    dtype = self.dtype or self.token_embed[...].dtype
    x = jnp.take(self.token_embed[...], tokens, axis=0).astype(dtype) + self.pos_embed[:t].astype(dtype)
    x = sharding.constrain(x, ("act_batch", "act_len", "act_emb"))
    return x, jnp.tril(jnp.ones((t, t), jnp.bool_))[None, None]

  def _at_eos(self, x, tokens):
    eos = eos_positions(tokens, self.eos_token_id)
    return jnp.take_along_axis(x, eos[:, None, None], axis=1)[:, 0]

  def __call__(self, tokens, *, deterministic=None, rngs=None):
    x, causal = self._embed(tokens)
    x = apply_blocks(self.blocks, x, mask=causal, remat=self.remat, scan=self.scan, deterministic=deterministic,
                     rngs=rngs)
    return self._at_eos(self.norm(x), tokens)


# ----------------------------------------------------------------------------- the dual encoder


class CLIP(nnx.Module):
  """Image and text towers with projections into a joint space of width `embed_dim`.

  ViT tower: img_size, patch_size, vision_width, vision_layers (depth), vision_heads (default
  width/64). ResNet tower: vision_layers (blocks per stage), vision_width (stem width; the last
  stage has 32×), vision_heads (attention pooling; default 32·width/64). Text tower: context_length,
  vocab_size, text_width, text_layers, text_heads (default width/64), eos_token_id. `vision_pool="avg"` (ViT
  only): the image feature is the mean of the patch tokens after the final LayerNorm instead of the class token's,
  so it is the mean of the projected patch features (DepthCLIP's dense readout relies on that).
  """

  def __init__(self, *, embed_dim: int = 512, vision: str = "vit", img_size: int = 224, patch_size: int = 32,
               in_chans: int = 3, vision_width: int = 768, vision_layers=12, vision_heads: int | None = None,
               vision_mlp_ratio: float = 4.0, context_length: int = 77, vocab_size: int = 49408,
               text_width: int = 512, text_layers: int = 12, text_heads: int | None = None,
               text_mlp_ratio: float = 4.0, eos_token_id: int | None = None, act: str = "quick_gelu",
               norm_eps: float = 1e-5, logit_scale_init: float = math.log(1 / 0.07), max_logit_scale: float = 100.0,
               drop_path_rate: float = 0.0, bn_group_size: int | None = None, attention_impl: str | None = None,
               remat: str = "", scan: bool = False, vision_pool: str = "token", dtype=None,
               param_dtype=jnp.float32, rngs: nnx.Rngs):
    if vision not in ("vit", "resnet"):
      raise ConfigError(f"vision must be 'vit' or 'resnet', got {vision!r}")
    if vision_pool not in ("token", "avg"):
      raise ConfigError(f"vision_pool must be 'token' or 'avg', got {vision_pool!r}")
    check_remat(remat)
    kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
    self.vision, self.embed_dim, self.dtype = vision, embed_dim, dtype
    self.max_logit_scale = float(max_logit_scale)
    if vision == "vit":
      # A plain ViT with CLIP's parts: no patch-embedding bias, ln_pre after the position embeddings,
      # its activation and LayerNorm eps; no head (the class token's feature is projected below).
      self.visual = VisionTransformer(
          num_classes=0, global_pool=vision_pool, fc_norm=False, embed_dim=vision_width, depth=int(vision_layers),
          num_heads=vision_heads or max(1, vision_width // 64), drop_path_rate=drop_path_rate, remat=remat, scan=scan,
          block=BlockOptions(mlp_ratio=vision_mlp_ratio, act=act, norm_eps=norm_eps, attention_impl=attention_impl),
          patch_embed=PatchEmbed(img_size, patch_size, in_chans, vision_width, bias=False, **kw),
          norm_pre=LayerNorm(vision_width, eps=norm_eps, **kw), **kw)
      scale = vision_width ** -0.5
      _renormal(self.visual.cls_token, scale, rngs)
      _renormal(self.visual.pos_embed, scale, rngs)
      self.visual_projection = Dense(vision_width, embed_dim, axes=("embed", None), use_bias=False,
                                     kernel_init=nnx.initializers.normal(scale), **kw)
    else:
      layers = tuple(vision_layers)
      self.visual = ModifiedResNet(layers=layers, width=vision_width, out_dim=embed_dim,
                                   num_heads=vision_heads or max(1, vision_width // 2), img_size=img_size,
                                   in_chans=in_chans, bn_group_size=bn_group_size, attention_impl=attention_impl,
                                   **kw)
      self.visual_projection = None  # attention pooling's c_proj maps into the joint space
    self.text = TextTransformer(vocab_size=vocab_size, context_length=context_length, width=text_width,
                                layers=text_layers, num_heads=text_heads or max(1, text_width // 64),
                                mlp_ratio=text_mlp_ratio, act=act, norm_eps=norm_eps, eos_token_id=eos_token_id,
                                attention_impl=attention_impl, remat=remat, scan=scan, **kw)
    self.text_projection = Dense(text_width, embed_dim, axes=("embed", None), use_bias=False,
                                 kernel_init=nnx.initializers.normal(text_width ** -0.5), **kw)
    self.logit_scale = param(rngs, nnx.initializers.constant(logit_scale_init), (), param_dtype, ())

  def encode_image(self, images, *, train: bool | None = None, rngs: nnx.Rngs | None = None):
    """Images (B, H, W, C), normalised → (B, embed_dim) float32 features (not L2-normalised)."""
    if self.vision == "resnet":
      x = self.visual(images, train=bool(train))
    else:
      deterministic = None if train is None else not train
      tokens = self.visual.forward_features(images, deterministic=deterministic, rngs=rngs)
      x = self.visual_projection(self.visual.forward_head(tokens, pre_logits=True, deterministic=deterministic,
                                                          rngs=rngs))
    return x.astype(jnp.float32)

  def encode_text(self, tokens, *, train: bool | None = None, rngs: nnx.Rngs | None = None):
    """Token ids (B, T) → (B, embed_dim) float32 features at each row's [EOS] (not L2-normalised)."""
    deterministic = None if train is None else not train
    return self.text_projection(self.text(tokens, deterministic=deterministic, rngs=rngs)).astype(jnp.float32)

  def temperature_scale(self):
    """exp(logit_scale), clipped at `max_logit_scale` (float32 scalar)."""
    return jnp.exp(jnp.minimum(self.logit_scale[...].astype(jnp.float32), math.log(self.max_logit_scale)))

  def __call__(self, images, tokens, *, train: bool | None = None, rngs: nnx.Rngs | None = None):
    """(logits_per_image (B_img, B_txt), logits_per_text (B_txt, B_img)), float32, as HF's CLIPModel."""
    image = self.encode_image(images, train=train, rngs=rngs)
    text = self.encode_text(tokens, train=train, rngs=rngs)
    image = image * jax.lax.rsqrt(jnp.sum(image * image, axis=-1, keepdims=True))
    text = text * jax.lax.rsqrt(jnp.sum(text * text, axis=-1, keepdims=True))
    logits_per_image = self.temperature_scale() * image @ text.T
    return logits_per_image, logits_per_image.T


# OpenAI's preprocessing (HF's CLIPImageProcessor): bicubic resize of the shorter side to 224, centre crop.
for _name, _row in VARIANTS.items():
  register(_name, CLIP, **_row, preprocessing=Preprocessing(224, OPENAI_CLIP_MEAN, OPENAI_CLIP_STD, crop_pct=1.0))


# ----------------------------------------------------------------------------- FLOPs
def resnet_forward_flops(visual, *, count_padding: bool = True) -> float:
  """CLIP's modified ResNet per image: convolutions (a strided block runs its 3×3 at the input
  resolution and its last 1×1 and shortcut after the 2×2 average pool) and attention pooling
  (one query, keys and values over the mean token + H·W tokens). `count_padding=False` leaves out
  the kernel taps on the zero padding, as XLA's cost analysis does (nn/conv.py)."""
  h = visual.attnpool.grid * 32
  flops = 0
  for conv in (visual.conv1, visual.conv2, visual.conv3):
    f, h, _ = conv_flops(conv, h, h, count_padding=count_padding)
    flops += f
  h //= 2
  for stage in (visual.layer1, visual.layer2, visual.layer3, visual.layer4):
    for block in stage:
      for conv in (block.conv1, block.conv2):
        f, h, _ = conv_flops(conv, h, h, count_padding=count_padding)
        flops += f
      h //= block.stride
      f, h, _ = conv_flops(block.conv3, h, h, count_padding=count_padding)
      flops += f
      if block.downsample_conv is not None:
        flops += conv_flops(block.downsample_conv, h, h)[0]  # 1×1, after the pool
  pool = visual.attnpool
  n, c, out = h * h + 1, pool.pos_embed.shape[1], pool.c_proj.kernel.shape[-1]
  flops += 2 * c * c + 2 * 2 * n * c * c + 2 * 2 * n * c + 2 * c * out  # q (1 token), k and v, q·k and p·v, c_proj
  return float(flops)


def forward_flops(model, *, count_padding: bool = True) -> float:
  """Matmul FLOPs of one CLIP forward pass per image-text pair: the image tower, the text tower on
  its full context (captions are padded to it), both projections. The N×N similarity matrix
  (2·N·embed_dim per pair) depends on the batch and is left out. `count_padding`: as
  `resnet_forward_flops` (the ResNet image tower only)."""
  if model.vision == "vit":
    flops = vit.forward_flops(model.visual) + 2 * model.visual.embed_dim * model.embed_dim
  else:
    flops = resnet_forward_flops(model.visual, count_padding=count_padding)
  text = model.text
  n, d = text.context_length, text.token_embed.shape[1]
  flops += sum(vit.block_flops(n, d, block.mlp.fc1.kernel.shape[1]) for block in text.blocks)
  flops += 2 * d * model.embed_dim
  return float(flops)


# The embedding parameters (models.embedding_params): the image tower's as the ViT's (the ResNet's
# attention-pooling position embedding), the text tower's token and position tables (Kaplan et al., 2020).
EMBEDDINGS = tuple(f"visual.{name}" for name in vit.EMBEDDINGS) + (
    "visual.attnpool.pos_embed", "text.token_embed", "text.pos_embed")
