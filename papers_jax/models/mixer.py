"""MLP-Mixer (Tolstikhin et al., 2021, "MLP-Mixer: An all-MLP Architecture for Vision").

Parameter names follow timm's `MlpMixer` (stem.proj, blocks.N.{norm1,mlp_tokens,norm2,mlp_channels},
norm, head) so converted weights map one to one. Per-patch linear embedding, then blocks of a
token-mixing MLP (applied across patches, on the transposed token axis) and a channel-mixing MLP,
both pre-LayerNorm (eps 1e-6) with skip connections, exact GELU; global average pooling and a
linear head. No position embedding: the token-mixing MLP sees positions, and its weights fix
the number of patches, so a model serves exactly one resolution (another one is a ConfigError).
Initialisation as the paper's code / timm: Xavier-uniform kernels, N(0, 1e-6) MLP biases,
zero head.
"""

import jax.numpy as jnp
from flax import nnx

from papers_jax.core import sharding
from papers_jax.errors import ConfigError
from papers_jax.models import intermediates
from papers_jax.models.registry import INCEPTION_MEAN, INCEPTION_STD, Preprocessing, register
from papers_jax.models.vit import patch_embed_flops
from papers_jax.nn import DropPath, Dropout, LayerNorm, Mlp, PatchEmbed, gradient_barrier
from papers_jax.nn.linear import Dense

# The paper's Table 1: hidden size C, blocks, token-mixing D_S = C/2 and channel-mixing D_C = 4C.
WIDTHS = {
    "s": dict(embed_dim=512, num_blocks=8),
    "b": dict(embed_dim=768, num_blocks=12),
    "l": dict(embed_dim=1024, num_blocks=24),
}

# Registered (width, patch) pairs at 224: the names timm ships.
VARIANTS = (("s", 32), ("s", 16), ("b", 32), ("b", 16), ("l", 32), ("l", 16))


class MixerBlock(nnx.Module):
  """x + DropPath(token-MLP(LN(x)ᵀ)ᵀ), then x + DropPath(channel-MLP(LN(x)))."""

  def __init__(self, dim: int, num_tokens: int, *, mlp_ratio=(0.5, 4.0), drop: float = 0.0, drop_path: float = 0.0,
               dtype=None, param_dtype=jnp.float32, rngs: nnx.Rngs):
    kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
    tokens_dim, channels_dim = (int(r * dim) for r in mlp_ratio)
    self.norm1 = LayerNorm(dim, **kw)
    self.mlp_tokens = Mlp(num_tokens, tokens_dim, drop=drop, embed_axis=None, **kw)
    self.drop_path = DropPath(drop_path)
    self.norm2 = LayerNorm(dim, **kw)
    self.mlp_channels = Mlp(dim, channels_dim, drop=drop, **kw)

  def __call__(self, x, *, deterministic=None, rngs=None):
    return self.forward_intermediates(x, deterministic=deterministic, rngs=rngs)[0]

  def forward_intermediates(self, x, *, deterministic=None, rngs=None):
    """(output, {"+token": after the token-mixing residual, "+channel": the output})."""
    kw = dict(deterministic=deterministic, rngs=rngs)
    y = self.mlp_tokens(jnp.swapaxes(self.norm1(x), 1, 2), **kw)
    x = token = intermediates.tap("+token", x + self.drop_path(jnp.swapaxes(y, 1, 2), **kw))
    x = x + self.drop_path(self.mlp_channels(self.norm2(x), **kw), **kw)
    x = gradient_barrier(sharding.constrain(x, ("act_batch", "act_len", "act_emb")))
    x = intermediates.tap("+channel", x)
    return x, {"+token": token, "+channel": x}


class MlpMixer(nnx.Module):
  """Mixer classifier. `model(images)` takes NHWC float images of `img_size` and returns logits."""

  def __init__(self, *, img_size=224, patch_size=16, in_chans: int = 3, num_classes: int = 1000,
               global_pool: str = "avg", embed_dim: int = 512, num_blocks: int = 8, mlp_ratio=(0.5, 4.0),
               drop_rate: float = 0.0, proj_drop_rate: float = 0.0, drop_path_rate: float = 0.0,
               head_zero_init: bool = True, dtype=None, param_dtype=jnp.float32, rngs: nnx.Rngs):
    if global_pool not in ("avg", ""):
      raise ConfigError(f"global_pool must be 'avg' or '', got {global_pool!r}")
    kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
    self.num_classes = num_classes
    self.global_pool = global_pool
    self.embed_dim = embed_dim
    mlp_ratio = tuple(mlp_ratio) if isinstance(mlp_ratio, (tuple, list)) else (mlp_ratio, mlp_ratio)
    self.stem = PatchEmbed(img_size, patch_size, in_chans, embed_dim, **kw)
    # timm gives every block the same rate (its Mixer does not scale it with depth).
    self.blocks = nnx.List([
        MixerBlock(embed_dim, self.stem.num_patches, mlp_ratio=mlp_ratio, drop=proj_drop_rate,
                   drop_path=drop_path_rate, **kw)
        for _ in range(num_blocks)])
    self.norm = LayerNorm(embed_dim, **kw)
    self.head_drop = Dropout(drop_rate)
    self.head = (Dense(embed_dim, num_classes, axes=("embed", "classes"),
                       kernel_init=nnx.initializers.zeros if head_zero_init else None, **kw)
                 if num_classes > 0 else None)

  def forward_intermediates(self, x, *, indices=None, stop_early: bool = False, train: bool | None = None,
                            rngs=None) -> dict:
    """Named features (models/intermediates.py): "stem" (patch tokens), "block{i:02d}/+token" and
    "block{i:02d}/+channel" for the blocks `indices` picks, then "encoded", "pre_logits" and "logits"
    unless `stop_early`."""
    deterministic = None if train is None else not train  # as in __call__
    picked = intermediates.select(indices, len(self.blocks))
    x = intermediates.tap("stem", self._stem(x))
    out = {"stem": x}
    if stop_early and not picked:
      return out
    for i, block in enumerate(self.blocks):
      with intermediates.scope(intermediates.block_key(i, "")):
        x, block_out = block.forward_intermediates(x, deterministic=deterministic, rngs=rngs)
      if i in picked:
        out.update({intermediates.block_key(i, k): v for k, v in block_out.items()})
      if stop_early and i == picked[-1]:
        return out
    return intermediates.add_head_outputs(out, self, self.norm(x), deterministic=deterministic, rngs=rngs)

  def _stem(self, x):
    if tuple(x.shape[1:3]) != self.stem.img_size:
      h, w = self.stem.img_size
      ph, pw = self.stem.patch_size
      raise ConfigError(
          f"this Mixer serves {h}x{w} images only, got {x.shape[1]}x{x.shape[2]}: its token-mixing MLPs are sized "
          f"for {self.stem.num_patches} patches of {ph}x{pw}. Resize the images, or create the model with "
          "img_size=... (the token-mixing weights then no longer fit a checkpoint of another resolution).")
    return sharding.constrain(self.stem(x), ("act_batch", "act_len", "act_emb"))

  def forward_features(self, x, *, deterministic=None, rngs=None):
    """Images (B, H, W, C) → normalised tokens (B, patches, embed)."""
    x = self._stem(x)
    for block in self.blocks:
      x = block(x, deterministic=deterministic, rngs=rngs)
    return self.norm(x)

  def forward_head(self, x, *, pre_logits: bool = False, deterministic=None, rngs=None):
    if self.global_pool == "avg":
      x = x.mean(axis=1)
    x = self.head_drop(x, deterministic=deterministic, rngs=rngs)
    if pre_logits or self.head is None:
      return x
    return self.head(x).astype(jnp.float32)

  def __call__(self, x, *, train: bool | None = None, rngs: nnx.Rngs | None = None):
    """Logits (float32). `train` overrides the mode set by `model.train()` / `model.eval()`."""
    deterministic = None if train is None else not train
    x = self.forward_features(x, deterministic=deterministic, rngs=rngs)
    return self.forward_head(x, deterministic=deterministic, rngs=rngs)


for _width, _patch in VARIANTS:
  register(f"mixer_{_width}{_patch}_224", MlpMixer, **WIDTHS[_width], patch_size=_patch, img_size=224,
           preprocessing=Preprocessing(224, INCEPTION_MEAN, INCEPTION_STD, crop_pct=0.875))  # timm's pretrained_cfg


def forward_flops(model) -> float:
  """Matmul FLOPs of one MLP-Mixer forward pass per example (2 per multiply-add)."""
  n, d = model.stem.num_patches, model.embed_dim
  flops = patch_embed_flops(model.stem)
  for block in model.blocks:
    flops += 2 * 2 * d * n * block.mlp_tokens.fc1.kernel.shape[1]     # token mixing, per channel
    flops += 2 * 2 * n * d * block.mlp_channels.fc1.kernel.shape[1]   # channel mixing, per token
  if model.head is not None:
    flops += 2 * d * model.num_classes
  return float(flops)


# The embedding parameters (models.embedding_params): the patch projection (Mixer has no position embedding).
EMBEDDINGS = ("stem.proj",)
