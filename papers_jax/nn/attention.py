"""The one attention op of the codebase and the multi-head self-attention layer built on it.

`dot_product_attention` goes through `jax.nn.dot_product_attention`, whose `implementation`
selects XLA ("xla"), cuDNN flash attention ("cudnn", GPU, bf16/fp16) or lets JAX choose (None).
Masks and additive biases (Swin, T5-style) pass straight through. Attention-probability dropout
cannot be expressed there, so only that case uses the explicit softmax(QK^T)V path below.

`KVCache` holds the keys and values of the positions decoded so far for autoregressive decoding
(GPT sampling, the Transformer's greedy and beam search): fixed-size arrays written with
`lax.dynamic_update_slice`, so the decode step compiles once.
"""

import dataclasses
import math

import jax
import jax.numpy as jnp
from flax import nnx

from papers_jax.core import sharding
from papers_jax.nn.drop import Dropout
from papers_jax.nn.linear import Dense

IMPLEMENTATIONS = ("xla", "cudnn", None)


def dot_product_attention(q, k, v, *, bias=None, mask=None, is_causal: bool = False, scale: float | None = None,
                          implementation: str | None = None, dropout_rate: float = 0.0,
                          dropout_rng: jax.Array | None = None):
  """Attention over (batch, length, heads, head_dim) inputs; returns the same layout as q.

  Logits and softmax are computed in float32 whatever the input dtype.
  """
  if implementation not in IMPLEMENTATIONS:
    raise ValueError(f"attention implementation must be one of {IMPLEMENTATIONS}, got {implementation!r}")
  if dropout_rate == 0.0:
    return jax.nn.dot_product_attention(q, k, v, bias=bias, mask=mask, is_causal=is_causal, scale=scale,
                                        implementation=implementation)
  if implementation == "cudnn":
    raise ValueError("attention dropout is not supported with implementation='cudnn'")
  scale = 1.0 / math.sqrt(q.shape[-1]) if scale is None else scale
  logits = jnp.einsum("btnh,bsnh->bnts", q, k, preferred_element_type=jnp.float32) * scale
  if bias is not None:
    logits = logits + bias.astype(jnp.float32)
  if is_causal:
    causal = jnp.tril(jnp.ones((q.shape[1], k.shape[1]), bool))
    mask = causal if mask is None else jnp.logical_and(mask, causal)
  if mask is not None:
    logits = jnp.where(mask, logits, jnp.finfo(jnp.float32).min)
  probs = jax.nn.softmax(logits, axis=-1)
  keep = 1.0 - dropout_rate
  probs = jnp.where(jax.random.bernoulli(dropout_rng, keep, probs.shape), probs / keep, 0.0)
  return jnp.einsum("bnts,bsnh->btnh", probs.astype(v.dtype), v)


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
               deterministic: bool | None = None, rngs: nnx.Rngs | None = None):
    """x (batch, length, dim) → (batch, length, dim); `mask` broadcasts to (batch, heads, length, keys).

    With `cache`, x holds the next positions of sequences whose earlier keys and values are in the
    cache; they are appended, attention runs causally over the filled part, and (y, new cache) is
    returned (`is_causal` is then implied).
    """
    deterministic = self.deterministic if deterministic is None else deterministic
    qkv = self.qkv(x)  # (batch, length, 3, heads, head_dim)
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
                              dropout_rate=attn_drop, dropout_rng=dropout_rng)
    y = self.proj_drop(self.proj(y), deterministic=deterministic, rngs=rngs)
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
