"""The Transformer of "Attention Is All You Need" (Vaswani et al., 2017): an encoder-decoder for translation.

As in the paper: N encoder and N decoder layers, post-LN sub-layers `LayerNorm(x + Dropout(Sublayer(x)))`
and no final norm; ReLU feed-forward d_model → d_ff → d_model; fixed sinusoidal position encodings with
sin on the even and cos on the odd features (§3.5), added to the token embeddings, which are multiplied
by √d_model; ONE embedding matrix shared by the source tokens, the target tokens and the pre-softmax
projection (a joint BPE vocabulary, §3.4); dropout on the embedding sums and on every sub-layer output
(§5.4). Decoder self-attention is causal; cross-attention reads the encoder output with the source
padding masked.

Choices the paper leaves open:
- LayerNorm eps 1e-6, as in tensor2tensor, the paper's own code (PyTorch's default is 1e-5).
- Attention projections have biases (PyTorch's nn.MultiheadAttention, fairseq); the paper's equations
  have none. They add 4·d_model per attention layer (36,864 parameters in the base model).
- Initialisation: Xavier-uniform kernels, zero biases, embeddings N(0, d_model^-1/2), so the scaled
  embeddings have unit variance and the tied output projection starts with logits of unit scale.
- No attention-probability dropout by default (the paper names only residual dropout).

Decoding: `translate` runs beam search (papers_jax/beam_search.py; beam 4, α = 0.6, at most
input length + 50 tokens, §6.1) and `translate_greedy` greedy decoding (papers_jax/decoding.py), both
over `decode_step`, which appends positions to per-layer KV caches; the encoder memory's keys and
values for cross-attention are projected once per sentence and kept in the cache. Source and target
sequences are right-padded; `src_mask` / `tgt_mask` are 1 on real tokens.

Training recipe (§5.3-5.4, Table 3; `RECIPE`): Adam β = (0.9, 0.98), ε = 1e-9, learning rate
d_model^-0.5 · min(step^-0.5, step · warmup^-1.5) with warmup 4000 (core/optim.py schedule "rsqrt"
with lr = `peak_learning_rate(d_model)`), label smoothing 0.1 (objectives/lm.py
`label_smoothed_cross_entropy`), 100k steps (base) / 300k (big).
"""

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from papers_jax import beam_search, decoding
from papers_jax.core import sharding
from papers_jax.errors import ConfigError
from papers_jax.models.registry import register
from papers_jax.models.vit import block_flops
from papers_jax.nn import Attention, Dropout, KVCache, LayerNorm, Mlp, gradient_barrier, param
from papers_jax.nn.attention import CrossAttention

# The paper's Table 3 (base, big), with the shared EN-DE BPE vocabulary of 37000 tokens. The big model's
# P_drop is 0.3 on EN-DE; the paper's big EN-FR model used 0.1 (pass dropout_rate=0.1).
VARIANTS = {
    "base": dict(num_layers=6, d_model=512, d_ff=2048, num_heads=8, dropout_rate=0.1),
    "big": dict(num_layers=6, d_model=1024, d_ff=4096, num_heads=16, dropout_rate=0.3),
}
VOCAB_SIZE = 37000

# Training and decoding settings of §5 and §6.1.
RECIPE = dict(adam_b1=0.9, adam_b2=0.98, adam_eps=1e-9, warmup_steps=4000, label_smoothing=0.1,
              train_steps={"base": 100_000, "big": 300_000}, beam_size=4, length_penalty=0.6, max_len_offset=50)


def peak_learning_rate(d_model: int, warmup_steps: int = 4000) -> float:
  """The learning rate at the end of warmup, d_model^-0.5 · warmup^-0.5: with core/optim.py's "rsqrt"
  schedule (linear warmup to it, then ∝ step^-0.5) this is the paper's formula."""
  return d_model ** -0.5 * warmup_steps ** -0.5


@functools.lru_cache(maxsize=None)
def sinusoidal_position_encoding(length: int, dim: int) -> np.ndarray:
  """PE(pos, 2i) = sin(pos / 10000^(2i/d)), PE(pos, 2i+1) = cos(pos / 10000^(2i/d)); (length, dim) float32."""
  if dim % 2:
    raise ConfigError(f"sinusoidal position encodings need an even d_model, got {dim}")
  pos = np.arange(length, dtype=np.float64)[:, None]
  angle = pos / 10000.0 ** (np.arange(0, dim, 2, dtype=np.float64) / dim)
  pe = np.zeros((length, dim), np.float64)
  pe[:, 0::2] = np.sin(angle)
  pe[:, 1::2] = np.cos(angle)
  return pe.astype(np.float32)


def _key_mask(mask):
  """(B, S) 1 = real token → (B, 1, 1, S) boolean key mask, or None."""
  return None if mask is None else mask.astype(bool)[:, None, None, :]


class EncoderLayer(nnx.Module):
  """Self-attention then the feed-forward network, each as LayerNorm(x + Dropout(Sublayer(x)))."""

  def __init__(self, d_model: int, d_ff: int, num_heads: int, *, dropout_rate: float, attn_drop_rate: float,
               norm_eps: float, attention_impl: str | None, dtype, param_dtype, rngs: nnx.Rngs):
    kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
    self.self_attn = Attention(d_model, num_heads, attn_drop=attn_drop_rate, implementation=attention_impl, **kw)
    self.drop1 = Dropout(dropout_rate)
    self.norm1 = LayerNorm(d_model, eps=norm_eps, **kw)
    self.mlp = Mlp(d_model, d_ff, act="relu", bias_init=nnx.initializers.zeros, **kw)
    self.drop2 = Dropout(dropout_rate)
    self.norm2 = LayerNorm(d_model, eps=norm_eps, **kw)

  def __call__(self, x, *, mask=None, deterministic=None, rngs=None):
    kw = dict(deterministic=deterministic, rngs=rngs)
    x = self.norm1(x + self.drop1(self.self_attn(x, mask=mask, **kw), **kw))
    x = self.norm2(x + self.drop2(self.mlp(x, **kw), **kw))
    return gradient_barrier(sharding.constrain(x, ("act_batch", "act_len", "act_emb")))


class DecoderLayer(nnx.Module):
  """Causal self-attention, cross-attention over the encoder output, feed-forward; post-LN each."""

  def __init__(self, d_model: int, d_ff: int, num_heads: int, *, dropout_rate: float, attn_drop_rate: float,
               norm_eps: float, attention_impl: str | None, dtype, param_dtype, rngs: nnx.Rngs):
    kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
    self.self_attn = Attention(d_model, num_heads, attn_drop=attn_drop_rate, implementation=attention_impl, **kw)
    self.drop1 = Dropout(dropout_rate)
    self.norm1 = LayerNorm(d_model, eps=norm_eps, **kw)
    self.cross_attn = CrossAttention(d_model, num_heads, attn_drop=attn_drop_rate, implementation=attention_impl,
                                     **kw)
    self.drop2 = Dropout(dropout_rate)
    self.norm2 = LayerNorm(d_model, eps=norm_eps, **kw)
    self.mlp = Mlp(d_model, d_ff, act="relu", bias_init=nnx.initializers.zeros, **kw)
    self.drop3 = Dropout(dropout_rate)
    self.norm3 = LayerNorm(d_model, eps=norm_eps, **kw)

  def __call__(self, x, *, memory=None, memory_kv=None, self_mask=None, cross_mask=None, cache: KVCache | None = None,
               deterministic=None, rngs=None):
    """Without `cache`: the whole target, causally. With it: the next positions; returns (x, cache)."""
    kw = dict(deterministic=deterministic, rngs=rngs)
    if cache is None:
      y = self.self_attn(x, mask=self_mask, is_causal=True, **kw)
    else:
      y, cache = self.self_attn(x, mask=self_mask, cache=cache, **kw)
    x = self.norm1(x + self.drop1(y, **kw))
    y = self.cross_attn(x, memory, kv=memory_kv, mask=cross_mask, **kw)
    x = self.norm2(x + self.drop2(y, **kw))
    x = self.norm3(x + self.drop3(self.mlp(x, **kw), **kw))
    x = gradient_barrier(sharding.constrain(x, ("act_batch", "act_len", "act_emb")))
    return x if cache is None else (x, cache)


class Transformer(nnx.Module):
  """Encoder-decoder Transformer. `model(src, tgt_in)` returns float32 next-token logits (B, T, V)."""

  def __init__(self, *, vocab_size: int = VOCAB_SIZE, num_layers: int = 6, d_model: int = 512, d_ff: int = 2048,
               num_heads: int = 8, dropout_rate: float = 0.1, attn_drop_rate: float = 0.0, norm_eps: float = 1e-6,
               pad_id: int = 0, bos_id: int = 1, eos_id: int = 2, attention_impl: str | None = None, dtype=None,
               param_dtype=jnp.float32, rngs: nnx.Rngs):
    if d_model % num_heads:
      raise ConfigError(f"d_model {d_model} is not divisible by num_heads {num_heads}")
    if d_model % 2:
      raise ConfigError(f"sinusoidal position encodings need an even d_model, got {d_model}")
    self.vocab_size, self.d_model, self.num_heads = vocab_size, d_model, num_heads
    self.pad_id, self.bos_id, self.eos_id = pad_id, bos_id, eos_id
    self.dtype = dtype
    kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
    layer_kw = dict(dropout_rate=dropout_rate, attn_drop_rate=attn_drop_rate, norm_eps=norm_eps,
                    attention_impl=attention_impl, **kw)
    # One matrix for source embeddings, target embeddings and the pre-softmax projection.
    self.embedding = param(rngs, nnx.initializers.normal(d_model ** -0.5), (vocab_size, d_model), param_dtype,
                           ("vocab", "embed"))
    self.src_drop = Dropout(dropout_rate)
    self.tgt_drop = Dropout(dropout_rate)
    self.encoder = nnx.List([EncoderLayer(d_model, d_ff, num_heads, **layer_kw) for _ in range(num_layers)])
    self.decoder = nnx.List([DecoderLayer(d_model, d_ff, num_heads, **layer_kw) for _ in range(num_layers)])

  # ---------------------------------------------------------------- pieces

  def embed(self, tokens, pe):
    """Token embeddings · √d_model + the position encodings pe (T, d_model) of their positions."""
    dtype = self.dtype or jnp.float32
    x = jnp.take(self.embedding[...], tokens, axis=0).astype(dtype) * math.sqrt(self.d_model)
    return x + jnp.asarray(pe).astype(dtype)

  def logits(self, x):
    """Decoder output (B, T, d) → float32 logits (B, T, V) through the shared embedding matrix."""
    table = self.embedding[...].astype(x.dtype)
    return jnp.einsum("btd,vd->btv", x, table, preferred_element_type=jnp.float32)

  def encode(self, src, src_mask=None, *, train: bool | None = False, rngs: nnx.Rngs | None = None):
    """Source tokens (B, S) → memory (B, S, d_model). Padding (src_mask 0) is never attended to."""
    kw = dict(deterministic=None if train is None else not train, rngs=rngs)
    x = self.src_drop(self.embed(src, sinusoidal_position_encoding(src.shape[1], self.d_model)), **kw)
    x = sharding.constrain(x, ("act_batch", "act_len", "act_emb"))
    mask = _key_mask(src_mask)
    for layer in self.encoder:
      x = layer(x, mask=mask, **kw)
    return x

  def decode(self, tgt_in, memory, src_mask=None, tgt_mask=None, *, train: bool | None = False,
             rngs: nnx.Rngs | None = None):
    """Teacher forcing: decoder inputs (B, T) and memory → float32 logits (B, T, V)."""
    kw = dict(deterministic=None if train is None else not train, rngs=rngs)
    x = self.tgt_drop(self.embed(tgt_in, sinusoidal_position_encoding(tgt_in.shape[1], self.d_model)), **kw)
    x = sharding.constrain(x, ("act_batch", "act_len", "act_emb"))
    cross_mask, self_mask = _key_mask(src_mask), _key_mask(tgt_mask)
    for layer in self.decoder:
      x = layer(x, memory=memory, self_mask=self_mask, cross_mask=cross_mask, **kw)
    return self.logits(x)

  def __call__(self, src, tgt_in, *, src_mask=None, tgt_mask=None, train: bool | None = False,
               rngs: nnx.Rngs | None = None):
    """src (B, S), tgt_in (B, T) (the target shifted right, starting with BOS) → logits (B, T, V) float32.

    `train=None` follows `model.train()` / `model.eval()`; training needs `rngs=nnx.Rngs(dropout=...)`.
    """
    memory = self.encode(src, src_mask, train=train, rngs=rngs)
    return self.decode(tgt_in, memory, src_mask, tgt_mask, train=train, rngs=rngs)

  # ---------------------------------------------------------------- incremental decoding

  def init_cache(self, memory, max_len: int, *, project_memory: bool = True) -> dict:
    """Empty self-attention caches for max_len target positions of memory's batch, and (unless
    project_memory=False) every decoder layer's cross-attention keys and values of `memory`."""
    b = memory.shape[0]
    dtype = self.dtype or jnp.float32
    head_dim = self.d_model // self.num_heads
    cache = {"self_attn": [KVCache.init(b, max_len, self.num_heads, head_dim, dtype) for _ in self.decoder]}
    if project_memory:
      cache["memory_kv"] = [layer.cross_attn.project_memory(memory.astype(dtype)) for layer in self.decoder]
    return cache

  def decode_step(self, tokens, cache: dict, memory=None, src_mask=None):
    """Appends tokens (B, t) at the cache's next positions; returns (float32 logits (B, t, V), new cache).

    `memory` is needed only when the cache was built with project_memory=False.
    """
    self_caches = cache["self_attn"]
    memory_kv = cache.get("memory_kv", [None] * len(self.decoder))
    if memory is None and "memory_kv" not in cache:
      raise ValueError("decode_step needs memory= when the cache holds no projected memory")
    t = tokens.shape[1]
    index = self_caches[0].index
    table = jnp.asarray(sinusoidal_position_encoding(self_caches[0].max_len, self.d_model))
    x = self.embed(tokens, jax.lax.dynamic_slice_in_dim(table, index, t, axis=0))
    cross_mask = _key_mask(src_mask)
    new_caches = []
    for layer, layer_cache, kv in zip(self.decoder, self_caches, memory_kv):
      x, layer_cache = layer(x, memory=None if kv is not None else memory, memory_kv=kv, cross_mask=cross_mask,
                             cache=layer_cache, deterministic=True)
      new_caches.append(layer_cache)
    return self.logits(x), {**cache, "self_attn": new_caches}

  def _decoder_for(self, src, src_mask, max_len: int, beam_size: int = 1):
    """Encodes src once and returns (step_fn, cache) for decoding `beam_size` rows per example.

    The memory's keys and values are closed over by step_fn rather than carried in the cache, so
    the decoding loop neither carries nor (in beam search) reorders them."""
    memory = beam_search.tile_beams(self.encode(src, src_mask), beam_size)
    mask = None if src_mask is None else beam_search.tile_beams(src_mask, beam_size)
    cache = self.init_cache(memory, max_len)
    memory_kv = cache.pop("memory_kv")

    def step_fn(tokens, cache):
      logits, cache = self.decode_step(tokens, {**cache, "memory_kv": memory_kv}, src_mask=mask)
      return logits, {"self_attn": cache["self_attn"]}

    return step_fn, cache

  def translate(self, src, src_mask=None, *, beam_size: int = 4, alpha: float = 0.6, max_len: int | None = None):
    """Beam search as in §6.1. src (B, S) → (tokens (B, max_len), scores (B,)); max_len defaults to
    S + 50 (the padded source length + 50). Tokens end with EOS (unless cut at max_len), then pad_id."""
    max_len = src.shape[1] + 50 if max_len is None else max_len
    step_fn, cache = self._decoder_for(src, src_mask, max_len, beam_size)
    start = jnp.full((src.shape[0],), self.bos_id, jnp.int32)
    return beam_search.beam_search(step_fn, cache, start, beam_size=beam_size, max_len=max_len, eos_id=self.eos_id,
                                   alpha=alpha, pad_id=self.pad_id)

  def translate_greedy(self, src, src_mask=None, *, max_len: int | None = None):
    """Greedy decoding with decoding.generate: tokens (B, max_len), EOS then pad_id; max_len defaults to S + 50."""
    max_len = src.shape[1] + 50 if max_len is None else max_len
    step_fn, cache = self._decoder_for(src, src_mask, max_len)
    prompt = jnp.full((src.shape[0], 1), self.bos_id, jnp.int32)
    return decoding.generate(step_fn, cache, prompt, max_new_tokens=max_len, eos_id=self.eos_id, pad_id=self.pad_id)


for _name, _row in VARIANTS.items():
  register(f"transformer_{_name}", Transformer, **_row, vocab_size=VOCAB_SIZE)


def forward_flops(model: Transformer, source_len: int = 256, target_len: int = 256) -> float:
  """Matmul FLOPs of one teacher-forced forward pass per sentence pair of `source_len` source and
  `target_len` target tokens (default 256 each, tensor2tensor's max_length of transformer_base; the task
  passes its own), 2 per multiply-add: the encoder and decoder layers, cross-attention (queries and
  output on the target, keys and values on the source, scores over target × source) and the output
  projection through the shared embedding. Works on an abstract model."""
  s, t, d = source_len, target_len, model.d_model
  hidden = model.encoder[0].mlp.fc1.kernel.shape[1]
  cross = 2 * 2 * t * d * d + 2 * 2 * s * d * d + 2 * 2 * t * s * d
  flops = len(model.encoder) * block_flops(s, d, hidden) + len(model.decoder) * (block_flops(t, d, hidden) + cross)
  return float(flops + 2 * t * d * model.vocab_size)


# The embedding parameters (models.embedding_params), as Kaplan et al. (2020) leave them out of N: the one
# table shared by source, target and output projection (the sinusoidal position encodings are fixed).
EMBEDDINGS = ("embedding",)
