"""GLIDE's text-conditional diffusion UNet (Nichol et al. 2022), the network of unCLIP's 64×64 decoder (Ramesh et
al. 2022, Appendix C: "the 3.5 billion parameter GLIDE model"), with unCLIP's two additions for the CLIP image
embedding. It predicts ε and, with `out_chans = 2 · in_chans`, the interpolation v of the learned variance
(Improved DDPM; objectives/diffusion.py).

The UNet is ADM's (Dhariwal & Nichol 2021, "ADMNet" in unCLIP's appendix):
- Residual blocks with scale-shift conditioning: GroupNorm → SiLU → 3×3 conv; the time embedding → SiLU → Dense
  to (scale, shift); GroupNorm(h) · (1 + scale) + shift → SiLU → dropout → 3×3 conv (zero init); plus the input
  (a 1×1 conv when the width changes).
- BigGAN-style resampling: the block between levels is a residual block whose input and hidden map are average-
  pooled (down) or nearest-upsampled (up) after its first GroupNorm → SiLU.
- Multi-head attention of `head_channels` channels a head at the levels in `attn_levels`, and in the middle; its
  keys and values also come from context tokens through their own projections (GLIDE's `encoder_kv`), placed
  before the image's. No mask: padding is handled by the text encoder's learned padding embeddings, as GLIDE.
- The time embedding: sinusoids in [cos, sin] order, Dense(4·ch) → SiLU → Dense(4·ch). GroupNorm(32), ε 1e-5.

The text encoder (GLIDE's): token + position embeddings, positions past the caption replaced by a learned
padding embedding per position, an unmasked pre-LN Transformer (exact GELU, LayerNorm ε 1e-5), a final
LayerNorm. Its last position's output, projected to 4·ch, is added to the time embedding; the whole sequence is
the attention layers' context.

unCLIP (§2.1): the CLIP image embedding is projected and added to the time embedding, and projected into four
extra context tokens, concatenated before the text encoder's outputs. A dropped embedding (classifier-free
guidance) is the zero vector; a dropped caption is an all-padding one.

Parameter names follow diffusers' `UNet2DConditionModel` with the ADM blocks (`ResnetDownsampleBlock2D`,
`SimpleCrossAttnDownBlock2D`, ...; the layout of Karlo's unCLIP decoder): tests/test_glide.py proves the UNet
equal to it on random weights. `glide_unclip_paper` is the configuration of unCLIP's Table 3 (channels 512, 3
blocks a level, multipliers 1, 2, 3, 4, 64-channel heads, attention at 32, 16 and 8 px, a text encoder of context
256, width 2048, depth 24, 32 heads, 50,257 BPE tokens as GLIDE's): 3,565,434,374 parameters, the paper's "3.5B";
without unCLIP's two projections it is 3,554,938,374, the count of the GLIDE code's `Text2ImUNet` at that
configuration. NHWC.
"""

import jax
import jax.numpy as jnp
from flax import nnx

from papers_jax.models import conv_flops
from papers_jax.models.ddpm_unet import XAVIER, XAVIER_CONV, ZEROS, TimestepEmbedding, swish, timestep_embedding
from papers_jax.models.registry import register
from papers_jax.models.vit import Block
from papers_jax.nn import LayerNorm, param
from papers_jax.nn.attention import dot_product_attention
from papers_jax.nn.conv import Conv
from papers_jax.nn.drop import Dropout
from papers_jax.nn.linear import Dense
from papers_jax.nn.norms import GroupNorm

NUM_CLIP_TOKENS = 4


def _resample(x, mode: str):
  b, h, w, c = x.shape
  if mode == "down":
    return x.reshape(b, h // 2, 2, w // 2, 2, c).mean(axis=(2, 4))
  if mode == "up":
    return jnp.repeat(jnp.repeat(x, 2, axis=1), 2, axis=2)
  return x


class ResBlock(nnx.Module):
  """ADM's residual block with scale-shift conditioning; `resample` "down" / "up" makes it a BigGAN resampling
  block (diffusers' `ResnetBlock2D(time_embedding_norm="scale_shift", down=/up=)`)."""

  def __init__(self, in_ch: int, out_ch: int, temb_ch: int, *, dropout: float, num_groups: int, eps: float,
               resample: str = "", dtype=None, param_dtype=jnp.float32, rngs: nnx.Rngs):
    kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
    conv = dict(use_bias=True, kernel_init=XAVIER_CONV, **kw)
    self.resample = resample
    self.norm1 = GroupNorm(in_ch, num_groups=num_groups, eps=eps, **kw)
    self.conv1 = Conv(in_ch, out_ch, 3, **conv)
    self.time_emb_proj = Dense(temb_ch, 2 * out_ch, axes=("embed", "conv_out"), kernel_init=XAVIER, **kw)
    self.norm2 = GroupNorm(out_ch, num_groups=num_groups, eps=eps, **kw)
    self.dropout = Dropout(dropout)
    self.conv2 = Conv(out_ch, out_ch, 3, **(conv | dict(kernel_init=ZEROS)))
    self.conv_shortcut = Conv(in_ch, out_ch, 1, **conv) if in_ch != out_ch else None

  def __call__(self, x, temb, *, rngs=None):
    h = self.conv1(_resample(swish(self.norm1(x)), self.resample))
    x = _resample(x, self.resample)
    scale, shift = jnp.split(self.time_emb_proj(swish(temb))[:, None, None, :].astype(h.dtype), 2, axis=-1)
    h = swish(self.norm2(h) * (1.0 + scale) + shift)
    h = self.conv2(self.dropout(h, deterministic=rngs is None, rngs=rngs))
    return (x if self.conv_shortcut is None else self.conv_shortcut(x)) + h


class AttentionBlock(nnx.Module):
  """x + proj(multi-head attention of GroupNorm(x)'s positions over [context tokens; positions]), heads of
  `head_channels`; the context (B, N, context_dim) has its own key / value projections (GLIDE's encoder_kv)."""

  def __init__(self, ch: int, *, head_channels: int, context_dim: int, num_groups: int, eps: float, dtype=None,
               param_dtype=jnp.float32, rngs: nnx.Rngs):
    if ch % head_channels:
      raise ValueError(f"attention width {ch} is not a multiple of head_channels={head_channels}")
    kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
    self.num_heads = ch // head_channels
    self.group_norm = GroupNorm(ch, num_groups=num_groups, eps=eps, **kw)
    dense = lambda i, init=XAVIER: Dense(i, ch, axes=("embed", "mlp"), kernel_init=init, **kw)  # noqa: E731
    self.to_q, self.to_k, self.to_v = dense(ch), dense(ch), dense(ch)
    self.add_k_proj = dense(context_dim) if context_dim else None
    self.add_v_proj = dense(context_dim) if context_dim else None
    self.to_out = Dense(ch, ch, axes=("mlp", "embed"), kernel_init=ZEROS, **kw)

  def __call__(self, x, context=None):
    b, hh, ww, c = x.shape
    heads = lambda y: y.reshape(b, -1, self.num_heads, c // self.num_heads)  # noqa: E731
    h = self.group_norm(x).reshape(b, hh * ww, c)
    k, v = self.to_k(h), self.to_v(h)
    if self.add_k_proj is not None:
      if context is None:
        raise ValueError("this attention block was built with context_dim > 0: pass its context tokens")
      ctx = context.astype(h.dtype)
      k = jnp.concatenate([self.add_k_proj(ctx), k], axis=1)
      v = jnp.concatenate([self.add_v_proj(ctx), v], axis=1)
    y = dot_product_attention(heads(self.to_q(h)), heads(k), heads(v))
    return x + self.to_out(y.reshape(b, hh, ww, c))


class DownBlock(nnx.Module):
  def __init__(self, in_ch, out_ch, temb_ch, *, num_res_blocks, attention, downsample, block_kw, attn_kw, rngs):
    self.resnets = nnx.List([ResBlock(in_ch if i == 0 else out_ch, out_ch, temb_ch, rngs=rngs, **block_kw)
                             for i in range(num_res_blocks)])
    self.attentions = nnx.List([AttentionBlock(out_ch, rngs=rngs, **attn_kw) for _ in range(num_res_blocks)]
                               ) if attention else None
    self.downsampler = ResBlock(out_ch, out_ch, temb_ch, resample="down", rngs=rngs, **block_kw
                                ) if downsample else None

  def __call__(self, x, temb, context, *, rngs=None):
    skips = []
    for i, resnet in enumerate(self.resnets):
      x = resnet(x, temb, rngs=rngs)
      if self.attentions is not None:
        x = self.attentions[i](x, context)
      skips.append(x)
    if self.downsampler is not None:
      x = self.downsampler(x, temb, rngs=rngs)
      skips.append(x)
    return x, skips


class MidBlock(nnx.Module):
  def __init__(self, ch, temb_ch, *, block_kw, attn_kw, rngs):
    self.resnets = nnx.List([ResBlock(ch, ch, temb_ch, rngs=rngs, **block_kw) for _ in range(2)])
    self.attentions = nnx.List([AttentionBlock(ch, rngs=rngs, **attn_kw)])

  def __call__(self, x, temb, context, *, rngs=None):
    x = self.resnets[0](x, temb, rngs=rngs)
    return self.resnets[1](self.attentions[0](x, context), temb, rngs=rngs)


class UpBlock(nnx.Module):
  def __init__(self, prev_ch, out_ch, skip_chs, temb_ch, *, attention, upsample, block_kw, attn_kw, rngs):
    self.resnets = nnx.List([ResBlock((prev_ch if i == 0 else out_ch) + s, out_ch, temb_ch, rngs=rngs, **block_kw)
                             for i, s in enumerate(skip_chs)])
    self.attentions = nnx.List([AttentionBlock(out_ch, rngs=rngs, **attn_kw) for _ in skip_chs]
                               ) if attention else None
    self.upsampler = ResBlock(out_ch, out_ch, temb_ch, resample="up", rngs=rngs, **block_kw) if upsample else None

  def __call__(self, x, skips, temb, context, *, rngs=None):
    for i, resnet in enumerate(self.resnets):
      x = resnet(jnp.concatenate([x, skips.pop()], axis=-1), temb, rngs=rngs)
      if self.attentions is not None:
        x = self.attentions[i](x, context)
    return x if self.upsampler is None else self.upsampler(x, temb, rngs=rngs)


class ADMUNet(nnx.Module):
  """ε_θ (and v) of x_t: `ch` the base width, `ch_mult` a multiplier per level (level i at 1/2^i of the input
  size), `num_res_blocks` a level, attention at `attn_levels` (and in the middle) with `head_channels`-wide heads
  attending to context tokens of width `context_dim` (0: self-attention only)."""

  def __init__(self, *, in_chans: int = 3, out_chans: int = 6, ch: int = 192, ch_mult=(1, 2, 3, 4),
               num_res_blocks: int = 3, attn_levels=(1, 2, 3), head_channels: int = 64, context_dim: int = 0,
               dropout: float = 0.1, num_groups: int = 32, eps: float = 1e-5, dtype=None, param_dtype=jnp.float32,
               rngs: nnx.Rngs):
    self.ch, self.ch_mult, self.in_chans, self.out_chans = ch, tuple(ch_mult), in_chans, out_chans
    kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
    conv = dict(use_bias=True, kernel_init=XAVIER_CONV, **kw)
    block_kw = dict(dropout=dropout, num_groups=num_groups, eps=eps, dtype=dtype, param_dtype=param_dtype)
    attn_kw = dict(head_channels=head_channels, context_dim=context_dim, num_groups=num_groups, eps=eps,
                   dtype=dtype, param_dtype=param_dtype)
    temb_ch = 4 * ch
    self.time_embedding = TimestepEmbedding(ch, temb_ch, **kw)
    widths = [ch * m for m in self.ch_mult]
    self.conv_in = Conv(in_chans, widths[0], 3, **conv)
    last = len(widths) - 1
    skip_chs, prev = [widths[0]], widths[0]
    down = []
    for level, width in enumerate(widths):
      down.append(DownBlock(prev, width, temb_ch, num_res_blocks=num_res_blocks, attention=level in attn_levels,
                            downsample=level != last, block_kw=block_kw, attn_kw=attn_kw, rngs=rngs))
      skip_chs += [width] * num_res_blocks + ([width] if level != last else [])
      prev = width
    self.down_blocks = nnx.List(down)
    self.mid_block = MidBlock(prev, temb_ch, block_kw=block_kw, attn_kw=attn_kw, rngs=rngs)
    up = []
    for level in reversed(range(len(widths))):
      skips = [skip_chs.pop() for _ in range(num_res_blocks + 1)]
      up.append(UpBlock(prev, widths[level], skips, temb_ch, attention=level in attn_levels, upsample=level != 0,
                        block_kw=block_kw, attn_kw=attn_kw, rngs=rngs))
      prev = widths[level]
    self.up_blocks = nnx.List(up)
    self.conv_norm_out = GroupNorm(prev, num_groups=num_groups, eps=eps, **kw)
    self.conv_out = Conv(prev, out_chans, 3, **(conv | dict(kernel_init=ZEROS)))

  def __call__(self, x, t, *, emb=None, context=None, train: bool = False, rngs: nnx.Rngs | None = None):
    """x (B, H, W, in_chans), t (B,) or scalar steps; `emb` (B, 4·ch) is added to the time embedding, `context`
    (B, N, context_dim) goes to every attention block. Returns (B, H, W, out_chans)."""
    down = 2 ** (len(self.ch_mult) - 1)
    if x.shape[1] % down or x.shape[2] % down:
      raise ValueError(f"ADMUNet with {len(self.ch_mult)} levels needs image sides divisible by {down}, "
                       f"got {x.shape[1:3]}")
    rngs = rngs if train else None
    t = jnp.broadcast_to(jnp.asarray(t), (x.shape[0],))
    temb = self.time_embedding(timestep_embedding(t, self.ch, flip_sin_to_cos=True, freq_shift=0
                                                  ).astype(self.conv_in.dtype or x.dtype))
    if emb is not None:
      temb = temb + emb.astype(temb.dtype)
    h = self.conv_in(x)
    skips = [h]
    for block in self.down_blocks:
      h, s = block(h, temb, context, rngs=rngs)
      skips += s
    h = self.mid_block(h, temb, context, rngs=rngs)
    for block in self.up_blocks:
      h = block(h, skips, temb, context, rngs=rngs)
    return self.conv_out(swish(self.conv_norm_out(h)))


class TextEncoder(nnx.Module):
  """GLIDE's caption encoder: (B, context) token ids and a (B, context) mask (False: padding) → the sequence
  (B, context, width) after the final LayerNorm."""

  def __init__(self, *, vocab_size: int, context: int, width: int, depth: int, num_heads: int, dtype=None,
               param_dtype=jnp.float32, rngs: nnx.Rngs):
    kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
    self.context, self.dtype = context, dtype
    init = nnx.initializers.normal(0.02)
    self.token_embedding = param(rngs, init, (vocab_size, width), param_dtype, ("vocab", "embed"))
    self.positional_embedding = param(rngs, nnx.initializers.normal(0.01), (context, width), param_dtype,
                                      (None, "embed"))
    self.padding_embedding = param(rngs, nnx.initializers.normal(0.01), (context, width), param_dtype,
                                   (None, "embed"))
    self.blocks = nnx.List([Block(width, num_heads, mlp_ratio=4.0, qkv_bias=True, norm_eps=1e-5, act="gelu", **kw)
                            for _ in range(depth)])
    self.final_ln = LayerNorm(width, eps=1e-5, **kw)

  def __call__(self, tokens, mask, *, train: bool = False, rngs=None):
    if tokens.shape[1] != self.context:
      raise ValueError(f"the text encoder takes {self.context} tokens a caption, got {tokens.shape[1]}")
    x = jnp.take(self.token_embedding[...], tokens, axis=0) + self.positional_embedding[...]
    x = jnp.where(mask[..., None], x, self.padding_embedding[...][None])
    if self.dtype is not None:
      x = x.astype(self.dtype)
    for block in self.blocks:
      x = block(x, deterministic=not train, rngs=rngs)
    return self.final_ln(x)


class UnCLIPDecoder(nnx.Module):
  """ε_θ(x_t, t, z_i, caption) (and v): GLIDE's UNet and text encoder with unCLIP's CLIP-embedding conditioning.
  `embed_dim` the CLIP embedding's width; `text` the TextEncoder's keyword arguments (its width is the context
  tokens'); `unet` ADMUNet's."""

  def __init__(self, *, embed_dim: int, text: dict, unet: dict, num_clip_tokens: int = NUM_CLIP_TOKENS, dtype=None,
               param_dtype=jnp.float32, rngs: nnx.Rngs):
    kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
    width = int(text["width"])
    self.num_clip_tokens, self.width = num_clip_tokens, width
    self.text_encoder = TextEncoder(**text, **kw)
    self.unet = ADMUNet(context_dim=width, **unet, **kw)
    temb_ch = 4 * self.unet.ch
    self.transformer_proj = Dense(width, temb_ch, axes=("embed", None), kernel_init=XAVIER, **kw)
    self.clip_to_time = Dense(embed_dim, temb_ch, axes=(None, "embed"), kernel_init=XAVIER, **kw)
    self.clip_to_tokens = Dense(embed_dim, num_clip_tokens * width, axes=(None, "embed"), kernel_init=XAVIER, **kw)

  @property
  def in_chans(self) -> int:
    return self.unet.in_chans

  @property
  def context_length(self) -> int:
    return self.text_encoder.context

  def __call__(self, x, t, clip_embedding, tokens, token_mask, *, train: bool = False, rngs=None):
    """x (B, H, W, C) noised images, t (B,), clip_embedding (B, D) (zeros: dropped), tokens (B, context) int,
    token_mask (B, context) bool (all False: the caption dropped). Returns (B, H, W, out_chans)."""
    b = x.shape[0]
    text = self.text_encoder(tokens, token_mask.astype(bool), train=train, rngs=rngs)
    clip_tokens = self.clip_to_tokens(clip_embedding).reshape(b, self.num_clip_tokens, self.width)
    emb = self.transformer_proj(text[:, -1]) + self.clip_to_time(clip_embedding)
    context = jnp.concatenate([clip_tokens.astype(text.dtype), text], axis=1)
    return self.unet(x, t, emb=emb, context=context, train=train, rngs=rngs)


# unCLIP's Table 3, the 64×64 decoder; the CLIP embedding's width (ViT-H/16's) is not in the paper: 1024 taken.
register("glide_unclip_paper", UnCLIPDecoder, embed_dim=1024,
         text=dict(vocab_size=50257, context=256, width=2048, depth=24, num_heads=32),
         unet=dict(in_chans=3, out_chans=6, ch=512, ch_mult=(1, 2, 3, 4), num_res_blocks=3, attn_levels=(1, 2, 3),
                   head_channels=64, dropout=0.1))
# GLIDE's released base model (glide-text2im's defaults), 385,030,726 parameters without unCLIP's projections.
register("glide_unclip_base", UnCLIPDecoder, embed_dim=1024,
         text=dict(vocab_size=50257, context=128, width=512, depth=16, num_heads=8),
         unet=dict(in_chans=3, out_chans=6, ch=192, ch_mult=(1, 2, 3, 4), num_res_blocks=3, attn_levels=(1, 2, 3),
                   head_channels=64, dropout=0.1))
# The scenes demo's decoder (configs/unclip/scenes.py sets the text encoder's vocabulary and context).
register("unclip_decoder", UnCLIPDecoder, embed_dim=64,
         text=dict(vocab_size=64, context=24, width=64, depth=2, num_heads=4),
         unet=dict(in_chans=3, out_chans=6, ch=32, ch_mult=(1, 2), num_res_blocks=1, attn_levels=(1,),
                   head_channels=32, num_groups=8, dropout=0.1))

EMBEDDINGS = ("token_embedding",)


def forward_flops(model, img_size: int = 64, *, count_padding: bool = True) -> float:
  """FLOPs of one call per example: the decoder on one img_size × img_size image and one caption (the text
  encoder included), or the UNet alone."""
  spec = jax.ShapeDtypeStruct
  t = spec((1,), jnp.int32)
  if isinstance(model, ADMUNet):
    return conv_flops.traced_flops(lambda m, x, t: m(x, t), model, conv_flops.images(img_size, model.in_chans), t,
                                   count_padding=count_padding)
  d, n = model.clip_to_time.in_features[0], model.context_length
  return conv_flops.traced_flops(lambda m, x, t, e, tok, mask: m(x, t, e, tok, mask), model,
                                 conv_flops.images(img_size, model.in_chans), t, spec((1, d), jnp.float32),
                                 spec((1, n), jnp.int32), spec((1, n), jnp.bool_), count_padding=count_padding)
