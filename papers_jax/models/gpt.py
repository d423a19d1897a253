"""GPT-2 (Radford et al., 2019, "Language Models are Unsupervised Multitask Learners"): a decoder-only
causal language model.

Token embedding + learned position embedding, embedding dropout, pre-LN blocks (LayerNorm → causal
self-attention → residual; LayerNorm → MLP with the tanh approximation of GELU → residual), a final
LayerNorm and an LM head tied to the token embedding (the logits contract the token embedding
itself; there is no separate head weight). LayerNorm eps 1e-5, dropout 0.1 on the embeddings, the
attention probabilities and both residual branches.

Initialisation: every kernel and both embeddings N(0, 0.02), biases 0, LayerNorm (1, 0); the two
projections that write into the residual stream (attention output and MLP fc2) are scaled by
1/sqrt(2·depth), the paper's "scale the weights of residual layers by 1/sqrt(N)" with two residual
layers per block. (OpenAI's released code drew the position embedding from N(0, 0.01); here both
embeddings use 0.02, as HF transformers does.)

Packed rows: `segment_ids` (several documents per row, 0 = padding) restrict attention to the same
segment on top of the causal mask; positions default to 0..T-1, so a pipeline that packs documents
passes each document's restarted positions. Decoding: `init_cache` / `decode_step` fit
papers_jax/decoding.py's `step_fn` contract (positions come from the cache index), and `generate`
jits the whole sampling loop.

GPT-3 (Brown et al. 2020, "Language Models are Few-Shot Learners") is this model at the sizes of its
Table 2.1 (GPT3_VARIANTS, gpt3-small ... gpt3-175b), context 2,048, with its dense / locally banded
alternating attention (nn/sparse_attention.py's "banded" pattern).

Parameter paths: token_embed (vocab, embed), pos_embed (context, embed), blocks/N/{norm1, attn/qkv,
attn/proj, norm2, mlp/fc1, mlp/fc2}, norm. convert/hf_gpt2.py maps HF's `GPT2LMHeadModel` onto them.
"""

import functools

import jax
import jax.numpy as jnp
from flax import nnx

from papers_jax import decoding
from papers_jax.core import sharding
from papers_jax.errors import ConfigError, UserError
from papers_jax.models.registry import register
from papers_jax.models.vit import REMAT_POLICIES, block_flops, check_remat
from papers_jax.nn import Attention, Dropout, KVCache, LayerNorm, Mlp, gradient_barrier, param, sparse_attention
from papers_jax.nn.norms import RMSNorm

# The paper's Table 2 (layers, d_model; 64-dim heads). The table lists 117M / 345M / 762M / 1542M
# parameters; the released models, and these, have 124M / 355M / 774M / 1558M.
VARIANTS = {
    "gpt2": dict(embed_dim=768, depth=12, num_heads=12),
    "gpt2-medium": dict(embed_dim=1024, depth=24, num_heads=16),
    "gpt2-large": dict(embed_dim=1280, depth=36, num_heads=20),
    "gpt2-xl": dict(embed_dim=1600, depth=48, num_heads=25),
}


class Block(nnx.Module):
  """Pre-LN decoder block: x + Attn(LN(x)) (causal), then x + MLP(LN(x)); dropout on both branches."""

  def __init__(self, dim: int, num_heads: int, *, mlp_ratio: float, drop_rate: float, attn_drop_rate: float,
               norm_eps: float, init_std: float, residual_std: float, attention_impl: str | None, dtype,
               param_dtype, rngs: nnx.Rngs, act: str = "gelu_tanh", norm: str = "layernorm"):
    """`act` and `norm` ("layernorm" or "rms") are GPT-2's by default; iGPT's blocks: quick_gelu and rms."""
    kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
    init = nnx.initializers.normal(init_std)
    Norm = RMSNorm if norm == "rms" else LayerNorm  # noqa: N806
    self.norm1 = Norm(dim, eps=norm_eps, **kw)
    self.attn = Attention(dim, num_heads, attn_drop=attn_drop_rate, proj_drop=drop_rate, implementation=attention_impl,
                          kernel_init=init, **kw)
    self.norm2 = Norm(dim, eps=norm_eps, **kw)
    # No dropout between the activation and fc2 (GPT-2 drops only the branch output): Mlp's own is off.
    self.mlp = Mlp(dim, int(dim * mlp_ratio), act=act, kernel_init=init, bias_init=nnx.initializers.zeros,
                   **kw)
    self.mlp_drop = Dropout(drop_rate)
    # The residual projections: N(0, init_std²) scaled to N(0, residual_std²).
    for kernel in (self.attn.proj.kernel, self.mlp.fc2.kernel):
      kernel[...] = kernel[...] * (residual_std / init_std)

  def __call__(self, x, *, mask=None, cache: KVCache | None = None, is_causal: bool = True, deterministic=None,
               rngs=None):
    """x (B, T, D) → (B, T, D); with `cache`, x continues the cached positions and (y, cache) is returned.
    `is_causal=False`: bidirectional attention (iGPT's BERT objective)."""
    kw = dict(deterministic=deterministic, rngs=rngs)
    if cache is None:
      h = self.attn(self.norm1(x), mask=mask, is_causal=is_causal, **kw)
    else:
      h, cache = self.attn(self.norm1(x), mask=mask, cache=cache, **kw)
    x = x + h
    x = x + self.mlp_drop(self.mlp(self.norm2(x), **kw), **kw)
    x = gradient_barrier(sharding.constrain(x, ("act_batch", "act_len", "act_emb")))
    return x if cache is None else (x, cache)


class GPT(nnx.Module):
  """GPT-2 language model. `model(tokens)` takes (B, T) int32 token ids and returns (B, T, vocab) float32 logits."""

  def __init__(self, *, vocab_size: int = 50257, context_length: int = 1024, embed_dim: int = 768, depth: int = 12,
               num_heads: int = 12, mlp_ratio: float = 4.0, drop_rate: float = 0.1, embed_drop_rate: float = 0.1,
               attn_drop_rate: float = 0.1, norm_eps: float = 1e-5, init_std: float = 0.02,
               attention_impl: str | None = None, remat: str = "", attention_pattern: str = "dense",
               pattern_mode: str = "interleaved", pattern_stride: int = 0, pattern_summary: int = 1, dtype=None,
               param_dtype=jnp.float32, rngs: nnx.Rngs):
    if attention_pattern not in sparse_attention.PATTERNS or pattern_mode not in sparse_attention.MODES:
      raise ConfigError(f"attention_pattern={attention_pattern!r} / pattern_mode={pattern_mode!r}: choose from "
                        f"{sparse_attention.PATTERNS} / {sparse_attention.MODES}")
    if attention_pattern == "banded" and pattern_mode == "merged":
      raise ConfigError("attention_pattern='banded' alternates dense and banded layers; its union is dense "
                        "attention, so use pattern_mode='interleaved'")
    if pattern_stride < 0 or not 1 <= pattern_summary <= max(pattern_stride, 1):
      raise ConfigError(f"pattern_stride={pattern_stride} must be ≥ 0 (0: √context) and pattern_summary="
                        f"{pattern_summary} in [1, stride]")
    if embed_dim % num_heads:
      raise ConfigError(f"embed_dim {embed_dim} is not divisible by num_heads {num_heads}")
    if vocab_size < 1 or context_length < 1 or depth < 1:
      raise ConfigError(f"vocab_size, context_length and depth must be positive, got {vocab_size}, "
                        f"{context_length}, {depth}")
    check_remat(remat)
    self.vocab_size, self.context_length, self.embed_dim = vocab_size, context_length, embed_dim
    self.num_heads, self.head_dim = num_heads, embed_dim // num_heads
    self.remat = remat
    self.dtype = dtype
    # The Sparse Transformer's stride defaults to l = √n (§4.2), n the context.
    self.pattern = (attention_pattern, pattern_mode, pattern_stride or max(round(context_length ** 0.5), 1),
                    pattern_summary)
    kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
    init = nnx.initializers.normal(init_std)
    self.token_embed = param(rngs, init, (vocab_size, embed_dim), param_dtype, ("vocab", "embed"))
    self.pos_embed = param(rngs, init, (context_length, embed_dim), param_dtype, (None, "embed"))
    self.embed_drop = Dropout(embed_drop_rate)
    residual_std = init_std / (2 * depth) ** 0.5
    self.blocks = nnx.List([
        Block(embed_dim, num_heads, mlp_ratio=mlp_ratio, drop_rate=drop_rate, attn_drop_rate=attn_drop_rate,
              norm_eps=norm_eps, init_std=init_std, residual_std=residual_std, attention_impl=attention_impl, **kw)
        for _ in range(depth)])
    self.norm = LayerNorm(embed_dim, eps=norm_eps, **kw)

  # ------------------------------------------------------------------------------- pieces

  def _embed(self, tokens, positions):
    dtype = self.dtype or self.token_embed[...].dtype
    x = jnp.take(self.token_embed[...], tokens, axis=0) + jnp.take(self.pos_embed[...], positions, axis=0)
    return x.astype(dtype)

  def _logits(self, x):
    """Final LayerNorm, then the tied head: contracts `embed` with the token embedding → vocab-sharded logits."""
    x = self.norm(x)
    table = self.token_embed[...].astype(x.dtype)
    logits = jnp.einsum("btd,vd->btv", x, table, preferred_element_type=jnp.float32)
    return sharding.constrain(logits, ("act_batch", "act_len", "vocab"))

  def _block(self, block, x, mask, deterministic, rngs):
    if not self.remat:
      return block(x, mask=mask, deterministic=deterministic, rngs=rngs)
    fn = nnx.remat(lambda b, y, m, r: b(y, mask=m, deterministic=deterministic, rngs=r),
                   policy=REMAT_POLICIES[self.remat])
    return fn(block, x, mask, rngs)

  def _check_length(self, length: int, what: str):
    if length > self.context_length:
      raise UserError(f"{what} of {length} positions exceeds the model's context of {self.context_length}; "
                      "shorten it or build the model with a larger context_length.")

  # ------------------------------------------------------------------------------ forward

  def __call__(self, tokens, *, positions=None, segment_ids=None, train: bool = False, rngs: nnx.Rngs | None = None):
    """Next-token logits (B, T, vocab), float32, for every position of `tokens` (B, T).

    `positions` (B, T) default to 0..T-1. `segment_ids` (B, T) mark packed documents (0 = padding):
    a token then attends to earlier tokens of its own segment only. Dropout is on when `train`
    (it needs `rngs` with a "dropout" stream).
    """
    b, t = tokens.shape
    self._check_length(t, "a sequence")
    if positions is None:
      positions = jnp.arange(t, dtype=jnp.int32)[None, :]
    mask = None
    if segment_ids is not None:  # (B, 1, T, T); the causal part comes from is_causal
      mask = (segment_ids[:, :, None] == segment_ids[:, None, :])[:, None]
    kind, mode, stride, summary = self.pattern
    layer_masks = sparse_attention.layer_masks(kind, mode, len(self.blocks), t, stride, summary)
    deterministic = not train
    x = self.embed_drop(self._embed(tokens, positions), deterministic=deterministic, rngs=rngs)
    x = sharding.constrain(x, ("act_batch", "act_len", "act_emb"))
    for block, pattern in zip(self.blocks, layer_masks):
      layer_mask = mask if pattern is None else (
          jnp.asarray(pattern)[None, None] if mask is None else jnp.logical_and(mask, jnp.asarray(pattern)))
      x = self._block(block, x, layer_mask, deterministic, rngs)
    return self._logits(x)

  # ----------------------------------------------------------------------------- decoding

  def init_cache(self, batch: int, max_len: int, dtype=None) -> list[KVCache]:
    """Empty per-layer key/value caches for `max_len` positions (default dtype: the compute dtype)."""
    self._check_length(max_len, "a cache")
    dtype = dtype or self.dtype or jnp.float32
    return [KVCache.init(batch, max_len, self.num_heads, self.head_dim, dtype) for _ in self.blocks]

  def decode_step(self, tokens, cache: list[KVCache]):
    """Appends `tokens` (B, t) to the sequences in `cache`; returns their logits (B, t, vocab) and the new cache.

    The tokens' positions are the cache index onwards (a prompt in one call, then one token per call);
    dropout is off. This is the `step_fn` of papers_jax.decoding.generate.
    """
    positions = cache[0].index + jnp.arange(tokens.shape[1], dtype=jnp.int32)[None, :]
    x = self._embed(tokens, positions)
    kind, mode, stride, summary = self.pattern
    masks = [None] * len(self.blocks)
    if kind != "dense":  # the pattern's rows at these positions, over the cache's key slots
      keys = jnp.arange(cache[0].k.shape[1], dtype=jnp.int32)[None, :]
      sets = sparse_attention.connectivity(kind, positions[0][:, None], keys, stride, summary)
      masks = [(sets[0] | sets[1] if len(w) == 2 else sets[w[0]])[None, None]
               for w in sparse_attention.layer_sets(mode, len(self.blocks))]
    new_cache = []
    for block, layer_cache, mask in zip(self.blocks, cache, masks):
      x, layer_cache = block(x, mask=mask, cache=layer_cache, deterministic=True)
      new_cache.append(layer_cache)
    return self._logits(x), new_cache

  def generate(self, prompt, max_new_tokens: int, rng=None, *, temperature: float = 0.0, top_k: int = 0,
               top_p: float = 1.0, eos_id: int | None = None, pad_id: int = 0, cache_dtype=None):
    """Continues each row of `prompt` (B, P) by `max_new_tokens` tokens under one jit; (B, max_new_tokens) int32.

    temperature 0 is greedy; otherwise tokens are sampled after top-k / top-p filtering (needs `rng`).
    After `eos_id` a row holds `pad_id`. See papers_jax.decoding.generate.
    """
    prompt = jnp.asarray(prompt, jnp.int32)
    if prompt.ndim != 2 or prompt.shape[1] < 1:
      raise UserError(f"prompt must be (batch, length ≥ 1) token ids, got shape {prompt.shape}")
    # The last sampled token is never fed back, so the cache holds P + max_new_tokens - 1 positions.
    max_len = prompt.shape[1] + max(max_new_tokens, 1) - 1
    self._check_length(max_len, "a prompt plus the generated tokens")
    graphdef, state = nnx.split(self)
    return _generate(graphdef, state, prompt, rng, max_len=max_len, max_new_tokens=max_new_tokens,
                     temperature=float(temperature), top_k=int(top_k), top_p=float(top_p), eos_id=eos_id,
                     pad_id=int(pad_id), cache_dtype=cache_dtype)


@functools.partial(jax.jit, static_argnames=("graphdef", "max_len", "max_new_tokens", "temperature", "top_k", "top_p",
                                             "eos_id", "pad_id", "cache_dtype"))
def _generate(graphdef, state, prompt, rng, *, max_len, max_new_tokens, temperature, top_k, top_p, eos_id, pad_id,
              cache_dtype):
  model = nnx.merge(graphdef, state)
  cache = model.init_cache(prompt.shape[0], max_len, cache_dtype)
  return decoding.generate(model.decode_step, cache, prompt, max_new_tokens=max_new_tokens, rng=rng,
                           temperature=temperature, top_k=top_k, top_p=top_p, eos_id=eos_id, pad_id=pad_id)


# GPT-3 (Brown et al. 2020), Table 2.1: n_layers, d_model, n_heads (d_head = d_model / n_heads), context
# 2,048, GPT-2's architecture with "alternating dense and locally banded sparse attention" (§2.1). Two rows
# of the table do not multiply out: XL lists 24 heads of 128 for d_model 2,048 (here 16 × 128) and 13B lists
# d_model 5,140 with 40 heads of 128 (here 5,120 = 40 × 128). Either way the parameter count is the
# table's: attention holds 4·d_model² weights whatever the head split. The band width is not given;
# pattern_stride defaults to √context (45 at 2,048).
GPT3_VARIANTS = {
    "gpt3-small": dict(depth=12, embed_dim=768, num_heads=12),  # 125M
    "gpt3-medium": dict(depth=24, embed_dim=1024, num_heads=16),  # 350M
    "gpt3-large": dict(depth=24, embed_dim=1536, num_heads=16),  # 760M
    "gpt3-xl": dict(depth=24, embed_dim=2048, num_heads=16),  # 1.3B
    "gpt3-2.7b": dict(depth=32, embed_dim=2560, num_heads=32),
    "gpt3-6.7b": dict(depth=32, embed_dim=4096, num_heads=32),
    "gpt3-13b": dict(depth=40, embed_dim=5120, num_heads=40),
    "gpt3-175b": dict(depth=96, embed_dim=12288, num_heads=96),
}

for _name, _row in VARIANTS.items():
  register(_name, GPT, **_row)
for _name, _row in GPT3_VARIANTS.items():
  register(_name, GPT, context_length=2048, attention_pattern="banded", **_row)


def forward_flops(model: GPT, seq_len: int | None = None) -> float:
  """Matmul FLOPs of one forward pass per sequence of `seq_len` tokens (default: the model's context),
  2 per multiply-add: the blocks (attention scores over all seq_len² pairs, as the dense causal
  kernel computes them) and the tied LM head at every position. Works on an abstract model."""
  t, d = seq_len or model.context_length, model.embed_dim
  flops = sum(block_flops(t, d, block.mlp.fc1.kernel.shape[1]) for block in model.blocks)
  return float(flops + 2 * t * d * model.vocab_size)


# The embedding parameters (models.embedding_params), as Kaplan et al. (2020) leave them out of N: the
# token table (also the tied LM head) and the position embedding.
EMBEDDINGS = ("token_embed", "pos_embed")
