"""Segment Anything (Kirillov et al., 2023, "Segment Anything"): SAM's image encoder, prompt encoder and
two-way transformer mask decoder, in NHWC.

Image encoder: an MAE-style ViT on 1024² images in 16×16 patches with a learned absolute position
embedding (64×64 grid), pre-norm blocks whose attention adds the decomposed relative position bias of
MViTv2 (a query-dependent bias q·R_h[Δrow] + q·R_w[Δcol], one table per axis and block) and runs in
14×14 windows, except at a few global blocks (ViT-B: 2, 5, 8, 11). The grid is zero-padded to a multiple
of the window after the block's first LayerNorm and cropped back after the attention (padded tokens
take part in the attention, as in the reference code). A neck maps the tokens to 256 channels:
1×1 conv, LayerNorm, 3×3 conv, LayerNorm (no conv biases).

Prompt encoder (256-d):
  points   the random Fourier feature encoding of the pixel centre (x + 0.5, y + 0.5) / image size,
           [sin, cos](2π · (2p − 1) · G) with a fixed Gaussian G (2 × 128; `FixedBuffer`, never trained),
           plus a learned embedding of the label: 1 foreground, 0 background. Label −1 is the padding
           point (its encoding replaced by the learned "not a point" embedding); a padding point is
           appended when no box is given, as the reference. Label −10 (HF's) is a point left out (zeros);
           labels 2 and 3 make a point a box's top-left / bottom-right corner (the same two tokens as a box).
  boxes    two tokens: the top-left corner's encoding + a learned "top-left" embedding, and the
           bottom-right corner's encoding + a learned "bottom-right" embedding.
  masks    a low-resolution mask (4× the embedding grid: 256² for SAM) through 2×2/2 conv (4 channels),
           LayerNorm, GELU, 2×2/2 conv (16), LayerNorm, GELU, 1×1 conv (256), added to the image
           embedding; without one a learned "no mask" embedding is added everywhere.
  The image embedding's positional encoding is the same Fourier encoding of the grid cells' centres.

Mask decoder: output tokens (one IoU token, 4 mask tokens: the single-mask one first, then the 3 of the
multimask output) are prepended to the prompt tokens; a two-way transformer of 2 blocks (token
self-attention, tokens → image cross-attention, a ReLU MLP, image → tokens cross-attention; the cross
attentions at half width; positional encodings added to queries and keys at every layer, the first
block's self-attention without) and a final tokens → image attention. The image embedding is upscaled
4× (two 2×2/2 transposed convs, LayerNorm and GELU), and each mask token's 3-layer hypernetwork MLP
gives the weights of a dot product with the upscaled embedding per pixel: the mask logits at 4× the
grid. A 3-layer MLP on the IoU token predicts each mask's IoU. `multimask_output=True` returns masks
1..3, False the single mask 0 (the reference's choice for a box or several prompts), None all 4.

Shapes: images (B, H, W, 3); P prompts per image (HF's "point batch"): points (B, P, N, 2) in pixels of
the input image with labels (B, P, N), boxes (B, P, 4) xyxy pixels, mask_inputs (B, P or 1, 4h, 4w)
logits. Outputs {"masks": (B, P, M, 4h, 4w) logits, "iou_scores": (B, P, M)} with M = 3, 1 or 4.
Parameter names are ours; convert/hf_sam.py maps HF `SamModel` onto them.

Departures from the reference code: none in the computation. The two-way blocks' LayerNorm eps is a
setting (`decoder_norm_eps`): the reference's 1e-5 by default, HF's port uses 1e-6 there.
"""


import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from papers_jax.models import conv_flops
from papers_jax.models.registry import IMAGENET_MEAN, IMAGENET_STD, Preprocessing, register
from papers_jax.nn.conv import Conv, ConvTranspose
from papers_jax.nn.linear import Dense, param
from papers_jax.nn.mlp import Mlp, gelu
from papers_jax.nn.norms import LayerNorm

# Image encoders of the paper (§3 and appendix A): ViT-B/L/H from MAE, window 14, 4 global blocks.
VARIANTS = {
    "sam_vit_b": dict(embed_dim=768, depth=12, num_heads=12, global_attn_indexes=(2, 5, 8, 11)),
    "sam_vit_l": dict(embed_dim=1024, depth=24, num_heads=16, global_attn_indexes=(5, 11, 17, 23)),
    "sam_vit_h": dict(embed_dim=1280, depth=32, num_heads=16, global_attn_indexes=(7, 15, 23, 31)),
}
# SAM normalises 0..255 pixels with ImageNet's mean / std (its pixel_mean, pixel_std).
PIXEL_MEAN, PIXEL_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


class FixedBuffer(nnx.BatchStat):
  """A tensor the model reads but never trains (SAM's Fourier Gaussian): a BatchStat so that the
  optimizer leaves it alone and checkpoints and weight loading carry it like running statistics."""


def _torch_xavier():
  return nnx.initializers.variance_scaling(1.0, "fan_avg", "uniform")


class LayerNorm2d(LayerNorm):
  """LayerNorm over the channels of an NHWC map (the reference's LayerNorm2d, eps 1e-6)."""

  def __init__(self, channels: int, *, eps: float = 1e-6, **kw):
    super().__init__(channels, eps=eps, **kw)


# ---------------------------------------------------------------------------------------------- image encoder


def relative_positions(size: int) -> np.ndarray:
  """(size, size) indices into a (2·size − 1)-row table: q − k + size − 1."""
  return (np.arange(size)[:, None] - np.arange(size)[None, :] + size - 1).astype(np.int32)


class EncoderAttention(nnx.Module):
  """Multi-head attention on a (B, h, w, D) grid with the decomposed relative position bias."""

  def __init__(self, dim: int, num_heads: int, size: int, *, dtype=None, param_dtype=jnp.float32, rngs: nnx.Rngs):
    self.num_heads, self.head_dim = num_heads, dim // num_heads
    kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
    self.qkv = Dense(dim, (3, num_heads, self.head_dim), axes=("embed", None, "heads", "kv"), **kw)
    self.proj = Dense((num_heads, self.head_dim), dim, axes=("heads", "kv", "embed"), **kw)
    init = nnx.initializers.zeros  # the reference's; MAE-initialised SAM starts without the bias too
    self.rel_pos_h = param(rngs, init, (2 * size - 1, self.head_dim), param_dtype, (None, "kv"))
    self.rel_pos_w = param(rngs, init, (2 * size - 1, self.head_dim), param_dtype, (None, "kv"))

  def __call__(self, x):
    b, h, w, _ = x.shape
    qkv = self.qkv(x)  # (B, h, w, 3, heads, hd)
    q, k, v = qkv[..., 0, :, :], qkv[..., 1, :, :], qkv[..., 2, :, :]
    rh = self.rel_pos_h[...].astype(q.dtype)[relative_positions(h)]  # (h, h, hd)
    rw = self.rel_pos_w[...].astype(q.dtype)[relative_positions(w)]  # (w, w, hd)
    bias_h = jnp.einsum("bhwnc,hkc->bnhwk", q, rh)
    bias_w = jnp.einsum("bhwnc,wkc->bnhwk", q, rw)
    bias = (bias_h[..., :, None] + bias_w[..., None, :]).reshape(b, self.num_heads, h * w, h * w)
    scale = self.head_dim ** -0.5
    logits = jnp.einsum("bhwnc,bkjnc->bnhwkj", q * scale, k).reshape(b, self.num_heads, h * w, h * w) + bias
    probs = jax.nn.softmax(logits.astype(jnp.float32), axis=-1).astype(v.dtype)
    y = jnp.einsum("bnqk,bknc->bqnc", probs, v.reshape(b, h * w, self.num_heads, self.head_dim))
    return self.proj(y.reshape(b, h, w, self.num_heads, self.head_dim))


def window_partition(x, window: int):
  """(B, h, w, D) → (B · windows, window, window, D), zero-padded to multiples of the window."""
  b, h, w, d = x.shape
  ph, pw = -h % window, -w % window
  x = jnp.pad(x, ((0, 0), (0, ph), (0, pw), (0, 0)))
  hp, wp = h + ph, w + pw
  x = x.reshape(b, hp // window, window, wp // window, window, d).transpose(0, 1, 3, 2, 4, 5)
  return x.reshape(-1, window, window, d), (hp, wp)


def window_unpartition(windows, window: int, padded: tuple[int, int], size: tuple[int, int]):
  hp, wp = padded
  b = windows.shape[0] // (hp // window * (wp // window))
  x = windows.reshape(b, hp // window, wp // window, window, window, -1).transpose(0, 1, 3, 2, 4, 5)
  return x.reshape(b, hp, wp, -1)[:, :size[0], :size[1]]


class EncoderBlock(nnx.Module):
  """Pre-norm block; window 0 attends over the whole grid."""

  def __init__(self, dim: int, num_heads: int, mlp_ratio: float, window: int, grid: int, *, dtype=None,
               param_dtype=jnp.float32, rngs: nnx.Rngs):
    kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
    self.window = window
    self.norm1 = LayerNorm(dim, eps=1e-6, **kw)
    self.attn = EncoderAttention(dim, num_heads, window or grid, **kw)
    self.norm2 = LayerNorm(dim, eps=1e-6, **kw)
    self.mlp = Mlp(dim, int(dim * mlp_ratio), act="gelu", bias_init=nnx.initializers.zeros, **kw)

  def __call__(self, x):
    h = self.norm1(x)
    if self.window:
      size = h.shape[1:3]
      h, padded = window_partition(h, self.window)
      h = window_unpartition(self.attn(h), self.window, padded, size)
    else:
      h = self.attn(h)
    x = x + h
    return x + self.mlp(self.norm2(x), deterministic=True)


class ImageEncoder(nnx.Module):
  """ViT with windowed attention and a neck to `out_chans` channels: (B, H, W, 3) → (B, H/p, W/p, out_chans)."""

  def __init__(self, *, img_size: int, patch_size: int, in_chans: int, embed_dim: int, depth: int, num_heads: int,
               mlp_ratio: float, window_size: int, global_attn_indexes, out_chans: int, dtype=None,
               param_dtype=jnp.float32, rngs: nnx.Rngs):
    kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
    self.grid = img_size // patch_size
    self.patch_embed = Conv(in_chans, embed_dim, patch_size, stride=patch_size, padding=0, use_bias=True,
                            kernel_init=nnx.initializers.lecun_normal(), **kw)
    self.pos_embed = param(rngs, nnx.initializers.zeros, (1, self.grid, self.grid, embed_dim), param_dtype,
                           (None, None, None, "embed"))
    self.blocks = nnx.List([
        EncoderBlock(embed_dim, num_heads, mlp_ratio, 0 if i in global_attn_indexes else window_size, self.grid, **kw)
        for i in range(depth)])
    self.neck_conv1 = Conv(embed_dim, out_chans, 1, padding=0, kernel_init=nnx.initializers.lecun_normal(), **kw)
    self.neck_norm1 = LayerNorm2d(out_chans, **kw)
    self.neck_conv2 = Conv(out_chans, out_chans, 3, padding=1, kernel_init=nnx.initializers.lecun_normal(), **kw)
    self.neck_norm2 = LayerNorm2d(out_chans, **kw)

  def __call__(self, images):
    x = self.patch_embed(images)
    x = x + self.pos_embed[...].astype(x.dtype)
    for block in self.blocks:
      x = block(x)
    return self.neck_norm2(self.neck_conv2(self.neck_norm1(self.neck_conv1(x))))


# ---------------------------------------------------------------------------------------------- prompt encoder


class PromptEncoder(nnx.Module):
  """Sparse (point, box) and dense (mask) prompt embeddings; see the module docstring."""

  def __init__(self, *, dim: int, img_size: int, grid: int, mask_in_chans: int, dtype=None, param_dtype=jnp.float32,
               rngs: nnx.Rngs):
    kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
    self.img_size, self.grid, self.dim = img_size, grid, dim
    self.gaussian = FixedBuffer(jax.random.normal(rngs.params(), (2, dim // 2), param_dtype))
    normal = nnx.initializers.normal(1.0)  # torch's nn.Embedding init
    # 0: background point, 1: foreground point, 2: box top-left corner, 3: box bottom-right corner.
    self.point_embeddings = param(rngs, normal, (4, dim), param_dtype, (None, "embed"))
    self.not_a_point = param(rngs, normal, (dim,), param_dtype, ("embed",))
    self.no_mask = param(rngs, normal, (dim,), param_dtype, ("embed",))
    c = mask_in_chans
    conv = dict(use_bias=True, kernel_init=nnx.initializers.lecun_normal(), **kw)
    self.mask_conv1 = Conv(1, c // 4, 2, stride=2, padding=0, **conv)
    self.mask_norm1 = LayerNorm2d(c // 4, **kw)
    self.mask_conv2 = Conv(c // 4, c, 2, stride=2, padding=0, **conv)
    self.mask_norm2 = LayerNorm2d(c, **kw)
    self.mask_conv3 = Conv(c, dim, 1, padding=0, **conv)

  def fourier(self, coords):
    """Coordinates in [0, 1]² (..., 2) as (x, y) → (..., dim)."""
    g = self.gaussian[...].astype(jnp.float32)
    z = 2 * jnp.pi * ((2 * coords.astype(jnp.float32) - 1) @ g)
    return jnp.concatenate([jnp.sin(z), jnp.cos(z)], axis=-1)

  def dense_pe(self):
    """(grid, grid, dim) encoding of the image embedding's cells."""
    centres = (np.arange(self.grid, dtype=np.float32) + 0.5) / self.grid
    xy = np.stack(np.meshgrid(centres, centres, indexing="xy"), -1)  # [i, j] = (x_j, y_i)
    return self.fourier(jnp.asarray(xy))

  def embed_points(self, points, labels, pad: bool):
    """points (B, P, N, 2) pixels, labels (B, P, N) → (B, P, N (+1), dim)."""
    if pad:
      points = jnp.concatenate([points, jnp.zeros_like(points[..., :1, :])], axis=-2)
      labels = jnp.concatenate([labels, -jnp.ones_like(labels[..., :1])], axis=-1)
    pe = self.fourier((points + 0.5) / self.img_size)
    labels = labels[..., None]
    table = self.point_embeddings[...].astype(jnp.float32)
    pe = jnp.where(labels == -1, self.not_a_point[...].astype(jnp.float32), pe)
    pe = jnp.where(labels == -10, 0.0, pe)
    for k in range(4):  # labels 2 and 3 are box corners given as points (the training loop's prompt buffer)
      pe = pe + jnp.where(labels == k, table[k], 0.0)
    return pe

  def embed_boxes(self, boxes):
    """boxes (B, P, 4) xyxy pixels → (B, P, 2, dim): top-left then bottom-right corner."""
    corners = (boxes.reshape(*boxes.shape[:-1], 2, 2) + 0.5) / self.img_size
    return self.fourier(corners) + self.point_embeddings[...].astype(jnp.float32)[2:4]

  def embed_masks(self, masks):
    """masks (B, P, 4·grid, 4·grid) logits → (B, P, grid, grid, dim)."""
    b, p, h, w = masks.shape
    x = masks.reshape(b * p, h, w, 1)
    x = gelu(self.mask_norm1(self.mask_conv1(x)))
    x = gelu(self.mask_norm2(self.mask_conv2(x)))
    x = self.mask_conv3(x)
    return x.reshape(b, p, *x.shape[1:])

  def __call__(self, points=None, point_labels=None, boxes=None, mask_inputs=None, *, batch: int):
    """(sparse (B, P, T, dim) or None, dense (B, P or 1, grid, grid, dim))."""
    sparse = []
    if points is not None:
      sparse.append(self.embed_points(points, point_labels, pad=boxes is None))
    if boxes is not None:
      sparse.append(self.embed_boxes(boxes))
    sparse = jnp.concatenate(sparse, axis=2) if sparse else None
    if mask_inputs is not None:
      dense = self.embed_masks(mask_inputs).astype(jnp.float32)
    else:
      dense = jnp.broadcast_to(self.no_mask[...].astype(jnp.float32), (batch, 1, self.grid, self.grid, self.dim))
    return sparse, dense


# ---------------------------------------------------------------------------------------------- mask decoder


class DecoderAttention(nnx.Module):
  """Attention with separate q, k, v projections to dim / downsample channels (SAM's `Attention`)."""

  def __init__(self, dim: int, num_heads: int, downsample: int = 1, *, dtype=None, param_dtype=jnp.float32,
               rngs: nnx.Rngs):
    inner = dim // downsample
    if inner % num_heads:
      raise ValueError(f"SAM decoder: {num_heads} heads do not divide {inner} channels")
    self.num_heads, self.head_dim = num_heads, inner // num_heads
    kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs, kernel_init=_torch_xavier())
    self.q = Dense(dim, (num_heads, self.head_dim), axes=("embed", "heads", "kv"), **kw)
    self.k = Dense(dim, (num_heads, self.head_dim), axes=("embed", "heads", "kv"), **kw)
    self.v = Dense(dim, (num_heads, self.head_dim), axes=("embed", "heads", "kv"), **kw)
    self.out = Dense((num_heads, self.head_dim), dim, axes=("heads", "kv", "embed"), **kw)

  def __call__(self, q, k, v):
    q, k, v = self.q(q), self.k(k), self.v(v)  # (..., T, heads, hd)
    logits = jnp.einsum("...qnc,...knc->...nqk", q * self.head_dim ** -0.5, k)
    probs = jax.nn.softmax(logits.astype(jnp.float32), axis=-1).astype(v.dtype)
    return self.out(jnp.einsum("...nqk,...knc->...qnc", probs, v))


class TwoWayBlock(nnx.Module):
  def __init__(self, dim: int, num_heads: int, mlp_dim: int, *, skip_first_pe: bool, norm_eps: float, dtype=None,
               param_dtype=jnp.float32, rngs: nnx.Rngs):
    kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
    self.skip_first_pe = skip_first_pe
    self.self_attn = DecoderAttention(dim, num_heads, **kw)
    self.norm1 = LayerNorm(dim, eps=norm_eps, **kw)
    self.token_to_image = DecoderAttention(dim, num_heads, 2, **kw)
    self.norm2 = LayerNorm(dim, eps=norm_eps, **kw)
    self.mlp = Mlp(dim, mlp_dim, act="relu", bias_init=nnx.initializers.zeros, **kw)
    self.norm3 = LayerNorm(dim, eps=norm_eps, **kw)
    self.image_to_token = DecoderAttention(dim, num_heads, 2, **kw)
    self.norm4 = LayerNorm(dim, eps=norm_eps, **kw)

  def __call__(self, tokens, image, token_pe, image_pe):
    if self.skip_first_pe:
      tokens = self.self_attn(tokens, tokens, tokens)
    else:
      q = tokens + token_pe
      tokens = tokens + self.self_attn(q, q, tokens)
    tokens = self.norm1(tokens)
    k = image + image_pe
    tokens = self.norm2(tokens + self.token_to_image(tokens + token_pe, k, image))
    tokens = self.norm3(tokens + self.mlp(tokens, deterministic=True))
    image = self.norm4(image + self.image_to_token(k, tokens + token_pe, tokens))
    return tokens, image


class HeadMLP(nnx.Module):
  """Linear layers with ReLU between them (the hypernetworks and the IoU head)."""

  def __init__(self, dim: int, hidden: int, out: int, depth: int, *, dtype=None, param_dtype=jnp.float32,
               rngs: nnx.Rngs):
    sizes = [dim] + [hidden] * (depth - 1) + [out]
    self.layers = nnx.List([Dense(i, o, axes=(None, None), kernel_init=_torch_xavier(), dtype=dtype,
                                  param_dtype=param_dtype, rngs=rngs) for i, o in zip(sizes[:-1], sizes[1:])])

  def __call__(self, x):
    for i, layer in enumerate(self.layers):
      x = layer(x)
      if i < len(self.layers) - 1:
        x = jax.nn.relu(x)
    return x


class MaskDecoder(nnx.Module):
  def __init__(self, *, dim: int, depth: int, num_heads: int, mlp_dim: int, num_multimask_outputs: int,
               iou_head_depth: int, iou_head_hidden_dim: int, norm_eps: float, dtype=None, param_dtype=jnp.float32,
               rngs: nnx.Rngs):
    kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
    self.num_mask_tokens = num_multimask_outputs + 1
    normal = nnx.initializers.normal(1.0)
    self.iou_token = param(rngs, normal, (1, dim), param_dtype, (None, "embed"))
    self.mask_tokens = param(rngs, normal, (self.num_mask_tokens, dim), param_dtype, (None, "embed"))
    # "layers", not "blocks": layer-wise lr decay (core/optim.py) counts the image encoder's blocks only.
    self.layers = nnx.List([TwoWayBlock(dim, num_heads, mlp_dim, skip_first_pe=i == 0, norm_eps=norm_eps, **kw)
                            for i in range(depth)])
    self.final_attn = DecoderAttention(dim, num_heads, 2, **kw)
    self.final_norm = LayerNorm(dim, eps=1e-5, **kw)
    up = dict(use_bias=True, kernel_init=nnx.initializers.lecun_normal(), **kw)
    self.upscale1 = ConvTranspose(dim, dim // 4, 2, stride=2, **up)
    self.upscale_norm = LayerNorm2d(dim // 4, **kw)
    self.upscale2 = ConvTranspose(dim // 4, dim // 8, 2, stride=2, **up)
    self.hypernetworks = nnx.List([HeadMLP(dim, dim, dim // 8, 3, **kw) for _ in range(self.num_mask_tokens)])
    self.iou_head = HeadMLP(dim, iou_head_hidden_dim, self.num_mask_tokens, iou_head_depth, **kw)

  def __call__(self, image_embeddings, image_pe, sparse, dense, *, multimask_output: bool | None):
    """image_embeddings (B, h, w, C), image_pe (h, w, C), sparse (B, P, T, C) or None, dense (B, P|1, h, w, C).
    multimask_output: True → the 3 multimask outputs, False → the single mask, None → all 4 (single first)."""
    b, h, w, c = image_embeddings.shape
    p = 1 if sparse is None else sparse.shape[1]
    dtype = image_embeddings.dtype
    output_tokens = jnp.concatenate([self.iou_token[...], self.mask_tokens[...]], 0).astype(dtype)
    tokens = jnp.broadcast_to(output_tokens, (b, p) + output_tokens.shape)
    if sparse is not None:
      tokens = jnp.concatenate([tokens, sparse.astype(dtype)], axis=2)
    image = jnp.broadcast_to(image_embeddings[:, None] + dense.astype(dtype), (b, p, h, w, c)).reshape(b, p, h * w, c)
    pe = image_pe.reshape(h * w, c).astype(dtype)
    token_pe, queries = tokens, tokens
    for layer in self.layers:
      queries, image = layer(queries, image, token_pe, pe)
    queries = self.final_norm(queries + self.final_attn(queries + token_pe, image + pe, image))
    iou_out, mask_out = queries[:, :, 0], queries[:, :, 1:1 + self.num_mask_tokens]

    x = self.upscale1(image.reshape(b * p, h, w, c))
    x = gelu(self.upscale_norm(x))
    x = gelu(self.upscale2(x))  # (B·P, 4h, 4w, C/8)
    hyper = jnp.stack([mlp(mask_out[:, :, i]) for i, mlp in enumerate(self.hypernetworks)], axis=2)  # (B, P, M, C/8)
    x = x.reshape(b, p, 4 * h, 4 * w, -1)
    masks = jnp.einsum("bpmc,bpyxc->bpmyx", hyper, x)
    iou = self.iou_head(iou_out)
    if multimask_output is None:  # all of them, the single mask first (training picks per prompt)
      return masks, iou
    keep = slice(1, None) if multimask_output else slice(0, 1)
    return masks[:, :, keep], iou[:, :, keep]


# ---------------------------------------------------------------------------------------------- SAM


class SAM(nnx.Module):
  """Image encoder + prompt encoder + mask decoder (see the module docstring)."""

  def __init__(self, *, img_size: int = 1024, patch_size: int = 16, in_chans: int = 3, embed_dim: int = 768,
               depth: int = 12, num_heads: int = 12, global_attn_indexes=(2, 5, 8, 11), window_size: int = 14,
               mlp_ratio: float = 4.0, prompt_dim: int = 256, mask_in_chans: int = 16, decoder_depth: int = 2,
               decoder_heads: int = 8, decoder_mlp_dim: int = 2048, num_multimask_outputs: int = 3,
               iou_head_depth: int = 3, iou_head_hidden_dim: int = 256, decoder_norm_eps: float = 1e-5,
               num_classes: int = 0, dtype=None, param_dtype=jnp.float32, rngs: nnx.Rngs):
    del num_classes  # class-agnostic; tasks pass it to every model
    kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
    self.img_size, self.in_chans, self.grid = img_size, in_chans, img_size // patch_size
    self.image_encoder = ImageEncoder(img_size=img_size, patch_size=patch_size, in_chans=in_chans, embed_dim=embed_dim,
                                      depth=depth, num_heads=num_heads, mlp_ratio=mlp_ratio, window_size=window_size,
                                      global_attn_indexes=tuple(global_attn_indexes), out_chans=prompt_dim, **kw)
    self.prompt_encoder = PromptEncoder(dim=prompt_dim, img_size=img_size, grid=self.grid, mask_in_chans=mask_in_chans,
                                        **kw)
    self.mask_decoder = MaskDecoder(dim=prompt_dim, depth=decoder_depth, num_heads=decoder_heads,
                                    mlp_dim=decoder_mlp_dim, num_multimask_outputs=num_multimask_outputs,
                                    iou_head_depth=iou_head_depth, iou_head_hidden_dim=iou_head_hidden_dim,
                                    norm_eps=decoder_norm_eps, **kw)

  def encode_image(self, images):
    return self.image_encoder(images)

  def decode(self, image_embeddings, *, points=None, point_labels=None, boxes=None, mask_inputs=None,
             multimask_output: bool | None = True) -> dict:
    """Masks and IoU scores from precomputed image embeddings (the interactive loop reuses them).
    multimask_output None: all 4 outputs, the single mask first."""
    if points is not None and point_labels is None:
      point_labels = jnp.ones(points.shape[:-1], jnp.int32)
    sparse, dense = self.prompt_encoder(points, point_labels, boxes, mask_inputs, batch=image_embeddings.shape[0])
    masks, iou = self.mask_decoder(image_embeddings, self.prompt_encoder.dense_pe(), sparse, dense,
                                   multimask_output=multimask_output)
    return {"masks": masks, "iou_scores": iou}

  def __call__(self, images, *, points=None, point_labels=None, boxes=None, mask_inputs=None,
               multimask_output: bool = True, train: bool = False, rngs=None) -> dict:
    del train, rngs  # no dropout
    return self.decode(self.encode_image(images), points=points, point_labels=point_labels, boxes=boxes,
                       mask_inputs=mask_inputs, multimask_output=multimask_output)


# Pixels in [0, 1] normalised with ImageNet's mean and std, as SAM's (pixel_mean / pixel_std over 255). SAM
# resizes the longer side to 1024 and pads the other; the registry's preprocessing resizes and centre-crops,
# which is the same for square images.
for _name, _variant in VARIANTS.items():
  register(_name, SAM, preprocessing=Preprocessing(1024, IMAGENET_MEAN, IMAGENET_STD, crop_pct=1.0), **_variant)


# ---------------------------------------------------------------------------------------------- FLOPs


def forward_flops(model: SAM, num_prompts: int = 1, num_points: int = 1, *, elementwise: bool = True) -> float:
  """FLOPs of one forward pass per image (image encoder + prompt and mask decoding of `num_prompts`
  prompts of `num_points` points each), read off the traced jaxpr (models/conv_flops.py), element-wise
  work included as XLA counts it (`elementwise=False`: matmuls and convolutions only). Works on an
  abstract model."""
  graphdef, state = nnx.split(model)
  image = jax.ShapeDtypeStruct((1, model.img_size, model.img_size, model.in_chans), jnp.float32)
  points = jax.ShapeDtypeStruct((1, num_prompts, num_points, 2), jnp.float32)
  jaxpr = jax.make_jaxpr(lambda s, x, p: nnx.merge(graphdef, s)(x, points=p))(state, image, points)
  return float(conv_flops.jaxpr_flops(jaxpr, elementwise=elementwise))


# The embedding parameters (models.embedding_params): the patch projection and the position embedding.
EMBEDDINGS = ("image_encoder.patch_embed", "image_encoder.pos_embed")
