"""BLIP (Li, Li, Xiong and Hoi, ICML 2022, "BLIP: Bootstrapping Language-Image Pre-training for Unified
Vision-Language Understanding and Generation"): the multimodal mixture of encoder-decoder (MED).

  image encoder        a ViT (models/vit.py) whose [CLS] output is the image's global feature;
  unimodal text enc.   a BERT-style post-LN encoder on "[CLS] text": bidirectional self-attention and
                       FFN only; its [CLS] output is the text's global feature (ITC);
  image-grounded enc.  the same layers with a cross-attention after each self-attention, over the image
                       tokens, on "[ENC] text"; its [ENC] output goes to the ITM head (2 logits);
  image-grounded dec.  causal self-attention on "[DEC] text", the same cross-attention and FFN, and an
                       LM head (dense → GELU → LayerNorm → logits against the tied word embeddings + bias).
Parameter sharing as the paper (§3.1, and `tie_encoder_decoder_weights(..., '/attention')` of the
official code): encoder and decoder share the embeddings, the cross-attention and the FFN of every
layer; only the self-attention (with its output dense and LayerNorm) is the decoder's own
(`dec_self_attn`). ITC projects both [CLS] features to `embed_dim` (vision_proj, text_proj), and the
temperature `temp` is learned (init 0.07, clipped to [0.001, 0.5] by the objective).

With `momentum=True` the model also holds the momentum encoders of ITC (visual_m, vision_proj_m,
text_m, text_proj_m): copies whose weights are `Momentum` variables (model state, not params), which
the task's `post_update` moves by EMA (0.995) after each step. The momentum text model is the whole
shared text stack; ITC uses its unimodal path only.

Generation: `init_decode_cache` projects the memory (image tokens, or an encoded question for VQA)
into every layer's cross-attention keys and values once, and holds a KV cache per decoder
self-attention; `decode_step(tokens, cache)` feeds t tokens and returns their next-token logits,
the `step_fn` of decoding.py (nucleus sampling) and beam_search.py.

HF transformers' `BlipForImageTextRetrieval` (vision_model, text_encoder, vision_proj, text_proj,
itm_head) and `BlipForConditionalGeneration` (vision_model, text_decoder) load through
convert/hf_blip.py. HF keeps the encoder and decoder apart; a retrieval checkpoint fills everything
but the decoder's own self-attention and LM head, a captioning one everything but the encoder's
self-attention, projections and ITM head.

Sizes (`blip_base`): ViT-B/16 at 224 (the pre-training resolution; fine-tuning uses 384), BERT-base
text layers with BERT-base-uncased's vocabulary plus [DEC] and [ENC] (30,524), embed_dim 256.
`blip_tiny` is a demo size. Options for training from random weights, all off by default (the paper's):
`cross_attention_qk_std` initialises the cross-attention's query and key kernels at that std instead of
`initializer_range` (at width 64 and std 0.02 the attention logits are about 0.03, so every word takes the same mean
of the image and ITM has no caption × image interaction to start from); `cross_attention_vo_std` does the same for
its value and output kernels (at 0.02 the cross-attention adds little to the text; ALBEF's demo needed both);
`itc_pool="mean"` projects the mean of the tokens for ITC instead of the [CLS] (ALBEF's demo does the same), and
`itm_pool="mean"` feeds the ITM head the mean of the fused tokens instead of the [ENC] output.
Choices: text LayerNorm eps 1e-12 (BERT's), image LayerNorm eps 1e-6
(the official timm ViT's; HF's BlipVisionConfig defaults to 1e-5).
"""

import jax
import jax.numpy as jnp
from flax import nnx

from papers_jax.core import sharding
from papers_jax.errors import ConfigError
from papers_jax.models.albef import SCENES_MEAN, SCENES_STD, pool_tokens
from papers_jax.models.bert import MaskedLMHead, embedding_table, lookup, truncated_normal
from papers_jax.models.registry import OPENAI_CLIP_MEAN, OPENAI_CLIP_STD, Preprocessing, register
from papers_jax.models.vit import BlockOptions, VisionTransformer
from papers_jax.nn import Attention, Dropout, LayerNorm, Mlp, param
from papers_jax.nn.attention import CrossAttention, KVCache
from papers_jax.nn.frozen import params_as
from papers_jax.nn.linear import Dense
from papers_jax.nn.mlp import ACTIVATIONS

MODES = ("text", "multimodal", "decoder")


class Momentum(nnx.Variable):
  """Weights of a momentum encoder: they follow the online weights by EMA, never by gradient."""


def as_momentum(module: nnx.Module) -> nnx.Module:
  """Turns every Param of `module` into a Momentum variable (same value and metadata) and switches its
  dropout off (the momentum features are targets)."""
  return params_as(module, Momentum, deterministic=True)


class TextEmbeddings(nnx.Module):
  """word + learned position embeddings → LayerNorm → dropout (BERT's without token types)."""

  def __init__(self, vocab_size: int, hidden_size: int, max_positions: int, *, dropout_rate: float, eps: float,
               init, dtype=None, param_dtype=jnp.float32, rngs: nnx.Rngs):
    self.max_positions, self.dtype = max_positions, dtype
    self.word_embeddings = embedding_table(rngs, vocab_size, hidden_size, init, param_dtype, "vocab")
    self.position_embeddings = embedding_table(rngs, max_positions, hidden_size, init, param_dtype, None)
    self.norm = LayerNorm(hidden_size, eps=eps, dtype=dtype, param_dtype=param_dtype, rngs=rngs)
    self.dropout = Dropout(dropout_rate)

  def __call__(self, input_ids, offset=0, *, deterministic=None, rngs=None):
    """ids (B, t) at positions offset … offset + t − 1 (offset may be traced: a decode cache's index)."""
    t = input_ids.shape[1]
    if t > self.max_positions:
      raise ValueError(f"{t} text tokens exceed max_position_embeddings={self.max_positions}")
    dtype = self.dtype or self.word_embeddings[...].dtype
    positions = jax.lax.dynamic_slice_in_dim(self.position_embeddings[...], offset, t, axis=0)
    x = self.norm(lookup(self.word_embeddings, input_ids, dtype) + positions.astype(dtype))
    return self.dropout(x, deterministic=deterministic, rngs=rngs)


class TextLayer(nnx.Module):
  """One MED layer: the encoder's and the decoder's own self-attention, then (with a memory) the shared
  cross-attention, then the shared FFN; each sub-layer post-LN: x = LN(x + Dropout(f(x)))."""

  def __init__(self, hidden_size: int, num_heads: int, intermediate_size: int, *, memory_width: int, act: str,
               dropout_rate: float, attention_dropout_rate: float, eps: float, init, cross_qk_init=None,
               cross_vo_init=None, attention_impl=None, dtype=None, param_dtype=jnp.float32, rngs: nnx.Rngs):
    kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
    attn = dict(attn_drop=attention_dropout_rate, proj_drop=dropout_rate, implementation=attention_impl,
                kernel_init=init)
    self.self_attn = Attention(hidden_size, num_heads, **attn, **kw)
    self.self_attn_norm = LayerNorm(hidden_size, eps=eps, **kw)
    self.dec_self_attn = Attention(hidden_size, num_heads, **attn, **kw)
    self.dec_self_attn_norm = LayerNorm(hidden_size, eps=eps, **kw)
    self.cross_attn = CrossAttention(hidden_size, num_heads, kv_dim=memory_width, **attn, **kw)
    q, kv, out = self.cross_attn.q.kernel, self.cross_attn.kv.kernel, self.cross_attn.proj.kernel
    if cross_qk_init is not None:  # the query and key kernels
      q[...] = cross_qk_init(rngs.params(), q.shape, param_dtype)
      kv[...] = kv[...].at[:, 0].set(cross_qk_init(rngs.params(), kv[:, 0].shape, param_dtype))
    if cross_vo_init is not None:  # the value and output kernels
      kv[...] = kv[...].at[:, 1].set(cross_vo_init(rngs.params(), kv[:, 1].shape, param_dtype))
      out[...] = cross_vo_init(rngs.params(), out.shape, param_dtype)
    self.cross_norm = LayerNorm(hidden_size, eps=eps, **kw)
    self.mlp = Mlp(hidden_size, intermediate_size, act=act, kernel_init=init, bias_init=nnx.initializers.zeros, **kw)
    self.mlp_drop = Dropout(dropout_rate)
    self.mlp_norm = LayerNorm(hidden_size, eps=eps, **kw)

  def __call__(self, x, *, decoder: bool, mask=None, memory_kv=None, memory_mask=None, cache=None,
               deterministic=None, rngs=None):
    """Returns (x, cache). `mask` (B or 1, 1, T or 1, T) padding/causal mask of the self-attention;
    the decoder attends causally; `cache` (decoder only) appends x's positions to a KVCache."""
    kw = dict(deterministic=deterministic, rngs=rngs)
    attn, norm = (self.dec_self_attn, self.dec_self_attn_norm) if decoder else (self.self_attn, self.self_attn_norm)
    if cache is not None:
      y, cache = attn(x, mask=mask, cache=cache, **kw)
    else:
      y = attn(x, mask=mask, is_causal=decoder, **kw)
    x = norm(x + y)
    if memory_kv is not None:
      x = self.cross_norm(x + self.cross_attn(x, kv=memory_kv, mask=memory_mask, **kw))
    x = self.mlp_norm(x + self.mlp_drop(self.mlp(x, **kw), **kw))
    return sharding.constrain(x, ("act_batch", "act_len", "act_emb")), cache


class TextModel(nnx.Module):
  """Embeddings and the MED layers; `mode` picks the path (MODES)."""

  def __init__(self, *, vocab_size: int, hidden_size: int, num_layers: int, num_heads: int, intermediate_size: int,
               max_position_embeddings: int, memory_width: int, hidden_act: str, dropout_rate: float,
               attention_dropout_rate: float, layer_norm_eps: float, init, cross_qk_init=None, cross_vo_init=None,
               attention_impl=None, dtype=None, param_dtype=jnp.float32, rngs: nnx.Rngs):
    kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
    self.embeddings = TextEmbeddings(vocab_size, hidden_size, max_position_embeddings, dropout_rate=dropout_rate,
                                     eps=layer_norm_eps, init=init, **kw)
    self.layers = nnx.List([
        TextLayer(hidden_size, num_heads, intermediate_size, memory_width=memory_width, act=hidden_act,
                  dropout_rate=dropout_rate, attention_dropout_rate=attention_dropout_rate, eps=layer_norm_eps,
                  init=init, cross_qk_init=cross_qk_init, cross_vo_init=cross_vo_init, attention_impl=attention_impl,
                  **kw)
        for _ in range(num_layers)])

  def memory_kv(self, memory):
    """Every layer's cross-attention keys and values of `memory` (B, M, memory_width)."""
    return [layer.cross_attn.project_memory(memory) for layer in self.layers]

  def __call__(self, input_ids, attention_mask=None, *, mode: str = "text", memory=None, memory_kv=None,
               memory_mask=None, train: bool = False, rngs=None):
    """(B, T) ids → (B, T, D). "multimodal" and "decoder" need `memory` (or its `memory_kv`);
    `memory_mask` (B, M) marks its real tokens (None: all)."""
    if mode not in MODES:
      raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    kw = dict(deterministic=not train, rngs=rngs)
    x = sharding.constrain(self.embeddings(input_ids, **kw), ("act_batch", "act_len", "act_emb"))
    mask = None if attention_mask is None else attention_mask.astype(bool)[:, None, None, :]
    if mode != "text" and memory_kv is None:
      if memory is None:
        raise ValueError(f"mode {mode!r} needs memory= (image tokens or an encoded question)")
      memory_kv = self.memory_kv(memory)
    cross_mask = None if memory_mask is None else memory_mask.astype(bool)[:, None, None, :]
    for i, layer in enumerate(self.layers):
      x, _ = layer(x, decoder=mode == "decoder", mask=mask, memory_kv=None if mode == "text" else memory_kv[i],
                   memory_mask=cross_mask, **kw)
    return x


class BLIP(nnx.Module):
  """The MED with ITC projections, ITM and LM heads (see the module docstring)."""

  def __init__(self, *, img_size: int = 224, patch_size: int = 16, in_chans: int = 3, vision_width: int = 768,
               vision_depth: int = 12, vision_heads: int = 12, vision_mlp_ratio: float = 4.0,
               vision_eps: float = 1e-6, drop_path_rate: float = 0.0, vocab_size: int = 30524,
               hidden_size: int = 768, num_layers: int = 12, num_heads: int = 12, intermediate_size: int = 3072,
               max_position_embeddings: int = 512, hidden_act: str = "gelu", dropout_rate: float = 0.1,
               attention_dropout_rate: float = 0.1, layer_norm_eps: float = 1e-12, initializer_range: float = 0.02,
               embed_dim: int = 256, temp: float = 0.07, cross_attention_qk_std: float | None = None,
               cross_attention_vo_std: float | None = None, itc_pool: str = "cls", itm_pool: str = "cls",
               momentum: bool = False,
               attention_impl: str | None = None, dtype=None, param_dtype=jnp.float32, rngs: nnx.Rngs):
    if hidden_act not in ACTIVATIONS:
      raise ConfigError(f"hidden_act must be one of {sorted(ACTIVATIONS)}, got {hidden_act!r}")
    if hidden_size % num_heads or vision_width % vision_heads:
      raise ConfigError(f"widths ({vision_width}, {hidden_size}) must be divisible by their heads "
                        f"({vision_heads}, {num_heads})")
    for name, pool in (("itc_pool", itc_pool), ("itm_pool", itm_pool)):
      if pool not in ("cls", "mean"):
        raise ConfigError(f"{name} must be 'cls' (the paper's) or 'mean', got {pool!r}")
    self.vocab_size, self.hidden_size, self.vision_width = vocab_size, hidden_size, vision_width
    self.itc_pool, self.itm_pool = itc_pool, itm_pool
    self.max_text_len = max_position_embeddings
    self.dtype = dtype
    init = truncated_normal(initializer_range)
    kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
    self.visual = VisionTransformer(
        img_size=img_size, patch_size=patch_size, in_chans=in_chans, num_classes=0, global_pool="token",
        embed_dim=vision_width, depth=vision_depth, num_heads=vision_heads, drop_path_rate=drop_path_rate,
        block=BlockOptions(mlp_ratio=vision_mlp_ratio, norm_eps=vision_eps, attention_impl=attention_impl), **kw)
    self.text = TextModel(
        vocab_size=vocab_size, hidden_size=hidden_size, num_layers=num_layers, num_heads=num_heads,
        intermediate_size=intermediate_size, max_position_embeddings=max_position_embeddings,
        memory_width=vision_width, hidden_act=hidden_act, dropout_rate=dropout_rate,
        attention_dropout_rate=attention_dropout_rate, layer_norm_eps=layer_norm_eps, init=init,
        cross_qk_init=None if cross_attention_qk_std is None else truncated_normal(cross_attention_qk_std),
        cross_vo_init=None if cross_attention_vo_std is None else truncated_normal(cross_attention_vo_std),
        attention_impl=attention_impl, **kw)
    self.vision_proj = Dense(vision_width, embed_dim, axes=("embed", None), kernel_init=init, **kw)
    self.text_proj = Dense(hidden_size, embed_dim, axes=("embed", None), kernel_init=init, **kw)
    self.itm_head = Dense(hidden_size, 2, axes=("embed", "classes"), kernel_init=init, **kw)
    self.lm_head = MaskedLMHead(hidden_size, vocab_size, act=hidden_act, eps=layer_norm_eps, init=init, **kw)
    self.temp = param(rngs, nnx.initializers.constant(temp), (), param_dtype, ())
    if momentum:
      self.visual_m = as_momentum(nnx.clone(self.visual))
      self.vision_proj_m = as_momentum(nnx.clone(self.vision_proj))
      self.text_m = as_momentum(nnx.clone(self.text))
      self.text_proj_m = as_momentum(nnx.clone(self.text_proj))
    else:
      self.visual_m = self.vision_proj_m = self.text_m = self.text_proj_m = None

  # ------------------------------------------------------------------ encoders
  def encode_image(self, images, *, train: bool = False, rngs=None, momentum: bool = False):
    """(B, H, W, C) normalised images → image tokens (B, 1 + patches, vision_width), [CLS] first."""
    visual = self.visual_m if momentum else self.visual
    return visual.forward_features(images, deterministic=not train, rngs=rngs)

  def encode_text(self, input_ids, attention_mask=None, *, train: bool = False, rngs=None, momentum: bool = False):
    """Unimodal text encoder ("[CLS] text"): (B, T, hidden)."""
    text = self.text_m if momentum else self.text
    return text(input_ids, attention_mask, mode="text", train=train, rngs=rngs)

  def image_feature(self, image_embeds, *, momentum: bool = False):
    """L2-normalised projection of the image [CLS] (or the mean of its tokens) (B, embed_dim), float32."""
    proj = self.vision_proj_m if momentum else self.vision_proj
    return _normalize(proj(_pool(image_embeds, None, self.itc_pool)).astype(jnp.float32))

  def text_feature(self, text_embeds, attention_mask=None, *, momentum: bool = False):
    """The same for the text [CLS] (or the mean of the tokens that `attention_mask` marks)."""
    proj = self.text_proj_m if momentum else self.text_proj
    return _normalize(proj(_pool(text_embeds, attention_mask, self.itc_pool)).astype(jnp.float32))

  def encode_multimodal(self, input_ids, attention_mask, image_embeds, image_mask=None, *, train: bool = False,
                        rngs=None):
    """Image-grounded text encoder ("[ENC] text" with cross-attention to the image): (B, T, hidden)."""
    return self.text(input_ids, attention_mask, mode="multimodal", memory=image_embeds, memory_mask=image_mask,
                     train=train, rngs=rngs)

  def itm_logits(self, multimodal_embeds, attention_mask=None):
    """The ITM head on the [ENC] output (or the mean of the tokens `attention_mask` marks): (B, 2) float32."""
    return self.itm_head(_pool(multimodal_embeds, attention_mask, self.itm_pool)).astype(jnp.float32)

  def decoder_logits(self, input_ids, attention_mask, memory, memory_mask=None, *, train: bool = False, rngs=None):
    """Image-grounded text decoder ("[DEC] text", causal): next-token logits (B, T, vocab), float32."""
    x = self.text(input_ids, attention_mask, mode="decoder", memory=memory, memory_mask=memory_mask, train=train,
                  rngs=rngs)
    return self.lm_head(x, self.text.embeddings.word_embeddings[...])

  # ------------------------------------------------------------------ generation
  def init_decode_cache(self, memory, max_len: int, memory_mask=None) -> dict:
    """A decoding cache for memory (B, M, memory_width): each layer's projected memory keys and values,
    an empty KVCache of `max_len` positions per decoder self-attention, and the memory mask."""
    b = memory.shape[0]
    layers = self.text.layers
    heads, head_dim = layers[0].dec_self_attn.num_heads, layers[0].dec_self_attn.head_dim
    dtype = self.dtype or jnp.float32
    if memory_mask is None:
      memory_mask = jnp.ones(memory.shape[:2], bool)
    return dict(memory_kv=self.text.memory_kv(memory), memory_mask=memory_mask.astype(bool),
                self_kv=[KVCache.init(b, max_len, heads, head_dim, dtype) for _ in layers])

  def decode_step(self, tokens, cache: dict):
    """tokens (B, t) appended after the cached positions → (logits (B, t, vocab) float32, new cache)."""
    text = self.text
    offset = cache["self_kv"][0].index
    x = text.embeddings(tokens, offset, deterministic=True)
    cross_mask = cache["memory_mask"][:, None, None, :]
    new_kv = []
    for layer, kv, mem in zip(text.layers, cache["self_kv"], cache["memory_kv"]):
      x, kv = layer(x, decoder=True, memory_kv=mem, memory_mask=cross_mask, cache=kv, deterministic=True)
      new_kv.append(kv)
    logits = self.lm_head(x, text.embeddings.word_embeddings[...])
    return logits, dict(cache, self_kv=new_kv)

  def __call__(self, input_ids, images, attention_mask=None, *, train: bool = False, rngs=None):
    """Every path once on the same ids (for FLOP counting and smoke checks): {"itc": (B, B) image-text
    cosine similarities, "itm_logits" (B, 2), "lm_logits" (B, T, vocab)}."""
    image_embeds = self.encode_image(images, train=train, rngs=rngs)
    text_embeds = self.encode_text(input_ids, attention_mask, train=train, rngs=rngs)
    itc = self.image_feature(image_embeds) @ self.text_feature(text_embeds, attention_mask).T
    mm = self.encode_multimodal(input_ids, attention_mask, image_embeds, train=train, rngs=rngs)
    lm = self.decoder_logits(input_ids, attention_mask, image_embeds, train=train, rngs=rngs)
    return {"itc": itc, "itm_logits": self.itm_logits(mm, attention_mask), "lm_logits": lm}


def _pool(x, attention_mask, pool: str):
  """(B, T, D) → (B, D): the first token ("cls") or the mean of the tokens (those `attention_mask` marks)."""
  if pool == "cls":
    return x[:, 0]
  return x.mean(1) if attention_mask is None else pool_tokens(x, attention_mask, "mean")


def _normalize(x, eps: float = 1e-12):
  """torch's F.normalize: x / max(‖x‖, eps)."""
  return x / jnp.maximum(jnp.linalg.norm(x, axis=-1, keepdims=True), eps)


# BLIP base: ViT-B/16 and BERT-base text layers (the paper's Table 1 "ViT-B/16" rows); BERT-base-uncased's
# vocabulary plus [DEC] and [ENC]; OpenAI CLIP's normalisation (the official transforms').
register("blip_base", BLIP, img_size=224, patch_size=16, vision_width=768, vision_depth=12, vision_heads=12,
         hidden_size=768, num_layers=12, num_heads=12, intermediate_size=3072, vocab_size=30524, embed_dim=256,
         preprocessing=Preprocessing(224, OPENAI_CLIP_MEAN, OPENAI_CLIP_STD, crop_pct=1.0))
# A demo size for the 64×64 generated scenes (configs/blip/), normalised with their own mean and std.
register("blip_tiny", BLIP, img_size=64, patch_size=8, vision_width=64, vision_depth=2, vision_heads=4,
         hidden_size=64, num_layers=2, num_heads=4, intermediate_size=256, vocab_size=256,
         max_position_embeddings=40, embed_dim=64, dropout_rate=0.0, attention_dropout_rate=0.0,
         preprocessing=Preprocessing(64, SCENES_MEAN, SCENES_STD, crop_pct=1.0))


def forward_flops(model, text_len: int | None = None) -> float:
  """FLOPs of one `__call__` per example (the image encoder, the unimodal, image-grounded and decoder
  text passes, the heads; ITC's B×B similarities left out) with `text_len` tokens (default 32), counted
  on its jaxpr with the element-wise operations (models/conv_flops.py); works on an abstract model."""
  from papers_jax.models import conv_flops
  t = text_len or min(32, model.max_text_len)
  size = model.visual.patch_embed.img_size
  chans = model.visual.patch_embed.proj["kernel"].shape[2]
  graphdef, state = nnx.split(model)

  def fn(state, ids, images):
    return nnx.merge(graphdef, state)(ids, images)

  ids = jax.ShapeDtypeStruct((1, t), jnp.int32)
  images = jax.ShapeDtypeStruct((1, *size, chans), jnp.float32)
  jaxpr = jax.make_jaxpr(fn)(state, ids, images)
  return float(conv_flops.jaxpr_flops(jaxpr, elementwise=True))


# The embedding parameters (models.embedding_params): the word and position tables, the LM output bias,
# and the ViT's patch projection, position embedding and class token.
EMBEDDINGS = ("text.embeddings.word_embeddings", "text.embeddings.position_embeddings", "lm_head.bias",
              "visual.patch_embed.proj", "visual.pos_embed", "visual.cls_token")
