"""PointCLIP (Zhang et al., CVPR 2022, "PointCLIP: Point Cloud Understanding by CLIP").

A point cloud is classified by a frozen CLIP with no 3-D network:
  - Projection (`depth_maps`): the cloud is seen from M views (the paper's six for ModelNet: front,
    right, back, left, top, bottom). Each view turns the cloud, puts the camera at distance
    `camera_distance` on the +z axis and projects every point perspectively, (x, y, z) → (f·x/d, f·y/d)
    with d its depth; the pixel keeps the depth, no rendering (the paper: "the projected value is z").
    Where several points fall on one pixel the nearest wins (a z-buffer), each point covers a
    `splat`×`splat` block of pixels (1,024 points are sparse on the image), the value is d / (camera
    distance + 1) in (0, 1], the background 0; the map is repeated into 3 channels as an image.
  - CLIP's image tower on each view → M features f_i (B, M, C); CLIP's text tower on the class prompts.
  - Zero-shot: logits = 100 · Σ_i α_i cos(f_i, t_k), α the view weights (the reference's
    `100 · [α_i f_i / |f_i|]_i · [t_k / |t_k|]_{×M}`).
  - Few-shot (`InterViewAdapter`, the paper's §3.2): the M features, scaled by learned per-view fusion
    ratios (initially 0.5), through BatchNorm and dropout, flattened and mapped by a linear layer to one
    global feature (BatchNorm, ReLU, dropout); two more linear layers (ReLU after each) map it back to
    M adapted view features, mixed with the originals by the residual ratio β:
    f' = β · adapted + (1 − β) · f (β 0.6, dropout 0.075: the reference implementation's). The logits
    are CLIP's temperature times the cosine between the concatenated f' and the class texts repeated M
    times. Only the adapter trains.
  - `head="linear"`: a linear classifier on the concatenated raw view features, the supervised
    baseline on the same frozen features (not in the paper).
"""

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from papers_jax.errors import ConfigError
from papers_jax.models import vit
from papers_jax.nn.linear import Dense, param
from papers_jax.nn.norms import BatchNorm

HEADS = ("adapter", "linear")
# The trainable parameters are the head's: the frozen CLIP's embeddings are not parameters here.
EMBEDDINGS = ()


def _turn_y(a):
  return np.array([[np.cos(a), 0, -np.sin(a)], [0, 1, 0], [np.sin(a), 0, np.cos(a)]])


def _turn_x(a):
  return np.array([[1, 0, 0], [0, np.cos(a), -np.sin(a)], [0, np.sin(a), np.cos(a)]])


# The six views (rotations applied to the cloud; the camera looks down -z): front, right, back, left, then
# top (the up axis +y turned towards the camera) and bottom.
VIEWS = np.stack([_turn_y(k * np.pi / 2) for k in range(4)] + [_turn_x(np.pi / 2), _turn_x(-np.pi / 2)]).astype(
    np.float32)
VIEW_NAMES = ("front", "right", "back", "left", "top", "bottom")


def depth_maps(points, *, views=VIEWS, size: int = 64, camera_distance: float = 2.0, focal: float = 1.5,
               splat: int = 2):
  """Points (B, N, 3) → depth maps (B, M, size, size) float32 in [0, 1] (module docstring)."""
  views = jnp.asarray(views, jnp.float32)
  p = jnp.einsum("bnj,mij->bmni", points.astype(jnp.float32), views)  # (B, M, N, 3) in each view's frame
  depth = camera_distance - p[..., 2]
  col = jnp.floor((focal * p[..., 0] / depth + 1) / 2 * size).astype(jnp.int32)
  row = jnp.floor((1 - focal * p[..., 1] / depth) / 2 * size).astype(jnp.int32)  # image rows grow downwards
  index = []
  for dr in range(splat):
    for dc in range(splat):
      r, c = row + dr, col + dc
      inside = (r >= 0) & (r < size) & (c >= 0) & (c < size)
      index.append(jnp.where(inside, r * size + c, size * size))  # off-image points go to a spare cell
  index, value = jnp.concatenate(index, -1), jnp.concatenate([depth] * splat * splat, -1)
  b, m, n = index.shape
  flat = jnp.full((b * m, size * size + 1), jnp.inf, jnp.float32)
  flat = jax.vmap(lambda img, i, v: img.at[i].min(v))(flat, index.reshape(b * m, n), value.reshape(b * m, n))
  nearest = flat[:, :size * size].reshape(b, m, size, size)
  return jnp.where(jnp.isfinite(nearest), nearest / (camera_distance + 1.0), 0.0)


class InterViewAdapter(nnx.Module):
  """The paper's inter-view adapter on (B, M, C) view features → (B, M·C) adapted features."""

  def __init__(self, dim: int, num_views: int, *, residual_ratio: float = 0.6, fusion_init: float = 0.5,
               dropout: float = 0.075, rngs: nnx.Rngs):
    self.dim, self.num_views, self.residual_ratio = dim, num_views, float(residual_ratio)
    self.fusion_ratio = param(rngs, nnx.initializers.constant(fusion_init), (num_views,), jnp.float32, (None,))
    self.norm_views = BatchNorm(dim, rngs=rngs)
    self.global_fc = Dense(num_views * dim, dim, axes=(None, None), rngs=rngs)
    self.norm_global = BatchNorm(dim, rngs=rngs)
    self.view_fc1 = Dense(dim, dim, axes=(None, None), rngs=rngs)
    self.view_fc2 = Dense(dim, num_views * dim, axes=(None, None), rngs=rngs)
    self.dropout = nnx.Dropout(dropout)

  def __call__(self, features, *, train: bool = False, rngs: nnx.Rngs | None = None):
    b = features.shape[0]
    det = not train
    x = self.norm_views(features * self.fusion_ratio[...][None, :, None], train=train)
    x = self.dropout(x, deterministic=det, rngs=rngs).reshape(b, self.num_views * self.dim)
    g = jax.nn.relu(self.norm_global(self.global_fc(x), train=train))
    g = self.dropout(g, deterministic=det, rngs=rngs)
    adapted = jax.nn.relu(self.view_fc2(jax.nn.relu(self.view_fc1(g))))
    return self.residual_ratio * adapted + (1 - self.residual_ratio) * features.reshape(b, -1)


def l2_normalize(x, eps: float = 1e-12):
  return x * jax.lax.rsqrt(jnp.maximum(jnp.sum(x * x, axis=-1, keepdims=True), eps))


def class_text_features(clip, tokens, num_templates: int):
  """Prompt tokens (K·T, L), class-major → (K, D): per class the renormalised mean of its normalised prompts."""
  text = l2_normalize(clip.encode_text(tokens, train=False))
  return l2_normalize(text.reshape(-1, num_templates, text.shape[-1]).mean(axis=1))


def zero_shot_logits(view_features, text, view_weights):
  """(B, M, D) view features, (K, D) normalised class texts, (M,) view weights α → (B, K) logits,
  100 Σ_i α_i cos(f_i, t_k)."""
  return 100.0 * jnp.einsum("bmd,kd,m->bk", l2_normalize(view_features), text, jnp.asarray(view_weights))


class PointCLIP(nnx.Module):
  """A frozen CLIP (its weights `Frozen`, read from a CLIP run by the task) with the few-shot head."""

  def __init__(self, clip: nnx.Module, *, num_classes: int, num_views: int = 6, head: str = "adapter",
               img_size: int = 64, camera_distance: float = 2.0, focal: float = 1.5, splat: int = 2,
               mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5), residual_ratio: float = 0.6, fusion_init: float = 0.5,
               dropout: float = 0.075, rngs: nnx.Rngs):
    if head not in HEADS:
      raise ConfigError(f"pointclip head must be one of {HEADS}, got {head!r}")
    if num_views != len(VIEWS):
      raise ConfigError(f"PointCLIP projects {len(VIEWS)} views {VIEW_NAMES}, got num_views={num_views}")
    self.clip, self.head_kind, self.num_views, self.num_classes = clip, head, num_views, num_classes
    self.img_size, self.camera_distance, self.focal, self.splat = img_size, float(camera_distance), float(focal), splat
    self.mean, self.std = tuple(float(v) for v in mean), tuple(float(v) for v in std)
    dim = clip.embed_dim
    if head == "adapter":
      self.adapter = InterViewAdapter(dim, num_views, residual_ratio=residual_ratio, fusion_init=fusion_init,
                                      dropout=dropout, rngs=rngs)
    else:
      self.linear = Dense(num_views * dim, num_classes, axes=(None, None), rngs=rngs)

  def view_features(self, points):
    """Points (B, N, 3) → (B, M, D) CLIP image features of the depth maps (frozen: no gradient)."""
    maps = depth_maps(points, size=self.img_size, camera_distance=self.camera_distance, focal=self.focal,
                      splat=self.splat)
    b, m, h, w = maps.shape
    images = jnp.repeat(maps.reshape(b * m, h, w, 1), 3, axis=-1)
    images = (images - jnp.asarray(self.mean)) / jnp.asarray(self.std)
    return jax.lax.stop_gradient(self.clip.encode_image(images, train=False)).reshape(b, m, -1)

  def head_logits(self, features, text, *, train: bool = False, rngs: nnx.Rngs | None = None):
    """(B, M, D) view features, (K, D) normalised class texts → (B, K) few-shot logits."""
    if self.head_kind == "linear":
      return self.linear(features.reshape(features.shape[0], -1))
    adapted = l2_normalize(self.adapter(features, train=train, rngs=rngs))
    texts = l2_normalize(jnp.tile(text, (1, self.num_views)))
    return self.clip.temperature_scale() * adapted @ texts.T

  def __call__(self, points, tokens, num_templates: int, *, train: bool = False, rngs: nnx.Rngs | None = None):
    """(few-shot logits, zero-shot logits with equal view weights, the view features)."""
    features = self.view_features(points)
    text = jax.lax.stop_gradient(class_text_features(self.clip, tokens, num_templates))
    zero_shot = zero_shot_logits(features, text, jnp.ones((self.num_views,)))
    return self.head_logits(features, text, train=train, rngs=rngs), zero_shot, features


def forward_flops(model: PointCLIP) -> float:
  """Per cloud: CLIP's image tower and projection on each of the M views, the head, the logits (the class
  texts are encoded once per batch and left out)."""
  clip = model.clip
  d, m, num_classes = clip.embed_dim, model.num_views, model.num_classes
  image = vit.forward_flops(clip.visual) + 2 * clip.visual.embed_dim * d
  if model.head_kind == "linear":
    head = 2 * m * d * num_classes
  else:
    head = 2 * (m * d * d + d * d + d * m * d) + 2 * m * d * num_classes
  return float(m * image + head + 2 * m * d * num_classes)  # + the zero-shot logits



