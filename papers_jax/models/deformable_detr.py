"""Deformable DETR ("Deformable Transformers for End-to-End Object Detection", Zhu et al. 2021).

Multi-scale deformable attention (`ms_deform_attn`): each query looks at a few learned points around its
reference point on every feature level. The value projection is split into heads; each head samples
`num_points` points per level by bilinear interpolation (torch's `grid_sample` with align_corners=False
and zero padding: a location x ∈ [0, 1] is pixel x·W - 0.5, and taps outside the map read 0), at the
reference point plus offsets that are normalised by the level's (W, H) (or, for a box reference, by
the box's half size over num_points); the samples are weighted by attention weights softmaxed jointly
over levels × points and summed. Pure JAX, written from the official `ms_deform_attn_core_pytorch`.

The model: ResNet (frozen BatchNorm) C3–C5 plus a stride-2 3×3 conv on C5, each projected to d_model
with GroupNorm(32); sine position encodings plus a learned level embedding; a post-norm encoder of
deformable self-attention (reference points at the pixel centres, scaled by each image's valid ratio);
a decoder of self-attention, deformable cross-attention and FFN from `num_queries` learned
(query position, target) pairs whose reference point is a linear map of the query position. The class
head is a sigmoid one (focal loss): num_classes logits, no "no object" class; boxes are sigmoid(MLP +
inverse_sigmoid(reference)). Options:
  - `with_box_refine`: iterative bounding-box refinement: each decoder layer has its own box head, whose
    prediction (detached) is the next layer's reference box; each layer also has its own class head.
  - `two_stage`: encoder proposals: every encoder pixel predicts a box relative to a proposal of size
    0.05·2^level around it; the top `two_stage_num_proposals` by the first class's logit (the official
    code's choice) become the decoder's reference boxes and, through a sine embedding, its queries.
    Outputs then also hold the encoder's "enc_logits" and "enc_boxes" for the proposal loss.

Outputs: {"logits": (L, B, Q, num_classes), "boxes": (L, B, Q, 4) cxcywh in [0, 1]} over the decoder
layers (the last is the prediction), plus the two-stage entries.
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from papers_jax.core import sharding
from papers_jax.models.detr import TORCH_LN_EPS, BoxMLP, DetrAttention, resize_mask, sine_position_embedding
from papers_jax.models import conv_flops
from papers_jax.models.registry import register
from papers_jax.models.resnet import EXPANSION, VARIANTS, ResNet
from papers_jax.nn.conv import Conv
from papers_jax.nn.drop import Dropout
from papers_jax.nn.linear import Dense
from papers_jax.nn.mlp import Mlp
from papers_jax.nn.norms import GroupNorm, LayerNorm

XAVIER = nnx.initializers.xavier_uniform()


def bilinear_sample(value, locations):
  """Samples value (N, H, W, C) at locations (N, K, 2) in [0, 1] as (x, y) → (N, K, C), as torch's
  `grid_sample(value, 2·locations - 1, mode="bilinear", padding_mode="zeros", align_corners=False)`."""
  n, h, w, c = value.shape
  x = locations[..., 0] * w - 0.5
  y = locations[..., 1] * h - 0.5
  x0, y0 = jnp.floor(x), jnp.floor(y)
  flat = value.reshape(n, h * w, c)
  out = jnp.zeros(locations.shape[:2] + (c,), value.dtype)
  for dx in (0, 1):
    for dy in (0, 1):
      xi, yi = x0 + dx, y0 + dy
      weight = (1 - jnp.abs(x - xi)) * (1 - jnp.abs(y - yi))
      inside = (xi >= 0) & (xi <= w - 1) & (yi >= 0) & (yi <= h - 1)
      index = (jnp.clip(yi, 0, h - 1) * w + jnp.clip(xi, 0, w - 1)).astype(jnp.int32)
      tap = jnp.take_along_axis(flat, index[..., None], axis=1)
      out = out + tap * jnp.where(inside, weight, 0.0)[..., None].astype(value.dtype)
  return out


def ms_deform_attn(value, shapes, locations, weights):
  """The deformable attention core.

  value (B, S, heads, head_dim) over the levels' flattened maps (S = Σ h·w, in `shapes` order);
  locations (B, Q, heads, levels, points, 2) in [0, 1] as (x, y); weights (B, Q, heads, levels, points),
  already softmaxed. Returns (B, Q, heads · head_dim).
  """
  b, _, heads, head_dim = value.shape
  _, q, _, levels, points, _ = locations.shape
  out = jnp.zeros((b, heads, q, head_dim), value.dtype)
  start = 0
  for level, (h, w) in enumerate(shapes):
    v = value[:, start:start + h * w].reshape(b, h, w, heads, head_dim)
    v = v.transpose(0, 3, 1, 2, 4).reshape(b * heads, h, w, head_dim)  # heads split on the value
    loc = locations[:, :, :, level].transpose(0, 2, 1, 3, 4).reshape(b * heads, q * points, 2)
    sampled = bilinear_sample(v, loc).reshape(b, heads, q, points, head_dim)
    wt = weights[:, :, :, level].transpose(0, 2, 1, 3)  # (B, heads, Q, points)
    out = out + jnp.einsum("bhqpd,bhqp->bhqd", sampled, wt.astype(value.dtype))
    start += h * w
  return out.transpose(0, 2, 1, 3).reshape(b, q, heads * head_dim)


def ms_deform_attn_dense(value, shapes, locations, weights):
  """`ms_deform_attn` as dense products, the same numbers: bilinear sampling with zero padding is the sum over
  the map's pixels of the tent weights max(0, 1 - |x - j|)·max(0, 1 - |y - i|), so each query's attention
  weights and taps fold into one (h·w) row and the values are read by a matmul. Memory O(Q·h·w) per head:
  for small maps (a simulator's cameras and BEV), where it is much faster than gathers on CPU."""
  b, _, heads, head_dim = value.shape
  out, start = 0.0, 0
  for level, (h, w) in enumerate(shapes):
    v = value[:, start:start + h * w].reshape(b, h, w, heads, head_dim)
    x = locations[:, :, :, level, :, 0].astype(jnp.float32) * w - 0.5  # (B, Q, heads, points)
    y = locations[:, :, :, level, :, 1].astype(jnp.float32) * h - 0.5
    tent_x = jnp.maximum(0.0, 1 - jnp.abs(x[..., None] - jnp.arange(w, dtype=jnp.float32)))
    tent_y = jnp.maximum(0.0, 1 - jnp.abs(y[..., None] - jnp.arange(h, dtype=jnp.float32)))
    rows = jnp.einsum("bqmp,bqmpi,bqmpj->bqmij", weights[:, :, :, level].astype(jnp.float32), tent_y, tent_x)
    out = out + jnp.einsum("bqmij,bijmd->bqmd", rows.astype(value.dtype), v)
    start += h * w
  return out.reshape(out.shape[:2] + (heads * head_dim,))


def offset_bias_init(heads: int, levels: int, points: int):
  """The official init: head i's offsets point along angle 2πi/heads (scaled to the unit square's
  border), the k-th point k+1 times as far."""
  def init(key, shape, dtype=jnp.float32):
    del key
    theta = np.arange(heads) * (2.0 * math.pi / heads)
    grid = np.stack([np.cos(theta), np.sin(theta)], -1)
    grid = grid / np.abs(grid).max(-1, keepdims=True)
    grid = np.tile(grid[:, None, None, :], (1, levels, points, 1)) * np.arange(1, points + 1)[None, None, :, None]
    return jnp.asarray(grid.reshape(shape), dtype)
  return init


class MSDeformAttn(nnx.Module):
  """Multi-scale deformable attention: offsets and weights from the query, values from the memory."""

  def __init__(self, dim: int, num_heads: int, num_levels: int, num_points: int, *, dense_sampling: bool = False,
               dtype=None, param_dtype=jnp.float32, rngs: nnx.Rngs):
    if dim % num_heads:
      raise ValueError(f"d_model {dim} is not divisible by num_heads {num_heads}")
    self.num_heads, self.num_levels, self.num_points = num_heads, num_levels, num_points
    self.dense_sampling = dense_sampling  # ms_deform_attn_dense: the same numbers, faster on small maps
    kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
    zeros = nnx.initializers.zeros
    self.sampling_offsets = Dense(dim, (num_heads, num_levels, num_points, 2), axes=("embed", "heads", None, None, None),
                                  kernel_init=zeros, bias_init=offset_bias_init(num_heads, num_levels, num_points), **kw)
    self.attention_weights = Dense(dim, (num_heads, num_levels * num_points), axes=("embed", "heads", None),
                                   kernel_init=zeros, **kw)
    self.value_proj = Dense(dim, (num_heads, dim // num_heads), axes=("embed", "heads", "kv"),
                            kernel_init=nnx.initializers.variance_scaling(1.0, "fan_avg", "uniform", in_axis=0,
                                                                          out_axis=(1, 2)), **kw)
    self.output_proj = Dense(dim, dim, axes=("embed", "embed"), kernel_init=XAVIER, **kw)

  def __call__(self, query, reference_points, memory, shapes, memory_mask=None):
    """query (B, Q, D) (position added); reference_points (B, Q, levels, 2 or 4) normalised (x, y[, w, h]);
    memory (B, S, D); memory_mask (B, S) True = real (padding gives zero values)."""
    b, q, _ = query.shape
    value = self.value_proj(memory)
    if memory_mask is not None:
      value = jnp.where(memory_mask[:, :, None, None], value, 0)
    value = sharding.constrain(value, ("act_batch", "act_len", "act_heads", "act_kv"))
    offsets = self.sampling_offsets(query).astype(jnp.float32)  # (B, Q, heads, levels, points, 2)
    weights = jax.nn.softmax(self.attention_weights(query).astype(jnp.float32), axis=-1)
    weights = weights.reshape(b, q, self.num_heads, self.num_levels, self.num_points)
    ref = reference_points.astype(jnp.float32)[:, :, None, :, None, :]
    if reference_points.shape[-1] == 2:
      normaliser = jnp.asarray([[w, h] for h, w in shapes], jnp.float32)[None, None, None, :, None, :]
      locations = ref + offsets / normaliser
    elif reference_points.shape[-1] == 4:
      locations = ref[..., :2] + offsets / self.num_points * ref[..., 2:] * 0.5
    else:
      raise ValueError(f"reference points end in 2 or 4 coordinates, not {reference_points.shape[-1]}")
    attend = ms_deform_attn_dense if self.dense_sampling else ms_deform_attn
    out = attend(value, shapes, locations, weights.astype(value.dtype))
    return self.output_proj(out)


class EncoderLayer(nnx.Module):
  """Post-norm: deformable self-attention (queries: pixel + position, values: the pixels), then the FFN."""

  def __init__(self, dim, num_heads, num_levels, num_points, ffn_dim, dropout, *, dtype=None,
               param_dtype=jnp.float32, rngs: nnx.Rngs):
    kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
    self.self_attn = MSDeformAttn(dim, num_heads, num_levels, num_points, **kw)
    self.drop = Dropout(dropout)
    self.norm1 = LayerNorm(dim, eps=TORCH_LN_EPS, **kw)
    self.mlp = Mlp(dim, ffn_dim, act="relu", drop=dropout, bias_init=nnx.initializers.zeros, **kw)
    self.norm2 = LayerNorm(dim, eps=TORCH_LN_EPS, **kw)

  def __call__(self, x, pos, reference_points, shapes, mask, *, deterministic=None, rngs=None):
    d = dict(deterministic=deterministic, rngs=rngs)
    x = self.norm1(x + self.drop(self.self_attn(x + pos, reference_points, x, shapes, mask), **d))
    return self.norm2(x + self.mlp(x, **d))


class DecoderLayer(nnx.Module):
  """Post-norm: self-attention over the queries (query position on q and k), deformable cross-attention
  to the encoder memory around the reference points, then the FFN."""

  def __init__(self, dim, num_heads, num_levels, num_points, ffn_dim, dropout, *, dense_sampling: bool = False,
               dtype=None, param_dtype=jnp.float32, rngs: nnx.Rngs):
    kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
    self.self_attn = DetrAttention(dim, num_heads, attn_drop=dropout, **kw)
    self.norm1 = LayerNorm(dim, eps=TORCH_LN_EPS, **kw)
    self.cross_attn = MSDeformAttn(dim, num_heads, num_levels, num_points, dense_sampling=dense_sampling, **kw)
    self.norm2 = LayerNorm(dim, eps=TORCH_LN_EPS, **kw)
    self.mlp = Mlp(dim, ffn_dim, act="relu", drop=dropout, bias_init=nnx.initializers.zeros, **kw)
    self.norm3 = LayerNorm(dim, eps=TORCH_LN_EPS, **kw)
    self.drop = Dropout(dropout)

  def __call__(self, x, query_pos, reference_points, memory, shapes, mask, *, deterministic=None, rngs=None):
    d = dict(deterministic=deterministic, rngs=rngs)
    qk = x + query_pos
    x = self.norm1(x + self.drop(self.self_attn(qk, qk, x, **d), **d))
    x = self.norm2(x + self.drop(self.cross_attn(x + query_pos, reference_points, memory, shapes, mask), **d))
    return self.norm3(x + self.mlp(x, **d))


def inverse_sigmoid(x, eps: float = 1e-5):
  x = jnp.clip(x, 0.0, 1.0)
  return jnp.log(jnp.maximum(x, eps) / jnp.maximum(1 - x, eps))


def valid_ratio(mask):
  """(B, h, w) bool → (B, 2): the real fraction of the width and of the height (the official `get_valid_ratio`)."""
  h, w = mask.shape[1:]
  return jnp.stack([mask[:, 0, :].sum(1) / w, mask[:, :, 0].sum(1) / h], -1).astype(jnp.float32)


def encoder_reference_points(shapes, valid_ratios):
  """Pixel centres of every level, normalised by the real extent, then scaled to each level: (B, S, levels, 2)."""
  refs = []
  for level, (h, w) in enumerate(shapes):
    ys, xs = np.meshgrid(np.arange(h) + 0.5, np.arange(w) + 0.5, indexing="ij")
    ref_y = jnp.asarray(ys.reshape(-1), jnp.float32)[None] / (valid_ratios[:, None, level, 1] * h)
    ref_x = jnp.asarray(xs.reshape(-1), jnp.float32)[None] / (valid_ratios[:, None, level, 0] * w)
    refs.append(jnp.stack([ref_x, ref_y], -1))
  return jnp.concatenate(refs, 1)[:, :, None] * valid_ratios[:, None]


def proposal_pos_embed(proposals, num_pos_feats: int, temperature: float = 10000.0):
  """Two-stage queries: sine embedding of sigmoid(proposal logits) · 2π, (B, K, 4) → (B, K, 4·num_pos_feats)."""
  i = np.arange(num_pos_feats)
  dim_t = jnp.asarray(temperature ** (2 * (i // 2) / num_pos_feats), jnp.float32)
  p = jax.nn.sigmoid(proposals.astype(jnp.float32)) * 2 * math.pi
  p = p[..., None] / dim_t
  p = jnp.stack([jnp.sin(p[..., 0::2]), jnp.cos(p[..., 1::2])], axis=-1)
  return p.reshape(p.shape[:2] + (-1,))


class DeformableDETR(nnx.Module):
  """`backbone`: a models/resnet.py depth ("resnet50"); `backbone_width` / `backbone_block` /
  `backbone_layers` shrink it for tests; `backbone_norm="batch"` trains the backbone's BatchNorm, for demos
  that start from random init. `num_classes`: sigmoid outputs (COCO: 91)."""

  def __init__(self, *, num_classes: int = 91, backbone: str = "resnet50", backbone_width: int = 64,
               backbone_block: str | None = None, backbone_layers=None, backbone_norm: str = "frozen",
               d_model: int = 256, num_heads: int = 8, encoder_layers: int = 6, decoder_layers: int = 6,
               ffn_dim: int = 1024, dropout: float = 0.1,
               num_queries: int = 300, num_feature_levels: int = 4, encoder_points: int = 4,
               decoder_points: int = 4, with_box_refine: bool = False, two_stage: bool = False,
               two_stage_num_proposals: int = 300, in_chans: int = 3, dtype=None, param_dtype=jnp.float32,
               rngs: nnx.Rngs):
    block, layers = VARIANTS[backbone]
    kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
    self.num_classes, self.num_queries, self.d_model = num_classes, num_queries, d_model
    self.num_feature_levels, self.decoder_layers = num_feature_levels, decoder_layers
    self.with_box_refine, self.two_stage = with_box_refine, two_stage
    self.two_stage_num_proposals = two_stage_num_proposals
    self.backbone = ResNet(block=backbone_block or block, layers=tuple(backbone_layers or layers), num_classes=0,
                           in_chans=in_chans, width=backbone_width, zero_init_last=False, norm=backbone_norm, **kw)
    stages = backbone_layers or layers
    channels = [backbone_width * 2 ** i * EXPANSION[backbone_block or block] for i in range(1, len(stages))]  # C3–C5
    self.num_backbone_levels = min(len(channels), num_feature_levels)
    channels = channels[len(channels) - self.num_backbone_levels:]
    proj = []
    for c in channels:
      proj.append(nnx.List([Conv(c, d_model, 1, use_bias=True, kernel_init=XAVIER, **kw), GroupNorm(d_model, **kw)]))
    in_c = channels[-1]
    for _ in range(num_feature_levels - len(channels)):  # extra levels: stride-2 3×3 convs on C5, then on each other
      proj.append(nnx.List([Conv(in_c, d_model, 3, stride=2, use_bias=True, kernel_init=XAVIER, **kw),
                            GroupNorm(d_model, **kw)]))
      in_c = d_model
    self.input_proj = nnx.List(proj)
    self.level_embed = nnx.Param(jax.random.normal(rngs.params(), (num_feature_levels, d_model), param_dtype),
                                 axes=(None, "embed"))
    args = (d_model, num_heads, num_feature_levels)
    self.encoder = nnx.List([EncoderLayer(*args, encoder_points, ffn_dim, dropout, **kw)
                             for _ in range(encoder_layers)])
    self.decoder = nnx.List([DecoderLayer(*args, decoder_points, ffn_dim, dropout, **kw)
                             for _ in range(decoder_layers)])
    if two_stage:
      self.enc_output = Dense(d_model, d_model, axes=("embed", "embed"), kernel_init=XAVIER, **kw)
      self.enc_output_norm = LayerNorm(d_model, eps=TORCH_LN_EPS, **kw)
      self.pos_trans = Dense(2 * d_model, 2 * d_model, axes=("embed", "embed"), kernel_init=XAVIER, **kw)
      self.pos_trans_norm = LayerNorm(2 * d_model, eps=TORCH_LN_EPS, **kw)
      self.query_embed = self.reference_points = None
    else:
      self.query_embed = nnx.Param(jax.random.normal(rngs.params(), (num_queries, 2 * d_model), param_dtype),
                                   axes=(None, "embed"))
      self.reference_points = Dense(d_model, 2, axes=("embed", None), kernel_init=XAVIER, **kw)
      self.enc_output = self.enc_output_norm = self.pos_trans = self.pos_trans_norm = None
    # One class and box head shared by every layer, or (box refinement) one per decoder layer, plus one
    # for the encoder's proposals (two-stage).
    num_heads_out = (decoder_layers + int(two_stage)) if with_box_refine else 1
    prior = -math.log((1 - 0.01) / 0.01)  # focal loss's prior probability 0.01
    self.class_embed = nnx.List([Dense(d_model, num_classes, axes=("embed", "classes"),
                                       bias_init=nnx.initializers.constant(prior), **kw)
                                 for _ in range(num_heads_out)])
    # The official init: each box head's last layer at zero; a -2 bias on (w, h) gives the first layer's boxes
    # a size of sigmoid(-2) ≈ 0.12 around their point reference. Refining heads add to the previous box and
    # two-stage references are boxes already: their bias stays 0.
    self.bbox_embed = nnx.List([_box_head(d_model, size_bias=-2.0 if i == 0 and not two_stage else 0.0, **kw)
                                for i in range(num_heads_out)])

  def _head(self, heads, i: int):
    return heads[i] if self.with_box_refine else heads[0]

  def features(self, images, pixel_mask, *, train: bool):
    """→ the levels' flattened maps (B, S, D), position + level embeddings (B, S, D), masks (B, S) (None
    without a pixel mask), shapes, and per-level valid ratios (B, levels, 2)."""
    b, h, w, _ = images.shape
    stages = self.backbone.stages(images, train=train)[1:]
    stages = stages[len(stages) - self.num_backbone_levels:]
    sources = []
    for level in range(self.num_feature_levels):
      conv, norm = self.input_proj[level]
      if level < len(stages):
        x = stages[level]
      else:
        x = stages[-1] if level == len(stages) else sources[-1]
      sources.append(norm(conv(x)))
    flat, pos, masks, shapes, ratios = [], [], [], [], []
    for level, x in enumerate(sources):
      fh, fw = x.shape[1:3]
      # No pixel mask: every pixel is real (no key mask, valid ratios 1, a constant position encoding).
      mask = None if pixel_mask is None else resize_mask(pixel_mask, fh, fw)
      p = sine_position_embedding(mask, self.d_model // 2, offset=-0.5, size=(fh, fw))
      p = jnp.broadcast_to(p + self.level_embed[level].astype(jnp.float32), (b, fh, fw, self.d_model))
      flat.append(x.reshape(b, fh * fw, self.d_model))
      pos.append(p.reshape(b, fh * fw, self.d_model).astype(x.dtype))
      shapes.append((fh, fw))
      if mask is not None:
        masks.append(mask.reshape(b, fh * fw))
        ratios.append(valid_ratio(mask))
    if pixel_mask is None:
      return jnp.concatenate(flat, 1), jnp.concatenate(pos, 1), None, tuple(shapes), jnp.ones((b, len(shapes), 2))
    return (jnp.concatenate(flat, 1), jnp.concatenate(pos, 1), jnp.concatenate(masks, 1), tuple(shapes),
            jnp.stack(ratios, 1))

  def proposals(self, memory, mask, shapes):
    """Two-stage: each real pixel's proposal (inverse-sigmoid cxcywh, +inf where padded or near the border)
    and its object-query features. mask None: every pixel is real."""
    b = memory.shape[0]
    props, start = [], 0
    for level, (h, w) in enumerate(shapes):
      if mask is None:
        valid_h, valid_w = jnp.full((b,), h), jnp.full((b,), w)
      else:
        m = mask[:, start:start + h * w].reshape(b, h, w)
        valid_h, valid_w = m[:, :, 0].sum(1), m[:, 0, :].sum(1)
      ys, xs = np.meshgrid(np.arange(h, dtype=np.float32), np.arange(w, dtype=np.float32), indexing="ij")
      grid = jnp.asarray(np.stack([xs, ys], -1))[None]  # (1, h, w, 2)
      scale = jnp.stack([valid_w, valid_h], -1).astype(jnp.float32)[:, None, None, :]
      grid = (grid + 0.5) / scale
      wh = jnp.full_like(grid, 0.05 * 2.0 ** level)
      props.append(jnp.concatenate([grid, wh], -1).reshape(b, h * w, 4))
      start += h * w
    props = jnp.concatenate(props, 1)
    ok = jnp.all((props > 0.01) & (props < 0.99), -1, keepdims=True)
    props = jnp.log(props / (1 - props))
    keep = ok if mask is None else ok & mask[..., None]
    props = jnp.where(keep, props, jnp.inf)
    query = jnp.where(keep, memory, 0)
    return props, self.enc_output_norm(self.enc_output(query))

  def __call__(self, images, *, pixel_mask=None, train: bool | None = None, rngs: nnx.Rngs | None = None):
    deterministic = None if train is None else not train
    d = dict(deterministic=deterministic, rngs=rngs)
    b = images.shape[0]
    pixel_mask = None if pixel_mask is None else pixel_mask.astype(bool)
    x, pos, mask, shapes, ratios = self.features(images, pixel_mask, train=bool(train))
    refs = encoder_reference_points(shapes, ratios)
    for layer in self.encoder:
      x = layer(x, pos, refs, shapes, mask, **d)
    memory, out = x, {}
    if self.two_stage:
      props, query = self.proposals(memory, mask, shapes)
      enc_logits = self._head(self.class_embed, self.decoder_layers)(query)
      enc_coords = self._head(self.bbox_embed, self.decoder_layers)(query) + props
      out["enc_logits"], out["enc_boxes"] = enc_logits.astype(jnp.float32), jax.nn.sigmoid(enc_coords)
      _, top = jax.lax.top_k(enc_logits[..., 0], self.two_stage_num_proposals)
      top_coords = jax.lax.stop_gradient(jnp.take_along_axis(enc_coords, top[..., None], axis=1))
      reference = jax.nn.sigmoid(top_coords)
      query_pos, target = jnp.split(self.pos_trans_norm(self.pos_trans(
          proposal_pos_embed(top_coords, self.d_model // 2).astype(memory.dtype))), 2, axis=-1)
    else:
      query_pos, target = jnp.split(self.query_embed[...].astype(memory.dtype), 2, axis=-1)
      query_pos = jnp.broadcast_to(query_pos, (b,) + query_pos.shape)
      target = jnp.broadcast_to(target, (b,) + target.shape)
      reference = jax.nn.sigmoid(self.reference_points(query_pos).astype(jnp.float32))
    logits, boxes = [], []
    for i, layer in enumerate(self.decoder):
      scale = ratios if reference.shape[-1] == 2 else jnp.concatenate([ratios, ratios], -1)
      target = layer(target, query_pos, reference[:, :, None] * scale[:, None], memory, shapes, mask, **d)
      delta = self._head(self.bbox_embed, i)(target).astype(jnp.float32)
      logits.append(self._head(self.class_embed, i)(target).astype(jnp.float32))
      boxes.append(jax.nn.sigmoid(_add_reference(delta, reference)))
      if self.with_box_refine:  # the next layer's reference: this layer's box, not back-propagated
        reference = jax.lax.stop_gradient(boxes[-1])
    out["logits"], out["boxes"] = jnp.stack(logits), jnp.stack(boxes)
    return out


def _add_reference(delta, reference):
  """Box logits: the head's output plus the reference in logit space (centre only for a point reference)."""
  if reference.shape[-1] == 4:
    return delta + inverse_sigmoid(reference)
  return delta.at[..., :2].add(inverse_sigmoid(reference))


def _box_head(d_model, *, size_bias: float, **kw):
  """DETR's 3-layer box MLP with its last layer at zero and `size_bias` on the (w, h) outputs."""
  head = BoxMLP(d_model, d_model, 4, 3, **kw)
  last = head.layers[-1]
  last.kernel[...] = jnp.zeros_like(last.kernel[...])
  last.bias[...] = jnp.asarray([0.0, 0.0, size_bias, size_bias], last.bias[...].dtype)
  return head


register("deformable_detr_resnet50", DeformableDETR, backbone="resnet50")
register("deformable_detr_resnet50_box_refine", DeformableDETR, backbone="resnet50", with_box_refine=True)
register("deformable_detr_resnet50_two_stage", DeformableDETR, backbone="resnet50", with_box_refine=True,
         two_stage=True)


def forward_flops(model: DeformableDETR, img_size: int = 800, *, count_padding: bool = True) -> float:
  """FLOPs of one forward pass on one img_size × img_size image (default: 800, the paper's shorter side),
  element-wise work included (models/conv_flops.py): the backbone and its extra level, the deformable
  encoder and decoder (offsets, attention weights and the bilinear sampling's arithmetic; the gathers
  themselves are not arithmetic), the two-stage proposals, and every layer's heads."""
  return conv_flops.traced_flops(lambda m, x: m(x, train=False), model,
                                 conv_flops.images(img_size, model.backbone.in_chans), count_padding=count_padding)


EMBEDDINGS = ("query_embed", "level_embed")  # object queries (absent in the two-stage model), level embeddings
