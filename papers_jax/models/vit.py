"""Vision Transformer (Dosovitskiy et al., 2021, "An Image is Worth 16x16 Words").

Parameter names follow timm's `VisionTransformer` (patch_embed.proj, cls_token, pos_embed,
blocks.N.{norm1,attn,norm2,mlp}, norm, fc_norm, head) so converted weights map one to one.
Pre-norm blocks, exact GELU, LayerNorm eps 1e-6, class token or global-average pooling.
Initialisation follows the paper's reference code (big_vision): Xavier-uniform kernels,
N(0, 1e-6) MLP biases, N(0, 0.02) position embeddings, zero class token and, for training
from scratch, a zero-initialised head.

The constructor takes the plain ViT's settings (timm's names) and two groups of options, each a
small dataclass: `block=BlockOptions(...)`, what every block shares (MLP ratio, qkv bias, dropout,
activation, LayerNorm eps, attention backend), and `finetune=FineTuneOptions(...)`, how a classifier
starts from a pre-trained encoder (MAE's fine-tuning and linear probing). A registered name takes
their fields as flat keywords, as configs set them (`models.create(name, mlp_ratio=2.0,
frozen_blocks=12)`, `model.mlp_ratio` in a config): models/registry.py sorts them into the groups.

Fine-tuning from a self-supervised encoder (MAE, models/mae.py), `FineTuneOptions`:
`pos_embed_init="sincos"` starts the learned position embedding at the fixed 2-D sin-cos table the
encoder was pre-trained with; `head_init_std` draws the head from N(0, std²) (0, the default: a
zero head, as the paper trains from scratch); `head_norm="batchnorm"` puts a BatchNorm without
affine parameters before the head (MAE's linear probe); `frozen_blocks=k` stops the gradient after
the first k blocks (and so the embeddings; with k = depth after the final norm too), for linear
probing and partial fine-tuning of the last depth - k blocks: the frozen params get zero gradients
and the frozen part costs no backward pass.

Pre-training head of the paper (`representation_size=r`): pooled features → Linear(r) → tanh →
head, the paper's "MLP with one hidden layer at pre-training time" (big_vision's `pre_logits`, and
timm's `pre_logits.fc` before timm dropped it); `forward_head(pre_logits=True)` returns the tanh
output. Fine-tuning drops it (the paper's "single linear layer").

Other encoders compose a ViT from parts: a hybrid (models/vit_hybrid.py) passes its own
`patch_embed` (any module that maps images to (batch, tokens, embed) and has `grid_size` and
`num_patches`); CLIP's image tower (models/clip.py) passes a patch embedding without bias, a
`norm_pre` LayerNorm after the position embeddings (timm's name, CLIP's ln_pre) and
`BlockOptions(act="quick_gelu", norm_eps=1e-5)`.
"""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from papers_jax.core import sharding
from papers_jax.errors import ConfigError
from papers_jax.models import intermediates
from papers_jax.models.registry import (IMAGENET_MEAN, IMAGENET_STD, INCEPTION_MEAN, INCEPTION_STD, Preprocessing,
                                       register)
from papers_jax.nn.remat import BLOCK_OUT, REMAT_POLICIES, check_remat, checkpoint_name  # noqa: F401
from papers_jax.nn import (Attention, DropPath, Dropout, LayerNorm, Mlp, PatchEmbed, gradient_barrier, param,
                           pool_tokens)
from papers_jax.nn.embed import sincos_pos_embed_2d
from papers_jax.nn.linear import Dense

# The paper's Table 1 (plus the Tiny/Small widths of DeiT and "How to train your ViT").
WIDTHS = {
    "tiny": dict(embed_dim=192, depth=12, num_heads=3),
    "small": dict(embed_dim=384, depth=12, num_heads=6),
    "base": dict(embed_dim=768, depth=12, num_heads=12),
    "large": dict(embed_dim=1024, depth=24, num_heads=16),
    "huge": dict(embed_dim=1280, depth=32, num_heads=16),
    "giant": dict(embed_dim=1408, depth=40, num_heads=16, mlp_ratio=48 / 11),
}

# Registered (width, patch, resolution) triples: the names timm ships.
VARIANTS = (
    ("tiny", 16, 224), ("tiny", 16, 384),
    ("small", 32, 224), ("small", 32, 384), ("small", 16, 224), ("small", 16, 384), ("small", 8, 224),
    ("base", 32, 224), ("base", 32, 384), ("base", 16, 224), ("base", 16, 384), ("base", 8, 224),
    ("large", 32, 224), ("large", 32, 384), ("large", 16, 224), ("large", 16, 384), ("large", 14, 224),
    ("huge", 14, 224), ("giant", 14, 224),
)


@dataclasses.dataclass(frozen=True)
class BlockOptions:
  """What every block of an encoder shares; the ViT paper's values by default (CLIP's image tower:
  act="quick_gelu", norm_eps=1e-5). `norm_eps` is every LayerNorm's, the final norm's included."""
  mlp_ratio: float = 4.0
  qkv_bias: bool = True
  act: str = "gelu"
  norm_eps: float = 1e-6
  proj_drop_rate: float = 0.0
  attn_drop_rate: float = 0.0
  attention_impl: str | None = None


@dataclasses.dataclass(frozen=True)
class FineTuneOptions:
  """How a classifier starts from a pre-trained encoder (MAE's protocols; see the module docstring)."""
  pos_embed_init: str = "normal"  # or "sincos": the fixed table MAE pre-trained with
  head_init_std: float = 0.0      # 0: a zero head (from scratch); else N(0, std²)
  head_norm: str = ""             # or "batchnorm": MAE's linear probe
  frozen_blocks: int = 0          # no gradient up to the end of this block


class Block(nnx.Module):
  """Pre-norm transformer block: x + DropPath(Attn(LN(x))), then x + DropPath(MLP(LN(x)))."""

  def __init__(self, dim: int, num_heads: int, *, mlp_ratio: float = 4.0, qkv_bias: bool = True,
               proj_drop: float = 0.0, attn_drop: float = 0.0, drop_path: float = 0.0, norm_eps: float = 1e-6,
               act: str = "gelu", attention_impl: str | None = None, dtype=None, param_dtype=jnp.float32,
               rngs: nnx.Rngs):
    kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
    self.norm1 = LayerNorm(dim, eps=norm_eps, **kw)
    self.attn = Attention(dim, num_heads, qkv_bias=qkv_bias, attn_drop=attn_drop, proj_drop=proj_drop,
                          implementation=attention_impl, **kw)
    self.drop_path1 = DropPath(drop_path)
    self.norm2 = LayerNorm(dim, eps=norm_eps, **kw)
    self.mlp = Mlp(dim, int(dim * mlp_ratio), act=act, drop=proj_drop, **kw)
    self.drop_path2 = DropPath(drop_path)

  def __call__(self, x, *, mask=None, deterministic=None, rngs=None):
    """`mask` (broadcasting to (batch, heads, length, length)) says which keys each query may see."""
    return self.forward_intermediates(x, mask=mask, deterministic=deterministic, rngs=rngs)[0]

  def forward_intermediates(self, x, *, mask=None, return_attention: bool = False, deterministic=None, rngs=None):
    """(output, {"+sa": after the attention residual, "+mlp": the output[, "attn": probabilities]})."""
    kw = dict(deterministic=deterministic, rngs=rngs)
    out = {}
    y = self.attn(self.norm1(x), mask=mask, return_weights=return_attention, **kw)
    if return_attention:
      y, out["attn"] = y
    x = out["+sa"] = intermediates.tap("+sa", x + self.drop_path1(y, **kw))
    x = x + self.drop_path2(self.mlp(self.norm2(x), **kw), **kw)
    x = gradient_barrier(sharding.constrain(x, ("act_batch", "act_len", "act_emb")))
    x = out["+mlp"] = intermediates.tap("+mlp", x)
    return x, out


def apply_block(block, x, *, mask=None, remat: str = "", deterministic=None, rngs=None):
  """`block(x)`, under `nnx.remat` with the named policy when `remat` is set; `mask` is the attention
  mask (a causal text encoder's), passed only when given."""
  kw = {} if mask is None else {"mask": mask}
  if not remat:
    return checkpoint_name(block(x, deterministic=deterministic, rngs=rngs, **kw), BLOCK_OUT)
  fn = nnx.remat(lambda b, y, r: b(y, deterministic=deterministic, rngs=r, **kw), policy=REMAT_POLICIES[remat])
  return checkpoint_name(fn(block, x, rngs), BLOCK_OUT)


def apply_blocks(blocks, x, *, mask=None, remat: str = "", scan: bool = False, deterministic=None, rngs=None):
  """The blocks in order. With `scan` their params are stacked at call time and one `lax.scan` runs
  them, so XLA compiles one block instead of `depth` (the params keep their per-block layout, so
  checkpoints and converters do not change). Needs blocks of one structure (no drop-path ramp);
  dropout inside the blocks then draws from one key per block."""
  if not scan:
    for block in blocks:
      x = apply_block(block, x, mask=mask, remat=remat, deterministic=deterministic, rngs=rngs)
    return x
  graphdef, *_ = nnx.split(blocks[0])
  if any(nnx.split(block)[0] != graphdef for block in blocks[1:]):
    raise ConfigError("scan over blocks needs blocks of one structure; set drop_path_rate=0 or turn scan off")
  stacked = jax.tree.map(lambda *xs: jnp.stack(xs), *[nnx.state(block) for block in blocks])
  keys = jax.random.split(rngs.dropout(), len(blocks)) if rngs is not None else None

  def body(y, layer):
    state, key = layer
    block = nnx.merge(graphdef, state)
    return apply_block(block, y, mask=mask, remat=remat, deterministic=deterministic,
                       rngs=None if key is None else nnx.Rngs(dropout=key)), None

  x, _ = jax.lax.scan(body, x, (stacked, keys))
  return x


class VisionTransformer(nnx.Module):
  """ViT classifier. `model(images)` takes NHWC float images and returns logits."""

  def __init__(self, *, img_size=224, patch_size=16, in_chans: int = 3, num_classes: int = 1000,
               global_pool: str = "token", embed_dim: int = 768, depth: int = 12, num_heads: int = 12,
               class_token: bool = True, pos_embed: str = "learn", fc_norm: bool | None = None,
               representation_size: int | None = None, drop_rate: float = 0.0, drop_path_rate: float = 0.0,
               remat: str = "", scan: bool = False, block: BlockOptions = BlockOptions(),
               finetune: FineTuneOptions = FineTuneOptions(), patch_embed: nnx.Module | None = None,
               norm_pre: nnx.Module | None = None, dtype=None, param_dtype=jnp.float32, rngs: nnx.Rngs):
    if global_pool not in ("token", "avg", "max", ""):
      raise ConfigError(f"global_pool must be 'token', 'avg', 'max' or '', got {global_pool!r}")
    if global_pool == "token" and not class_token:
      raise ConfigError("global_pool='token' needs class_token=True; use global_pool='avg' without a class token")
    if pos_embed not in ("learn", "sincos", "none"):
      raise ConfigError(f"pos_embed must be 'learn', 'sincos' or 'none', got {pos_embed!r}")
    if embed_dim % num_heads:
      raise ConfigError(f"embed_dim {embed_dim} is not divisible by num_heads {num_heads}")
    ft = finetune
    if ft.pos_embed_init not in ("normal", "sincos"):
      raise ConfigError(f"pos_embed_init must be 'normal' or 'sincos', got {ft.pos_embed_init!r}")
    if ft.head_norm not in ("", "batchnorm"):
      raise ConfigError(f"head_norm must be '' or 'batchnorm', got {ft.head_norm!r}")
    if not 0 <= ft.frozen_blocks <= depth:
      raise ConfigError(f"frozen_blocks must be in [0, depth={depth}], got {ft.frozen_blocks}")
    check_remat(remat)
    if scan and 0 < ft.frozen_blocks < depth:
      raise ConfigError("scan over blocks cannot freeze some of them; set frozen_blocks=0 or scan=False")
    self.remat, self.scan = remat, scan
    kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
    self.num_classes = num_classes
    self.global_pool = global_pool
    self.embed_dim = embed_dim
    self.num_prefix_tokens = 1 if class_token else 0
    self.pos_embed_kind = pos_embed
    self.frozen_blocks = ft.frozen_blocks
    self.dtype = dtype

    self.patch_embed = (PatchEmbed(img_size, patch_size, in_chans, embed_dim, **kw)
                        if patch_embed is None else patch_embed)
    num_patches = self.patch_embed.num_patches
    self.cls_token = (param(rngs, nnx.initializers.zeros, (1, 1, embed_dim), param_dtype, (None, None, "embed"))
                      if class_token else None)
    pos_init = nnx.initializers.normal(0.02)
    if ft.pos_embed_init == "sincos":  # the fixed table of MAE pre-training, zero for the prefix tokens
      table = sincos_pos_embed_2d(self.patch_embed.grid_size, embed_dim)
      table = np.concatenate([np.zeros((1, self.num_prefix_tokens, embed_dim), np.float32), table], axis=1)
      pos_init = lambda key, shape, dtype: jnp.asarray(table, dtype)  # noqa: E731
    self.pos_embed = (param(rngs, pos_init, (1, self.num_prefix_tokens + num_patches, embed_dim),
                            param_dtype, (None, None, "embed"))
                      if pos_embed == "learn" else None)
    self.pos_drop = Dropout(drop_rate)
    self.norm_pre = norm_pre
    rates = [float(r) for r in np.linspace(0.0, drop_path_rate, depth)]
    self.blocks = nnx.List([
        Block(embed_dim, num_heads, mlp_ratio=block.mlp_ratio, qkv_bias=block.qkv_bias,
              proj_drop=block.proj_drop_rate, attn_drop=block.attn_drop_rate, drop_path=rate,
              norm_eps=block.norm_eps, act=block.act, attention_impl=block.attention_impl, **kw)
        for rate in rates])
    # timm: with average pooling the final norm moves after the pooling (fc_norm).
    use_fc_norm = global_pool in ("avg", "max") if fc_norm is None else fc_norm
    self.norm = LayerNorm(embed_dim, eps=block.norm_eps, **kw) if not use_fc_norm else None
    self.fc_norm = LayerNorm(embed_dim, eps=block.norm_eps, **kw) if use_fc_norm else None
    # The paper's pre-training head: Linear + tanh before the classifier (big_vision's `pre_logits`).
    self.pre_logits = (nnx.Dict(fc=Dense(embed_dim, representation_size, axes=("embed", "mlp"), **kw))
                       if representation_size else None)
    head_in = representation_size or embed_dim
    self.head_drop = Dropout(drop_rate)
    # MAE's linear probe: BatchNorm1d(affine=False, eps=1e-6) before the head, float32 statistics.
    self.head_norm = (nnx.BatchNorm(head_in, use_bias=False, use_scale=False, epsilon=1e-6, momentum=0.9,
                                    dtype=jnp.float32, rngs=rngs)
                      if ft.head_norm == "batchnorm" else None)
    head_init = (nnx.initializers.normal(ft.head_init_std) if ft.head_init_std else nnx.initializers.zeros)
    self.head = (Dense(head_in, num_classes, axes=("embed", "classes"), kernel_init=head_init, **kw)
                 if num_classes > 0 else None)

  def _pos_embed(self, x):
    b = x.shape[0]
    if self.pos_embed_kind == "sincos":
      grid = sincos_pos_embed_2d(self.patch_embed.grid_size, self.embed_dim)
      x = x + jnp.asarray(grid, x.dtype)
    if self.cls_token is not None:
      cls = jnp.broadcast_to(self.cls_token[...].astype(x.dtype), (b, 1, self.embed_dim))
      x = jnp.concatenate([cls, x], axis=1)
    if self.pos_embed is not None:
      x = x + self.pos_embed[...].astype(x.dtype)
    return x

  def forward_features(self, x, *, deterministic=None, rngs=None):
    """Images (B, H, W, C) → normalised tokens (B, prefix + patches, embed)."""
    return self.encode_patches(self.patch_embed(x), deterministic=deterministic, rngs=rngs)

  def encode_patches(self, x, *, deterministic=None, rngs=None):
    """Patch embeddings (B, patches, embed) → normalised tokens (B, prefix + patches, embed): the encoder after
    the patch projection (masked patch prediction corrupts the embeddings in between)."""
    x = self._pos_embed(x)
    x = self.pos_drop(x, deterministic=deterministic, rngs=rngs)
    if self.norm_pre is not None:
      x = self.norm_pre(x)
    x = sharding.constrain(x, ("act_batch", "act_len", "act_emb"))
    if self.scan:
      x = apply_blocks(self.blocks, x, remat=self.remat, scan=True, deterministic=deterministic, rngs=rngs)
    for i, block in enumerate(self.blocks if not self.scan else ()):
      x = apply_block(block, x, remat=self.remat, deterministic=deterministic, rngs=rngs)
      if i + 1 == self.frozen_blocks < len(self.blocks):  # nothing up to here trains: no backward pass
        x = jax.lax.stop_gradient(x)
    if self.norm is not None:
      x = self.norm(x)
    if self.frozen_blocks == len(self.blocks) > 0:  # the whole encoder, its final norm included
      x = jax.lax.stop_gradient(x)
    return x

  def forward_intermediates(self, x, *, indices=None, stop_early: bool = False, return_attention: bool = False,
                            train: bool | None = None, rngs=None) -> dict:
    """Named features (models/intermediates.py): "stem" (patch tokens before the position embeddings),
    "block{i:02d}/+sa", "block{i:02d}/+mlp" [and "/attn"] for the blocks `indices` picks, then
    "encoded", "pre_logits" and "logits" unless `stop_early`. Runs the blocks one by one (no scan,
    no remat): for evaluation and inspection."""
    deterministic = None if train is None else not train  # as in __call__
    picked = intermediates.select(indices, len(self.blocks))
    kw = dict(deterministic=deterministic, rngs=rngs)
    x = intermediates.tap("stem", self.patch_embed(x))
    out = {"stem": x}
    x = self.pos_drop(self._pos_embed(x), **kw)
    if self.norm_pre is not None:
      x = self.norm_pre(x)
    if stop_early and not picked:
      return out
    for i, block in enumerate(self.blocks):
      with intermediates.scope(intermediates.block_key(i, "")):
        x, block_out = block.forward_intermediates(x, return_attention=return_attention and i in picked, **kw)
      if i in picked:
        out.update({intermediates.block_key(i, k): v for k, v in block_out.items()})
      if i + 1 == self.frozen_blocks < len(self.blocks):
        x = jax.lax.stop_gradient(x)
      if stop_early and i == picked[-1]:
        return out
    if self.norm is not None:
      x = self.norm(x)
    if self.frozen_blocks == len(self.blocks) > 0:
      x = jax.lax.stop_gradient(x)
    return intermediates.add_head_outputs(out, self, x, **kw)

  def forward_head(self, x, *, pre_logits: bool = False, deterministic=None, rngs=None):
    x = pool_tokens(x, self.global_pool, self.num_prefix_tokens)
    if self.fc_norm is not None:
      x = self.fc_norm(x)
    if self.pre_logits is not None:
      x = jnp.tanh(self.pre_logits["fc"](x))
    if self.head_norm is not None and not pre_logits:
      x = self.head_norm(x.astype(jnp.float32), use_running_average=deterministic)
    x = self.head_drop(x, deterministic=deterministic, rngs=rngs)
    if pre_logits or self.head is None:
      return x
    return self.head(x).astype(jnp.float32)

  def __call__(self, x, *, train: bool | None = None, rngs: nnx.Rngs | None = None):
    """Logits (float32). `train` overrides the mode set by `model.train()` / `model.eval()`."""
    deterministic = None if train is None else not train
    x = self.forward_features(x, deterministic=deterministic, rngs=rngs)
    return self.forward_head(x, deterministic=deterministic, rngs=rngs)



# timm builds these three without a head by default (their default weights are ImageNet-21k / DINO
# features); the registered defaults follow timm so that a name means the same model in both.
HEADLESS = ("vit_small_patch8_224", "vit_large_patch32_224", "vit_huge_patch14_224")


def timm_preprocessing(img_size: int, imagenet: bool = False) -> Preprocessing:
  """timm's pretrained_cfg of its ViTs (and hybrids): inputs in [-1, 1] (Google's checkpoints; DINO's
  take ImageNet's mean and std), bicubic, crop_pct 0.9, or 1.0 for the 384 fine-tunes."""
  mean, std = (IMAGENET_MEAN, IMAGENET_STD) if imagenet else (INCEPTION_MEAN, INCEPTION_STD)
  return Preprocessing(img_size, mean, std, crop_pct=0.9 if img_size < 384 else 1.0)


for _width, _patch, _img in VARIANTS:
  _name = f"vit_{_width}_patch{_patch}_{_img}"
  register(_name, VisionTransformer, **WIDTHS[_width], patch_size=_patch, img_size=_img,
           preprocessing=timm_preprocessing(_img, imagenet=_name == "vit_small_patch8_224"),  # its weights: DINO's
           **({"num_classes": 0} if _name in HEADLESS else {}))


# ----------------------------------------------------------------------------- FLOPs
def block_flops(n: int, d: int, hidden: int) -> int:
  """Matmul FLOPs of one pre-norm transformer block on n tokens of width d (2 per multiply-add)."""
  return (2 * n * d * 3 * d          # qkv
          + 2 * 2 * n * n * d        # q·k and p·v
          + 2 * n * d * d            # output projection
          + 2 * 2 * n * d * hidden)  # mlp


def patch_embed_flops(pe) -> int:
  ph, pw = pe.patch_size
  c, d = pe.proj["kernel"].shape[2:]
  return 2 * pe.num_patches * ph * pw * c * d


def forward_flops(model) -> float:
  """Matmul FLOPs of one ViT forward pass per example (2 per multiply-add); works on an abstract model."""
  n, d = model.patch_embed.num_patches + model.num_prefix_tokens, model.embed_dim
  flops = patch_embed_flops(model.patch_embed)
  flops += sum(block_flops(n, d, block.mlp.fc1.kernel.shape[1]) for block in model.blocks)
  if model.pre_logits is not None:
    flops += 2 * d * model.pre_logits["fc"].kernel.shape[1]
  if model.head is not None:
    flops += 2 * model.head.kernel.shape[0] * model.num_classes
  return float(flops)


# The embedding parameters (models.embedding_params): the patch projection, the position embedding and
# the class token; the rest are the non-embedding parameters of a scaling study.
EMBEDDINGS = ("patch_embed.proj", "pos_embed", "cls_token")
