"""DETR ("End-to-End Object Detection with Transformers", Carion et al. 2020).

A ResNet backbone with frozen BatchNorm (statistics and affine fixed, as the paper's torchvision
`FrozenBatchNorm2d`), a 1×1 projection of its last stage to d_model, a fixed 2-D sine position
encoding, and a post-norm encoder-decoder transformer: the position encoding is added to the queries
and keys (never the values) of every attention layer, the learned object queries are added to the
decoder's queries (and to its self-attention keys), and the decoder starts from zeros. Each decoder
layer's output goes through the shared decoder LayerNorm into the class head (num_classes + 1, the
last being "no object") and the 3-layer box MLP with a sigmoid, so the set loss can supervise every
layer (the paper's auxiliary losses).

`pixel_mask` (B, H, W), True on real pixels and False on padding (HF's convention), is resized to
the feature map by nearest neighbour (torch's `interpolate`); padded positions are left out of the
attention keys and of the position encoding's normalisation, as in the reference code.

Outputs: {"logits": (L, B, Q, num_classes + 1), "boxes": (L, B, Q, 4)} over the L decoder layers
(the last is the prediction), boxes as normalised (cx, cy, w, h).

Init: Xavier-uniform for every matrix of the transformer (the reference `_reset_parameters`) and, where
the reference keeps torch's default Linear / Conv2d init, for the heads and the input projection too;
zero biases; object queries N(0, 1). The backbone is meant to come from an ImageNet checkpoint (a randomly
initialised frozen backbone does not learn).
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from papers_jax.core import sharding
from papers_jax.models import conv_flops
from papers_jax.models.registry import register
from papers_jax.models.resnet import VARIANTS, ResNet
from papers_jax.nn.activations import relu
from papers_jax.nn.attention import dot_product_attention
from papers_jax.nn.conv import Conv
from papers_jax.nn.drop import Dropout
from papers_jax.nn.linear import Dense
from papers_jax.nn.mlp import Mlp
from papers_jax.nn.norms import LayerNorm

TORCH_LN_EPS = 1e-5


def resize_mask(mask, height: int, width: int):
  """(B, H, W) bool → (B, height, width) by nearest neighbour, torch's `interpolate(mode="nearest")`:
  source index ⌊i · H / height⌋ in float32."""
  h_in, w_in = mask.shape[1:]
  rows = np.minimum(np.floor(np.arange(height, dtype=np.float32) * np.float32(h_in / height)), h_in - 1)
  cols = np.minimum(np.floor(np.arange(width, dtype=np.float32) * np.float32(w_in / width)), w_in - 1)
  return mask[:, rows.astype(np.int32)][:, :, cols.astype(np.int32)]


def sine_position_embedding(mask, num_pos_feats: int, *, temperature: float = 10000.0, normalize: bool = True,
                            scale: float = 2 * math.pi, offset: float = 0.0, size=None):
  """DETR's 2-D sine encoding (HF `DetrSinePositionEmbedding`): mask (B, h, w) bool, True = real →
  (B, h, w, 2 · num_pos_feats), y features then x features, each interleaving sin and cos. Positions
  are the cumulative counts of real pixels, normalised to (0, scale] over the real extent; Deformable
  DETR shifts them by `offset` = -0.5 (pixel centres) before normalising.

  mask=None with size=(h, w): an unpadded image, → (1, h, w, 2 · num_pos_feats). Its counts are 1..h and
  1..w, built here in numpy: a cumsum over a constant mask is folded by XLA at compile time, slowly."""
  if mask is None:
    h, w = size
    y = np.broadcast_to(np.arange(1, h + 1, dtype=np.float32)[None, :, None], (1, h, w))
    x = np.broadcast_to(np.arange(1, w + 1, dtype=np.float32)[None, None, :], (1, h, w))
  else:
    m = mask.astype(jnp.float32)
    y = jnp.cumsum(m, axis=1)
    x = jnp.cumsum(m, axis=2)
  if normalize:
    eps = 1e-6
    y = (y + offset) / (y[:, -1:, :] + eps) * scale
    x = (x + offset) / (x[:, :, -1:] + eps) * scale
  i = np.arange(num_pos_feats)
  dim_t = jnp.asarray(temperature ** (2 * (i // 2) / num_pos_feats), jnp.float32)

  def encode(p):
    p = p[..., None] / dim_t
    return jnp.stack([jnp.sin(p[..., 0::2]), jnp.cos(p[..., 1::2])], axis=-1).reshape(p.shape)
  return jnp.concatenate([encode(y), encode(x)], axis=-1)


class DetrAttention(nnx.Module):
  """Multi-head attention with separate q, k, v projections: DETR adds position encodings to the
  queries and keys but not the values, so the three inputs differ. Kernels per head as nn/attention.py."""

  def __init__(self, dim: int, num_heads: int, *, attn_drop: float = 0.0, dtype=None, param_dtype=jnp.float32,
               rngs: nnx.Rngs):
    if dim % num_heads:
      raise ValueError(f"d_model {dim} is not divisible by num_heads {num_heads}")
    self.num_heads, self.head_dim = num_heads, dim // num_heads
    self.attn_drop = attn_drop
    self.deterministic = False
    # Xavier-uniform over the whole (dim, dim) matrix, as torch's in_proj after DETR's _reset_parameters.
    xavier = nnx.initializers.variance_scaling(1.0, "fan_avg", "uniform", in_axis=0, out_axis=(1, 2))
    kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
    self.q = Dense(dim, (num_heads, self.head_dim), axes=("embed", "heads", "kv"), kernel_init=xavier, **kw)
    self.k = Dense(dim, (num_heads, self.head_dim), axes=("embed", "heads", "kv"), kernel_init=xavier, **kw)
    self.v = Dense(dim, (num_heads, self.head_dim), axes=("embed", "heads", "kv"), kernel_init=xavier, **kw)
    self.proj = Dense((num_heads, self.head_dim), dim, axes=("heads", "kv", "embed"), **kw)

  def __call__(self, query, key, value, *, key_mask=None, deterministic: bool | None = None,
               rngs: nnx.Rngs | None = None):
    """query (B, T, D), key and value (B, S, D); key_mask (B, S) True = attend."""
    deterministic = self.deterministic if deterministic is None else deterministic
    spec = ("act_batch", "act_len", "act_heads", "act_kv")
    q = sharding.constrain(self.q(query), spec)
    k = sharding.constrain(self.k(key), spec)
    v = sharding.constrain(self.v(value), spec)
    mask = None if key_mask is None else key_mask[:, None, None, :]
    rate = 0.0 if deterministic else self.attn_drop
    y = dot_product_attention(q, k, v, mask=mask, dropout_rate=rate,
                              dropout_rng=rngs["dropout"]() if rate > 0 else None)
    return self.proj(y)


class EncoderLayer(nnx.Module):
  """Post-norm: x = norm1(x + attn(x + pos, x + pos, x)); x = norm2(x + ffn(x))."""

  def __init__(self, dim: int, num_heads: int, ffn_dim: int, dropout: float, *, dtype=None,
               param_dtype=jnp.float32, rngs: nnx.Rngs):
    kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
    self.self_attn = DetrAttention(dim, num_heads, attn_drop=dropout, **kw)
    self.drop = Dropout(dropout)
    self.norm1 = LayerNorm(dim, eps=TORCH_LN_EPS, **kw)
    self.mlp = Mlp(dim, ffn_dim, act="relu", drop=dropout, bias_init=nnx.initializers.zeros, **kw)
    self.norm2 = LayerNorm(dim, eps=TORCH_LN_EPS, **kw)

  def __call__(self, x, pos, key_mask, *, deterministic=None, rngs=None):
    d = dict(deterministic=deterministic, rngs=rngs)
    qk = x + pos
    x = self.norm1(x + self.drop(self.self_attn(qk, qk, x, key_mask=key_mask, **d), **d))
    return self.norm2(x + self.mlp(x, **d))


class DecoderLayer(nnx.Module):
  """Post-norm: self-attention over the queries (object queries added to q and k), cross-attention
  to the encoder memory (object queries added to q, position encoding to k), FFN."""

  def __init__(self, dim: int, num_heads: int, ffn_dim: int, dropout: float, *, dtype=None,
               param_dtype=jnp.float32, rngs: nnx.Rngs):
    kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
    self.self_attn = DetrAttention(dim, num_heads, attn_drop=dropout, **kw)
    self.norm1 = LayerNorm(dim, eps=TORCH_LN_EPS, **kw)
    self.cross_attn = DetrAttention(dim, num_heads, attn_drop=dropout, **kw)
    self.norm2 = LayerNorm(dim, eps=TORCH_LN_EPS, **kw)
    self.mlp = Mlp(dim, ffn_dim, act="relu", drop=dropout, bias_init=nnx.initializers.zeros, **kw)
    self.norm3 = LayerNorm(dim, eps=TORCH_LN_EPS, **kw)
    self.drop = Dropout(dropout)

  def __call__(self, x, query_pos, memory, pos, key_mask, *, deterministic=None, rngs=None):
    d = dict(deterministic=deterministic, rngs=rngs)
    qk = x + query_pos
    x = self.norm1(x + self.drop(self.self_attn(qk, qk, x, **d), **d))
    x = self.norm2(x + self.drop(self.cross_attn(x + query_pos, memory + pos, memory, key_mask=key_mask, **d), **d))
    return self.norm3(x + self.mlp(x, **d))


class BoxMLP(nnx.Module):
  """`num_layers` linear layers with ReLU between them (DETR's box head: 3 layers, d_model wide)."""

  def __init__(self, in_dim: int, hidden_dim: int, out_dim: int, num_layers: int, *, dtype=None,
               param_dtype=jnp.float32, rngs: nnx.Rngs):
    dims = [in_dim] + [hidden_dim] * (num_layers - 1) + [out_dim]
    self.layers = nnx.List([Dense(a, b, axes=("embed", "mlp" if b == hidden_dim else None), dtype=dtype,
                                  param_dtype=param_dtype, rngs=rngs) for a, b in zip(dims[:-1], dims[1:])])

  def __call__(self, x):
    for i, layer in enumerate(self.layers):
      x = layer(x)
      if i < len(self.layers) - 1:
        x = relu(x)
    return x


class DETR(nnx.Module):
  """`backbone`: a models/resnet.py depth ("resnet50", "resnet101"; `backbone_width`, `backbone_block` and
  `backbone_layers` override it for small test models; `backbone_norm="batch"` trains the backbone's
  BatchNorm, for demos that start from random init). `num_classes`: object classes (COCO: 91, the
  largest category id + 1); the class head has one more output, "no object"."""

  def __init__(self, *, num_classes: int = 91, backbone: str = "resnet50", backbone_width: int = 64,
               backbone_block: str | None = None, backbone_layers=None, backbone_norm: str = "frozen",
               d_model: int = 256, num_heads: int = 8, encoder_layers: int = 6, decoder_layers: int = 6,
               ffn_dim: int = 2048, dropout: float = 0.1, num_queries: int = 100, in_chans: int = 3, dtype=None,
               param_dtype=jnp.float32, rngs: nnx.Rngs):
    block, layers = VARIANTS[backbone]
    kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
    self.num_classes, self.num_queries, self.d_model = num_classes, num_queries, d_model
    # zero_init_last=False: a frozen BatchNorm started at scale 0 would keep its branch dead.
    self.backbone = ResNet(block=backbone_block or block, layers=tuple(backbone_layers or layers), num_classes=0,
                           in_chans=in_chans, width=backbone_width, zero_init_last=False, norm=backbone_norm, **kw)
    self.input_proj = Conv(self.backbone.num_features, d_model, 1, use_bias=True, **kw)
    self.query_embed = nnx.Param(jax.random.normal(rngs.params(), (num_queries, d_model), param_dtype),
                                 axes=(None, "embed"))
    self.encoder = nnx.List([EncoderLayer(d_model, num_heads, ffn_dim, dropout, **kw) for _ in range(encoder_layers)])
    self.decoder = nnx.List([DecoderLayer(d_model, num_heads, ffn_dim, dropout, **kw) for _ in range(decoder_layers)])
    self.decoder_norm = LayerNorm(d_model, eps=TORCH_LN_EPS, **kw)
    self.class_embed = Dense(d_model, num_classes + 1, axes=("embed", "classes"), **kw)
    self.bbox_embed = BoxMLP(d_model, d_model, 4, 3, **kw)

  def encode(self, images, pixel_mask=None, *, train: bool = False, deterministic=None, rngs=None):
    """Images (B, H, W, C) → memory (B, h·w, D), its position encoding and key mask (B, h·w)."""
    b = images.shape[0]
    feature = self.backbone.forward_features(images, train=train)
    fh, fw = feature.shape[1:3]
    # No pixel mask: every position is real, so no key mask and a constant position encoding.
    mask = None if pixel_mask is None else resize_mask(pixel_mask.astype(bool), fh, fw)
    pos = sine_position_embedding(mask, self.d_model // 2, size=(fh, fw))
    pos = jnp.broadcast_to(pos, (b, fh, fw, self.d_model)).reshape(b, fh * fw, self.d_model).astype(feature.dtype)
    x = self.input_proj(feature).reshape(b, fh * fw, self.d_model)
    key_mask = None if mask is None else mask.reshape(b, fh * fw)
    for layer in self.encoder:
      x = layer(x, pos, key_mask, deterministic=deterministic, rngs=rngs)
    return x, pos, key_mask

  def decode(self, memory, pos, key_mask, *, deterministic=None, rngs=None):
    """→ the decoder-normed output of every layer, (L, B, Q, D)."""
    b = memory.shape[0]
    query_pos = jnp.broadcast_to(self.query_embed[...].astype(memory.dtype), (b, self.num_queries, self.d_model))
    x = jnp.zeros_like(query_pos)
    outs = []
    for layer in self.decoder:
      x = layer(x, query_pos, memory, pos, key_mask, deterministic=deterministic, rngs=rngs)
      outs.append(self.decoder_norm(x))
    return jnp.stack(outs)

  def __call__(self, images, *, pixel_mask=None, train: bool | None = None, rngs: nnx.Rngs | None = None):
    deterministic = None if train is None else not train
    memory, pos, key_mask = self.encode(images, pixel_mask, train=bool(train), deterministic=deterministic,
                                        rngs=rngs)
    hs = self.decode(memory, pos, key_mask, deterministic=deterministic, rngs=rngs)
    return {"logits": self.class_embed(hs).astype(jnp.float32),
            "boxes": jax.nn.sigmoid(self.bbox_embed(hs).astype(jnp.float32))}


register("detr_resnet50", DETR, backbone="resnet50")
register("detr_resnet101", DETR, backbone="resnet101")


def forward_flops(model: DETR, img_size: int = 800, *, count_padding: bool = True) -> float:
  """FLOPs of one forward pass on one img_size × img_size image (default: 800, the paper's shorter side),
  element-wise work included (models/conv_flops.py): the backbone, the encoder and decoder, and the heads on
  every decoder layer's output (the auxiliary losses read them all)."""
  return conv_flops.traced_flops(lambda m, x: m(x, train=False), model,
                                 conv_flops.images(img_size, model.backbone.in_chans), count_padding=count_padding)


EMBEDDINGS = ("query_embed",)  # the learned object queries, the decoder's position embedding
