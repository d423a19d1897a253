"""BEiT v1 (Bao et al., ICLR 2022, "BEiT: BERT Pre-Training of Image Transformers").

A ViT whose blocks carry the paper's two changes, trained by masked image modelling (MIM):
  x = x + γ1 ⊙ Attn(LN(x), bias=B)          layer-scale γ (a learned per-channel scale, init `layer_scale`)
  x = x + γ2 ⊙ MLP(LN(x))
B is the relative position bias: a table of ((2h-1)(2w-1) + 3) rows × heads, the patch-to-patch offsets of
the h × w grid plus three rows for [CLS]→patch, patch→[CLS] and [CLS]→[CLS] (the index is
`relative_position_index`, built once in numpy). `rel_pos="layer"` gives every block its own table,
`"shared"` one table for all blocks (what the released pre-trained models use), `"none"` none. Absolute
position embeddings are off by default, as in the paper's pre-training.

MIM (`num_visual_tokens` > 0): the patches that `mask` (B, N) marks are replaced by a learned [MASK]
embedding before the [CLS] token is prepended; after the blocks a LayerNorm and a linear head `lm_head`
give every patch's logits over the visual-token vocabulary. The paper's tokens come from DALL·E's dVAE
(8,192 codes); here a VQ-VAE of models/vqvae.py stands in for it (tasks/beit.py). Classification
(`num_classes` > 0): mean of the patch tokens → `fc_norm` → `head` (the paper's fine-tuning), or the
[CLS] token after `norm` (`global_pool="token"`).

Attention: one fused qkv projection with a bias. BEiT's q and v have biases and k has none; a bias on k
adds q·b_k to every logit of a query, the same for all keys, so softmax removes it: it changes nothing
and receives zero gradient. Converters write it as 0 and drop it on export.

Initialisation (the released code): weights truncated N(0, 0.02²) at ±2σ, zero biases, the relative
position tables at 0, and the two projections that write into the residual stream of block l (1-based)
scaled by 1/√(2l). LayerNorm eps 1e-6.

Parameter paths: patch_embed/proj, cls_token, mask_token, [pos_embed], [rel_pos_bias_table],
blocks/N/{norm1, attn/{qkv, proj, relative_position_bias_table}, gamma_1, norm2, mlp/{fc1, fc2}, gamma_2},
norm, lm_head | fc_norm, head. convert/hf_beit.py maps HF's `BeitForMaskedImageModeling` onto them.
"""

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from papers_jax.core import sharding
from papers_jax.errors import ConfigError
from papers_jax.models import intermediates
from papers_jax.models.bert import truncated_normal
from papers_jax.models.registry import INCEPTION_MEAN, INCEPTION_STD, Preprocessing, register
from papers_jax.models.swin import relative_position_index as patch_relative_index
from papers_jax.models.vit import block_flops, patch_embed_flops
from papers_jax.nn import Attention, DropPath, LayerNorm, Mlp, PatchEmbed, param
from papers_jax.nn.linear import Dense

REL_POS = ("layer", "shared", "none")


@functools.lru_cache(maxsize=None)
def relative_position_index(grid: tuple[int, int]) -> np.ndarray:
  """(1 + N, 1 + N) int32 rows of BEiT's table for the [CLS] token followed by the N = h·w patches: the
  patch-pair offsets of the grid (models/swin.py's index), then the three extra rows T - 3 ([CLS] → patch),
  T - 2 (patch → [CLS]) and T - 1 ([CLS] → [CLS]), T the table's length."""
  h, w = grid
  t = (2 * h - 1) * (2 * w - 1) + 3
  n = h * w
  index = np.zeros((n + 1, n + 1), np.int32)
  index[1:, 1:] = patch_relative_index((h, w))
  index[0, :] = t - 3
  index[:, 0] = t - 2
  index[0, 0] = t - 1
  index.setflags(write=False)
  return index


def table_length(grid: tuple[int, int]) -> int:
  return (2 * grid[0] - 1) * (2 * grid[1] - 1) + 3


def relative_bias(table, grid) -> jax.Array:
  """(1, heads, 1 + N, 1 + N) float32 bias from a (table_length, heads) table."""
  return table[...].astype(jnp.float32)[relative_position_index(tuple(grid))].transpose(2, 0, 1)[None]


class Block(nnx.Module):
  """Pre-norm block with layer-scale and (optionally its own) relative position bias."""

  def __init__(self, dim: int, num_heads: int, *, grid: tuple[int, int], own_table: bool, mlp_ratio: float,
               layer_scale: float, drop_path: float, norm_eps: float, init, residual_scale: float,
               attention_impl: str | None, dtype=None, param_dtype=jnp.float32, rngs: nnx.Rngs):
    kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
    self.grid = tuple(grid)
    self.norm1 = LayerNorm(dim, eps=norm_eps, **kw)
    self.attn = Attention(dim, num_heads, qkv_bias=True, kernel_init=init, implementation=attention_impl, **kw)
    self.attn.relative_position_bias_table = (
        param(rngs, nnx.initializers.zeros, (table_length(self.grid), num_heads), param_dtype, (None, "heads"))
        if own_table else None)
    self.norm2 = LayerNorm(dim, eps=norm_eps, **kw)
    self.mlp = Mlp(dim, int(dim * mlp_ratio), kernel_init=init, bias_init=nnx.initializers.zeros, **kw)
    for kernel in (self.attn.proj.kernel, self.mlp.fc2.kernel):  # the released code's fix_init_weight
      kernel[...] = kernel[...] * residual_scale
    gamma = lambda: param(rngs, nnx.initializers.constant(layer_scale), (dim,), param_dtype, ("embed",))  # noqa: E731
    self.gamma_1 = gamma() if layer_scale > 0 else None
    self.gamma_2 = gamma() if layer_scale > 0 else None
    self.drop_path = DropPath(drop_path)

  def _scaled(self, gamma, y):
    return y if gamma is None else y * gamma[...].astype(y.dtype)

  def __call__(self, x, *, shared_bias=None, deterministic=None, rngs=None):
    kw = dict(deterministic=deterministic, rngs=rngs)
    table = self.attn.relative_position_bias_table
    bias = relative_bias(table, self.grid) if table is not None else shared_bias
    if bias is not None and self.attn.implementation == "cudnn":
      bias = bias.astype(x.dtype)
    x = x + self.drop_path(self._scaled(self.gamma_1, self.attn(self.norm1(x), bias=bias, **kw)), **kw)
    x = x + self.drop_path(self._scaled(self.gamma_2, self.mlp(self.norm2(x), **kw)), **kw)
    return sharding.constrain(x, ("act_batch", "act_len", "act_emb"))


class BEiT(nnx.Module):
  """See the module docstring. `model(images, mask=None)`: MIM logits (B, N, vocab) or class logits (B, classes)."""

  def __init__(self, *, img_size=224, patch_size=16, in_chans: int = 3, embed_dim: int = 768, depth: int = 12,
               num_heads: int = 12, mlp_ratio: float = 4.0, num_visual_tokens: int = 8192, num_classes: int = 0,
               global_pool: str = "avg", rel_pos: str = "layer", abs_pos_embed: bool = False,
               layer_scale: float = 0.1, drop_path_rate: float = 0.0, norm_eps: float = 1e-6,
               init_std: float = 0.02, attention_impl: str | None = None, dtype=None, param_dtype=jnp.float32,
               rngs: nnx.Rngs):
    if rel_pos not in REL_POS:
      raise ConfigError(f"rel_pos must be one of {REL_POS}, got {rel_pos!r}")
    if global_pool not in ("avg", "token"):
      raise ConfigError(f"global_pool must be 'avg' or 'token', got {global_pool!r}")
    if embed_dim % num_heads:
      raise ConfigError(f"embed_dim {embed_dim} is not divisible by num_heads {num_heads}")
    if num_visual_tokens and num_classes:
      raise ConfigError("a BEiT has either the MIM head (num_visual_tokens) or a classifier (num_classes), not both")
    init = truncated_normal(init_std)
    kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
    self.embed_dim, self.num_prefix_tokens, self.dtype = embed_dim, 1, dtype
    self.num_visual_tokens, self.num_classes, self.global_pool = num_visual_tokens, num_classes, global_pool
    self.patch_embed = PatchEmbed(img_size, patch_size, in_chans, embed_dim, kernel_init=init, **kw)
    self.grid = self.patch_embed.grid_size
    n = self.patch_embed.num_patches
    self.cls_token = param(rngs, init, (1, 1, embed_dim), param_dtype, (None, None, "embed"))
    self.mask_token = param(rngs, init, (1, 1, embed_dim), param_dtype, (None, None, "embed"))
    self.pos_embed = (param(rngs, init, (1, 1 + n, embed_dim), param_dtype, (None, None, "embed"))
                      if abs_pos_embed else None)
    self.rel_pos_bias_table = (param(rngs, nnx.initializers.zeros, (table_length(self.grid), num_heads), param_dtype,
                                     (None, "heads"))
                               if rel_pos == "shared" else None)
    rates = [float(r) for r in np.linspace(0.0, drop_path_rate, depth)]
    self.blocks = nnx.List([
        Block(embed_dim, num_heads, grid=self.grid, own_table=rel_pos == "layer", mlp_ratio=mlp_ratio,
              layer_scale=layer_scale, drop_path=rates[i], norm_eps=norm_eps, init=init,
              residual_scale=1 / math.sqrt(2 * (i + 1)), attention_impl=attention_impl, **kw)
        for i in range(depth)])
    mean_pool = num_classes > 0 and global_pool == "avg"
    self.norm = LayerNorm(embed_dim, eps=norm_eps, **kw) if not mean_pool else None
    self.fc_norm = LayerNorm(embed_dim, eps=norm_eps, **kw) if mean_pool else None
    zeros = nnx.initializers.zeros
    self.lm_head = (Dense(embed_dim, num_visual_tokens, axes=("embed", "classes"), kernel_init=init,
                          bias_init=zeros, **kw) if num_visual_tokens else None)
    self.head = (Dense(embed_dim, num_classes, axes=("embed", "classes"), kernel_init=init, bias_init=zeros, **kw)
                 if num_classes else None)

  def embed(self, images, mask=None):
    """(B, H, W, C) → (B, 1 + N, D): patches where `mask` (B, N) is True become [MASK], then [CLS] (and the
    absolute positions, when the model has them)."""
    x = self.patch_embed(images)
    if mask is not None:
      x = jnp.where(mask[..., None], self.mask_token[...].astype(x.dtype), x)
    cls = jnp.broadcast_to(self.cls_token[...].astype(x.dtype), (x.shape[0], 1, self.embed_dim))
    x = jnp.concatenate([cls, x], axis=1)
    if self.pos_embed is not None:
      x = x + self.pos_embed[...].astype(x.dtype)
    return sharding.constrain(x, ("act_batch", "act_len", "act_emb"))

  def _shared_bias(self):
    return None if self.rel_pos_bias_table is None else relative_bias(self.rel_pos_bias_table, self.grid)

  def forward_features(self, images, mask=None, *, deterministic=None, rngs=None):
    """Tokens (B, 1 + N, D) after the blocks, and after `norm` when the model has one."""
    x, shared = self.embed(images, mask), self._shared_bias()
    for block in self.blocks:
      x = block(x, shared_bias=shared, deterministic=deterministic, rngs=rngs)
    return x if self.norm is None else self.norm(x)

  def forward_head(self, x, *, pre_logits: bool = False, **_):
    """MIM: every patch's logits (B, N, vocab); classification: the pooled feature → logits (B, classes)."""
    if self.lm_head is not None and not pre_logits:
      return self.lm_head(x[:, 1:]).astype(jnp.float32)
    if self.fc_norm is not None:
      x = self.fc_norm(x[:, 1:].mean(axis=1))
    elif self.global_pool == "avg":
      x = x[:, 1:].mean(axis=1)
    else:
      x = x[:, 0]
    if pre_logits or self.head is None:
      return x
    return self.head(x).astype(jnp.float32)

  def __call__(self, images, mask=None, *, train: bool | None = None, rngs: nnx.Rngs | None = None):
    deterministic = None if train is None else not train
    return self.forward_head(self.forward_features(images, mask, deterministic=deterministic, rngs=rngs))

  def forward_intermediates(self, images, *, indices=None, stop_early: bool = False, train: bool | None = None,
                            rngs=None) -> dict:
    """Named features (models/intermediates.py) of unmasked images: "block{i:02d}/+mlp" for the blocks
    `indices` picks, then "encoded" and "pre_logits" (the mean of the patch tokens, after fc_norm when
    the model has one) and, with a head, "logits" unless `stop_early`."""
    deterministic = None if train is None else not train
    picked = intermediates.select(indices, len(self.blocks))
    x, shared, out = self.embed(images), self._shared_bias(), {}
    for i, block in enumerate(self.blocks):
      x = block(x, shared_bias=shared, deterministic=deterministic, rngs=rngs)
      if i in picked:
        out[intermediates.block_key(i, "+mlp")] = x
      if stop_early and picked and i == picked[-1]:
        return out
    x = x if self.norm is None else self.norm(x)
    out["encoded"] = x
    pooled = self.forward_head(x, pre_logits=True) if self.lm_head is None else x[:, 1:].mean(axis=1)
    out["pre_logits"] = pooled
    if self.head is not None:
      out["logits"] = self.head(pooled).astype(jnp.float32)
    return out


def forward_flops(model: BEiT) -> float:
  """Matmul FLOPs of one forward pass per example (2 per multiply-add): patch projection, blocks, and the
  MIM head on every patch or the classifier."""
  n, d = model.patch_embed.num_patches + 1, model.embed_dim
  flops = patch_embed_flops(model.patch_embed)
  flops += sum(block_flops(n, d, block.mlp.fc1.kernel.shape[1]) for block in model.blocks)
  if model.lm_head is not None:
    flops += 2 * (n - 1) * d * model.num_visual_tokens
  if model.head is not None:
    flops += 2 * d * model.num_classes
  return float(flops)


# The released pre-trained models (HF microsoft/beit-{base,large}-patch16-224-pt22k): DALL·E's 8,192 tokens,
# one relative position table shared by all blocks, layer-scale 0.1 (base) and 1e-5 (large), and their
# preprocessing (resize to 224 without a crop, inputs in [-1, 1]). `beit_mim_` keeps the names apart from
# timm's fine-tuned `beit_*` classifiers.
_PRE = Preprocessing(224, INCEPTION_MEAN, INCEPTION_STD, crop_pct=1.0)
VARIANTS = {
    "beit_mim_base_patch16_224": dict(embed_dim=768, depth=12, num_heads=12, layer_scale=0.1),
    "beit_mim_large_patch16_224": dict(embed_dim=1024, depth=24, num_heads=16, layer_scale=1e-5),
}
for _name, _row in VARIANTS.items():
  register(_name, BEiT, **_row, img_size=224, patch_size=16, num_visual_tokens=8192, rel_pos="shared",
           preprocessing=_PRE)

EMBEDDINGS = ("patch_embed.proj", "cls_token", "mask_token", "pos_embed")
