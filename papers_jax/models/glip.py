"""GLIP (Li et al., 2022, "Grounded Language-Image Pre-training"): detection as phrase grounding.

A prompt (class names "circle. square. 7." or the phrases of a scene "red circle. blue 7.") goes through a
BERT text encoder; image features go through a one-stage ATSS / DyHead detector. The last L layers fuse the
two (the paper's eqs. 3-5, "deep fusion"):

  O_t2i, P_i2t = X-MHA(O^i, P^i)
  O^{i+1} = DyHeadModule(O^i + O_t2i)      P^{i+1} = BERTLayer(P^i + P_i2t)

X-MHA (`BiMultiHeadAttention`): one set of attention logits Attn = O W^q,I (P W^q,L)ᵀ / √d per head is
shared by both directions: image-to-text softmax over the tokens (padding masked) reads P W^v,L, text-to-image
softmax over the regions (Attnᵀ) reads O W^v,I; each goes through its output projection. As the official
code (maskrcnn_benchmark/utils/fuse_helper.py BiAttentionBlockForCheckpoint), both inputs are layer-normed
first and each update is scaled by a learned per-channel γ (init 1 / L) before the residual; the official
code adds the update to the *normalised* features, here it is added to O^i and P^i as the paper's equations.

Class logits become word-region alignment scores S_ground = O Pᵀ (B, regions, tokens), as the official
dot-product token head: P is L2-normalised, halved and projected to the image width, and a per-token
bias P·b_lang + b_0 (b_0 the focal prior, -log((1 - 0.01) / 0.01)) is added; the logits are divided by
exp(log_scale) (init 0). Boxes: ATSS's (dx, dy, dw, dh) deltas against one square anchor per location
(weights 10, 10, 5, 5), times a learned scale, and a centerness logit.

Departures here (a light detector for 64×64 scenes, declared in the configs): one feature level from a
strided conv stem instead of Swin-T + FPN (5 levels); the DyHead module of one level is its scale-aware
attention on one 3×3 conv + GroupNorm + ReLU (no deformable conv, no DyReLU, no spatial or cross-level
attention); box coding in continuous pixels (no "+1"); `fusion=False` is GLIP-T (A)'s ablation (no X-MHA
and no extra BERT layers: the prompt only scores the regions at the end).

Outputs: {"logits": (B, A, T) alignment scores, "boxes": (B, A, 4) decoded xyxy in input pixels,
"centerness": (B, A)}, A = H·W anchors in row-major order (`anchors`).
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from papers_jax.models import conv_flops
from papers_jax.models.bert import BertLayer, BertModel, truncated_normal
from papers_jax.models.registry import Preprocessing, register
from papers_jax.nn import Dropout, LayerNorm, param
from papers_jax.nn.conv import Conv
from papers_jax.nn.linear import Dense
from papers_jax.nn.norms import GroupNorm

BOX_WEIGHTS = (10.0, 10.0, 5.0, 5.0)  # ATSS's box coder
MAX_LOG_RATIO = math.log(1000.0 / 16)


def anchors(height: int, width: int, stride: float, size: float) -> np.ndarray:
  """(height · width, 4) xyxy square anchors of side `size` centred on the cells of a stride-`stride` map."""
  ys, xs = np.meshgrid((np.arange(height) + 0.5) * stride, (np.arange(width) + 0.5) * stride, indexing="ij")
  centres = np.stack([xs.ravel(), ys.ravel()], -1)
  return np.concatenate([centres - size / 2, centres + size / 2], -1).astype(np.float32)


def encode_boxes(boxes, anchor_boxes):
  """xyxy targets → ATSS deltas (dx, dy, dw, dh) against xyxy anchors (both (..., 4))."""
  aw, ah = anchor_boxes[..., 2] - anchor_boxes[..., 0], anchor_boxes[..., 3] - anchor_boxes[..., 1]
  ax, ay = anchor_boxes[..., 0] + aw / 2, anchor_boxes[..., 1] + ah / 2
  w, h = boxes[..., 2] - boxes[..., 0], boxes[..., 3] - boxes[..., 1]
  x, y = boxes[..., 0] + w / 2, boxes[..., 1] + h / 2
  wx, wy, ww, wh = BOX_WEIGHTS
  return jnp.stack([wx * (x - ax) / aw, wy * (y - ay) / ah, ww * jnp.log(w / aw), wh * jnp.log(h / ah)], -1)


def decode_boxes(deltas, anchor_boxes):
  """ATSS deltas (..., 4) against xyxy anchors → xyxy boxes (log-ratios clipped at log(1000 / 16) as ATSS)."""
  aw, ah = anchor_boxes[..., 2] - anchor_boxes[..., 0], anchor_boxes[..., 3] - anchor_boxes[..., 1]
  ax, ay = anchor_boxes[..., 0] + aw / 2, anchor_boxes[..., 1] + ah / 2
  wx, wy, ww, wh = BOX_WEIGHTS
  x, y = deltas[..., 0] / wx * aw + ax, deltas[..., 1] / wy * ah + ay
  w = jnp.exp(jnp.minimum(deltas[..., 2] / ww, MAX_LOG_RATIO)) * aw
  h = jnp.exp(jnp.minimum(deltas[..., 3] / wh, MAX_LOG_RATIO)) * ah
  return jnp.stack([x - w / 2, y - h / 2, x + w / 2, y + h / 2], -1)


class BiMultiHeadAttention(nnx.Module):
  """X-MHA: image features v (B, N, v_dim) and token features l (B, T, l_dim) attend to each other through one
  set of attention logits per head; returns (Δv (B, N, v_dim), Δl (B, T, l_dim))."""

  def __init__(self, v_dim: int, l_dim: int, embed_dim: int, num_heads: int, *, dropout_rate: float = 0.1,
               dtype=None, param_dtype=jnp.float32, rngs: nnx.Rngs):
    if embed_dim % num_heads:
      raise ValueError(f"X-MHA: embed_dim {embed_dim} is not divisible by num_heads {num_heads}")
    kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
    self.num_heads, self.embed_dim = num_heads, embed_dim
    self.v_proj = Dense(v_dim, embed_dim, axes=("embed", "mlp"), **kw)          # W^(q,I)
    self.l_proj = Dense(l_dim, embed_dim, axes=("embed", "mlp"), **kw)          # W^(q,L)
    self.values_v_proj = Dense(v_dim, embed_dim, axes=("embed", "mlp"), **kw)   # W^(v,I)
    self.values_l_proj = Dense(l_dim, embed_dim, axes=("embed", "mlp"), **kw)   # W^(v,L)
    self.out_v_proj = Dense(embed_dim, v_dim, axes=("mlp", "embed"), **kw)      # W^(out,I)
    self.out_l_proj = Dense(embed_dim, l_dim, axes=("mlp", "embed"), **kw)      # W^(out,L)
    self.dropout = Dropout(dropout_rate)

  def __call__(self, v, l, text_mask=None, *, deterministic: bool = True, rngs=None):
    b, n, _ = v.shape
    t, h = l.shape[1], self.num_heads
    d = self.embed_dim // h
    q = self.v_proj(v).reshape(b, n, h, d) * d ** -0.5
    k = self.l_proj(l).reshape(b, t, h, d)
    value_v = self.values_v_proj(v).reshape(b, n, h, d)
    value_l = self.values_l_proj(l).reshape(b, t, h, d)
    logits = jnp.einsum("bnhd,bthd->bhnt", q, k).astype(jnp.float32)  # shared by both directions
    logits_v = logits if text_mask is None else jnp.where(text_mask[:, None, None, :], logits, -1e30)
    attn_v = jax.nn.softmax(logits_v, axis=-1)   # each region over the tokens
    attn_l = jax.nn.softmax(logits, axis=2)      # each token over the regions: softmax(Attnᵀ)
    kw = dict(deterministic=deterministic, rngs=rngs)
    attn_v, attn_l = self.dropout(attn_v, **kw).astype(v.dtype), self.dropout(attn_l, **kw).astype(l.dtype)
    out_v = jnp.einsum("bhnt,bthd->bnhd", attn_v, value_l).reshape(b, n, self.embed_dim)
    out_l = jnp.einsum("bhnt,bnhd->bthd", attn_l, value_v).reshape(b, t, self.embed_dim)
    return self.out_v_proj(out_v), self.out_l_proj(out_l)


class FusionBlock(nnx.Module):
  """Pre-norm X-MHA with layer scale: (v, l) → (v + γ_v Δv, l + γ_l Δl)."""

  def __init__(self, v_dim: int, l_dim: int, embed_dim: int, num_heads: int, *, init_value: float,
               dropout_rate: float = 0.1, dtype=None, param_dtype=jnp.float32, rngs: nnx.Rngs):
    kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
    self.layer_norm_v = LayerNorm(v_dim, eps=1e-5, **kw)
    self.layer_norm_l = LayerNorm(l_dim, eps=1e-5, **kw)
    self.attn = BiMultiHeadAttention(v_dim, l_dim, embed_dim, num_heads, dropout_rate=dropout_rate, **kw)
    self.gamma_v = param(rngs, nnx.initializers.constant(init_value), (v_dim,), param_dtype, ("embed",))
    self.gamma_l = param(rngs, nnx.initializers.constant(init_value), (l_dim,), param_dtype, ("embed",))

  def __call__(self, v, l, text_mask=None, *, deterministic: bool = True, rngs=None):
    dv, dl = self.attn(self.layer_norm_v(v), self.layer_norm_l(l), text_mask, deterministic=deterministic, rngs=rngs)
    return v + self.gamma_v[...].astype(v.dtype) * dv, l + self.gamma_l[...].astype(l.dtype) * dl


def h_sigmoid(x):
  return jax.nn.relu6(x + 3) / 6


class DyConv(nnx.Module):
  """DyHead's module on one level: a 3×3 conv + GroupNorm, scaled by its scale-aware attention (global
  average pool, 1×1 conv to one channel, ReLU, hard sigmoid), then ReLU."""

  def __init__(self, channels: int, *, num_groups: int, dtype=None, param_dtype=jnp.float32, rngs: nnx.Rngs):
    kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
    init = nnx.initializers.normal(0.01)  # DyHead's init of its convolutions
    self.conv = Conv(channels, channels, 3, use_bias=True, kernel_init=init, **kw)
    self.norm = GroupNorm(channels, num_groups=num_groups, **kw)
    self.attn_conv = Conv(channels, 1, 1, use_bias=True, kernel_init=init, **kw)

  def __call__(self, x):
    y = self.norm(self.conv(x))
    scale = h_sigmoid(jax.nn.relu(self.attn_conv(y.mean(axis=(1, 2), keepdims=True))))
    return jax.nn.relu(y * scale)


class GLIP(nnx.Module):
  """`model(images (B, H, W, 3) normalised, input_ids (B, T), text_mask (B, T))` → the module docstring's outputs.
  `num_convs` fusion + DyHead layers (L); `fusion=False` drops the X-MHA and the extra BERT layers."""

  def __init__(self, *, vocab_size: int = 32, max_text_len: int = 64, img_size: int | None = None, in_chans: int = 3,
               stem_channels=(32, 64),
               channels: int = 64, num_groups: int = 8, text_width: int = 64, text_layers: int = 2,
               text_heads: int = 4, text_mlp: int = 128, text_dropout: float = 0.1, num_convs: int = 2,
               fusion: bool = True, embed_dim: int = 128, fusion_heads: int = 4, fusion_dropout: float = 0.1,
               anchor_scale: float = 4.0, prior_prob: float = 0.01, log_scale: float = 0.0, dtype=None,
               param_dtype=jnp.float32, rngs: nnx.Rngs):
    kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
    # img_size: the input the FLOP counter assumes (None: 64); the model takes any multiple of 2^len(stem).
    self.in_chans, self.fusion, self.anchor_scale, self.dtype = in_chans, fusion, anchor_scale, dtype
    self.img_size = img_size
    self.max_text_len = max_text_len
    chans = (in_chans,) + tuple(stem_channels)
    self.stem = nnx.List([Conv(a, b, 3, stride=2, use_bias=True, **kw) for a, b in zip(chans[:-1], chans[1:])])
    self.input_proj = Conv(chans[-1], channels, 1, use_bias=True, **kw)
    self.text = BertModel(vocab_size=vocab_size, hidden_size=text_width, num_layers=text_layers,
                          num_heads=text_heads, intermediate_size=text_mlp, max_position_embeddings=max_text_len,
                          type_vocab_size=1, dropout_rate=text_dropout, attention_dropout_rate=text_dropout,
                          pooler=False, **kw)
    if fusion:
      self.fuse = nnx.List([FusionBlock(channels, text_width, embed_dim, fusion_heads, init_value=1.0 / num_convs,
                                        dropout_rate=fusion_dropout, **kw) for _ in range(num_convs)])
      self.text_layers = nnx.List([
          BertLayer(text_width, text_heads, text_mlp, act="gelu", dropout_rate=text_dropout,
                    attention_dropout_rate=text_dropout, eps=1e-12, init=truncated_normal(0.02), **kw)
          for _ in range(num_convs)])
    else:
      self.fuse = self.text_layers = None
    self.dyconv = nnx.List([DyConv(channels, num_groups=num_groups, **kw) for _ in range(num_convs)])
    init = nnx.initializers.normal(0.01)
    self.bbox_pred = Conv(channels, 4, 1, use_bias=True, kernel_init=init, **kw)
    self.centerness = Conv(channels, 1, 1, use_bias=True, kernel_init=init, **kw)
    self.scale = param(rngs, nnx.initializers.ones, (), param_dtype, ())
    self.dot_product_projection_text = Dense(text_width, channels, axes=("embed", "mlp"), **kw)
    self.log_scale = param(rngs, nnx.initializers.constant(log_scale), (), param_dtype, ())
    self.bias_lang = param(rngs, nnx.initializers.zeros, (text_width,), param_dtype, ("embed",))
    self.bias0 = param(rngs, nnx.initializers.constant(-math.log((1 - prior_prob) / prior_prob)), (), param_dtype, ())

  def anchors(self, img_size: int) -> np.ndarray:
    """The (A, 4) xyxy anchors of an img_size × img_size input (one per feature cell)."""
    cells = img_size // 2 ** len(self.stem)
    stride = img_size / cells
    return anchors(cells, cells, stride, self.anchor_scale * stride)

  def __call__(self, images, input_ids, text_mask, *, train: bool = False, rngs=None):
    kw = dict(deterministic=not train, rngs=rngs)
    x = images.astype(self.dtype or images.dtype)
    for conv in self.stem:
      x = jax.nn.relu(conv(x))
    x = self.input_proj(x)
    b, h, w, c = x.shape
    text_mask = text_mask.astype(bool)
    l = self.text(input_ids, None, text_mask, train=train, rngs=rngs)[0]
    for i, dyconv in enumerate(self.dyconv):
      if self.fusion:
        v, l = self.fuse[i](x.reshape(b, h * w, c), l, text_mask, **kw)
        x = v.reshape(b, h, w, c)
        l = self.text_layers[i](l, mask=text_mask[:, None, None, :], **kw)
      x = dyconv(x)
    # The dot-product token head (S_ground = O Pᵀ, with the official code's normalisation and biases).
    emb = l.astype(jnp.float32)
    emb = emb / jnp.maximum(jnp.linalg.norm(emb, axis=-1, keepdims=True), 1e-12)
    tokens = self.dot_product_projection_text(emb / 2.0).astype(jnp.float32)
    bias = emb @ self.bias_lang[...] + self.bias0[...]
    regions = x.reshape(b, h * w, c).astype(jnp.float32)
    logits = regions @ tokens.transpose(0, 2, 1) / jnp.exp(self.log_scale[...]) + bias[:, None, :]
    logits = jnp.clip(logits, -50000.0, 50000.0)
    deltas = (self.bbox_pred(x) * self.scale[...]).reshape(b, h * w, 4).astype(jnp.float32)
    anchor_boxes = jnp.asarray(self.anchors(images.shape[1]))
    return {"logits": logits, "boxes": decode_boxes(deltas, anchor_boxes),
            "centerness": self.centerness(x).reshape(b, h * w).astype(jnp.float32)}


# The scenes demo's model (configs/glip/scenes.py sets its sizes); the scenes' own mean / std (they are dark).
register("glip_tiny_scenes", GLIP, img_size=64,
         preprocessing=Preprocessing(64, (0.114, 0.113, 0.102), (0.161, 0.148, 0.132), crop_pct=1.0))
# The paper's sizes for the fusion and head (GLIP-T: BERT-base's 768-d tokens and 512 positions, the official code
# cutting prompts at 256 tokens; a 256-channel DyHead of 6 layers; X-MHA of 8 heads in 2048 dimensions as the
# official VLFuse); the image side is still this file's light stem. For counting parameters (tests/test_glip.py).
register("glip_t_head", GLIP, vocab_size=30522, max_text_len=512, channels=256, num_groups=16, text_width=768,
         text_layers=12, text_heads=12, text_mlp=3072, num_convs=6, embed_dim=2048, fusion_heads=8,
         anchor_scale=8.0, img_size=800,
         preprocessing=Preprocessing(800, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225), crop_pct=1.0))


def forward_flops(model: GLIP, img_size: int | None = None, seq_len: int = 20, *, count_padding: bool = True) -> float:
  """FLOPs of one forward pass on one img_size × img_size image (default: model.img_size, else 64) and a prompt
  of seq_len tokens, element-wise work included (models/conv_flops.py): stem, text encoder, fusion layers,
  DyHead modules and heads."""
  img_size = img_size or model.img_size or 64
  ids = jax.ShapeDtypeStruct((1, seq_len), jnp.int32)
  return conv_flops.traced_flops(lambda m, x, i, k: m(x, i, k), model, conv_flops.images(img_size, model.in_chans),
                                 ids, ids, count_padding=count_padding)


EMBEDDINGS = ("text.embeddings.word_embeddings", "text.embeddings.position_embeddings",
              "text.embeddings.token_type_embeddings")
