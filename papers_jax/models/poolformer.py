"""PoolFormer (Yu et al., CVPR 2022, "MetaFormer Is Actually What You Need for Vision").

The MetaFormer block with the plainest token mixer, average pooling:
  x = x + DropPath(ls1 · (AvgPool3×3(GN(x)) − GN(x)))        (§3.1, Eq. 4; the "− x" because the block
  x = x + DropPath(ls2 · Mlp(GN(x)))                          already adds its input back)
GN is GroupNorm with one group (statistics over channels and space, a per-channel affine; the paper's
ablation Table 5 prefers it to LayerNorm), the pool is stride 1 with padding 1 and the mean over the
valid neighbours only (`count_include_pad=False`), the MLP is two 1×1 convolutions (Dense over the
channel axis, NHWC) with exact GELU and ratio 4, and ls1/ls2 are layer scales (Touvron et al., 2021).
Four stages at strides 4, 8, 16, 32: a 7×7/4 patch embedding (padding 2), then 3×3/2 embeddings
(padding 1) between stages, none of them normalised. Names follow timm's `MetaFormer` (stem.conv,
stages.i.downsample.conv, stages.i.blocks.j.{norm1, layer_scale1, norm2, mlp, layer_scale2}, head.norm,
head.fc) so its checkpoints load one to one.

The head. The official code normalises the last stage's map with the same one-group GroupNorm and then
averages it over space (`head_norm="pre_pool"`, the default here). timm's `MetaFormer` averages first
and then applies a LayerNorm (eps 1e-6) to the pooled vector, and loads the official weights into that
order (`head_norm="post_pool"`, which timm parity uses). The two differ: GroupNorm over the whole map
and LayerNorm over the spatial mean do not commute.

Variants (`VARIANTS`, the paper's Table 1): S12/S24/S36 at widths 64/128/320/512 and M36/M48 at
96/192/384/768; layer-scale init 1e-5 for S12/S24 and 1e-6 for the deeper ones; the paper's stochastic
depth per size (`PAPER_DROP_PATH`, used by configs/poolformer/imagenet.py; the registered default is 0
as timm's). Init as the official code: trunc-normal(0.02) kernels, zero biases.
"""

import jax
import jax.numpy as jnp
from flax import nnx

from papers_jax.core import sharding
from papers_jax.errors import ConfigError
from papers_jax.models import conv_flops, intermediates
from papers_jax.models.registry import IMAGENET_MEAN, IMAGENET_STD, Preprocessing, register
from papers_jax.nn import LayerNorm
from papers_jax.nn.norms import GroupNorm
from papers_jax.nn.conv import Conv
from papers_jax.nn.drop import DropPath, Dropout
from papers_jax.nn.linear import Dense, param

# name: (blocks per stage, widths per stage, layer-scale init) — Table 1.
VARIANTS = {
    "poolformer_s12": ((2, 2, 6, 2), (64, 128, 320, 512), 1e-5),
    "poolformer_s24": ((4, 4, 12, 4), (64, 128, 320, 512), 1e-5),
    "poolformer_s36": ((6, 6, 18, 6), (64, 128, 320, 512), 1e-6),
    "poolformer_m36": ((6, 6, 18, 6), (96, 192, 384, 768), 1e-6),
    "poolformer_m48": ((8, 8, 24, 8), (96, 192, 384, 768), 1e-6),
}
# Stochastic depth of the paper's ImageNet runs (appendix, Table 6).
PAPER_DROP_PATH = {"poolformer_s12": 0.1, "poolformer_s24": 0.1, "poolformer_s36": 0.2, "poolformer_m36": 0.3,
                   "poolformer_m48": 0.4}
# Millions of parameters in the paper's Table 1.
PAPER_PARAMS_M = {"poolformer_s12": 12, "poolformer_s24": 21, "poolformer_s36": 31, "poolformer_m36": 56,
                  "poolformer_m48": 73}

TRUNC_NORMAL = nnx.initializers.truncated_normal(0.02)


def pool_mixer(x: jax.Array, pool_size: int = 3) -> jax.Array:
  """AvgPool(x) − x, stride 1, the mean over the window's positions inside the map (NHWC)."""
  pad = pool_size // 2
  window, strides = (1, pool_size, pool_size, 1), (1, 1, 1, 1)
  padding = ((0, 0), (pad, pad), (pad, pad), (0, 0))
  total = jax.lax.reduce_window(x, 0.0, jax.lax.add, window, strides, padding)
  ones = jnp.ones((1,) + x.shape[1:3] + (1,), x.dtype)  # the count of valid taps: a constant per position
  count = jax.lax.reduce_window(ones, 0.0, jax.lax.add, window, strides, padding)
  return total / count - x


class LayerScale(nnx.Module):
  """x · γ per channel, γ initialised to `init` (CaiT's layer scale; timm's `Scale`)."""

  def __init__(self, dim: int, init: float, *, param_dtype=jnp.float32, rngs: nnx.Rngs):
    self.scale = param(rngs, nnx.initializers.constant(init), (dim,), param_dtype, ("norm",))

  def __call__(self, x):
    return x * self.scale[...].astype(x.dtype)


class PoolMlp(nnx.Module):
  """fc1 → GELU → dropout → fc2 → dropout: the official 1×1 convolutions, as Dense over channels."""

  def __init__(self, dim: int, hidden: int, *, drop: float = 0.0, dtype=None, param_dtype=jnp.float32,
               rngs: nnx.Rngs):
    kw = dict(kernel_init=TRUNC_NORMAL, dtype=dtype, param_dtype=param_dtype, rngs=rngs)
    self.fc1 = Dense(dim, hidden, axes=("conv_in", "conv_out"), **kw)
    self.fc2 = Dense(hidden, dim, axes=("conv_out", "conv_in"), **kw)
    self.drop = Dropout(drop)

  def __call__(self, x, *, deterministic=None, rngs=None):
    h = self.drop(jax.nn.gelu(self.fc1(x), approximate=False), deterministic=deterministic, rngs=rngs)
    return self.drop(self.fc2(h), deterministic=deterministic, rngs=rngs)


class PoolFormerBlock(nnx.Module):
  def __init__(self, dim: int, *, pool_size: int = 3, mlp_ratio: float = 4.0, drop: float = 0.0,
               drop_path: float = 0.0, layer_scale_init: float = 1e-5, dtype=None, param_dtype=jnp.float32,
               rngs: nnx.Rngs):
    kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
    self.pool_size = pool_size
    self.norm1 = GroupNorm(dim, num_groups=1, **kw)
    self.layer_scale1 = LayerScale(dim, layer_scale_init, param_dtype=param_dtype, rngs=rngs)
    self.norm2 = GroupNorm(dim, num_groups=1, **kw)
    self.mlp = PoolMlp(dim, int(mlp_ratio * dim), drop=drop, **kw)
    self.layer_scale2 = LayerScale(dim, layer_scale_init, param_dtype=param_dtype, rngs=rngs)
    self.drop_path = DropPath(drop_path)

  def __call__(self, x, *, deterministic=None, rngs=None):
    kw = dict(deterministic=deterministic, rngs=rngs)
    x = x + self.drop_path(self.layer_scale1(pool_mixer(self.norm1(x), self.pool_size)), **kw)
    x = x + self.drop_path(self.layer_scale2(self.mlp(self.norm2(x), **kw)), **kw)
    return sharding.constrain(x, ("act_batch", None, None, "act_emb"))


class Downsample(nnx.Module):
  """A strided convolution that embeds the map into the next stage's width (timm's `Downsampling`)."""

  def __init__(self, in_chans: int, out_chans: int, kernel_size: int, stride: int, padding: int, *, dtype=None,
               param_dtype=jnp.float32, rngs: nnx.Rngs):
    self.conv = Conv(in_chans, out_chans, kernel_size, stride=stride, padding=padding, use_bias=True,
                     kernel_init=TRUNC_NORMAL, dtype=dtype, param_dtype=param_dtype, rngs=rngs)

  def __call__(self, x):
    return self.conv(x)


class PoolFormerStage(nnx.Module):
  def __init__(self, in_chans: int, dim: int, depth: int, drop_paths, *, dtype=None, param_dtype=jnp.float32,
               rngs: nnx.Rngs, **block_kw):
    kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
    self.downsample = Downsample(in_chans, dim, 3, 2, 1, **kw) if in_chans != dim else None
    self.blocks = nnx.List([PoolFormerBlock(dim, drop_path=dp, **block_kw, **kw) for dp in drop_paths])

  def __call__(self, x, *, deterministic=None, rngs=None):
    if self.downsample is not None:
      x = self.downsample(x)
    for block in self.blocks:
      x = block(x, deterministic=deterministic, rngs=rngs)
    return x


class PoolFormerHead(nnx.Module):
  """Norm and spatial mean (in `head_norm`'s order), dropout, linear classifier."""

  def __init__(self, dim: int, num_classes: int, *, head_norm: str, drop_rate: float, dtype=None,
               param_dtype=jnp.float32, rngs: nnx.Rngs):
    kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
    self.head_norm = head_norm
    self.norm = GroupNorm(dim, num_groups=1, **kw) if head_norm == "pre_pool" else LayerNorm(dim, eps=1e-6, **kw)
    self.drop = Dropout(drop_rate)
    self.fc = (Dense(dim, num_classes, axes=("embed", "classes"), kernel_init=TRUNC_NORMAL, **kw)
               if num_classes > 0 else None)

  def pool(self, x):
    """(B, H, W, C) map → (B, C) pre-logits."""
    return self.norm(x).mean(axis=(1, 2)) if self.head_norm == "pre_pool" else self.norm(x.mean(axis=(1, 2)))

  def __call__(self, x, *, pre_logits: bool = False, deterministic=None, rngs=None):
    x = self.drop(self.pool(x), deterministic=deterministic, rngs=rngs)
    if pre_logits or self.fc is None:
      return x
    return self.fc(x).astype(jnp.float32)


class PoolFormer(nnx.Module):
  """PoolFormer classifier. `model(images)` takes NHWC float images (any size divisible by 32 keeps every
  stage's map whole; others are floored by the strided convolutions) and returns float32 logits."""

  def __init__(self, *, depths=(2, 2, 6, 2), dims=(64, 128, 320, 512), in_chans: int = 3, num_classes: int = 1000,
               pool_size: int = 3, mlp_ratio: float = 4.0, layer_scale_init: float = 1e-5,
               drop_rate: float = 0.0, proj_drop_rate: float = 0.0, drop_path_rate: float = 0.0,
               head_norm: str = "pre_pool", img_size: int = 224, dtype=None, param_dtype=jnp.float32,
               rngs: nnx.Rngs):
    if len(depths) != len(dims):
      raise ConfigError(f"depths {tuple(depths)} and dims {tuple(dims)} must name the same number of stages")
    if head_norm not in ("pre_pool", "post_pool"):
      raise ConfigError(f"head_norm must be 'pre_pool' (the official code) or 'post_pool' (timm), got {head_norm!r}")
    kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
    self.in_chans, self.img_size, self.num_classes = in_chans, img_size, num_classes
    self.num_features = dims[-1]
    self.stem = Downsample(in_chans, dims[0], 7, 4, 2, **kw)
    total = sum(depths)
    # Stochastic depth grows linearly with the block index over the whole network, as the official code.
    rates = [drop_path_rate * i / max(total - 1, 1) for i in range(total)]
    stages, start, prev = [], 0, dims[0]
    for depth, dim in zip(depths, dims):
      stages.append(PoolFormerStage(prev, dim, depth, rates[start:start + depth], pool_size=pool_size,
                                    mlp_ratio=mlp_ratio, drop=proj_drop_rate, layer_scale_init=layer_scale_init,
                                    **kw))
      start, prev = start + depth, dim
    self.stages = nnx.List(stages)
    self.head = PoolFormerHead(dims[-1], num_classes, head_norm=head_norm, drop_rate=drop_rate, **kw)

  def _stem(self, x):
    if x.shape[-1] != self.in_chans:
      raise ConfigError(f"PoolFormer built for {self.in_chans} input channels got images with {x.shape[-1]}")
    return self.stem(x)

  def forward_features(self, x, *, deterministic=None, rngs=None):
    """Images (B, H, W, C) → the last stage's map (B, H/32, W/32, dims[-1])."""
    x = self._stem(x)
    for stage in self.stages:
      x = stage(x, deterministic=deterministic, rngs=rngs)
    return x

  def forward_intermediates(self, x, *, indices=None, stop_early: bool = False, train: bool | None = None,
                            rngs=None) -> dict:
    """Named features, NHWC (models/intermediates.py): "stem", "stage{i}" for the stages `indices` picks,
    then "encoded", "pre_logits" and (with a classifier) "logits" unless `stop_early`."""
    deterministic = None if train is None else not train
    picked = intermediates.select(indices, len(self.stages))
    out = {"stem": (x := intermediates.tap("stem", self._stem(x)))}
    if stop_early and not picked:
      return out
    for i, stage in enumerate(self.stages):
      x = intermediates.tap(f"stage{i}", stage(x, deterministic=deterministic, rngs=rngs))
      if i in picked:
        out[f"stage{i}"] = x
      if stop_early and i == picked[-1]:
        return out
    out = intermediates.add_head_outputs(out, self, x, deterministic=deterministic, rngs=rngs)
    if self.head.fc is None:
      out.pop("logits", None)
    return out

  def forward_head(self, x, *, pre_logits: bool = False, deterministic=None, rngs=None):
    return self.head(x, pre_logits=pre_logits, deterministic=deterministic, rngs=rngs)

  def __call__(self, x, *, train: bool | None = None, rngs: nnx.Rngs | None = None):
    """Logits (float32). `train` overrides the mode set by `model.train()` / `model.eval()`."""
    deterministic = None if train is None else not train
    x = self.forward_features(x, deterministic=deterministic, rngs=rngs)
    return self.forward_head(x, deterministic=deterministic, rngs=rngs)


for _name, (_depths, _dims, _ls) in VARIANTS.items():
  register(_name, PoolFormer, depths=_depths, dims=_dims, layer_scale_init=_ls,
           preprocessing=Preprocessing(224, IMAGENET_MEAN, IMAGENET_STD,
                                       crop_pct=0.9 if _name.startswith("poolformer_s") else 0.95))


def forward_flops(model: PoolFormer, img_size: int | None = None, *, count_padding: bool = True) -> float:
  """FLOPs of one forward pass per example (2 per multiply-add, traced from the program): the convolutions,
  the MLPs and the classifier, plus the element-wise work (pooling, norms, GELU, scales), which is a large
  share of a network whose token mixer has no multiplies."""
  return conv_flops.forward_flops(model, img_size or model.img_size, count_padding=count_padding,
                                  elementwise=True)


# The embedding parameters (models.embedding_params): none, as for any convnet.
EMBEDDINGS = ()
