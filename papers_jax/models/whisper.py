"""Whisper (Radford et al., 2022, "Robust Speech Recognition via Large-Scale Weak Supervision").

An encoder-decoder Transformer over log-Mel spectrograms (data/audio.py `log_mel_spectrogram`):
- encoder: two 1-D convolutions of width 3 with GELU (the second of stride 2, so 100 frames a second
  become 50 positions), fixed sinusoidal positions (Whisper's layout: all sines, then all cosines),
  pre-LayerNorm blocks and a final LayerNorm;
- decoder: token embeddings plus learned positions, pre-LayerNorm blocks of causal self-attention,
  cross-attention to the encoder output and an MLP (4·d, GELU), a final LayerNorm, and logits through
  the token embedding (tied);
- attention projects queries, keys and values separately; the key projection has no bias (a key bias
  adds the same q·b to every logit of a query, so softmax would ignore it).

The multitask format (§2.3) is `WhisperTokens`: [<|startoftranscript|>, <|language|>, <|transcribe|> or
<|translate|>, <|notimestamps|>?] then the text (with <|t|> timestamp tokens every 0.02 s when timestamps
are predicted) and <|endoftext|>. The special tokens follow the text vocabulary in Whisper's order, so
`WhisperTokens.layout(50257)` is the multilingual checkpoints' numbering and a small text vocabulary gets
the same structure.

Decoding (`transcribe`): greedy (decoding.generate) or beam search (beam_search.py), the encoder run once
and the decoder's keys and values cached, the whole loop under one jit.

Variants (Table 1): tiny, base, small, medium, large with 4/6/12/24/32 layers in each stack, widths
384/512/768/1024/1280 and 6/8/12/16/20 heads; `.en` models have the English-only vocabulary (51,864),
the multilingual ones 51,865, large-v3 51,866 tokens over 128 Mel bins.
HF's checkpoints store the encoder's sinusoid table as a (frozen) parameter; here it is computed, so a
model has 1500·d parameters fewer than HF reports (the converter checks the table instead of loading it).
Whisper takes 30-second windows (3,000 frames, 1,500 positions); shorter inputs use the first positions,
which lets the bundled demos train on 2-second windows (`max_source_positions=100`).
"""

import dataclasses
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
from papers_jax.nn.attention import KVCache, dot_product_attention
from papers_jax.nn.conv import Conv
from papers_jax.nn.drop import Dropout
from papers_jax.nn.linear import Dense, param
from papers_jax.nn.mlp import Mlp
from papers_jax.nn.norms import LayerNorm

VARIANTS = {
    "tiny": dict(d_model=384, num_layers=4, num_heads=6),
    "base": dict(d_model=512, num_layers=6, num_heads=8),
    "small": dict(d_model=768, num_layers=12, num_heads=12),
    "medium": dict(d_model=1024, num_layers=24, num_heads=16),
    "large": dict(d_model=1280, num_layers=32, num_heads=20),
}
MULTILINGUAL_VOCAB, ENGLISH_VOCAB, V3_VOCAB = 51865, 51864, 51866

# Whisper's language tokens, in its order (large-v3 adds Cantonese).
LANGUAGES = ("en zh de es ru ko fr ja pt tr pl ca nl ar sv it id hi fi vi he uk el ms cs ro da hu ta no th ur hr bg "
             "lt la mi ml cy sk te fa lv bn sr az sl kn et mk br eu is hy ne mn bs kk sq sw gl mr pa si km sn yo so "
             "af oc ka be tg sd gu am yi lo uz fo ht ps tk nn mt sa lb my bo tl mg as tt haw ln ha ba jw su yue").split()
NUM_TIMESTAMPS = 1501  # <|0.00|> … <|30.00|> in steps of 0.02 s


@dataclasses.dataclass(frozen=True)
class WhisperTokens:
  """The special tokens' ids: after `num_text_tokens` text tokens come <|endoftext|>, <|startoftranscript|>,
  one token per language, <|translate|>, <|transcribe|>, <|startoflm|>, <|startofprev|>, <|nospeech|>,
  <|notimestamps|> and the timestamps."""
  eot: int
  sot: int
  languages: tuple[str, ...]
  timestamp_begin: int

  @classmethod
  def layout(cls, num_text_tokens: int, languages=tuple(LANGUAGES[:99])) -> "WhisperTokens":
    sot = num_text_tokens + 1
    return cls(num_text_tokens, sot, tuple(languages), sot + len(languages) + 7)

  @classmethod
  def for_vocab(cls, vocab_size: int) -> "WhisperTokens":
    """The layout of an OpenAI checkpoint's vocabulary size."""
    layouts = {MULTILINGUAL_VOCAB: (50257, 99), ENGLISH_VOCAB: (50256, 99), V3_VOCAB: (50257, 100)}
    if vocab_size not in layouts:
      raise ConfigError(f"no Whisper token layout for a vocabulary of {vocab_size}; use WhisperTokens.layout")
    text, num_languages = layouts[vocab_size]
    return cls.layout(text, tuple(LANGUAGES[:num_languages]))

  @property
  def translate(self) -> int:
    return self.sot + len(self.languages) + 1

  @property
  def transcribe(self) -> int:
    return self.sot + len(self.languages) + 2

  @property
  def no_speech(self) -> int:
    return self.sot + len(self.languages) + 5

  @property
  def no_timestamps(self) -> int:
    return self.sot + len(self.languages) + 6

  @property
  def vocab_size(self) -> int:
    return self.timestamp_begin + NUM_TIMESTAMPS

  def language(self, code: str) -> int:
    if code not in self.languages:
      raise ConfigError(f"language {code!r} is not one of this vocabulary's {len(self.languages)}")
    return self.sot + 1 + self.languages.index(code)

  def prompt(self, language: str = "en", task: str = "transcribe", timestamps: bool = False) -> list[int]:
    if task not in ("transcribe", "translate"):
      raise ConfigError(f"task {task!r}: use 'transcribe' or 'translate'")
    tokens = [self.sot, self.language(language), self.transcribe if task == "transcribe" else self.translate]
    return tokens if timestamps else tokens + [self.no_timestamps]

  def timestamp(self, seconds: float) -> int:
    step = round(seconds / 0.02)
    if not 0 <= step < NUM_TIMESTAMPS:
      raise ValueError(f"timestamp {seconds} s is outside 0–30 s")
    return self.timestamp_begin + step


@functools.lru_cache(maxsize=None)
def sinusoids(length: int, channels: int, max_timescale: float = 10_000.0) -> np.ndarray:
  """Whisper's encoder positions (length, channels): sin of position × the channels // 2 geometric
  timescales in the first half, cos in the second."""
  if channels % 2:
    raise ConfigError(f"sinusoidal positions need an even width, got {channels}")
  increment = math.log(max_timescale) / (channels // 2 - 1)
  inv_timescales = np.exp(-increment * np.arange(channels // 2, dtype=np.float64))
  scaled = np.arange(length, dtype=np.float64)[:, None] * inv_timescales[None, :]
  return np.concatenate([np.sin(scaled), np.cos(scaled)], axis=1).astype(np.float32)


class WhisperAttention(nnx.Module):
  """Multi-head attention with separate q, k (no bias), v projections; self-attention (with an optional
  KV cache) or cross-attention to a memory."""

  def __init__(self, dim: int, num_heads: int, *, dtype, param_dtype, rngs: nnx.Rngs):
    head_dim = dim // num_heads
    kw = dict(axes=("embed", "heads", "kv"), dtype=dtype, param_dtype=param_dtype, rngs=rngs)
    self.q = Dense(dim, (num_heads, head_dim), **kw)
    self.k = Dense(dim, (num_heads, head_dim), use_bias=False, **kw)
    self.v = Dense(dim, (num_heads, head_dim), **kw)
    self.out = Dense((num_heads, head_dim), dim, axes=("heads", "kv", "embed"), dtype=dtype, param_dtype=param_dtype,
                     rngs=rngs)

  def project_memory(self, memory):
    return self.k(memory), self.v(memory)

  def __call__(self, x, *, kv=None, mask=None, is_causal: bool = False, cache: KVCache | None = None):
    q = sharding.constrain(self.q(x), ("act_batch", "act_len", "act_heads", "act_kv"))
    k, v = (self.k(x), self.v(x)) if kv is None else kv
    if cache is not None:
      cache, causal = cache.update(k, v)
      k, v = cache.k, cache.v
      mask, is_causal = causal, False
    y = self.out(dot_product_attention(q, k.astype(q.dtype), v.astype(q.dtype), mask=mask, is_causal=is_causal))
    return y if cache is None else (y, cache)


class EncoderBlock(nnx.Module):
  def __init__(self, dim: int, num_heads: int, *, dropout_rate: float, dtype, param_dtype, rngs: nnx.Rngs):
    kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
    self.attn_norm = LayerNorm(dim, eps=1e-5, **kw)
    self.attn = WhisperAttention(dim, num_heads, **kw)
    self.mlp_norm = LayerNorm(dim, eps=1e-5, **kw)
    self.mlp = Mlp(dim, 4 * dim, act="gelu", **kw)
    self.drop = Dropout(dropout_rate)

  def __call__(self, x, *, deterministic=True, rngs=None):
    kw = dict(deterministic=deterministic, rngs=rngs)
    x = x + self.drop(self.attn(self.attn_norm(x)), **kw)
    x = x + self.drop(self.mlp(self.mlp_norm(x)), **kw)
    return sharding.constrain(x, ("act_batch", "act_len", "act_emb"))


class DecoderBlock(nnx.Module):
  def __init__(self, dim: int, num_heads: int, *, dropout_rate: float, dtype, param_dtype, rngs: nnx.Rngs):
    kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
    self.attn_norm = LayerNorm(dim, eps=1e-5, **kw)
    self.attn = WhisperAttention(dim, num_heads, **kw)
    self.cross_norm = LayerNorm(dim, eps=1e-5, **kw)
    self.cross_attn = WhisperAttention(dim, num_heads, **kw)
    self.mlp_norm = LayerNorm(dim, eps=1e-5, **kw)
    self.mlp = Mlp(dim, 4 * dim, act="gelu", **kw)
    self.drop = Dropout(dropout_rate)

  def __call__(self, x, memory_kv, *, cache: KVCache | None = None, deterministic=True, rngs=None):
    kw = dict(deterministic=deterministic, rngs=rngs)
    if cache is None:
      y = self.attn(self.attn_norm(x), is_causal=True)
    else:
      y, cache = self.attn(self.attn_norm(x), cache=cache)
    x = x + self.drop(y, **kw)
    x = x + self.drop(self.cross_attn(self.cross_norm(x), kv=memory_kv), **kw)
    x = x + self.drop(self.mlp(self.mlp_norm(x)), **kw)
    x = sharding.constrain(x, ("act_batch", "act_len", "act_emb"))
    return x if cache is None else (x, cache)


class Whisper(nnx.Module):
  """`model(features (B, T, num_mels), tokens (B, L))` → float32 next-token logits (B, L, vocab_size)."""

  def __init__(self, *, d_model: int = 384, num_layers: int = 4, num_heads: int = 6, num_mels: int = 80,
               vocab_size: int = MULTILINGUAL_VOCAB, num_text_tokens: int | None = None,
               max_source_positions: int = 1500, max_target_positions: int = 448, dropout_rate: float = 0.0,
               dtype=None, param_dtype=jnp.float32, rngs: nnx.Rngs):
    if d_model % num_heads:
      raise ConfigError(f"d_model {d_model} is not divisible by num_heads {num_heads}")
    self.tokens = (WhisperTokens.for_vocab(vocab_size) if num_text_tokens is None
                   else WhisperTokens.layout(num_text_tokens, ("en",)))
    if self.tokens.vocab_size != vocab_size:
      raise ConfigError(f"vocab_size {vocab_size} does not hold {num_text_tokens} text tokens and Whisper's special "
                        f"tokens; it must be {self.tokens.vocab_size}")
    self.d_model, self.num_heads, self.num_mels = d_model, num_heads, num_mels
    self.max_source_positions, self.max_target_positions = max_source_positions, max_target_positions
    self.dtype = dtype
    kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
    conv_kw = dict(use_bias=True, kernel_init=nnx.initializers.lecun_normal(), **kw)
    self.conv1 = Conv(num_mels, d_model, (1, 3), padding=(0, 1), **conv_kw)
    self.conv2 = Conv(d_model, d_model, (1, 3), stride=2, padding=(0, 1), **conv_kw)
    block_kw = dict(dropout_rate=dropout_rate, **kw)
    self.encoder = nnx.List([EncoderBlock(d_model, num_heads, **block_kw) for _ in range(num_layers)])
    self.encoder_norm = LayerNorm(d_model, eps=1e-5, **kw)
    self.token_embedding = param(rngs, nnx.initializers.normal(0.02), (vocab_size, d_model), param_dtype,
                                 ("vocab", "embed"))
    self.position_embedding = param(rngs, nnx.initializers.normal(0.02), (max_target_positions, d_model),
                                    param_dtype, (None, "embed"))
    self.decoder = nnx.List([DecoderBlock(d_model, num_heads, **block_kw) for _ in range(num_layers)])
    self.decoder_norm = LayerNorm(d_model, eps=1e-5, **kw)
    self.drop = Dropout(dropout_rate)

  # ---------------------------------------------------------------- encoder / decoder
  def encode(self, features, *, train: bool = False, rngs=None):
    """Log-Mel features (B, T, num_mels), T ≤ 2 · max_source_positions and even → (B, T / 2, d_model)."""
    t = features.shape[1]
    if t > 2 * self.max_source_positions or t % 2:
      raise ValueError(f"{t} frames: Whisper takes an even number up to {2 * self.max_source_positions}")
    dtype = self.dtype or jnp.float32
    x = jax.nn.gelu(self.conv1(features.astype(dtype)[:, None]), approximate=False)
    x = jax.nn.gelu(self.conv2(x), approximate=False)[:, 0]
    x = x + jnp.asarray(sinusoids(self.max_source_positions, self.d_model)[:x.shape[1]], dtype)
    x = sharding.constrain(x, ("act_batch", "act_len", "act_emb"))
    for block in self.encoder:
      x = block(x, deterministic=not train, rngs=rngs)
    return self.encoder_norm(x)

  def project_memory(self, memory) -> list:
    return [block.cross_attn.project_memory(memory) for block in self.decoder]

  def _embed(self, tokens, offset):
    dtype = self.dtype or jnp.float32
    positions = jax.lax.dynamic_slice_in_dim(self.position_embedding[...], offset, tokens.shape[1], axis=0)
    return (jnp.take(self.token_embedding[...], tokens, axis=0) + positions).astype(dtype)

  def _logits(self, x):
    x = self.decoder_norm(x)
    return jnp.einsum("btd,vd->btv", x, self.token_embedding[...].astype(x.dtype), preferred_element_type=jnp.float32)

  def decode(self, tokens, memory, *, train: bool = False, rngs=None):
    """Teacher forcing: tokens (B, L) and the encoder output → float32 logits (B, L, vocab)."""
    if tokens.shape[1] > self.max_target_positions:
      raise ValueError(f"{tokens.shape[1]} tokens: at most {self.max_target_positions}")
    x = self.drop(self._embed(tokens, 0), deterministic=not train, rngs=rngs)
    for block, kv in zip(self.decoder, self.project_memory(memory)):
      x = block(x, kv, deterministic=not train, rngs=rngs)
    return self._logits(x)

  def __call__(self, features, tokens, *, train: bool = False, rngs=None):
    return self.decode(tokens, self.encode(features, train=train, rngs=rngs), train=train, rngs=rngs)

  # ---------------------------------------------------------------- incremental decoding
  def decode_step(self, tokens, cache: dict):
    """Appends tokens (B, t) to the cache ({"self_attn": [KVCache], "memory_kv": [(k, v)]}); returns
    (float32 logits (B, t, vocab), new cache)."""
    x = self._embed(tokens, cache["self_attn"][0].index)
    caches = []
    for block, layer_cache, kv in zip(self.decoder, cache["self_attn"], cache["memory_kv"]):
      x, layer_cache = block(x, kv, cache=layer_cache)
      caches.append(layer_cache)
    return self._logits(x), {**cache, "self_attn": caches}

  def transcribe(self, features, prompt, *, max_new_tokens: int, beam_size: int = 1, alpha: float = 0.0):
    """Decodes after `prompt` (B, P) (e.g. `tokens.prompt()` per row): (B, max_new_tokens) tokens that end
    with <|endoftext|> and then <|endoftext|> padding. Greedy when beam_size is 1, else beam search with
    the length penalty `alpha` (0: raw log-probabilities)."""
    prompt = jnp.asarray(prompt, jnp.int32)
    if prompt.shape[1] + max_new_tokens > self.max_target_positions:
      raise ValueError(f"prompt {prompt.shape[1]} + {max_new_tokens} tokens exceed {self.max_target_positions}")
    memory = self.encode(features)
    dtype = self.dtype or jnp.float32
    head_dim = self.d_model // self.num_heads
    max_len = prompt.shape[1] + max_new_tokens

    def empty(rows):
      return [KVCache.init(rows, max_len, self.num_heads, head_dim, dtype) for _ in self.decoder]

    def step_over(memory_kv):
      def step(tokens, cache):
        logits, out = self.decode_step(tokens, {"self_attn": cache, "memory_kv": memory_kv})
        return logits, out["self_attn"]
      return step

    eot = self.tokens.eot
    if beam_size == 1:
      return decoding.generate(step_over(self.project_memory(memory)), empty(prompt.shape[0]), prompt,
                               max_new_tokens=max_new_tokens, eos_id=eot, pad_id=eot)
    # Beam search: the prompt but its last token fills the cache once; beams start from the last token.
    cache = empty(prompt.shape[0])
    if prompt.shape[1] > 1:
      _, cache = step_over(self.project_memory(memory))(prompt[:, :-1], cache)
    cache = beam_search.tile_beams(cache, beam_size)
    beam_step = step_over(self.project_memory(beam_search.tile_beams(memory, beam_size)))
    tokens, _ = beam_search.beam_search(beam_step, cache, prompt[:, -1], beam_size=beam_size,
                                        max_len=max_new_tokens, eos_id=eot, alpha=alpha, pad_id=eot)
    return tokens


def forward_flops(model: Whisper, source_len: int | None = None, target_len: int = 448) -> float:
  """Matmul FLOPs of one forward pass per example (teacher forcing), 2 per multiply-add: the two
  convolutions over source_len frames (default: a 30-second window), the encoder over source_len / 2
  positions, the decoder over target_len tokens with cross-attention, and the logits."""
  d, layers, vocab = model.d_model, len(model.encoder), model.token_embedding.shape[0]
  frames = 2 * model.max_source_positions if source_len is None else source_len
  s, t = frames // 2, target_len
  convs = 2 * frames * 3 * model.num_mels * d + 2 * s * 3 * d * d
  encoder = layers * (2 * s * 4 * d * d + 2 * 2 * s * s * d + 2 * s * 8 * d * d)
  decoder = layers * (2 * t * 4 * d * d + 2 * 2 * t * t * d  # self-attention
                      + 2 * t * 2 * d * d + 2 * s * 2 * d * d + 2 * 2 * t * s * d  # cross-attention
                      + 2 * t * 8 * d * d)
  return float(convs + encoder + decoder + 2 * t * d * vocab)


EMBEDDINGS = ("token_embedding", "position_embedding")

for _name, _row in VARIANTS.items():
  register(f"whisper_{_name}", Whisper, **_row, vocab_size=MULTILINGUAL_VOCAB)
  if _name != "large":
    register(f"whisper_{_name}_en", Whisper, **_row, vocab_size=ENGLISH_VOCAB)
register("whisper_large_v3", Whisper, **VARIANTS["large"], vocab_size=V3_VOCAB, num_mels=128)
