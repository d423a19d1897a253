"""BERT (Devlin et al., 2019, "BERT: Pre-training of Deep Bidirectional Transformers for Language Understanding").

A bidirectional post-LN Transformer encoder. Input = word + segment (token type) + learned position
embeddings → LayerNorm → dropout. Each layer: x = LN(x + Dropout(Attn(x))), then
x = LN(x + Dropout(FFN(x))) with exact (erf) GELU; LayerNorm eps 1e-12, dropout 0.1 on hidden states
and attention probabilities. The pooler is dense + tanh on the [CLS] (first) token.

Heads (all share BertModel's keyword arguments, so tiny configs are one override away):
  BertForPreTraining           (mlm_logits, nsp_logits): the masked-LM head (dense → GELU → LayerNorm
                               → decoder tied to the word embeddings + its own output bias) and the
                               2-way next-sentence head on the pooled output.
  BertForSequenceClassification  logits (B, num_labels) from the pooled output (GLUE).
  BertForTokenClassification     logits (B, T, num_labels) from every token (NER).
  BertForQuestionAnswering       (start_logits, end_logits), each (B, T): §4.2's start/end vectors S, E.
Every head is called as `model(input_ids, token_type_ids=None, attention_mask=None, *, masked_positions=None,
train=False, rngs=None)`; `attention_mask` (B, T) is 1 for real tokens and 0 for padding, which no
query attends to. With `masked_positions` (B, P), the MLM logits are computed only at those
positions (B, P, V), as the reference pre-training code does; otherwise at every position (B, T, V).

Registered names build BertForPreTraining with the paper's sizes (BERT_BASE L12 H768 A12 ≈ 110M,
BERT_LARGE L24 H1024 A16 ≈ 340M); the fine-tuning heads take the same row, e.g.
`BertForSequenceClassification(**models.model_config("bert-base-uncased"), num_labels=2, rngs=nnx.Rngs(0))`.

Initialisation as the paper's TensorFlow code: every kernel and embedding from a normal with std
0.02 truncated at two standard deviations, zero biases (the MLM output bias too), LayerNorm (1, 0).
Parameters load from HF transformers' BERT checkpoints (convert/hf_bert.py); HF's separate query /
key / value projections become our fused qkv kernel (embed, 3, heads, head_dim).
"""

import jax
import jax.numpy as jnp
from flax import nnx

from papers_jax.core import sharding
from papers_jax.errors import ConfigError
from papers_jax.models.registry import register
from papers_jax.models.vit import REMAT_POLICIES, block_flops, check_remat
from papers_jax.nn import Attention, Dropout, LayerNorm, Mlp, gradient_barrier, param
from papers_jax.nn.linear import Dense
from papers_jax.nn.mlp import ACTIVATIONS

# The paper's §3 sizes; the WordPiece vocabularies of the released uncased / cased checkpoints.
SIZES = {
    "base": dict(hidden_size=768, num_layers=12, num_heads=12, intermediate_size=3072),
    "large": dict(hidden_size=1024, num_layers=24, num_heads=16, intermediate_size=4096),
}
VOCAB_SIZES = {"uncased": 30522, "cased": 28996}


def truncated_normal(std: float):
  """N(0, std²) truncated at ±2 std: TensorFlow's `truncated_normal_initializer(stddev=std)`."""
  return nnx.initializers.truncated_normal(std, lower=-2.0, upper=2.0)


def embedding_table(rngs, num: int, dim: int, init, param_dtype, axis: str | None):
  return param(rngs, init, (num, dim), param_dtype, (axis, "embed"))


def lookup(table: nnx.Param, ids: jax.Array, dtype) -> jax.Array:
  """Rows of an embedding table. Its embed dim is gathered first (as FSDP gathers any param before use):
  a lookup from a table sharded on the embed dim into batch-sharded activations makes XLA replicate them."""
  rows = sharding.constrain(table[...], (sharding.variable_axes(table)[0], None))
  return jnp.take(rows, ids, axis=0).astype(dtype)


def sum_embeddings(emb, input_ids, token_type_ids=None):
  """word + token type + position embeddings (B, T, D) of `emb` (BertEmbeddings or FNetEmbeddings);
  missing token types are 0, positions are 0..T-1."""
  if input_ids.ndim != 2:
    raise ValueError(f"input_ids must be (batch, length), got shape {input_ids.shape}")
  if input_ids.shape[1] > emb.max_positions:
    raise ValueError(f"sequences of {input_ids.shape[1]} tokens exceed max_position_embeddings={emb.max_positions}; "
                     "truncate them or create the model with a larger max_position_embeddings")
  dtype = emb.dtype or emb.word_embeddings[...].dtype
  if token_type_ids is None:
    token_type_ids = jnp.zeros_like(input_ids)
  x = lookup(emb.word_embeddings, input_ids, dtype) + lookup(emb.token_type_embeddings, token_type_ids, dtype)
  return x + emb.position_embeddings[:input_ids.shape[1]].astype(dtype)


def gather_positions(x: jax.Array, positions: jax.Array | None) -> jax.Array:
  """(B, T, D) at (B, P) positions → (B, P, D); None keeps every position."""
  if positions is None:
    return x
  return jnp.take_along_axis(x, positions.astype(jnp.int32)[..., None], axis=1)


def apply_layers(layers, x, *, mask=None, remat: str = "", scan: bool = False, deterministic=None, rngs=None):
  """The layers in order, each `layer(x, mask=mask, ...)`. `remat` names a vit.REMAT_POLICIES entry;
  with `scan` one `lax.scan` runs the stacked per-layer params, so XLA compiles one layer instead of
  L (the param layout is unchanged); dropout then draws one key per layer."""
  def call(layer, y, r):
    fn = lambda l, y, m, r: l(y, mask=m, deterministic=deterministic, rngs=r)  # noqa: E731
    if remat:
      fn = nnx.remat(fn, policy=REMAT_POLICIES[remat])
    return fn(layer, y, mask, r)

  if not scan:
    for layer in layers:
      x = call(layer, x, rngs)
    return x
  graphdef, *_ = nnx.split(layers[0])
  stacked = jax.tree.map(lambda *xs: jnp.stack(xs), *[nnx.state(layer) for layer in layers])
  keys = jax.random.split(rngs.dropout(), len(layers)) if rngs is not None else None

  def body(y, layer):
    state, key = layer
    return call(nnx.merge(graphdef, state), y, None if key is None else nnx.Rngs(dropout=key)), None

  x, _ = jax.lax.scan(body, x, (stacked, keys))
  return x


class BertEmbeddings(nnx.Module):
  """word + token type + learned position embeddings → LayerNorm → dropout."""

  def __init__(self, vocab_size: int, hidden_size: int, max_position_embeddings: int, type_vocab_size: int, *,
               dropout_rate: float, eps: float, init, dtype=None, param_dtype=jnp.float32, rngs: nnx.Rngs):
    self.max_positions = max_position_embeddings
    self.dtype = dtype
    self.word_embeddings = embedding_table(rngs, vocab_size, hidden_size, init, param_dtype, "vocab")
    self.position_embeddings = embedding_table(rngs, max_position_embeddings, hidden_size, init, param_dtype, None)
    self.token_type_embeddings = embedding_table(rngs, type_vocab_size, hidden_size, init, param_dtype, None)
    self.norm = LayerNorm(hidden_size, eps=eps, dtype=dtype, param_dtype=param_dtype, rngs=rngs)
    self.dropout = Dropout(dropout_rate)

  def __call__(self, input_ids, token_type_ids=None, *, deterministic=None, rngs=None):
    x = self.norm(sum_embeddings(self, input_ids, token_type_ids))
    x = self.dropout(x, deterministic=deterministic, rngs=rngs)
    return sharding.constrain(x, ("act_batch", "act_len", "act_emb"))


class BertLayer(nnx.Module):
  """Post-LN encoder layer: x = LN(x + Dropout(Attn(x))); x = LN(x + Dropout(FFN(x)))."""

  def __init__(self, hidden_size: int, num_heads: int, intermediate_size: int, *, act: str, dropout_rate: float,
               attention_dropout_rate: float, eps: float, init, attention_impl: str | None = None, dtype=None,
               param_dtype=jnp.float32, rngs: nnx.Rngs):
    kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
    self.attn = Attention(hidden_size, num_heads, attn_drop=attention_dropout_rate, proj_drop=dropout_rate,
                          implementation=attention_impl, kernel_init=init, **kw)
    self.attn_norm = LayerNorm(hidden_size, eps=eps, **kw)
    # No dropout between the FFN's two layers (BERT drops only the FFN's output).
    self.mlp = Mlp(hidden_size, intermediate_size, act=act, kernel_init=init, bias_init=nnx.initializers.zeros, **kw)
    self.mlp_drop = Dropout(dropout_rate)
    self.mlp_norm = LayerNorm(hidden_size, eps=eps, **kw)

  def __call__(self, x, *, mask=None, deterministic=None, rngs=None):
    kw = dict(deterministic=deterministic, rngs=rngs)
    x = self.attn_norm(x + self.attn(x, mask=mask, **kw))
    x = self.mlp_norm(x + self.mlp_drop(self.mlp(x, **kw), **kw))
    return gradient_barrier(sharding.constrain(x, ("act_batch", "act_len", "act_emb")))


class BertModel(nnx.Module):
  """The encoder: `model(input_ids, token_type_ids, attention_mask)` → (sequence_output (B, T, D),
  pooled_output (B, D), None without a pooler)."""

  def __init__(self, *, vocab_size: int = 30522, hidden_size: int = 768, num_layers: int = 12, num_heads: int = 12,
               intermediate_size: int = 3072, max_position_embeddings: int = 512, type_vocab_size: int = 2,
               hidden_act: str = "gelu", dropout_rate: float = 0.1, attention_dropout_rate: float = 0.1,
               layer_norm_eps: float = 1e-12, initializer_range: float = 0.02, pooler: bool = True,
               attention_impl: str | None = None, remat: str = "", scan: bool = False, dtype=None,
               param_dtype=jnp.float32, rngs: nnx.Rngs):
    if hidden_size % num_heads:
      raise ConfigError(f"hidden_size {hidden_size} is not divisible by num_heads {num_heads}")
    if hidden_act not in ACTIVATIONS:
      raise ConfigError(f"hidden_act must be one of {sorted(ACTIVATIONS)}, got {hidden_act!r}")
    check_remat(remat)
    self.hidden_size, self.vocab_size, self.hidden_act = hidden_size, vocab_size, hidden_act
    self.dropout_rate, self.layer_norm_eps, self.initializer_range = dropout_rate, layer_norm_eps, initializer_range
    self.remat, self.scan = remat, scan
    self.dtype, self.param_dtype = dtype, param_dtype
    init = self.kernel_init()
    kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
    self.embeddings = BertEmbeddings(vocab_size, hidden_size, max_position_embeddings, type_vocab_size,
                                     dropout_rate=dropout_rate, eps=layer_norm_eps, init=init, **kw)
    self.layers = nnx.List([
        BertLayer(hidden_size, num_heads, intermediate_size, act=hidden_act, dropout_rate=dropout_rate,
                  attention_dropout_rate=attention_dropout_rate, eps=layer_norm_eps, init=init,
                  attention_impl=attention_impl, **kw)
        for _ in range(num_layers)])
    self.pooler = Dense(hidden_size, hidden_size, axes=("embed", None), kernel_init=init, **kw) if pooler else None

  def kernel_init(self):
    return truncated_normal(self.initializer_range)

  def word_embeddings(self) -> jax.Array:
    """The (vocab, hidden) table the MLM decoder is tied to."""
    return self.embeddings.word_embeddings[...]

  def __call__(self, input_ids, token_type_ids=None, attention_mask=None, *, train: bool = False, rngs=None):
    kw = dict(deterministic=not train, rngs=rngs)
    x = self.embeddings(input_ids, token_type_ids, **kw)
    mask = None if attention_mask is None else attention_mask.astype(bool)[:, None, None, :]  # padding keys
    x = apply_layers(self.layers, x, mask=mask, remat=self.remat, scan=self.scan, **kw)
    pooled = jnp.tanh(self.pooler(x[:, 0])) if self.pooler is not None else None
    return x, pooled


class MaskedLMHead(nnx.Module):
  """dense → activation → LayerNorm → logits against the (tied) word embeddings + an output bias."""

  def __init__(self, hidden_size: int, vocab_size: int, *, act: str, eps: float, init, dtype=None,
               param_dtype=jnp.float32, rngs: nnx.Rngs):
    kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
    self.act = act
    self.transform = Dense(hidden_size, hidden_size, axes=("embed", None), kernel_init=init, **kw)
    self.norm = LayerNorm(hidden_size, eps=eps, **kw)
    self.bias = param(rngs, nnx.initializers.zeros, (vocab_size,), param_dtype, ("vocab",))

  def __call__(self, x, word_embeddings):
    """x (..., D), word_embeddings (V, D) → float32 logits (..., V)."""
    h = self.norm(ACTIVATIONS[self.act](self.transform(x)))
    logits = jnp.einsum("...d,vd->...v", h, word_embeddings.astype(h.dtype), preferred_element_type=jnp.float32)
    return logits + self.bias[...].astype(jnp.float32)


class BertForPreTraining(nnx.Module):
  """BERT with the masked-LM and next-sentence heads → (mlm_logits, nsp_logits), float32.

  Keyword arguments are BertModel's. NSP class 0 means "B follows A", class 1 "B is random".
  """

  def __init__(self, *, rngs: nnx.Rngs, **kwargs):
    self.bert = BertModel(pooler=True, rngs=rngs, **kwargs)
    b, init = self.bert, self.bert.kernel_init()
    kw = dict(dtype=b.dtype, param_dtype=b.param_dtype)
    self.mlm_head = MaskedLMHead(b.hidden_size, b.vocab_size, act=b.hidden_act, eps=b.layer_norm_eps, init=init,
                                 rngs=rngs, **kw)
    self.nsp_head = Dense(b.hidden_size, 2, axes=("embed", "classes"), kernel_init=init, rngs=rngs, **kw)

  def __call__(self, input_ids, token_type_ids=None, attention_mask=None, *, masked_positions=None,
               train: bool = False, rngs=None):
    x, pooled = self.bert(input_ids, token_type_ids, attention_mask, train=train, rngs=rngs)
    mlm_logits = self.mlm_head(gather_positions(x, masked_positions), self.bert.word_embeddings())
    return mlm_logits, self.nsp_head(pooled).astype(jnp.float32)


class BertForSequenceClassification(nnx.Module):
  """Pooled [CLS] output → dropout → linear: logits (B, num_labels), float32. `classifier_dropout`
  defaults to the encoder's dropout rate. Keyword arguments are BertModel's."""

  def __init__(self, *, num_labels: int = 2, classifier_dropout: float | None = None, rngs: nnx.Rngs, **kwargs):
    self.bert = BertModel(pooler=True, rngs=rngs, **kwargs)
    b = self.bert
    self.dropout = Dropout(b.dropout_rate if classifier_dropout is None else classifier_dropout)
    self.classifier = Dense(b.hidden_size, num_labels, axes=("embed", "classes"), kernel_init=b.kernel_init(),
                            dtype=b.dtype, param_dtype=b.param_dtype, rngs=rngs)

  def __call__(self, input_ids, token_type_ids=None, attention_mask=None, *, masked_positions=None,
               train: bool = False, rngs=None):
    del masked_positions  # the signature of the pre-training model; unused here
    _, pooled = self.bert(input_ids, token_type_ids, attention_mask, train=train, rngs=rngs)
    pooled = self.dropout(pooled, deterministic=not train, rngs=rngs)
    return self.classifier(pooled).astype(jnp.float32)


class BertForTokenClassification(nnx.Module):
  """Every token → dropout → linear: logits (B, T, num_labels), float32. No pooler (as HF's)."""

  def __init__(self, *, num_labels: int = 2, classifier_dropout: float | None = None, rngs: nnx.Rngs, **kwargs):
    self.bert = BertModel(pooler=False, rngs=rngs, **kwargs)
    b = self.bert
    self.dropout = Dropout(b.dropout_rate if classifier_dropout is None else classifier_dropout)
    self.classifier = Dense(b.hidden_size, num_labels, axes=("embed", "classes"), kernel_init=b.kernel_init(),
                            dtype=b.dtype, param_dtype=b.param_dtype, rngs=rngs)

  def __call__(self, input_ids, token_type_ids=None, attention_mask=None, *, masked_positions=None,
               train: bool = False, rngs=None):
    del masked_positions
    x, _ = self.bert(input_ids, token_type_ids, attention_mask, train=train, rngs=rngs)
    x = self.dropout(x, deterministic=not train, rngs=rngs)
    return self.classifier(x).astype(jnp.float32)


class BertForQuestionAnswering(nnx.Module):
  """Span extraction (§4.2): one linear layer gives each token a start and an end score; returns
  (start_logits, end_logits), each (B, T) float32. No pooler (as HF's)."""

  def __init__(self, *, rngs: nnx.Rngs, **kwargs):
    self.bert = BertModel(pooler=False, rngs=rngs, **kwargs)
    b = self.bert
    self.qa_outputs = Dense(b.hidden_size, 2, axes=("embed", "classes"), kernel_init=b.kernel_init(), dtype=b.dtype,
                            param_dtype=b.param_dtype, rngs=rngs)

  def __call__(self, input_ids, token_type_ids=None, attention_mask=None, *, masked_positions=None,
               train: bool = False, rngs=None):
    del masked_positions
    x, _ = self.bert(input_ids, token_type_ids, attention_mask, train=train, rngs=rngs)
    logits = self.qa_outputs(x).astype(jnp.float32)
    return logits[..., 0], logits[..., 1]


for _size, _row in SIZES.items():
  for _case, _vocab in VOCAB_SIZES.items():
    register(f"bert-{_size}-{_case}", BertForPreTraining, **_row, vocab_size=_vocab)


def forward_flops(model, seq_len: int | None = None, predictions: int | None = None) -> float:
  """Matmul FLOPs of one forward pass per sequence of `seq_len` tokens (default: the model's
  max_position_embeddings), 2 per multiply-add: the layers, the pooler and the model's heads; the
  MLM head at `predictions` positions (default: every position, as without `masked_positions`).
  Any of the BERT models, or BertModel alone; works on an abstract model."""
  encoder = model if isinstance(model, BertModel) else model.bert
  t, d = seq_len or encoder.embeddings.max_positions, encoder.hidden_size
  flops = sum(block_flops(t, d, layer.mlp.fc1.kernel.shape[1]) for layer in encoder.layers)
  return float(flops + pooler_and_head_flops(model, encoder, t, predictions))


def pooler_and_head_flops(model, encoder, t: int, predictions: int | None) -> int:
  """The pooler and the heads of a BERT or FNet model on t tokens (2 per multiply-add)."""
  d = encoder.hidden_size
  flops = 2 * d * d if encoder.pooler is not None else 0
  if hasattr(model, "mlm_head"):  # pre-training: MLM transform and tied decoder, then the 2-way NSP head
    p = predictions or t
    flops += 2 * p * d * d + 2 * p * d * encoder.vocab_size + 2 * d * 2
  if isinstance(model, (BertForTokenClassification, BertForQuestionAnswering)):  # scores for every token
    head = model.qa_outputs if isinstance(model, BertForQuestionAnswering) else model.classifier
    flops += 2 * t * d * head.kernel.shape[1]
  elif hasattr(model, "classifier"):  # sequence classification, on the pooled output
    flops += 2 * d * model.classifier.kernel.shape[1]
  return flops


# The embedding parameters (models.embedding_params), as Kaplan et al. (2020) leave them out of N: the
# word (also the MLM decoder, tied), position and token-type tables, and the MLM decoder's output bias
# (one per vocabulary entry). The embedding LayerNorm is a non-embedding parameter.
EMBEDDINGS = ("bert.embeddings.word_embeddings", "bert.embeddings.position_embeddings",
              "bert.embeddings.token_type_embeddings", "mlm_head.bias",
              "embeddings.word_embeddings", "embeddings.position_embeddings", "embeddings.token_type_embeddings")
