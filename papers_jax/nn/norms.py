"""Normalisation layers; statistics are always computed in float32."""

import jax
import jax.numpy as jnp
from flax import nnx

from papers_jax.nn.linear import param


class LayerNorm(nnx.Module):
  """LayerNorm over the last axis; computes in float32 and returns `dtype` (default: input dtype)."""

  def __init__(self, num_features: int, *, eps: float = 1e-6, use_bias: bool = True, use_scale: bool = True,
               axis_name: str = "norm", dtype=None, param_dtype=jnp.float32, rngs: nnx.Rngs):
    self.eps = eps
    self.dtype = dtype
    self.scale = param(rngs, nnx.initializers.ones, (num_features,), param_dtype, (axis_name,)) if use_scale else None
    self.bias = param(rngs, nnx.initializers.zeros, (num_features,), param_dtype, (axis_name,)) if use_bias else None

  def __call__(self, x: jax.Array) -> jax.Array:
    dtype = self.dtype or x.dtype
    x32 = x.astype(jnp.float32)
    mean = x32.mean(-1, keepdims=True)
    var = jnp.square(x32 - mean).mean(-1, keepdims=True)
    y = (x32 - mean) * jax.lax.rsqrt(var + self.eps)
    if self.scale is not None:
      y = y * self.scale[...].astype(jnp.float32)
    if self.bias is not None:
      y = y + self.bias[...].astype(jnp.float32)
    return y.astype(dtype)


class RMSNorm(nnx.Module):
  """x / sqrt(mean(x²) + eps) · scale over the last axis, no centring and no bias (iGPT's norm); float32."""

  def __init__(self, num_features: int, *, eps: float = 1e-5, dtype=None, param_dtype=jnp.float32, rngs: nnx.Rngs):
    self.eps, self.dtype = eps, dtype
    self.scale = param(rngs, nnx.initializers.ones, (num_features,), param_dtype, ("norm",))

  def __call__(self, x: jax.Array) -> jax.Array:
    x32 = x.astype(jnp.float32)
    y = x32 * jax.lax.rsqrt(jnp.square(x32).mean(-1, keepdims=True) + self.eps)
    return (y * self.scale[...].astype(jnp.float32)).astype(self.dtype or x.dtype)


class BatchNorm(nnx.Module):
  """BatchNorm over every axis but the last, with PyTorch's conventions (momentum 0.1 for the
  running statistics, unbiased running variance, eps 1e-5), statistics in float32.

  By default the statistics of a training step span the whole global batch: under `jax.jit`
  with a batch-sharded input the mean is a cross-device reduction (SyncBN, as SimCLR and BYOL
  train). `group_size=g` instead normalises each group of g consecutive examples on its own
  statistics, which with g = the per-device batch reproduces per-GPU BatchNorm (as MoCo v1/v2
  train, with shuffle-BN). The running statistics are the mean over groups.
  """

  def __init__(self, num_features: int, *, momentum: float = 0.1, eps: float = 1e-5, use_scale: bool = True,
               use_bias: bool = True, group_size: int | None = None, dtype=None, param_dtype=jnp.float32,
               rngs: nnx.Rngs):
    self.momentum, self.eps, self.group_size, self.dtype = momentum, eps, group_size, dtype
    self.scale = param(rngs, nnx.initializers.ones, (num_features,), param_dtype, ("norm",)) if use_scale else None
    self.bias = param(rngs, nnx.initializers.zeros, (num_features,), param_dtype, ("norm",)) if use_bias else None
    self.mean = nnx.BatchStat(jnp.zeros((num_features,), jnp.float32))
    self.var = nnx.BatchStat(jnp.ones((num_features,), jnp.float32))

  def __call__(self, x, *, train: bool = False):
    dtype = self.dtype or x.dtype
    x32 = x.astype(jnp.float32)
    if train:
      n = x.shape[0]
      g = self.group_size or n
      if n % g:
        raise ValueError(f"BatchNorm group_size {g} does not divide the batch {n}")
      grouped = x32.reshape((n // g, -1, x.shape[-1]))  # (groups, examples × spatial, C)
      mean = grouped.mean(axis=1, keepdims=True)
      var = jnp.square(grouped - mean).mean(axis=1, keepdims=True)
      y = ((grouped - mean) * jax.lax.rsqrt(var + self.eps)).reshape(x.shape)
      count = grouped.shape[1]
      unbiased = var[:, 0] * count / max(count - 1, 1)
      self.mean[...] = (1 - self.momentum) * self.mean[...] + self.momentum * mean[:, 0].mean(axis=0)
      self.var[...] = (1 - self.momentum) * self.var[...] + self.momentum * unbiased.mean(axis=0)
    else:
      y = (x32 - self.mean[...]) * jax.lax.rsqrt(self.var[...] + self.eps)
    if self.scale is not None:
      y = y * self.scale[...].astype(jnp.float32)
    if self.bias is not None:
      y = y + self.bias[...].astype(jnp.float32)
    return y.astype(dtype)


class FrozenBatchNorm(nnx.Module):
  """BatchNorm with fixed statistics and affine (torchvision's `FrozenBatchNorm2d`, as DETR's backbone uses
  it): y = (x - mean) / sqrt(var + eps) · scale + bias. All four are `nnx.BatchStat`, not parameters, so
  no optimizer touches them and `train` changes nothing; a converted checkpoint loads them as BatchNorm's."""

  def __init__(self, num_features: int, *, eps: float = 1e-5, dtype=None, param_dtype=jnp.float32,
               rngs: nnx.Rngs | None = None):
    del rngs
    self.eps, self.dtype = eps, dtype
    self.scale = nnx.BatchStat(jnp.ones((num_features,), param_dtype))
    self.bias = nnx.BatchStat(jnp.zeros((num_features,), param_dtype))
    self.mean = nnx.BatchStat(jnp.zeros((num_features,), jnp.float32))
    self.var = nnx.BatchStat(jnp.ones((num_features,), jnp.float32))

  def __call__(self, x, *, train: bool = False):
    del train
    scale = self.scale[...].astype(jnp.float32) * jax.lax.rsqrt(self.var[...] + self.eps)
    shift = self.bias[...].astype(jnp.float32) - self.mean[...] * scale
    return (x.astype(jnp.float32) * scale + shift).astype(self.dtype or x.dtype)


class GroupNorm(nnx.Module):
  """GroupNorm (Wu & He, 2018) over NHWC maps: each example's channels fall into `num_groups` groups,
  normalised over (H, W, channels of the group); torch's `nn.GroupNorm` (eps 1e-5), float32 statistics."""

  def __init__(self, num_features: int, *, num_groups: int = 32, eps: float = 1e-5, dtype=None,
               param_dtype=jnp.float32, rngs: nnx.Rngs):
    if num_features % num_groups:
      raise ValueError(f"GroupNorm: {num_features} channels do not split into {num_groups} groups")
    self.num_groups, self.eps, self.dtype = num_groups, eps, dtype
    self.scale = param(rngs, nnx.initializers.ones, (num_features,), param_dtype, ("norm",))
    self.bias = param(rngs, nnx.initializers.zeros, (num_features,), param_dtype, ("norm",))

  def __call__(self, x: jax.Array) -> jax.Array:
    dtype = self.dtype or x.dtype
    c = x.shape[-1]
    grouped = x.astype(jnp.float32).reshape(x.shape[0], -1, self.num_groups, c // self.num_groups)
    mean = grouped.mean(axis=(1, 3), keepdims=True)
    var = jnp.square(grouped - mean).mean(axis=(1, 3), keepdims=True)
    y = ((grouped - mean) * jax.lax.rsqrt(var + self.eps)).reshape(x.shape)
    return (y * self.scale[...].astype(jnp.float32) + self.bias[...].astype(jnp.float32)).astype(dtype)


def local_response_norm(x: jax.Array, size: int = 5, alpha: float = 1e-4, beta: float = 0.75, k: float = 2.0):
  """AlexNet's local response normalisation (§3.3): b_i = a_i / (k + α Σ_j a_j²)^β, the sum over the `size`
  channels centred on i (clipped at the ends). The paper's α multiplies the sum; torch's
  `nn.LocalResponseNorm(size, alpha)` divides its alpha by `size` (its alpha = paper α · size). Float32."""
  x32 = x.astype(jnp.float32)
  before, after = size // 2, (size - 1) // 2
  window = jax.lax.reduce_window(jnp.square(x32), 0.0, jax.lax.add, (1,) * (x.ndim - 1) + (size,), (1,) * x.ndim,
                                 ((0, 0),) * (x.ndim - 1) + ((before, after),))
  return (x32 / (k + alpha * window) ** beta).astype(x.dtype)
