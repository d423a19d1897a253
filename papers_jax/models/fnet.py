"""FNet (Lee-Thorp et al., 2022, "FNet: Mixing Tokens with Fourier Transforms").

BERT's post-LN encoder with each self-attention sublayer replaced by a parameter-free Fourier
transform: y = Re(DFT_seq(DFT_hidden(x))), the real part of the 2-D DFT over (sequence, hidden),
computed in float32 whatever the compute dtype. A layer is x = LN(x + Re(FFT2(x))), then
x = LN(x + Dropout(FFN(x))); the Fourier sublayer has no dropout. Embeddings as the reference code
(and HF's FNetEmbeddings): word + position + token type → LayerNorm → dense projection → dropout.
FFN activation: tanh-approximated GELU (the reference code's flax `nn.gelu` default, HF's "gelu_new").
LayerNorm eps 1e-12, 4 token types, pooler = dense + tanh on the first token.

The Fourier transform mixes every position, padding included, exactly as in the paper (which pads
every sequence to the full length): `attention_mask` is accepted, so that FNet is a drop-in for
BERT's call signature, and ignored.

`FNetForPreTraining` → (mlm_logits, nsp_logits) with the same heads and call as BertForPreTraining
(MLM decoder tied to the word embeddings, optional `masked_positions` gathering); the registered
names build it with the paper's Base / Large sizes. Init: kernels and embeddings N(0, 0.02), zero biases.
Weights load from HF transformers' FNet checkpoints (convert/hf_bert.py).
"""

import math

import jax
import jax.numpy as jnp
from flax import nnx

from papers_jax.core import sharding
from papers_jax.errors import ConfigError
from papers_jax.models.bert import (MaskedLMHead, apply_layers, embedding_table, gather_positions,
                                     pooler_and_head_flops, sum_embeddings)
from papers_jax.models.registry import register
from papers_jax.models.vit import check_remat
from papers_jax.nn import Dropout, LayerNorm, Mlp, gradient_barrier
from papers_jax.nn.linear import Dense
from papers_jax.nn.mlp import ACTIVATIONS

# The paper's Base and Large sizes (as BERT's); the SentencePiece vocabulary of the released checkpoints.
SIZES = {
    "base": dict(hidden_size=768, num_layers=12, intermediate_size=3072),
    "large": dict(hidden_size=1024, num_layers=24, intermediate_size=4096),
}


def fourier_mix(x: jax.Array) -> jax.Array:
  """Re(2-D DFT over (sequence, hidden)) of (B, T, D), in float32."""
  return jnp.fft.fftn(x.astype(jnp.float32), axes=(-2, -1)).real.astype(x.dtype)


class FNetEmbeddings(nnx.Module):
  """word + position + token type → LayerNorm → dense projection → dropout."""

  def __init__(self, vocab_size: int, hidden_size: int, max_position_embeddings: int, type_vocab_size: int, *,
               dropout_rate: float, eps: float, init, dtype=None, param_dtype=jnp.float32, rngs: nnx.Rngs):
    kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
    self.max_positions = max_position_embeddings
    self.dtype = dtype
    self.word_embeddings = embedding_table(rngs, vocab_size, hidden_size, init, param_dtype, "vocab")
    self.position_embeddings = embedding_table(rngs, max_position_embeddings, hidden_size, init, param_dtype, None)
    self.token_type_embeddings = embedding_table(rngs, type_vocab_size, hidden_size, init, param_dtype, None)
    self.norm = LayerNorm(hidden_size, eps=eps, **kw)
    self.projection = Dense(hidden_size, hidden_size, axes=("embed", None), kernel_init=init, **kw)
    self.dropout = Dropout(dropout_rate)

  def __call__(self, input_ids, token_type_ids=None, *, deterministic=None, rngs=None):
    x = self.projection(self.norm(sum_embeddings(self, input_ids, token_type_ids)))
    x = self.dropout(x, deterministic=deterministic, rngs=rngs)
    return sharding.constrain(x, ("act_batch", "act_len", "act_emb"))


class FNetLayer(nnx.Module):
  """x = LN(x + Re(FFT2(x))); x = LN(x + Dropout(FFN(x)))."""

  def __init__(self, hidden_size: int, intermediate_size: int, *, act: str, dropout_rate: float, eps: float, init,
               dtype=None, param_dtype=jnp.float32, rngs: nnx.Rngs):
    kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
    self.mix_norm = LayerNorm(hidden_size, eps=eps, **kw)
    self.mlp = Mlp(hidden_size, intermediate_size, act=act, kernel_init=init, bias_init=nnx.initializers.zeros, **kw)
    self.mlp_drop = Dropout(dropout_rate)
    self.mlp_norm = LayerNorm(hidden_size, eps=eps, **kw)

  def __call__(self, x, *, mask=None, deterministic=None, rngs=None):
    del mask  # the Fourier transform mixes every position
    kw = dict(deterministic=deterministic, rngs=rngs)
    x = self.mix_norm(x + fourier_mix(x))
    x = self.mlp_norm(x + self.mlp_drop(self.mlp(x, **kw), **kw))
    return gradient_barrier(sharding.constrain(x, ("act_batch", "act_len", "act_emb")))


class FNetModel(nnx.Module):
  """The encoder: `model(input_ids, token_type_ids, attention_mask)` → (sequence_output (B, T, D),
  pooled_output (B, D)). `attention_mask` is ignored (see the module docstring)."""

  def __init__(self, *, vocab_size: int = 32000, hidden_size: int = 768, num_layers: int = 12,
               intermediate_size: int = 3072, max_position_embeddings: int = 512, type_vocab_size: int = 4,
               hidden_act: str = "gelu_tanh", dropout_rate: float = 0.1, layer_norm_eps: float = 1e-12,
               initializer_range: float = 0.02, remat: str = "", scan: bool = False, dtype=None,
               param_dtype=jnp.float32, rngs: nnx.Rngs):
    if hidden_act not in ACTIVATIONS:
      raise ConfigError(f"hidden_act must be one of {sorted(ACTIVATIONS)}, got {hidden_act!r}")
    check_remat(remat)
    self.hidden_size, self.vocab_size, self.hidden_act = hidden_size, vocab_size, hidden_act
    self.dropout_rate, self.layer_norm_eps, self.initializer_range = dropout_rate, layer_norm_eps, initializer_range
    self.remat, self.scan = remat, scan
    self.dtype, self.param_dtype = dtype, param_dtype
    init = self.kernel_init()
    kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
    self.embeddings = FNetEmbeddings(vocab_size, hidden_size, max_position_embeddings, type_vocab_size,
                                     dropout_rate=dropout_rate, eps=layer_norm_eps, init=init, **kw)
    self.layers = nnx.List([
        FNetLayer(hidden_size, intermediate_size, act=hidden_act, dropout_rate=dropout_rate, eps=layer_norm_eps,
                  init=init, **kw)
        for _ in range(num_layers)])
    self.pooler = Dense(hidden_size, hidden_size, axes=("embed", None), kernel_init=init, **kw)

  def kernel_init(self):
    return nnx.initializers.normal(self.initializer_range)

  def word_embeddings(self) -> jax.Array:
    return self.embeddings.word_embeddings[...]

  def __call__(self, input_ids, token_type_ids=None, attention_mask=None, *, train: bool = False, rngs=None):
    del attention_mask  # accepted for BERT's signature; Fourier mixing sees every position
    kw = dict(deterministic=not train, rngs=rngs)
    x = self.embeddings(input_ids, token_type_ids, **kw)
    x = apply_layers(self.layers, x, remat=self.remat, scan=self.scan, **kw)
    return x, jnp.tanh(self.pooler(x[:, 0]))


class FNetForPreTraining(nnx.Module):
  """FNet with BERT's masked-LM (tied decoder) and next-sentence heads → (mlm_logits, nsp_logits),
  float32. Keyword arguments are FNetModel's; `attention_mask` is accepted and ignored."""

  def __init__(self, *, rngs: nnx.Rngs, **kwargs):
    self.fnet = FNetModel(rngs=rngs, **kwargs)
    f, init = self.fnet, self.fnet.kernel_init()
    kw = dict(dtype=f.dtype, param_dtype=f.param_dtype, rngs=rngs)
    self.mlm_head = MaskedLMHead(f.hidden_size, f.vocab_size, act=f.hidden_act, eps=f.layer_norm_eps, init=init,
                                 **kw)
    self.nsp_head = Dense(f.hidden_size, 2, axes=("embed", "classes"), kernel_init=init, **kw)

  def __call__(self, input_ids, token_type_ids=None, attention_mask=None, *, masked_positions=None,
               train: bool = False, rngs=None):
    x, pooled = self.fnet(input_ids, token_type_ids, attention_mask, train=train, rngs=rngs)
    mlm_logits = self.mlm_head(gather_positions(x, masked_positions), self.fnet.word_embeddings())
    return mlm_logits, self.nsp_head(pooled).astype(jnp.float32)


class FNetForSequenceClassification(nnx.Module):
  """Pooled output → dropout → linear: logits (B, num_labels), float32. Keyword arguments are FNetModel's."""

  def __init__(self, *, num_labels: int = 2, rngs: nnx.Rngs, **kwargs):
    self.fnet = FNetModel(rngs=rngs, **kwargs)
    f = self.fnet
    self.dropout = Dropout(f.dropout_rate)
    self.classifier = Dense(f.hidden_size, num_labels, axes=("embed", "classes"), kernel_init=f.kernel_init(),
                            dtype=f.dtype, param_dtype=f.param_dtype, rngs=rngs)

  def __call__(self, input_ids, token_type_ids=None, attention_mask=None, *, masked_positions=None,
               train: bool = False, rngs=None):
    del masked_positions
    _, pooled = self.fnet(input_ids, token_type_ids, attention_mask, train=train, rngs=rngs)
    pooled = self.dropout(pooled, deterministic=not train, rngs=rngs)
    return self.classifier(pooled).astype(jnp.float32)


for _size, _row in SIZES.items():
  register(f"fnet-{_size}", FNetForPreTraining, **_row, vocab_size=32000, type_vocab_size=4,
           max_position_embeddings=512)


def fft_flops(points: int) -> float:
  """Real FLOPs of one complex FFT of `points` points, by the usual radix-2 count 5·N·log2(N)."""
  return 5 * points * math.log2(points)


def forward_flops(model, seq_len: int | None = None, predictions: int | None = None) -> float:
  """FLOPs of one forward pass per sequence of `seq_len` tokens (default: max_position_embeddings):
  the embedding projection, each layer's Fourier mixing and FFN, the pooler and the heads (as BERT's;
  the MLM head at `predictions` positions, default all).

  The mixing is one complex 2-D FFT over (sequence, hidden) of N = seq_len · hidden points, counted as
  5·N·log2(N) (`fft_flops`; the row and column passes add up to the same). XLA's cost analysis has its
  own rule, 8·N·Π⌊log2 nᵢ⌋ (four multiply-adds per point and level, the levels of the two axes
  multiplied rather than added): 7.0× this count at FNet-Base's 512 × 768. tests/test_flops.py checks
  the rest of the count against XLA's, and XLA's FFT rule itself."""
  encoder = model.fnet
  t, d = seq_len or encoder.embeddings.max_positions, encoder.hidden_size
  flops = 2 * t * d * d  # the embedding projection
  flops += sum(fft_flops(t * d) + 2 * 2 * t * d * layer.mlp.fc1.kernel.shape[1] for layer in encoder.layers)
  return float(flops + pooler_and_head_flops(model, encoder, t, predictions))


# The embedding parameters (models.embedding_params), as BERT's (Kaplan et al., 2020): the word, position
# and token-type tables and the MLM decoder's bias. The embedding projection is compute: non-embedding.
EMBEDDINGS = ("fnet.embeddings.word_embeddings", "fnet.embeddings.position_embeddings",
              "fnet.embeddings.token_type_embeddings", "mlm_head.bias")
