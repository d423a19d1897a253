"""ALBEF (Li et al., NeurIPS 2021, "Align before Fuse: Vision and Language Representation Learning with
Momentum Distillation").

Three encoders, named as the official code (salesforce/ALBEF, models/model_pretrain.py):
  visual_encoder  a ViT (models/vit.py: pre-norm blocks, LayerNorm eps 1e-6, final norm); its [CLS]
                  output is the image's global feature;
  text_encoder    BERT (models/bert.py) split in two: the first `text_layers` post-LN layers read the
                  caption alone (the text encoder), the last `fusion_layers` add cross-attention from the
                  text to the image tokens after each self-attention (the multimodal encoder): each
                  fusion layer is HF's `BertLayer` with `add_cross_attention`:
                    x = LN(x + SelfAttn(x)); x = LN(x + CrossAttn(x, image)); x = LN(x + FFN(x));
                  plus BERT's MLM head (dense → GELU → LayerNorm → decoder tied to the word embeddings);
  heads           vision_proj / text_proj: [CLS] → `embed_dim` (256) for ITC; itm_head: the fused [CLS]
                  → 2 logits (`itc_pool="mean"`, a departure for training from scratch, projects the
                  mean of the tokens instead of the [CLS] for ITC; `itm_pool="mean"` likewise feeds the
                  mean of the fused tokens to the ITM head); `temp`, the learnable ITC temperature
                  (init 0.07, used clipped to [0.001, 0.5] as the official code clamps it).
With `momentum=True` the model also holds the momentum (EMA) copies of the four encoders / projections
(`visual_encoder_m`, `text_encoder_m`, `vision_proj_m`, `text_proj_m`: the SSL teachers' `EMA` variables, not
params: they follow the online weights by EMA in the task's `post_update`, never by gradient), and with
`queue_size` > 0 the queues of momentum image and text features (`image_queue`, `text_queue`, (K, embed_dim),
initialised to random unit vectors as the official code) and their pointer. `step` counts the optimizer
steps for the distillation weight's warm-up.

    model = models.create("albef_base", rngs=nnx.Rngs(0))
    out = model(input_ids, images, attention_mask)   # {"image_feat", "text_feat", "fused", "itm_logits", "mlm_logits"}

Sizes: `albef_base` is the paper's model (§3.5): ViT-B/16 at 256 px and BERT-base-uncased (6 + 6 layers,
30,522 tokens); the paper gives "a BERT-base with 123.7M parameters and a ViT-B/16 with 85.8M parameters",
which tests/test_albef.py checks. `albef_tiny` is a demo model for the bundled scenes.
Initialisation: BERT's truncated normal (std 0.02) for the text side and the heads, ViT's for the image
side (the paper starts both from pre-trained weights: DeiT ImageNet-1k and BERT-base).
`cross_initializer_range` (default: `initializer_range`) is the std of the fusion layers' cross-attention
kernels (query, key, value, output); the scenes demo sets it to 1/√width (0.125 at width 64): with 0.02 at
width 64 the cross-attention starts uniform and adds about 1% to the text, so ITM has no caption × image
interaction to learn from (docs/vision_language.md).
"""

import jax
import jax.numpy as jnp
from flax import nnx

from papers_jax.core import sharding
from papers_jax.data import vqa_scenes
from papers_jax.errors import ConfigError
from papers_jax.models.bert import (BertEmbeddings, BertLayer, MaskedLMHead, apply_layers, gather_positions,
                                    truncated_normal)
from papers_jax.models.registry import Preprocessing, register
from papers_jax.models.vit import BlockOptions, VisionTransformer, block_flops, patch_embed_flops
from papers_jax.nn import Attention, Dropout, LayerNorm, Mlp, gradient_barrier, param
from papers_jax.nn.attention import CrossAttention
from papers_jax.nn.linear import Dense
from papers_jax.objectives.contrastive import l2_normalize
from papers_jax.objectives.memory import init_queue

# The official code's clamp of the temperature.
TEMPERATURE_RANGE = (0.001, 0.5)
MOMENTUM_ENCODERS = ("visual_encoder", "text_encoder", "vision_proj", "text_proj")


def pool_tokens(x, attention_mask, pool: str):
  """(B, T, D) → (B, D): the first token ("cls") or the mean over the real tokens ("mean")."""
  if pool == "cls":
    return x[:, 0]
  weights = attention_mask.astype(x.dtype)[..., None]
  return (x * weights).sum(1) / jnp.maximum(weights.sum(1), 1.0)


class QueueState(nnx.Variable):
  """The queues of momentum features and their pointer."""


class StepCounter(nnx.Variable):
  """The optimizer step, for the distillation weight's warm-up inside the loss."""


class FusionLayer(nnx.Module):
  """BERT layer with cross-attention to the image (HF BertLayer with add_cross_attention=True)."""

  def __init__(self, hidden_size: int, num_heads: int, intermediate_size: int, *, encoder_width: int, act: str,
               dropout_rate: float, attention_dropout_rate: float, eps: float, init, cross_init=None,
               attention_impl=None, dtype=None, param_dtype=jnp.float32, rngs: nnx.Rngs):
    kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
    self.attn = Attention(hidden_size, num_heads, attn_drop=attention_dropout_rate, proj_drop=dropout_rate,
                          implementation=attention_impl, kernel_init=init, **kw)
    self.attn_norm = LayerNorm(hidden_size, eps=eps, **kw)
    self.cross_attn = CrossAttention(hidden_size, num_heads, kv_dim=encoder_width, attn_drop=attention_dropout_rate,
                                     proj_drop=dropout_rate, implementation=attention_impl,
                                     kernel_init=cross_init or init, **kw)
    self.cross_norm = LayerNorm(hidden_size, eps=eps, **kw)
    self.mlp = Mlp(hidden_size, intermediate_size, act=act, kernel_init=init, bias_init=nnx.initializers.zeros, **kw)
    self.mlp_drop = Dropout(dropout_rate)
    self.mlp_norm = LayerNorm(hidden_size, eps=eps, **kw)

  def __call__(self, x, image, *, mask=None, image_mask=None, deterministic=None, rngs=None):
    """x (B, T, D) text, image (B, N, encoder_width); masks broadcast to (B, heads, T, keys)."""
    kw = dict(deterministic=deterministic, rngs=rngs)
    x = self.attn_norm(x + self.attn(x, mask=mask, **kw))
    x = self.cross_norm(x + self.cross_attn(x, image.astype(x.dtype), mask=image_mask, **kw))
    x = self.mlp_norm(x + self.mlp_drop(self.mlp(x, **kw), **kw))
    return gradient_barrier(sharding.constrain(x, ("act_batch", "act_len", "act_emb")))


class ALBEFTextEncoder(nnx.Module):
  """BERT embeddings, `text_layers` plain layers, `fusion_layers` cross-attention layers, the MLM head
  (the official BertForMaskedLM with fusion_layer = text_layers, without a pooler)."""

  def __init__(self, *, vocab_size: int, hidden_size: int, text_layers: int, fusion_layers: int, num_heads: int,
               intermediate_size: int, max_position_embeddings: int, encoder_width: int, type_vocab_size: int = 2,
               hidden_act: str = "gelu", dropout_rate: float = 0.1, layer_norm_eps: float = 1e-12, init,
               cross_init=None, attention_impl=None, dtype=None, param_dtype=jnp.float32, rngs: nnx.Rngs):
    kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
    layer_kw = dict(act=hidden_act, dropout_rate=dropout_rate, attention_dropout_rate=dropout_rate, eps=layer_norm_eps,
                    init=init, attention_impl=attention_impl, **kw)
    self.embeddings = BertEmbeddings(vocab_size, hidden_size, max_position_embeddings, type_vocab_size,
                                     dropout_rate=dropout_rate, eps=layer_norm_eps, init=init, **kw)
    self.layers = nnx.List([BertLayer(hidden_size, num_heads, intermediate_size, **layer_kw)
                            for _ in range(text_layers)])
    self.fusion_layers = nnx.List([
        FusionLayer(hidden_size, num_heads, intermediate_size, encoder_width=encoder_width, cross_init=cross_init,
                    **layer_kw)
        for _ in range(fusion_layers)])
    self.mlm_head = MaskedLMHead(hidden_size, vocab_size, act=hidden_act, eps=layer_norm_eps, init=init, **kw)

  def encode(self, input_ids, attention_mask, *, deterministic=None, rngs=None):
    """The text encoder: (B, T) ids → (B, T, D)."""
    kw = dict(deterministic=deterministic, rngs=rngs)
    x = self.embeddings(input_ids, **kw)
    return apply_layers(self.layers, x, mask=attention_mask.astype(bool)[:, None, None, :], **kw)

  def fuse(self, text, attention_mask, image, *, deterministic=None, rngs=None):
    """The multimodal encoder: text features (B, T, D) attend to the image tokens (B, N, encoder_width),
    which are all real (the official code's image_atts are ones)."""
    mask = attention_mask.astype(bool)[:, None, None, :]
    for layer in self.fusion_layers:
      text = layer(text, image, mask=mask, deterministic=deterministic, rngs=rngs)
    return text

  def mlm_logits(self, fused, masked_positions=None):
    """float32 logits (B, T or P, V) at `masked_positions` (B, P) if given."""
    return self.mlm_head(gather_positions(fused, masked_positions), self.embeddings.word_embeddings[...])


def _as_momentum(module: nnx.Module) -> nnx.Module:
  """The SSL teachers' conversion (tasks/ssl/common.py): every Param becomes an EMA variable, dropout off."""
  from papers_jax.tasks.ssl.common import as_ema  # imported here: tasks import the models package
  return as_ema(module)


class ALBEF(nnx.Module):
  """See the module docstring. `model(input_ids, images, attention_mask)` → dict of outputs."""

  def __init__(self, *, img_size=256, patch_size=16, in_chans: int = 3, vision_width: int = 768, vision_depth: int = 12,
               vision_heads: int = 12, vision_mlp_ratio: float = 4.0, drop_path_rate: float = 0.0,
               vocab_size: int = 30522, hidden_size: int = 768, text_layers: int = 6, fusion_layers: int = 6,
               num_heads: int = 12, intermediate_size: int = 3072, max_position_embeddings: int = 512,
               dropout_rate: float = 0.1, embed_dim: int = 256, temperature: float = 0.07, initializer_range=0.02,
               cross_initializer_range: float | None = None,
               itc_pool: str = "cls", itm_pool: str = "cls", momentum: bool = False, queue_size: int = 0,
               attention_impl: str | None = None,
               dtype=None, param_dtype=jnp.float32, rngs: nnx.Rngs):
    if hidden_size % num_heads or vision_width % vision_heads:
      raise ConfigError(f"widths ({vision_width}, {hidden_size}) must divide by their heads "
                        f"({vision_heads}, {num_heads})")
    for name, pool in (("itc_pool", itc_pool), ("itm_pool", itm_pool)):
      if pool not in ("cls", "mean"):
        raise ConfigError(f"{name} must be 'cls' (the paper's) or 'mean', got {pool!r}")
    if queue_size and not momentum:
      raise ConfigError("the ITC queues hold momentum features: queue_size > 0 needs momentum=True")
    self.vocab_size, self.hidden_size, self.embed_dim, self.queue_size = vocab_size, hidden_size, embed_dim, queue_size
    self.itc_pool, self.itm_pool = itc_pool, itm_pool
    kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
    init = truncated_normal(initializer_range)
    self.visual_encoder = VisionTransformer(
        img_size=img_size, patch_size=patch_size, in_chans=in_chans, num_classes=0, global_pool="token",
        embed_dim=vision_width, depth=vision_depth, num_heads=vision_heads, drop_path_rate=drop_path_rate,
        block=BlockOptions(mlp_ratio=vision_mlp_ratio, norm_eps=1e-6, attention_impl=attention_impl), **kw)
    self.text_encoder = ALBEFTextEncoder(
        vocab_size=vocab_size, hidden_size=hidden_size, text_layers=text_layers, fusion_layers=fusion_layers,
        num_heads=num_heads, intermediate_size=intermediate_size, max_position_embeddings=max_position_embeddings,
        encoder_width=vision_width, dropout_rate=dropout_rate, init=init, attention_impl=attention_impl,
        cross_init=None if cross_initializer_range is None else truncated_normal(cross_initializer_range), **kw)
    self.vision_proj = Dense(vision_width, embed_dim, axes=("embed", None), kernel_init=init, **kw)
    self.text_proj = Dense(hidden_size, embed_dim, axes=("embed", None), kernel_init=init, **kw)
    self.itm_head = Dense(hidden_size, 2, axes=("embed", "classes"), kernel_init=init, **kw)
    self.temp = param(rngs, lambda *_: jnp.asarray(temperature, param_dtype), (), param_dtype, ())
    if momentum:  # initialised equal to the online weights, as the official copy_params()
      for name in MOMENTUM_ENCODERS:
        setattr(self, f"{name}_m", _as_momentum(nnx.clone(getattr(self, name))))
      self.step = StepCounter(jnp.zeros((), jnp.int32))
    if queue_size:
      image_queue, pointer = init_queue(rngs.params(), queue_size, embed_dim)
      text_queue, _ = init_queue(rngs.params(), queue_size, embed_dim)
      self.image_queue, self.text_queue, self.queue_ptr = QueueState(image_queue), QueueState(text_queue), \
          QueueState(pointer)

  def temperature(self):
    return jnp.clip(self.temp[...].astype(jnp.float32), *TEMPERATURE_RANGE)

  def _part(self, name: str, momentum: bool):
    return getattr(self, f"{name}_m" if momentum else name)

  # ------------------------------------------------------------------ unimodal
  def encode_image(self, images, *, momentum: bool = False, train: bool = False, rngs=None):
    """(image tokens (B, 1 + patches, vision_width), L2-normalised ITC feature (B, embed_dim))."""
    embeds = self._part("visual_encoder", momentum).forward_features(images, deterministic=not train, rngs=rngs)
    pooled = embeds[:, 0] if self.itc_pool == "cls" else embeds.mean(1)
    return embeds, l2_normalize(self._part("vision_proj", momentum)(pooled))

  def encode_text(self, input_ids, attention_mask, *, momentum: bool = False, train: bool = False, rngs=None):
    """(text tokens (B, T, hidden), L2-normalised ITC feature (B, embed_dim))."""
    embeds = self._part("text_encoder", momentum).encode(input_ids, attention_mask, deterministic=not train, rngs=rngs)
    return embeds, l2_normalize(self._part("text_proj", momentum)(pool_tokens(embeds, attention_mask, self.itc_pool)))

  # ------------------------------------------------------------------ multimodal
  def fuse(self, text_embeds, attention_mask, image_embeds, *, momentum: bool = False, train: bool = False,
           rngs=None):
    return self._part("text_encoder", momentum).fuse(text_embeds, attention_mask, image_embeds,
                                                     deterministic=not train, rngs=rngs)

  def itm_logits(self, fused, attention_mask=None):
    """(B, 2) float32 from the fused [CLS], or with itm_pool="mean" from the mean of the fused real tokens."""
    return self.itm_head(pool_tokens(fused, attention_mask, self.itm_pool)).astype(jnp.float32)

  def mlm_logits(self, input_ids, attention_mask, image_embeds, masked_positions=None, *, momentum: bool = False,
                 train: bool = False, rngs=None):
    """MLM logits (B, P, V) of (masked) ids given the image tokens: text encoder → fusion → head."""
    kw = dict(momentum=momentum, train=train, rngs=rngs)
    text, _ = self.encode_text(input_ids, attention_mask, **kw)
    fused = self.fuse(text, attention_mask, image_embeds, **kw)
    return self._part("text_encoder", momentum).mlm_logits(fused, masked_positions)

  def __call__(self, input_ids, images, attention_mask=None, *, masked_positions=None, train: bool = False,
               rngs=None) -> dict:
    if attention_mask is None:
      attention_mask = jnp.ones(input_ids.shape, jnp.int32)
    kw = dict(train=train, rngs=rngs)
    image_embeds, image_feat = self.encode_image(images, **kw)
    text_embeds, text_feat = self.encode_text(input_ids, attention_mask, **kw)
    fused = self.fuse(text_embeds, attention_mask, image_embeds, **kw)
    return {"image_feat": image_feat, "text_feat": text_feat, "fused": fused,
            "itm_logits": self.itm_logits(fused, attention_mask),
            "mlm_logits": self.text_encoder.mlm_logits(fused, masked_positions)}


# The paper's model (§3.5): ViT-B/16 at 256 px, BERT-base-uncased split 6 + 6, 256-d ITC features; the official
# pre-training normalisation (CLIP's mean and std, dataset/__init__.py).
ALBEF_MEAN, ALBEF_STD = (0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711)
VARIANTS = {
    "albef_base": dict(img_size=256, patch_size=16, vision_width=768, vision_depth=12, vision_heads=12,
                       vocab_size=30522, hidden_size=768, text_layers=6, fusion_layers=6, num_heads=12,
                       intermediate_size=3072, embed_dim=256),
    # A demo size for the bundled 64 px scenes (configs/albef/scenes_pretrain.py).
    "albef_tiny": dict(img_size=64, patch_size=8, vision_width=64, vision_depth=3, vision_heads=4,
                       vocab_size=256, hidden_size=64, text_layers=2, fusion_layers=2, num_heads=4,
                       intermediate_size=256, max_position_embeddings=32, embed_dim=64, dropout_rate=0.0),
}
# The demo model's: the generated scenes' own mean and std.
SCENES_MEAN, SCENES_STD = vqa_scenes.MEAN, vqa_scenes.STD
for _name, _row in VARIANTS.items():
  register(_name, ALBEF, **_row, preprocessing=Preprocessing(
      _row["img_size"], SCENES_MEAN if _name == "albef_tiny" else ALBEF_MEAN,
      SCENES_STD if _name == "albef_tiny" else ALBEF_STD, crop_pct=1.0))


def text_encoder_flops(model, t: int) -> int:
  layers = model.text_encoder.layers
  return sum(block_flops(t, model.hidden_size, layer.mlp.fc1.kernel.shape[1]) for layer in layers)


def fusion_flops(model, t: int) -> int:
  """The fusion layers on t text tokens attending to the image tokens (cross-attention: q and output
  projections on t tokens, k and v on n image tokens, scores and mixing t × n)."""
  d, n = model.hidden_size, 1 + model.visual_encoder.patch_embed.num_patches
  w = model.visual_encoder.embed_dim
  flops = 0
  for layer in model.text_encoder.fusion_layers:
    flops += block_flops(t, d, layer.mlp.fc1.kernel.shape[1])
    flops += 2 * t * d * d * 2 + 2 * n * w * d * 2 + 2 * t * n * d * 2
  return flops


def image_encoder_flops(model) -> int:
  vit = model.visual_encoder
  n = 1 + vit.patch_embed.num_patches
  return patch_embed_flops(vit.patch_embed) + sum(block_flops(n, vit.embed_dim, b.mlp.fc1.kernel.shape[1])
                                                  for b in vit.blocks)


def forward_flops(model, text_len: int = 30, predictions: int | None = None) -> float:
  """Matmul FLOPs of one `__call__` per example with `text_len` tokens (default 30, the official
  max_words) and images of the model's size, 2 per multiply-add: the ViT, the text encoder, the fusion
  layers, the ITC projections, the ITM head and the MLM head at `predictions` positions (default all)."""
  t, d = text_len, model.hidden_size
  p = t if predictions is None else predictions
  flops = image_encoder_flops(model) + text_encoder_flops(model, t) + fusion_flops(model, t)
  flops += 2 * model.visual_encoder.embed_dim * model.embed_dim + 2 * d * model.embed_dim + 2 * d * 2
  flops += 2 * p * d * d + 2 * p * d * model.vocab_size
  return float(flops)


# The embedding parameters (models.embedding_params), as models/bert.py and models/vit.py count them.
EMBEDDINGS = ("text_encoder.embeddings.word_embeddings", "text_encoder.embeddings.position_embeddings",
              "text_encoder.embeddings.token_type_embeddings", "text_encoder.mlm_head.bias",
              "visual_encoder.patch_embed.proj", "visual_encoder.pos_embed", "visual_encoder.cls_token")
