"""GroupViT (Xu et al., CVPR 2022, "GroupViT: Semantic Segmentation Emerges from Text Supervision").

An image tower that groups its patch tokens into a few segments, trained with text only:
  - Patch embedding (a stride-p convolution with bias), a LayerNorm, then learned position embeddings.
  - Stages. A stage with group tokens appends its learned group tokens (num_group_tokens × width) to
    the image tokens, runs `depth` pre-LN Transformer blocks over both, then a grouping block
    (`GroupingBlock`) merges the image tokens into `num_output_groups` segment tokens, which are the
    next stage's image tokens. From the second grouping stage on, the previous stage's group tokens,
    through a LayerNorm and an MLP over the token axis (`group_projector`), are added to the new ones.
    The paper's GroupViT-S (2 stages): 196 patches + 64 group tokens for 6 blocks → 64 segments;
    + 8 group tokens for 3 blocks → 8 segments; 3 more blocks over the 8; LayerNorm; mean over the
    segments is the image feature.
  - Grouping block: the group tokens (LayerNorm, an MLP over the token axis mapping num_group_tokens
    to num_output_groups, LayerNorm) attend to the image tokens (LayerNorm) in a cross-attention
    layer (residual attention, residual MLP, LayerNorm). Then a one-head assignment: the similarity
    of each group (query) to each image token (key), a softmax over the groups, made hard (one-hot
    of the argmax, straight-through: the soft gradients flow) and, in training, with Gumbel noise
    added to the logits first (Gumbel-softmax, τ = 1). Each segment is the assignment-weighted
    mean of the tokens' values (the weights divided by their sum + `assign_eps`), projected, plus its
    group token, then a residual MLP (LayerNorm, width × 4).
  - Text tower: CLIP's (models/clip.py `TextTransformer`), the [EOS] feature.
  - Projections into the joint space: Linear → BatchNorm → ReLU → Linear, width 4096 (the paper's
    2-layer MLPs); a learned temperature as CLIP's (initial 1/0.07, clipped at 100).
Zero-shot segmentation (`segment`): each final segment token, through the image projection, is
compared with the class texts' features; the soft assignments (softmax over groups, no Gumbel, not
hardened) of the grouping blocks, multiplied through the stages, give each patch's weights over the
final segments; bilinearly resized to the image, they spread the segment-to-class logits over the
pixels. `segmentation_logits` are HF's: both products scaled by the temperature (HF's
`GroupViTModel(output_segmentation=True)`). The paper's inference then takes each pixel's most
similar class and calls pixels whose similarity is below a threshold background (tasks/groupvit.py).

Names follow HF's GroupViTModel where they can (convert/hf_groupvit.py): `patch_embed`, `norm_embed`,
`pos_embed`, `stages[i].{group_token, blocks, downsample, group_projector}`, `norm`, `text`,
`visual_projection`, `text_projection`, `logit_scale`.

  model = models.create("groupvit_small_patch16")
  image = model.encode_image(images_nhwc)            # (B, embed_dim)
  logits = model.segmentation_logits(images, tokens)  # (B, H, W, num_texts)
"""

import math

import jax
import jax.numpy as jnp
from flax import nnx

from papers_jax.errors import ConfigError
from papers_jax.models import conv_flops
from papers_jax.models.clip import TextTransformer
from papers_jax.models.registry import Preprocessing, register
from papers_jax.models.vit import Block
from papers_jax.nn import LayerNorm, PatchEmbed, param

from papers_jax.nn.attention import CrossAttention
from papers_jax.nn.linear import Dense
from papers_jax.nn.mlp import ACTIVATIONS, Mlp
from papers_jax.nn.norms import BatchNorm

VARIANTS = {
    # The paper's GroupViT-S with 2 grouping stages (its Table 1 / HF's default GroupViTConfig).
    "groupvit_small_patch16": dict(img_size=224, patch_size=16, width=384, depths=(6, 3, 3),
                                   num_group_tokens=(64, 8, 0), num_output_groups=(64, 8, 8), num_heads=6,
                                   text_width=256, text_layers=12, text_heads=4, embed_dim=256,
                                   projection_hidden=4096),
}


class MixerMlp(nnx.Module):
  """An MLP over the token axis: (B, n_in, D) → (B, n_out, D) (HF's GroupViTMixerMLP)."""

  def __init__(self, n_in: int, hidden: int, n_out: int, *, act: str, rngs: nnx.Rngs, **kw):
    self.act = act
    self.fc1 = Dense(n_in, hidden, axes=(None, None), rngs=rngs, **kw)
    self.fc2 = Dense(hidden, n_out, axes=(None, None), rngs=rngs, **kw)

  def __call__(self, x):
    y = self.fc2(ACTIVATIONS[self.act](self.fc1(jnp.swapaxes(x, 1, 2))))
    return jnp.swapaxes(y, 1, 2)


class CrossAttentionLayer(nnx.Module):
  """Groups attend to the image tokens: q + Attn(q, x), + MLP(LN(·)), then LN (no norm before the attention)."""

  def __init__(self, dim: int, num_heads: int, *, mlp_ratio: float, act: str, norm_eps: float, rngs, **kw):
    self.attn = CrossAttention(dim, num_heads, rngs=rngs, **kw)
    self.norm2 = LayerNorm(dim, eps=norm_eps, rngs=rngs, **kw)
    self.mlp = Mlp(dim, int(dim * mlp_ratio), act=act, rngs=rngs, **kw)
    self.norm_post = LayerNorm(dim, eps=norm_eps, rngs=rngs, **kw)

  def __call__(self, query, memory):
    x = query + self.attn(query, memory, deterministic=True)
    x = x + self.mlp(self.norm2(x), deterministic=True)
    return self.norm_post(x)


def hard_assignment(logits, axis: int):
  """One-hot of the argmax along `axis` in the forward pass, the softmax's gradient in the backward
  pass (straight-through)."""
  soft = jax.nn.softmax(logits, axis=axis)
  hard = jax.nn.one_hot(jnp.argmax(soft, axis=axis), logits.shape[axis], axis=axis, dtype=soft.dtype)
  return hard - jax.lax.stop_gradient(soft) + soft


def gumbel_hard_assignment(logits, key, axis: int, tau: float = 1.0):
  """Gumbel-softmax (Jang et al., 2017) with the straight-through hard sample: the one-hot argmax of
  (logits + Gumbel(0, 1) noise) / τ, with the gradient of their softmax."""
  noise = jax.random.gumbel(key, logits.shape, logits.dtype)
  return hard_assignment((logits + noise) / tau, axis)


class AssignAttention(nnx.Module):
  """One-head hard assignment of image tokens (keys) to groups (queries); see the module docstring."""

  def __init__(self, dim: int, *, assign_eps: float, rngs, **kw):
    self.scale, self.assign_eps = dim ** -0.5, assign_eps
    for name in ("q_proj", "k_proj", "v_proj", "proj"):
      setattr(self, name, Dense(dim, dim, axes=("embed", None), rngs=rngs, **kw))

  def __call__(self, groups, tokens, *, gumbel_key=None):
    """(segments (B, G, D), the soft assignment (B, G, N): softmax over the groups)."""
    logits = jnp.einsum("bgd,bnd->bgn", self.q_proj(groups), self.k_proj(tokens)) * self.scale
    if gumbel_key is not None:
      attn = gumbel_hard_assignment(logits, gumbel_key, axis=1)
    else:
      attn = hard_assignment(logits, axis=1)
    attn = attn / (attn.sum(axis=-1, keepdims=True) + self.assign_eps)
    out = self.proj(jnp.einsum("bgn,bnd->bgd", attn, self.v_proj(tokens)))
    return out, jax.nn.softmax(logits, axis=1)


class GroupingBlock(nnx.Module):
  """num_group_tokens group tokens + image tokens → num_output_groups segment tokens (HF's GroupViTTokenAssign)."""

  def __init__(self, dim: int, num_heads: int, num_group_tokens: int, num_output_groups: int, *,
               assign_mlp_ratio=(0.5, 4.0), act: str, norm_eps: float, assign_eps: float, rngs, **kw):
    ln = lambda: LayerNorm(dim, eps=norm_eps, rngs=rngs, **kw)  # noqa: E731
    self.norm_tokens, self.norm_post_tokens, self.norm_x, self.norm_new_x = ln(), ln(), ln(), ln()
    tokens_dim, channels_dim = int(assign_mlp_ratio[0] * dim), int(assign_mlp_ratio[1] * dim)
    self.mlp_inter = MixerMlp(num_group_tokens, tokens_dim, num_output_groups, act=act, rngs=rngs, **kw)
    self.pre_assign_attn = CrossAttentionLayer(dim, num_heads, mlp_ratio=4.0, act=act, norm_eps=norm_eps,
                                               rngs=rngs, **kw)
    self.assign = AssignAttention(dim, assign_eps=assign_eps, rngs=rngs, **kw)
    self.mlp_channels = Mlp(dim, channels_dim, act=act, rngs=rngs, **kw)

  def __call__(self, tokens, groups, *, gumbel_key=None):
    groups, tokens = self.norm_tokens(groups), self.norm_x(tokens)
    groups = self.norm_post_tokens(self.mlp_inter(groups))
    groups = self.pre_assign_attn(groups, tokens)
    segments, soft = self.assign(groups, tokens, gumbel_key=gumbel_key)
    segments = segments + groups
    segments = segments + self.mlp_channels(self.norm_new_x(segments), deterministic=True)
    return segments, soft


class Stage(nnx.Module):
  """Blocks over image tokens + this stage's group tokens, then a grouping block (HF's GroupViTStage)."""

  def __init__(self, dim: int, num_heads: int, depth: int, num_prev_group_tokens: int, num_group_tokens: int,
               num_output_groups: int, *, act: str, norm_eps: float, assign_eps: float, rngs, **kw):
    self.num_group_tokens = num_group_tokens
    self.blocks = nnx.List([Block(dim, num_heads, mlp_ratio=4.0, norm_eps=norm_eps, act=act, rngs=rngs, **kw)
                            for _ in range(depth)])
    if num_group_tokens:
      self.group_token = param(rngs, nnx.initializers.truncated_normal(0.02), (1, num_group_tokens, dim),
                               kw.get("param_dtype", jnp.float32), (None, None, "embed"))
      self.downsample = GroupingBlock(dim, num_heads, num_group_tokens, num_output_groups, act=act,
                                      norm_eps=norm_eps, assign_eps=assign_eps, rngs=rngs, **kw)
    else:
      self.group_token = self.downsample = None
    if num_prev_group_tokens and num_group_tokens:
      self.group_projector_norm = LayerNorm(dim, eps=norm_eps, rngs=rngs, **kw)
      self.group_projector = MixerMlp(num_prev_group_tokens, dim // 2, num_group_tokens, act=act, rngs=rngs, **kw)
    else:
      self.group_projector_norm = self.group_projector = None

  def __call__(self, x, prev_groups, *, deterministic, rngs, gumbel_key):
    """(tokens out, this stage's group tokens after the blocks or None, soft assignment or None)."""
    n = x.shape[1]
    if self.group_token is not None:
      groups = jnp.broadcast_to(self.group_token[...].astype(x.dtype), (x.shape[0], *self.group_token.shape[1:]))
      if self.group_projector is not None:
        groups = groups + self.group_projector(self.group_projector_norm(prev_groups))
      x = jnp.concatenate([x, groups], axis=1)
    for block in self.blocks:
      x = block(x, deterministic=deterministic, rngs=rngs)
    if self.group_token is None:
      return x, None, None
    x, groups = x[:, :n], x[:, n:]
    x, soft = self.downsample(x, groups, gumbel_key=gumbel_key)
    return x, groups, soft


class ProjectionMlp(nnx.Module):
  """Linear → BatchNorm → ReLU → Linear (the paper's projection heads)."""

  def __init__(self, dim: int, hidden: int, out: int, *, rngs, **kw):
    self.fc1 = Dense(dim, hidden, axes=("embed", "mlp"), rngs=rngs, **kw)
    self.bn = BatchNorm(hidden, rngs=rngs, **kw)
    self.fc2 = Dense(hidden, out, axes=("mlp", None), rngs=rngs, **kw)

  def __call__(self, x, *, train: bool = False):
    return self.fc2(jax.nn.relu(self.bn(self.fc1(x), train=train)))


class GroupViT(nnx.Module):
  """GroupViT's image tower, CLIP's text tower, MLP projections and a temperature (module docstring)."""

  def __init__(self, *, img_size: int = 224, patch_size: int = 16, in_chans: int = 3, width: int = 384,
               depths=(6, 3, 3), num_group_tokens=(64, 8, 0), num_output_groups=(64, 8, 8), num_heads: int = 6,
               act: str = "gelu", norm_eps: float = 1e-5, assign_eps: float = 1.0, context_length: int = 77,
               vocab_size: int = 49408, text_width: int = 256, text_layers: int = 12, text_heads: int = 4,
               text_act: str = "quick_gelu", eos_token_id: int | None = None, embed_dim: int = 256,
               projection_hidden: int = 4096, logit_scale_init: float = math.log(1 / 0.07),
               max_logit_scale: float = 100.0, dtype=None, param_dtype=jnp.float32, rngs: nnx.Rngs):
    if not len(depths) == len(num_group_tokens) == len(num_output_groups):
      raise ConfigError(f"depths {depths}, num_group_tokens {num_group_tokens} and num_output_groups "
                        f"{num_output_groups} must have one entry per stage")
    kw = dict(dtype=dtype, param_dtype=param_dtype)
    self.embed_dim, self.max_logit_scale = embed_dim, float(max_logit_scale)
    self.patch_embed = PatchEmbed(img_size, patch_size, in_chans, width, rngs=rngs, **kw)
    self.norm_embed = LayerNorm(width, eps=norm_eps, rngs=rngs, **kw)
    self.pos_embed = param(rngs, nnx.initializers.truncated_normal(0.02), (1, self.patch_embed.num_patches, width),
                           param_dtype, (None, None, "embed"))
    self.stages = nnx.List([
        Stage(width, num_heads, depths[i], num_output_groups[i - 1] if i else 0, num_group_tokens[i],
              num_output_groups[i], act=act, norm_eps=norm_eps, assign_eps=assign_eps, rngs=rngs, **kw)
        for i in range(len(depths))])
    self.norm = LayerNorm(width, eps=norm_eps, rngs=rngs, **kw)
    self.text = TextTransformer(vocab_size=vocab_size, context_length=context_length, width=text_width,
                                layers=text_layers, num_heads=text_heads, act=text_act, norm_eps=norm_eps,
                                eos_token_id=eos_token_id, rngs=rngs, **kw)
    self.visual_projection = ProjectionMlp(width, projection_hidden, embed_dim, rngs=rngs, **kw)
    self.text_projection = ProjectionMlp(text_width, projection_hidden, embed_dim, rngs=rngs, **kw)
    self.logit_scale = param(rngs, nnx.initializers.constant(logit_scale_init), (), param_dtype, ())

  def forward_groups(self, images, *, train: bool | None = None, rngs: nnx.Rngs | None = None):
    """Images (B, H, W, C), normalised → (final segment tokens (B, G, width) after the LayerNorm, the
    grouping blocks' soft assignments [(B, G_1, N), (B, G_2, G_1), ...]). Gumbel noise in training
    (drawn from `rngs.dropout`)."""
    deterministic = None if train is None else not train
    x = self.patch_embed(images)
    x = self.norm_embed(x) + self.pos_embed[...].astype(x.dtype)
    groups, assignments = None, []
    for stage in self.stages:
      key = rngs.dropout() if (train and rngs is not None and stage.downsample is not None) else None
      x, groups, soft = stage(x, groups, deterministic=deterministic, rngs=rngs, gumbel_key=key)
      if soft is not None:
        assignments.append(soft)
    return self.norm(x), assignments

  def encode_image(self, images, *, train: bool | None = None, rngs: nnx.Rngs | None = None):
    """(B, embed_dim) float32: the projected mean of the final segment tokens (not L2-normalised)."""
    x, _ = self.forward_groups(images, train=train, rngs=rngs)
    return self.visual_projection(x.mean(axis=1), train=bool(train)).astype(jnp.float32)

  def encode_text(self, tokens, *, train: bool | None = None, rngs: nnx.Rngs | None = None):
    deterministic = None if train is None else not train
    x = self.text(tokens, deterministic=deterministic, rngs=rngs)
    return self.text_projection(x, train=bool(train)).astype(jnp.float32)

  def temperature_scale(self):
    return jnp.exp(jnp.minimum(self.logit_scale[...].astype(jnp.float32), math.log(self.max_logit_scale)))

  def __call__(self, images, tokens, *, train: bool | None = None, rngs: nnx.Rngs | None = None):
    image = _normalize(self.encode_image(images, train=train, rngs=rngs))
    text = _normalize(self.encode_text(tokens, train=train, rngs=rngs))
    logits_per_image = self.temperature_scale() * image @ text.T
    return logits_per_image, logits_per_image.T

  def pixel_grouping(self, assignments, height: int, width: int):
    """(B, H, W, G) weights of each pixel over the final segments: the soft assignments multiplied
    through the stages, on the patch grid, bilinearly resized (half-pixel centres, as torch's
    interpolate with align_corners=False)."""
    total = jnp.swapaxes(assignments[0], 1, 2)  # (B, N, G_1)
    for soft in assignments[1:]:
      total = total @ jnp.swapaxes(soft, 1, 2)
    gh, gw = self.patch_embed.grid_size
    total = total.reshape(total.shape[0], gh, gw, total.shape[-1])
    return jax.image.resize(total, (total.shape[0], height, width, total.shape[-1]), "bilinear", antialias=False)

  def segment(self, images, text_features):
    """Per-pixel cosine similarities (B, H, W, K) with K text features (K, embed_dim): each final
    segment's cosine with each class, spread over the pixels by `pixel_grouping`; evaluation mode."""
    x, assignments = self.forward_groups(images, train=False)
    b, g, d = x.shape
    segments = _normalize(self.visual_projection(x.reshape(b * g, d)).reshape(b, g, -1).astype(jnp.float32))
    sims = segments @ _normalize(text_features).T  # (B, G, K)
    grouping = self.pixel_grouping(assignments, *images.shape[1:3]).astype(jnp.float32)
    return jnp.einsum("bhwg,bgk->bhwk", grouping, sims)

  def segmentation_logits(self, images, tokens):
    """HF's `segmentation_logits`, as (B, H, W, num_texts): `segment` scaled by the temperature twice."""
    scale = self.temperature_scale()
    return scale * scale * self.segment(images, self.encode_text(tokens, train=False))


def _normalize(x):
  return x * jax.lax.rsqrt(jnp.sum(x * x, axis=-1, keepdims=True))


# A 224 px image is resized to 224 and normalised with OpenAI's CLIP mean and std (HF's CLIPImageProcessor
# for nvidia/groupvit-gcc-yfcc).
for _name, _row in VARIANTS.items():
  register(_name, GroupViT, **_row,
           preprocessing=Preprocessing(224, (0.48145466, 0.4578275, 0.40821073),
                                       (0.26862954, 0.26130258, 0.27577711), crop_pct=1.0))


def forward_flops(model, text_len: int | None = None) -> float:
  """FLOPs of one `__call__` per image-text pair (both towers, their projections; the B×B similarities
  left out), counted on its jaxpr with the element-wise operations (models/conv_flops.py); works on
  an abstract model. `text_len`: the caption length (default the context length)."""
  t = text_len or model.text.context_length
  h, w = model.patch_embed.img_size
  chans = model.patch_embed.proj["kernel"].shape[2]
  graphdef, state = nnx.split(model)

  def fn(state, images, ids):
    return nnx.merge(graphdef, state)(images, ids)

  jaxpr = jax.make_jaxpr(fn)(state, jax.ShapeDtypeStruct((1, h, w, chans), jnp.float32),
                             jax.ShapeDtypeStruct((1, t), jnp.int32))
  return float(conv_flops.jaxpr_flops(jaxpr, elementwise=True))


EMBEDDINGS = ("pos_embed", "text.token_embed", "text.pos_embed")
