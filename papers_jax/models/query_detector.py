"""A small set-prediction detector with DETR's outputs, for demos, tests and as a baseline on the generated scenes.

Not a paper's model: a strided conv stem (3×3 convolutions with ReLU, each halving the resolution), a
fixed 2-D sine position encoding added to its feature tokens, and a pre-norm decoder of learned object
queries (self-attention among the queries, cross-attention to the tokens, an MLP), with the query
embedding added to the input of each attention. Each decoder layer's output goes through the shared
final LayerNorm into the class head and a 2-layer box MLP with a sigmoid, so the set loss can
supervise every layer, as in DETR.

Outputs: {"logits": (L, B, Q, K), "boxes": (L, B, Q, 4)} over the L decoder layers (the last is the
prediction), boxes normalised (cx, cy, w, h); K = num_classes + 1 (no-object last) with
`class_head="softmax"` (DETR's), K = num_classes with "sigmoid" (Deformable DETR's focal head).
"""

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from papers_jax.models import conv_flops
from papers_jax.models.registry import register
from papers_jax.nn.attention import Attention, CrossAttention
from papers_jax.nn.conv import Conv
from papers_jax.nn.linear import Dense, param
from papers_jax.nn.mlp import Mlp
from papers_jax.nn.norms import LayerNorm


def sine_position_encoding(height: int, width: int, dim: int, temperature: float = 10000.0) -> np.ndarray:
  """(height · width, dim) fixed 2-D sine encoding: half the channels for y, half for x, positions in (0, 2π]."""
  if dim % 4:
    raise ValueError(f"the sine position encoding needs a width divisible by 4, got {dim}")
  y = (np.arange(height, dtype=np.float64) + 1) / height * 2 * np.pi
  x = (np.arange(width, dtype=np.float64) + 1) / width * 2 * np.pi
  freqs = temperature ** (2 * (np.arange(dim // 4)) / (dim // 2))
  def encode(t):
    angles = t[:, None] / freqs[None, :]
    return np.concatenate([np.sin(angles), np.cos(angles)], -1)  # (n, dim/2)
  ey, ex = encode(y), encode(x)
  grid = np.concatenate([np.repeat(ey[:, None], width, 1), np.repeat(ex[None, :], height, 0)], -1)
  return grid.reshape(height * width, dim).astype(np.float32)


class DecoderLayer(nnx.Module):
  def __init__(self, width: int, num_heads: int, mlp_ratio: float, *, dtype, param_dtype, rngs: nnx.Rngs):
    kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
    self.norm1 = LayerNorm(width, eps=1e-5, **kw)
    self.self_attn = Attention(width, num_heads, **kw)
    self.norm2 = LayerNorm(width, eps=1e-5, **kw)
    self.cross_attn = CrossAttention(width, num_heads, **kw)
    self.norm3 = LayerNorm(width, eps=1e-5, **kw)
    self.mlp = Mlp(width, int(width * mlp_ratio), act="relu", **kw)

  def __call__(self, x, query_pos, memory):
    x = x + self.self_attn(self.norm1(x) + query_pos, deterministic=True)
    x = x + self.cross_attn(self.norm2(x) + query_pos, memory, deterministic=True)
    return x + self.mlp(self.norm3(x), deterministic=True)


class QueryDetector(nnx.Module):
  def __init__(self, *, num_classes: int = 4, in_chans: int = 3, stem_channels=(32, 64, 64), width: int = 64,
               num_queries: int = 12, depth: int = 2, num_heads: int = 4, mlp_ratio: float = 2.0,
               class_head: str = "softmax", dtype=None, param_dtype=jnp.float32, rngs: nnx.Rngs):
    if class_head not in ("softmax", "sigmoid"):
      raise ValueError(f"class_head={class_head!r}; choose softmax or sigmoid")
    kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
    self.num_classes, self.class_head, self.width, self.dtype = num_classes, class_head, width, dtype
    channels = (in_chans,) + tuple(stem_channels)
    self.stem = nnx.List([Conv(a, b, 3, stride=2, use_bias=True, **kw) for a, b in zip(channels[:-1], channels[1:])])
    self.input_proj = Dense(channels[-1], width, axes=("conv_out", "embed"), **kw)
    self.query_embed = param(rngs, nnx.initializers.normal(1.0), (num_queries, width), param_dtype, (None, "embed"))
    self.layers = nnx.List([DecoderLayer(width, num_heads, mlp_ratio, **kw) for _ in range(depth)])
    self.norm = LayerNorm(width, eps=1e-5, **kw)
    self.class_embed = Dense(width, num_classes + (1 if class_head == "softmax" else 0), axes=("embed", None), **kw)
    self.bbox_hidden = Dense(width, width, axes=("embed", "mlp"), **kw)
    self.bbox_out = Dense(width, 4, axes=("mlp", None), **kw)

  def __call__(self, images, *, train: bool | None = None, rngs: nnx.Rngs | None = None):
    x = images.astype(self.dtype or images.dtype)
    for conv in self.stem:
      x = jax.nn.relu(conv(x))
    b, h, w, _ = x.shape
    memory = self.input_proj(x.reshape(b, h * w, -1)) + jnp.asarray(sine_position_encoding(h, w, self.width), x.dtype)
    query_pos = jnp.broadcast_to(self.query_embed[...].astype(memory.dtype), (b,) + self.query_embed.shape)
    tgt = jnp.zeros_like(query_pos)
    outs = []
    for layer in self.layers:
      tgt = layer(tgt, query_pos, memory)
      outs.append(self.norm(tgt))
    hs = jnp.stack(outs)
    boxes = self.bbox_out(jax.nn.relu(self.bbox_hidden(hs)))
    return {"logits": self.class_embed(hs).astype(jnp.float32), "boxes": jax.nn.sigmoid(boxes.astype(jnp.float32))}


# Any image size (a multiple of 8 for three stem stages); no checkpoint, so no preprocessing of its own:
# a config sets data.mean / data.std.
register("query_detector_tiny", QueryDetector)  # num_classes: the task sets the data's (4: the shapes scenes)


def forward_flops(model: QueryDetector, img_size: int = 64, *, count_padding: bool = True) -> float:
  """FLOPs of one forward pass on one img_size × img_size image (default: the 64-pixel scenes), element-wise
  work included (models/conv_flops.py): the convolution stem, the decoder, and the heads on every layer."""
  in_chans = model.stem[0].kernel.shape[2]
  return conv_flops.traced_flops(lambda m, x: m(x, train=False), model, conv_flops.images(img_size, in_chans),
                                 count_padding=count_padding)


EMBEDDINGS = ("query_embed",)
