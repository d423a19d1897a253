"""The one attention op of the codebase and the multi-head self-attention layer built on it.

`dot_product_attention` has two implementations: "cudnn" is cuDNN flash attention through
`jax.nn.dot_product_attention` (GPU, bf16/fp16, no probability dropout); "xla" and None (the
default) are the softmax(QK^T)V below, with its own JVP, on any backend. Masks,
additive biases (Swin, T5-style) and attention-probability dropout take the same path.

`KVCache` holds the keys and values of the positions decoded so far for autoregressive decoding
(GPT sampling, the Transformer's greedy and beam search): fixed-size arrays written with
`lax.dynamic_update_slice`, so the decode step compiles once.
"""

import dataclasses
import functools
import math

import jax
import jax.numpy as jnp
from flax import nnx

from papers_jax.core import sharding
from papers_jax.nn.drop import Dropout
from papers_jax.nn.linear import Dense
from papers_jax.nn.remat import ATTN_OUT, QKV, checkpoint_name

IMPLEMENTATIONS = ("xla", "cudnn", None)


def dot_product_attention(q, k, v, *, bias=None, mask=None, is_causal: bool = False, scale: float | None = None,
                          implementation: str | None = None, dropout_rate: float = 0.0,
                          dropout_rng: jax.Array | None = None, return_weights: bool = False):
  """Attention over (batch, length, heads, head_dim) inputs; returns the same layout as q.

  `bias` (added to the logits) and `mask` (True = attend) broadcast to (batch, heads, length, keys).
  Logits and softmax are computed in float32 whatever the input dtype. `dropout_rate` drops
  attention probabilities (scaled by 1 / keep) with a mask drawn from `dropout_rng`.
  `return_weights` returns (output, probabilities (batch, heads, length, keys) float32, before
  dropout) from the XLA path, for inspection (named intermediates): the same softmax, without the
  hand-written JVP.
  """
  if implementation not in IMPLEMENTATIONS:
    raise ValueError(f"attention implementation must be one of {IMPLEMENTATIONS}, got {implementation!r}")
  if q.ndim != 4 or k.ndim != 4 or k.shape != v.shape or k.shape[0] != q.shape[0] or k.shape[2:] != q.shape[2:]:
    raise ValueError("attention takes q (batch, length, heads, head_dim) and k, v (batch, keys, heads, head_dim) "
                     f"with equal batch, heads and head_dim; got {q.shape}, {k.shape}, {v.shape}")
  scale = 1.0 / math.sqrt(q.shape[-1]) if scale is None else float(scale)
  if return_weights and implementation == "cudnn":
    raise ValueError("attention weights are not returned by implementation='cudnn'; use 'xla' to read them")
  if implementation == "cudnn":
    if dropout_rate > 0:
      raise ValueError("attention dropout is not supported with implementation='cudnn'")
    return jax.nn.dot_product_attention(q, k, v, bias=bias, mask=mask, is_causal=is_causal, scale=scale,
                                        implementation="cudnn")
  if is_causal:
    causal = jnp.tril(jnp.ones((q.shape[1], k.shape[1]), bool))
    mask = causal if mask is None else jnp.logical_and(mask, causal)
  keep = None
  if dropout_rate > 0:
    if dropout_rng is None:
      raise ValueError("attention dropout needs dropout_rng")
    keep = jax.random.bernoulli(dropout_rng, 1.0 - dropout_rate, (q.shape[0], q.shape[2], q.shape[1], k.shape[1]))
  if return_weights:
    y, (*_, p) = _attention_with_probabilities(q, k, v, bias, mask, keep, scale, float(dropout_rate))
    return y, p
  return _attention(q, k, v, bias, mask, keep, scale, float(dropout_rate))


# The XLA path has a hand-written JVP, which JAX transposes for the backward pass. Heads move next
# to batch first, so every matmul, forward and backward, is a plain batched (length × head_dim)
# GEMM. Autodiff of jax.nn.dot_product_attention's einsum form compiles to a slower train step on
# XLA CPU (docs/benchmarks.md, "Attention with its own JVP").
# A JVP rather than a VJP keeps forward-mode (jax.jacfwd) working; the linearised residuals are
# what autodiff keeps: the head-major q, k, v and the float32 probabilities.
def _heads_first(x):
  return x.transpose(0, 2, 1, 3)


def _dropped(p, keep, rate):
  return p if keep is None else jnp.where(keep, p / (1.0 - rate), 0.0)


@functools.partial(jax.custom_jvp, nondiff_argnums=(6, 7))
def _attention(q, k, v, bias, mask, keep, scale, rate):
  return _attention_with_probabilities(q, k, v, bias, mask, keep, scale, rate)[0]


def _attention_with_probabilities(q, k, v, bias, mask, keep, scale, rate):
  qt, kt, vt = _heads_first(q), _heads_first(k), _heads_first(v)
  logits = jnp.einsum("bnth,bnsh->bnts", qt, kt, preferred_element_type=jnp.float32) * scale
  if bias is not None:
    logits = logits + bias.astype(jnp.float32)
  if mask is not None:
    logits = jnp.where(mask, logits, jnp.finfo(jnp.float32).min)
  p = jax.nn.softmax(logits, axis=-1)
  y = jnp.einsum("bnts,bnsh->bnth", _dropped(p, keep, rate).astype(v.dtype), vt)
  return _heads_first(y), (qt, kt, vt, p)


@_attention.defjvp
def _attention_jvp(scale, rate, primals, tangents):
  q, k, v, bias, mask, keep = primals
  dq, dk, dv, dbias = tangents[:4]
  y, (qt, kt, vt, p) = _attention_with_probabilities(q, k, v, bias, mask, keep, scale, rate)
  dlogits = (jnp.einsum("bnth,bnsh->bnts", _heads_first(dq), kt, preferred_element_type=jnp.float32)
             + jnp.einsum("bnth,bnsh->bnts", qt, _heads_first(dk), preferred_element_type=jnp.float32)) * scale
  if bias is not None:
    dlogits = dlogits + dbias.astype(jnp.float32)
  if mask is not None:  # masked logits are constants: a fully masked row has uniform p and no tangent
    dlogits = jnp.where(mask, dlogits, 0.0)
  # dlogits * p: under jax.jacfwd p is broadcast along a leading axis, the operand order that
  # jaxlib 0.10.2's CPU reduce fusion gets wrong (papers_jax/__init__.py).
  dp = p * (dlogits - jnp.sum(dlogits * p, axis=-1, keepdims=True))
  dy = (jnp.einsum("bnts,bnsh->bnth", _dropped(dp, keep, rate).astype(v.dtype), vt)
        + jnp.einsum("bnts,bnsh->bnth", _dropped(p, keep, rate).astype(v.dtype), _heads_first(dv)))
  return y, _heads_first(dy)


@jax.tree_util.register_dataclass
@dataclasses.dataclass
class KVCache:
  """Keys and values (batch, max_len, heads, head_dim) of the first `index` positions of a sequence.

  `update(k, v)` writes t new positions at [index, index + t) and returns the mask (t, max_len) that
  lets each new position see itself and every earlier one, so a prompt can be fed in one call and
  the following tokens one at a time; unfilled slots are never attended to.
  """
  k: jax.Array
  v: jax.Array
  index: jax.Array  # () int32

  @classmethod
  def init(cls, batch: int, max_len: int, num_heads: int, head_dim: int, dtype=jnp.float32) -> "KVCache":
    shape = (batch, max_len, num_heads, head_dim)
    return cls(jnp.zeros(shape, dtype), jnp.zeros(shape, dtype), jnp.zeros((), jnp.int32))

  @property
  def max_len(self) -> int:
    return self.k.shape[1]

  def update(self, k, v) -> tuple["KVCache", jax.Array]:
    t = k.shape[1]
    start = (0, self.index, 0, 0)
    cache = KVCache(jax.lax.dynamic_update_slice(self.k, k.astype(self.k.dtype), start),
                    jax.lax.dynamic_update_slice(self.v, v.astype(self.v.dtype), start), self.index + t)
    query_pos = self.index + jnp.arange(t)
    return cache, jnp.arange(self.max_len)[None, :] <= query_pos[:, None]


class Attention(nnx.Module):
  """Multi-head self-attention with a fused QKV projection (timm's `Attention`).

  Kernels are stored per head: qkv (embed, 3, heads, head_dim) and proj (heads, head_dim, embed),
  so tensor parallelism shards heads without any reshape of the weights. `kernel_init` (default:
  Xavier-uniform) initialises both kernels.
  """

  def __init__(self, dim: int, num_heads: int, *, qkv_bias: bool = True, attn_drop: float = 0.0,
               proj_drop: float = 0.0, implementation: str | None = None, kernel_init=None, dtype=None,
               param_dtype=jnp.float32, rngs: nnx.Rngs):
    if dim % num_heads:
      raise ValueError(f"embed dim {dim} is not divisible by num_heads {num_heads}")
    self.num_heads = num_heads
    self.head_dim = dim // num_heads
    self.attn_drop = attn_drop
    self.implementation = implementation
    self.deterministic = False
    self.qkv = Dense(dim, (3, num_heads, self.head_dim), axes=("embed", None, "heads", "kv"), use_bias=qkv_bias,
                     kernel_init=kernel_init or nnx.initializers.variance_scaling(1.0, "fan_avg", "uniform", in_axis=0,
                                                                                  out_axis=(2, 3)),
                     dtype=dtype, param_dtype=param_dtype, rngs=rngs)
    self.proj = Dense((num_heads, self.head_dim), dim, axes=("heads", "kv", "embed"), kernel_init=kernel_init,
                      dtype=dtype, param_dtype=param_dtype, rngs=rngs)
    self.proj_drop = Dropout(proj_drop)

  def __call__(self, x, *, bias=None, mask=None, is_causal: bool = False, cache: KVCache | None = None,
               return_weights: bool = False, deterministic: bool | None = None, rngs: nnx.Rngs | None = None):
    """x (batch, length, dim) → (batch, length, dim); `mask` broadcasts to (batch, heads, length, keys).

    With `cache`, x holds the next positions of sequences whose earlier keys and values are in the
    cache; they are appended, attention runs causally over the filled part, and (y, new cache) is
    returned (`is_causal` is then implied). `return_weights` returns (y, attention probabilities
    (batch, heads, length, keys)).
    """
    if return_weights and cache is not None:
      raise ValueError("return_weights and cache cannot be combined")
    deterministic = self.deterministic if deterministic is None else deterministic
    qkv = checkpoint_name(self.qkv(x), QKV)  # (batch, length, 3, heads, head_dim)
    q, k, v = qkv[:, :, 0], qkv[:, :, 1], qkv[:, :, 2]
    q = sharding.constrain(q, ("act_batch", "act_len", "act_heads", "act_kv"))
    k = sharding.constrain(k, ("act_batch", "act_len", "act_heads", "act_kv"))
    v = sharding.constrain(v, ("act_batch", "act_len", "act_heads", "act_kv"))
    if cache is not None:
      cache, causal = cache.update(k, v)
      k, v = cache.k, cache.v
      mask = causal if mask is None else jnp.logical_and(mask, causal)
      is_causal = False
    attn_drop = 0.0 if deterministic else self.attn_drop
    dropout_rng = rngs["dropout"]() if attn_drop > 0 else None
    y = dot_product_attention(q, k, v, bias=bias, mask=mask, is_causal=is_causal, implementation=self.implementation,
                              dropout_rate=attn_drop, dropout_rng=dropout_rng, return_weights=return_weights)
    if return_weights:
      y, weights = y
    y = self.proj_drop(self.proj(checkpoint_name(y, ATTN_OUT)), deterministic=deterministic, rngs=rngs)
    if return_weights:
      return y, weights
    return y if cache is None else (y, cache)


class CrossAttention(nnx.Module):
  """Multi-head attention from queries x to a memory (the Transformer's encoder-decoder attention).

  Kernels: q (embed, heads, head_dim), fused kv (kv_dim, 2, heads, head_dim) over the memory,
  proj (heads, head_dim, embed). During decoding the memory does not change, so its projected keys
  and values are computed once with `project_memory` and passed back as `kv=` at every step.
  """

  def __init__(self, dim: int, num_heads: int, *, kv_dim: int | None = None, use_bias: bool = True,
               attn_drop: float = 0.0, proj_drop: float = 0.0, implementation: str | None = None, kernel_init=None,
               dtype=None, param_dtype=jnp.float32, rngs: nnx.Rngs):
    if dim % num_heads:
      raise ValueError(f"embed dim {dim} is not divisible by num_heads {num_heads}")
    kv_dim = dim if kv_dim is None else kv_dim
    self.num_heads = num_heads
    self.head_dim = dim // num_heads
    self.attn_drop = attn_drop
    self.implementation = implementation
    self.deterministic = False
    kw = dict(use_bias=use_bias, dtype=dtype, param_dtype=param_dtype, rngs=rngs)
    self.q = Dense(dim, (num_heads, self.head_dim), axes=("embed", "heads", "kv"), kernel_init=kernel_init, **kw)
    # Xavier over each of k and v on its own (fan-out heads × head_dim), not over the fused pair.
    self.kv = Dense(kv_dim, (2, num_heads, self.head_dim), axes=("embed", None, "heads", "kv"),
                    kernel_init=kernel_init or nnx.initializers.variance_scaling(1.0, "fan_avg", "uniform", in_axis=0,
                                                                                 out_axis=(2, 3)), **kw)
    self.proj = Dense((num_heads, self.head_dim), dim, axes=("heads", "kv", "embed"), kernel_init=kernel_init, **kw)
    self.proj_drop = Dropout(proj_drop)

  def project_memory(self, memory) -> tuple[jax.Array, jax.Array]:
    """memory (batch, keys, kv_dim) → keys and values, each (batch, keys, heads, head_dim)."""
    kv = self.kv(memory)
    k = sharding.constrain(kv[:, :, 0], ("act_batch", "act_len", "act_heads", "act_kv"))
    v = sharding.constrain(kv[:, :, 1], ("act_batch", "act_len", "act_heads", "act_kv"))
    return k, v

  def __call__(self, x, memory=None, *, kv: tuple[jax.Array, jax.Array] | None = None, bias=None, mask=None,
               deterministic: bool | None = None, rngs: nnx.Rngs | None = None):
    """x (batch, length, dim) attends to `memory` (batch, keys, kv_dim), or to its projections `kv`
    from `project_memory`; `mask` broadcasts to (batch, heads, length, keys). Returns (batch, length, dim)."""
    if (memory is None) == (kv is None):
      raise ValueError("CrossAttention needs exactly one of memory= and kv=")
    deterministic = self.deterministic if deterministic is None else deterministic
    k, v = self.project_memory(memory) if kv is None else kv
    q = sharding.constrain(self.q(x), ("act_batch", "act_len", "act_heads", "act_kv"))
    attn_drop = 0.0 if deterministic else self.attn_drop
    dropout_rng = rngs["dropout"]() if attn_drop > 0 else None
    y = dot_product_attention(q, k.astype(q.dtype), v.astype(q.dtype), bias=bias, mask=mask,
                              implementation=self.implementation, dropout_rate=attn_drop, dropout_rng=dropout_rng)
    return self.proj_drop(self.proj(y), deterministic=deterministic, rngs=rngs)
