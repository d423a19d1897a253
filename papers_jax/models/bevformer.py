"""BEVFormer ("BEVFormer: Learning Bird's-Eye-View Representation from Multi-Camera Images via Spatiotemporal
Transformers", Li et al., ECCV 2022), written from the paper and the official code's modules.

Each camera image goes through a shared backbone; each level is projected to d_model and gets a learned
camera and level embedding. A grid of bev_h × bev_w learned BEV queries (plus a learned row/column position
embedding, and the ego-motion "CAN bus" vector through a small MLP) covers `pc_range`'s x, y; row i is y,
column j is x, flattened row-major. The encoder's layers are post-norm: temporal self-attention → norm →
spatial cross-attention → norm → FFN → norm.

- Spatial cross-attention (SCA): each query's pillar holds `pillar_points` points at fixed heights
  (evenly inside pc_range's z). They are projected into every camera with its `lidar2img`; a camera is
  a hit view of the query where any pillar point lands in front of it and inside the image. In each hit
  view the query does deformable attention (offsets and weights from the query, values from that camera's
  features); the `sca_points` points of a head and level cycle over the pillar's projected points as
  reference. The results are summed over hit views, divided by their number (at least 1), then projected.
- Temporal self-attention (TSA): deformable attention over two BEV maps, [the previous BEV aligned to the
  current ego frame, the current BEV queries] (first frame: the layer's input twice, as the official
  code); offsets and weights come from the concatenation [first map, query + position], each map has its
  own, and the two results are averaged.
- Alignment: each current BEV cell centre is moved into the previous ego frame by the ego motion and the
  previous BEV is sampled there bilinearly (zeros outside), one warp for translation and rotation.

The detection head is Deformable DETR's decoder (models/deformable_detr.py) on the BEV: `num_queries`
(query position, target) pairs, 3-D reference points sigmoid(Linear(query position)), self-attention,
deformable cross-attention to the BEV at the reference (x, y), FFN; iterative refinement of the
reference by each layer's regression branch. Per layer: a class branch (Linear, LN, ReLU) × num_reg_fcs
then num_classes logits, and a regression branch (Linear, ReLU) × num_reg_fcs then `code_size` outputs
(cx, cy, log w, log l, cz, log h, sin yaw, cos yaw[, vx, vy]); cx, cy, cz are sigmoid(output + the
reference's logit) scaled to pc_range (metres), as the official head.

Model input: images (B, T, N, H, W, 3) normalised, lidar2img (B, T, N, 4, 4) with pixel coordinates of
the (H, W) images, ego_motion (B, 3) = (dx, dy, dyaw) of the previous ego pose in the current frame
(data/bev_scenes.py). T = 2: frame 0 makes the previous BEV (no gradient, no dropout, as the official
code), frame 1 the current; T = 1 or `temporal=False`: no history.
Outputs: {"logits": (L, B, Q, num_classes), "boxes": (L, B, Q, code_size)} over the decoder layers.
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from papers_jax.models.deformable_detr import (XAVIER, DecoderLayer, bilinear_sample, inverse_sigmoid,
                                               ms_deform_attn, ms_deform_attn_dense, offset_bias_init)
from papers_jax.models.detr import TORCH_LN_EPS
from papers_jax.models import conv_flops
from papers_jax.models.registry import register
from papers_jax.models.resnet import EXPANSION, VARIANTS, ResNet
from papers_jax.nn.conv import Conv
from papers_jax.nn.drop import Dropout
from papers_jax.nn.linear import Dense, param
from papers_jax.nn.mlp import Mlp
from papers_jax.nn.norms import GroupNorm, LayerNorm

NUSCENES_RANGE = (-51.2, -51.2, -5.0, 51.2, 51.2, 3.0)


# ---------------------------------------------------------------------------------------------- geometry
def bev_reference_2d(bev_h: int, bev_w: int) -> np.ndarray:
  """(bev_h · bev_w, 2) cell centres as normalised (x, y), row-major (row = y)."""
  ys, xs = np.meshgrid((np.arange(bev_h) + 0.5) / bev_h, (np.arange(bev_w) + 0.5) / bev_w, indexing="ij")
  return np.stack([xs.reshape(-1), ys.reshape(-1)], -1).astype(np.float32)


def pillar_points(bev_h: int, bev_w: int, num_points: int, pc_range) -> np.ndarray:
  """(bev_h · bev_w, num_points, 3) pillar points in metres: cell centres at heights evenly inside pc_range's z
  ((k + 0.5) / num_points of the way up, the official linspace(0.5, Z - 0.5) / Z)."""
  ref = bev_reference_2d(bev_h, bev_w)
  x = pc_range[0] + ref[:, 0] * (pc_range[3] - pc_range[0])
  y = pc_range[1] + ref[:, 1] * (pc_range[4] - pc_range[1])
  z = pc_range[2] + (np.arange(num_points) + 0.5) / num_points * (pc_range[5] - pc_range[2])
  q = len(ref)
  return np.stack([np.repeat(x[:, None], num_points, 1), np.repeat(y[:, None], num_points, 1),
                   np.broadcast_to(z, (q, num_points))], -1).astype(np.float32)


def project_pillars(points, lidar2img, image_hw, eps: float = 1e-5):
  """points (Q, P, 3) metres, lidar2img (B, N, 4, 4) → normalised image (x, y) (B, N, Q, P, 2) and the
  mask (B, N, Q, P) of points in front of the camera and strictly inside the image (official `point_sampling`)."""
  h, w = image_hw
  homo = jnp.concatenate([points, jnp.ones(points.shape[:-1] + (1,), points.dtype)], -1)
  cam = jnp.einsum("bnij,qpj->bnqpi", lidar2img.astype(jnp.float32), homo)
  depth = cam[..., 2]
  xy = cam[..., :2] / jnp.maximum(depth, eps)[..., None]
  xy = xy / jnp.asarray([w, h], jnp.float32)
  mask = (depth > eps) & (xy[..., 0] > 0) & (xy[..., 0] < 1) & (xy[..., 1] > 0) & (xy[..., 1] < 1)
  return xy, mask


def align_previous_bev(prev_bev, ego_motion, bev_h: int, bev_w: int, pc_range):
  """prev_bev (B, bev_h · bev_w, D) of the previous ego frame → the current frame's grid: each current cell
  centre p is at R(-dyaw)·(p - (dx, dy)) in the previous frame, where the previous BEV is sampled (bilinear,
  zeros outside the grid)."""
  b, _, d = prev_bev.shape
  ref = jnp.asarray(bev_reference_2d(bev_h, bev_w))
  size = jnp.asarray([pc_range[3] - pc_range[0], pc_range[4] - pc_range[1]], jnp.float32)
  low = jnp.asarray(pc_range[:2], jnp.float32)
  p = low + ref * size  # (Q, 2) metres
  dx, dy, dyaw = (ego_motion[:, i].astype(jnp.float32)[:, None] for i in range(3))
  c, s = jnp.cos(dyaw), jnp.sin(dyaw)
  px, py = p[None, :, 0] - dx, p[None, :, 1] - dy
  prev = jnp.stack([c * px + s * py, -s * px + c * py], -1)  # (B, Q, 2)
  locations = (prev - low) / size
  return bilinear_sample(prev_bev.reshape(b, bev_h, bev_w, d), locations).astype(prev_bev.dtype)


# ---------------------------------------------------------------------------------------------- attention
class SpatialCrossAttention(nnx.Module):
  """SCA: deformable attention in each hit view around the pillar's projections, averaged over hit views."""

  def __init__(self, dim: int, num_heads: int, num_levels: int, num_points: int, dropout: float, *,
               dense_sampling: bool = False, dtype=None, param_dtype=jnp.float32, rngs: nnx.Rngs):
    kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
    self.num_heads, self.num_levels, self.num_points = num_heads, num_levels, num_points
    self.dense_sampling = dense_sampling
    zeros = nnx.initializers.zeros
    self.sampling_offsets = Dense(dim, (num_heads, num_levels, num_points, 2),
                                  axes=("embed", "heads", None, None, None), kernel_init=zeros,
                                  bias_init=offset_bias_init(num_heads, num_levels, num_points), **kw)
    self.attention_weights = Dense(dim, (num_heads, num_levels * num_points), axes=("embed", "heads", None),
                                   kernel_init=zeros, **kw)
    self.value_proj = Dense(dim, (num_heads, dim // num_heads), axes=("embed", "heads", "kv"),
                            kernel_init=nnx.initializers.variance_scaling(1.0, "fan_avg", "uniform", in_axis=0,
                                                                          out_axis=(1, 2)), **kw)
    self.output_proj = Dense(dim, dim, axes=("embed", "embed"), kernel_init=XAVIER, **kw)
    self.drop = Dropout(dropout)

  def __call__(self, query, query_pos, value, shapes, reference_cam, hit, *, deterministic=None, rngs=None):
    """query (B, Q, D); value (B, N, S, D) the cameras' features; reference_cam (B, N, Q, P, 2) the pillar's
    normalised projections; hit (B, N, Q) bool."""
    b, q, _ = query.shape
    n, anchors = value.shape[1], reference_cam.shape[3]
    if self.num_points % anchors:
      raise ValueError(f"sca_points {self.num_points} is not a multiple of the {anchors} pillar points")
    v = self.value_proj(value).reshape((b * n,) + value.shape[2:3] + (self.num_heads, -1))
    x = query + query_pos
    offsets = self.sampling_offsets(x).astype(jnp.float32)  # (B, Q, heads, levels, points, 2)
    weights = jax.nn.softmax(self.attention_weights(x).astype(jnp.float32), axis=-1)
    weights = weights.reshape(b, q, self.num_heads, self.num_levels, self.num_points)
    normaliser = jnp.asarray([[w, h] for h, w in shapes], jnp.float32)[:, None, :]  # (levels, 1, 2)
    offsets = offsets / normaliser
    # Point k of a head and level samples around pillar point k mod P (the official view as (points / P, P)).
    ref = jnp.tile(reference_cam.astype(jnp.float32), (1, 1, 1, self.num_points // anchors, 1))  # (B, N, Q, pts, 2)
    locations = ref[:, :, :, None, None] + offsets[:, None]  # (B, N, Q, heads, levels, points, 2)
    locations = locations.reshape((b * n,) + locations.shape[2:])
    weights = jnp.broadcast_to(weights[:, None], (b, n) + weights.shape[1:]).reshape((b * n,) + weights.shape[1:])
    attend = ms_deform_attn_dense if self.dense_sampling else ms_deform_attn
    out = attend(v, shapes, locations, weights.astype(v.dtype)).reshape(b, n, q, -1)
    hit_f = hit.astype(out.dtype)
    slots = jnp.einsum("bnqd,bnq->bqd", out, hit_f) / jnp.maximum(hit_f.sum(1), 1.0)[..., None]
    return query + self.drop(self.output_proj(slots), deterministic=deterministic, rngs=rngs)


class TemporalSelfAttention(nnx.Module):
  """TSA: deformable attention over [first map, current queries], offsets from their concatenation."""

  def __init__(self, dim: int, num_heads: int, num_points: int, dropout: float, *, queue: int = 2,
               dense_sampling: bool = False, dtype=None, param_dtype=jnp.float32, rngs: nnx.Rngs):
    kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
    self.num_heads, self.num_points, self.queue = num_heads, num_points, queue
    self.dense_sampling = dense_sampling
    zeros = nnx.initializers.zeros
    self.sampling_offsets = Dense(queue * dim, (num_heads, queue, num_points, 2),
                                  axes=("embed", "heads", None, None, None), kernel_init=zeros,
                                  bias_init=offset_bias_init(num_heads, queue, num_points), **kw)
    self.attention_weights = Dense(queue * dim, (num_heads, queue, num_points), axes=("embed", "heads", None, None),
                                   kernel_init=zeros, **kw)
    self.value_proj = Dense(dim, (num_heads, dim // num_heads), axes=("embed", "heads", "kv"),
                            kernel_init=nnx.initializers.variance_scaling(1.0, "fan_avg", "uniform", in_axis=0,
                                                                          out_axis=(1, 2)), **kw)
    self.output_proj = Dense(dim, dim, axes=("embed", "embed"), kernel_init=XAVIER, **kw)
    self.drop = Dropout(dropout)

  def __call__(self, query, query_pos, maps, reference_2d, shape, *, deterministic=None, rngs=None):
    """query (B, Q, D); maps (B, 2, Q, D): [the aligned previous BEV or the query, the current BEV queries];
    reference_2d (Q, 2) normalised (x, y) on the (bev_h, bev_w) `shape`."""
    b, q, _ = query.shape
    x = jnp.concatenate([maps[:, 0], query + query_pos], -1)
    offsets = self.sampling_offsets(x).astype(jnp.float32)  # (B, Q, heads, queue, points, 2)
    weights = jax.nn.softmax(self.attention_weights(x).astype(jnp.float32), axis=-1)  # over points, per map
    h, w = shape
    locations = reference_2d[None, :, None, None, None, :] + offsets / jnp.asarray([w, h], jnp.float32)
    v = self.value_proj(maps).reshape((b * self.queue, q, self.num_heads, -1))  # each map its own batch row
    locations = locations.transpose(0, 3, 1, 2, 4, 5)[:, :, :, :, None].reshape(b * self.queue, q, self.num_heads, 1,
                                                                                self.num_points, 2)
    weights = weights.transpose(0, 3, 1, 2, 4).reshape(b * self.queue, q, self.num_heads, 1, self.num_points)
    attend = ms_deform_attn_dense if self.dense_sampling else ms_deform_attn
    out = attend(v, (shape,), locations, weights.astype(v.dtype)).reshape(b, self.queue, q, -1).mean(1)
    return query + self.drop(self.output_proj(out), deterministic=deterministic, rngs=rngs)


class EncoderLayer(nnx.Module):
  """TSA → norm → SCA → norm → FFN → norm."""

  def __init__(self, dim, num_heads, num_levels, sca_points, tsa_points, ffn_dim, dropout, *,
               dense_sampling: bool = False, dtype=None, param_dtype=jnp.float32, rngs: nnx.Rngs):
    kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
    self.temporal_attn = TemporalSelfAttention(dim, num_heads, tsa_points, dropout, dense_sampling=dense_sampling,
                                               **kw)
    self.norm1 = LayerNorm(dim, eps=TORCH_LN_EPS, **kw)
    self.spatial_attn = SpatialCrossAttention(dim, num_heads, num_levels, sca_points, dropout,
                                              dense_sampling=dense_sampling, **kw)
    self.norm2 = LayerNorm(dim, eps=TORCH_LN_EPS, **kw)
    self.mlp = Mlp(dim, ffn_dim, act="relu", drop=dropout, bias_init=nnx.initializers.zeros, **kw)
    self.norm3 = LayerNorm(dim, eps=TORCH_LN_EPS, **kw)

  def __call__(self, x, pos, bev_query, prev_bev, reference_2d, bev_shape, value, shapes, reference_cam, hit, *,
               deterministic=None, rngs=None):
    d = dict(deterministic=deterministic, rngs=rngs)
    first = x if prev_bev is None else prev_bev
    second = x if prev_bev is None else bev_query
    x = self.norm1(self.temporal_attn(x, pos, jnp.stack([first, second], 1), reference_2d, bev_shape, **d))
    x = self.norm2(self.spatial_attn(x, pos, value, shapes, reference_cam, hit, **d))
    return self.norm3(x + self.mlp(x, **d))


# ---------------------------------------------------------------------------------------------- model
class ConvStem(nnx.Module):
  """A small backbone for the simulator: 3×3 stride-2 convolutions with ReLU; returns every stage's map."""

  def __init__(self, in_chans: int, channels, *, dtype=None, param_dtype=jnp.float32, rngs: nnx.Rngs):
    chans = (in_chans,) + tuple(channels)
    self.convs = nnx.List([Conv(a, b, 3, stride=2, use_bias=True, dtype=dtype, param_dtype=param_dtype, rngs=rngs)
                           for a, b in zip(chans[:-1], chans[1:])])

  def stages(self, x, *, train: bool = False):
    del train
    outs = []
    for conv in self.convs:
      x = jax.nn.relu(conv(x))
      outs.append(x)
    return outs


class BEVFormer(nnx.Module):
  """`backbone`: "conv" (ConvStem of `stem_channels`) or a models/resnet.py depth ("resnet101"; frozen BN); the
  last `num_levels` stages, each through a 1×1 conv and GroupNorm(32) to d_model (Deformable DETR's input
  projection in place of the official FPN). `temporal=False` turns the history off (TSA over the queries)."""

  def __init__(self, *, num_classes: int = 10, num_cams: int = 6, bev_h: int = 200, bev_w: int = 200,
               pc_range=NUSCENES_RANGE, d_model: int = 256, num_heads: int = 8, ffn_dim: int = 512,
               encoder_layers: int = 6, decoder_layers: int = 6, num_queries: int = 900, num_levels: int = 4,
               pillar_points: int = 4, sca_points: int = 8, tsa_points: int = 4, decoder_points: int = 4,
               code_size: int = 10, num_reg_fcs: int = 2, can_bus_dim: int = 18, dropout: float = 0.1,
               temporal: bool = True, backbone: str = "resnet101", stem_channels=(32, 64, 64), in_chans: int = 3,
               dense_sampling: bool = False, dtype=None, param_dtype=jnp.float32, rngs: nnx.Rngs):
    kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
    self.num_classes, self.bev_h, self.bev_w, self.d_model = num_classes, bev_h, bev_w, d_model
    self.pc_range, self.num_levels, self.pillar_points = tuple(float(v) for v in pc_range), num_levels, pillar_points
    self.temporal, self.code_size, self.can_bus_dim = temporal, code_size, can_bus_dim
    if backbone == "conv":
      self.backbone = ConvStem(in_chans, stem_channels, **kw)
      channels = list(stem_channels)
    else:
      block, layers = VARIANTS[backbone]
      self.backbone = ResNet(block=block, layers=tuple(layers), num_classes=0, in_chans=in_chans, width=64,
                             zero_init_last=False, norm="frozen", **kw)
      channels = [64 * 2 ** i * EXPANSION[block] for i in range(len(layers))]
    if num_levels > len(channels):
      raise ValueError(f"num_levels {num_levels} is more than the backbone's {len(channels)} stages")
    self.input_proj = nnx.List([nnx.List([Conv(c, d_model, 1, use_bias=True, kernel_init=XAVIER, **kw),
                                          GroupNorm(d_model, num_groups=min(32, d_model), **kw)])
                                for c in channels[len(channels) - num_levels:]])
    normal = nnx.initializers.normal(1.0)
    self.level_embeds = param(rngs, normal, (num_levels, d_model), param_dtype, (None, "embed"))
    self.cams_embeds = param(rngs, normal, (num_cams, d_model), param_dtype, (None, "embed"))
    self.bev_embedding = param(rngs, normal, (bev_h * bev_w, d_model), param_dtype, (None, "embed"))
    uniform = nnx.initializers.uniform(1.0)  # torch's LearnedPositionalEncoding: nn.init.uniform_
    self.row_embed = param(rngs, uniform, (bev_h, d_model // 2), param_dtype, (None, "embed"))
    self.col_embed = param(rngs, uniform, (bev_w, d_model // 2), param_dtype, (None, "embed"))
    self.can_bus_fc1 = Dense(can_bus_dim, d_model // 2, axes=(None, "mlp"), **kw)
    self.can_bus_fc2 = Dense(d_model // 2, d_model, axes=("mlp", "embed"), **kw)
    self.can_bus_norm = LayerNorm(d_model, eps=TORCH_LN_EPS, **kw)
    self.encoder = nnx.List([EncoderLayer(d_model, num_heads, num_levels, sca_points, tsa_points, ffn_dim, dropout,
                                          dense_sampling=dense_sampling, **kw) for _ in range(encoder_layers)])
    self.query_embedding = param(rngs, normal, (num_queries, 2 * d_model), param_dtype, (None, "embed"))
    self.reference_points = Dense(d_model, 3, axes=("embed", None), kernel_init=XAVIER, **kw)
    self.decoder = nnx.List([DecoderLayer(d_model, num_heads, 1, decoder_points, ffn_dim, dropout,
                                          dense_sampling=dense_sampling, **kw)
                             for _ in range(decoder_layers)])
    prior = -math.log((1 - 0.01) / 0.01)
    self.cls_branches = nnx.List([_branch(d_model, num_classes, num_reg_fcs, True, prior, **kw)
                                  for _ in range(decoder_layers)])
    self.reg_branches = nnx.List([_branch(d_model, code_size, num_reg_fcs, False, 0.0, **kw)
                                  for _ in range(decoder_layers)])

  def camera_features(self, images):
    """images (B, N, H, W, C) → values (B, N, S, D) with camera and level embeddings, and the level shapes."""
    b, n = images.shape[:2]
    stages = self.backbone.stages(images.reshape((b * n,) + images.shape[2:]), train=False)
    stages = stages[len(stages) - self.num_levels:]
    flat, shapes = [], []
    for level, (x, (conv, norm)) in enumerate(zip(stages, self.input_proj)):
      x = norm(conv(x))
      h, w = x.shape[1:3]
      flat.append(x.reshape(b, n, h * w, self.d_model) + self.level_embeds[level].astype(x.dtype))
      shapes.append((h, w))
    value = jnp.concatenate(flat, 2) + self.cams_embeds[...][None, :n, None].astype(flat[0].dtype)
    return value, tuple(shapes)

  def bev_position(self):
    """(bev_h · bev_w, D): [column embedding of x, row embedding of y] (official LearnedPositionalEncoding)."""
    col = jnp.broadcast_to(self.col_embed[...][None], (self.bev_h, self.bev_w, self.d_model // 2))
    row = jnp.broadcast_to(self.row_embed[...][:, None], (self.bev_h, self.bev_w, self.d_model // 2))
    return jnp.concatenate([col, row], -1).reshape(self.bev_h * self.bev_w, self.d_model)

  def can_bus(self, ego_motion):
    """(B, 3) ego motion → (B, D) added to every BEV query: the vector (dx, dy, dyaw) zero-padded to can_bus_dim."""
    x = jnp.zeros((ego_motion.shape[0], self.can_bus_dim), jnp.float32).at[:, :3].set(ego_motion.astype(jnp.float32))
    return self.can_bus_norm(jax.nn.relu(self.can_bus_fc2(jax.nn.relu(self.can_bus_fc1(x)))))

  def encode(self, images, lidar2img, ego_motion, prev_bev, *, deterministic=None, rngs=None):
    """One frame → its BEV (B, bev_h · bev_w, D); prev_bev already aligned to this frame, or None."""
    b = images.shape[0]
    value, shapes = self.camera_features(images)
    pos = jnp.broadcast_to(self.bev_position()[None].astype(value.dtype), (b,) + (self.bev_h * self.bev_w,
                                                                               self.d_model))
    bev_query = (self.bev_embedding[...][None].astype(value.dtype)
                 + self.can_bus(ego_motion)[:, None].astype(value.dtype))
    points = jnp.asarray(pillar_points(self.bev_h, self.bev_w, self.pillar_points, self.pc_range))
    reference_cam, mask = project_pillars(points, lidar2img, images.shape[2:4])
    hit = mask.any(-1)
    reference_2d = jnp.asarray(bev_reference_2d(self.bev_h, self.bev_w))
    x = bev_query
    for layer in self.encoder:
      x = layer(x, pos, bev_query, prev_bev, reference_2d, (self.bev_h, self.bev_w), value, shapes, reference_cam,
                hit, deterministic=deterministic, rngs=rngs)
    return x

  def decode(self, bev, *, deterministic=None, rngs=None):
    b = bev.shape[0]
    query_pos, target = jnp.split(self.query_embedding[...].astype(bev.dtype), 2, axis=-1)
    query_pos = jnp.broadcast_to(query_pos, (b,) + query_pos.shape)
    target = jnp.broadcast_to(target, (b,) + target.shape)
    reference = jax.nn.sigmoid(self.reference_points(query_pos).astype(jnp.float32))  # (B, Q, 3)
    low = jnp.asarray(self.pc_range[:3], jnp.float32)
    size = jnp.asarray(self.pc_range[3:], jnp.float32) - low
    logits, boxes = [], []
    for i, layer in enumerate(self.decoder):
      target = layer(target, query_pos, reference[:, :, None, :2], bev, ((self.bev_h, self.bev_w),), None,
                     deterministic=deterministic, rngs=rngs)
      code = self.reg_branches[i](target).astype(jnp.float32)
      centre = jax.nn.sigmoid(code[..., (0, 1, 4)] + inverse_sigmoid(reference))  # (x, y, z) in [0, 1]
      logits.append(self.cls_branches[i](target).astype(jnp.float32))
      metres = low + centre * size
      boxes.append(code.at[..., 0].set(metres[..., 0]).at[..., 1].set(metres[..., 1]).at[..., 4].set(metres[..., 2]))
      reference = jax.lax.stop_gradient(centre)  # the next layer's reference, not back-propagated
    return {"logits": jnp.stack(logits), "boxes": jnp.stack(boxes)}

  def __call__(self, images, lidar2img, ego_motion=None, *, train: bool | None = None, rngs: nnx.Rngs | None = None):
    deterministic = None if train is None else not train
    b, t = images.shape[:2]
    if ego_motion is None:
      ego_motion = jnp.zeros((b, 3), jnp.float32)
    prev_bev = None
    if t > 1 and self.temporal:  # the history: no gradient, no dropout
      prev = self.encode(images[:, -2], lidar2img[:, -2], jnp.zeros_like(ego_motion), None, deterministic=True)
      prev_bev = align_previous_bev(jax.lax.stop_gradient(prev), ego_motion, self.bev_h, self.bev_w, self.pc_range)
    bev = self.encode(images[:, -1], lidar2img[:, -1], ego_motion, prev_bev, deterministic=deterministic, rngs=rngs)
    return self.decode(bev, deterministic=deterministic, rngs=rngs)


class _Branch(nnx.Module):
  def __init__(self, layers, norms):
    self.layers, self.norms = nnx.List(layers), nnx.List(norms)

  def __call__(self, x):
    for i, layer in enumerate(self.layers[:-1]):
      x = layer(x)
      if self.norms:
        x = self.norms[i](x)
      x = jax.nn.relu(x)
    return self.layers[-1](x)


def _branch(d_model, out_dim, num_fcs, with_norm, last_bias, **kw):
  """The official head's branches: (Linear[, LN], ReLU) × num_fcs, then Linear to out_dim."""
  layers = [Dense(d_model, d_model, axes=("embed", "mlp"), **kw) for _ in range(num_fcs)]
  layers.append(Dense(d_model, out_dim, axes=("embed", None), bias_init=nnx.initializers.constant(last_bias), **kw))
  norms = [LayerNorm(d_model, eps=TORCH_LN_EPS, **kw) for _ in range(num_fcs)] if with_norm else []
  return _Branch(layers, norms)


# The official configurations (projects/configs/bevformer/): base 200×200 BEV, 6 encoder layers, 4 levels
# (ResNet101-DCN + FPN); small 150×150, 3 layers, 1 level (ResNet101-DCN C5); tiny 50×50, 3 layers, 1 level
# (ResNet50 C5). All: d 256, 8 heads, FFN 512, 6 decoder layers, 900 queries, 10 classes, code size 10.
register("bevformer_base", BEVFormer, backbone="resnet101", bev_h=200, bev_w=200, encoder_layers=6, num_levels=4)
register("bevformer_small", BEVFormer, backbone="resnet101", bev_h=150, bev_w=150, encoder_layers=3, num_levels=1)
register("bevformer_tiny", BEVFormer, backbone="resnet50", bev_h=50, bev_w=50, encoder_layers=3, num_levels=1)
# The simulator's model (data/bev_scenes.py): 4 cameras, 3 classes, no velocity; configs set the sizes.
register("bevformer_sim", BEVFormer, backbone="conv", num_cams=4, num_classes=3, code_size=8, bev_h=16, bev_w=16,
         pc_range=(-16.0, -16.0, -1.0, 16.0, 16.0, 3.0), d_model=64, num_heads=4, ffn_dim=128, encoder_layers=2,
         decoder_layers=3, num_queries=24, num_levels=2, stem_channels=(16, 32, 64), dense_sampling=True)

EMBEDDINGS = ("level_embeds", "cams_embeds", "bev_embedding", "row_embed", "col_embed", "query_embedding")


def forward_flops(model: BEVFormer, image_size: int = 32, *, frames: int = 2, count_padding: bool = True) -> float:
  """FLOPs of one forward pass on one example of `frames` frames of the model's cameras at image_size ×
  image_size (default: the simulator's), element-wise work included (models/conv_flops.py): the backbone
  and encoder on every frame (the history's too), the dense or gathered deformable sampling's arithmetic,
  the decoder and every layer's branches."""
  cams = model.cams_embeds.shape[0]
  in_chans = 3
  s = jax.ShapeDtypeStruct
  return conv_flops.traced_flops(lambda m, x, l, e: m(x, l, e, train=False), model,
                                 s((1, frames, cams, image_size, image_size, in_chans), jnp.float32),
                                 s((1, frames, cams, 4, 4), jnp.float32), s((1, 3), jnp.float32),
                                 count_padding=count_padding)
