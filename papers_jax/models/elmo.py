"""ELMo (Peters et al. 2018, "Deep contextualized word representations"): a character-CNN token encoder and a
two-layer bidirectional LSTM language model whose layers a downstream model mixes with learned weights.

Token encoder (Józefowicz et al. 2016's char-CNN, as the released "original" model): each token is a row of
`max_chars` character ids (bytes + 1, with begin/end-of-word marks; 0 pads; data/elmo.py), embedded in 16
dimensions; 1-D convolutions of widths 1..7 with 32, 32, 64, 128, 256, 512 and 1,024 filters, each max-pooled
over the characters and passed through ReLU (2,048 features); two highway layers
(y = g·x + (1 − g)·ReLU(W_h x), g = σ(W_g x)); a linear projection to 512.

biLM: a forward and a backward stack of two LSTMs with 4,096 cells and a projection to 512 (LSTMP), cell and
projection values clipped at ±3 (the released model's cell_clip / proj_clip), and a residual connection from
the first layer's output to the second's. The forward stack reads the tokens left to right and predicts the
next one, the backward stack right to left and predicts the previous one, both through ONE softmax (the
paper ties the token representation and the softmax layer between the directions, §3.1).

ELMo for a downstream task (§3.2, Eq. 1): ELMo_k = γ Σ_j s_j h_{k,j} over the L + 1 = 3 layers (the token
layer, duplicated to [x; x] so it is as wide as the biLSTM layers' [→h; ←h]), s = softmax(w); `ScalarMix`.

Parameter count of the original (`elmo_original`, without the softmax over the 1B Word Benchmark's 793,471
words): 93.6M, as the paper's released model (tests/test_elmo.py).

Parameter paths: char_cnn/{char_embed, convs/N, highways/N/{transform, gate}, projection},
forward/N/{input, hidden, proj}, backward/N/..., softmax/{kernel, bias}.
"""

import jax
import jax.numpy as jnp
from flax import nnx

from papers_jax.errors import ConfigError
from papers_jax.models.registry import register
from papers_jax.nn import Dense, param

CHAR_VOCAB = 262  # 256 bytes + begin/end of sentence and of word + padding, shifted by 1 so that 0 pads
ORIGINAL_FILTERS = ((1, 32), (2, 32), (3, 64), (4, 128), (5, 256), (6, 512), (7, 1024))


class CharCNN(nnx.Module):
  """(B, T, C) character ids → (B, T, projection_dim) token vectors."""

  def __init__(self, *, char_dim: int, filters, num_highway: int, projection_dim: int, rngs: nnx.Rngs):
    self.char_embed = param(rngs, nnx.initializers.uniform(1.0), (CHAR_VOCAB, char_dim), jnp.float32,
                            ("vocab", None))
    self.filters = tuple(tuple(f) for f in filters)
    self.convs = nnx.List([param(rngs, nnx.initializers.lecun_normal(), (width, char_dim, num), jnp.float32,
                                 (None, None, None)) for width, num in self.filters])
    self.conv_biases = nnx.List([param(rngs, nnx.initializers.zeros, (num,), jnp.float32, (None,))
                                 for _, num in self.filters])
    width = sum(num for _, num in self.filters)
    self.highways = nnx.List([
        nnx.Dict(transform=Dense(width, width, axes=(None, None), rngs=rngs),
                 gate=Dense(width, width, axes=(None, None), bias_init=nnx.initializers.ones, rngs=rngs))
        for _ in range(num_highway)])  # gate bias 1: the layers start close to carrying x through
    self.projection = Dense(width, projection_dim, axes=(None, "embed"), rngs=rngs)

  def __call__(self, chars):
    b, t, c = chars.shape
    x = jnp.take(self.char_embed[...], chars.reshape(b * t, c), axis=0)  # (BT, C, E)
    x = x * (chars.reshape(b * t, c) > 0)[..., None]  # padding characters embed to zero
    pooled = []
    for kernel, bias in zip(self.convs, self.conv_biases):
      y = jax.lax.conv_general_dilated(x, kernel[...], (1,), "VALID", dimension_numbers=("NWC", "WIO", "NWC"))
      pooled.append(jax.nn.relu(jnp.max(y, axis=1) + bias[...]))
    x = jnp.concatenate(pooled, axis=-1)
    for layer in self.highways:
      gate = jax.nn.sigmoid(layer["gate"](x))
      x = gate * x + (1 - gate) * jax.nn.relu(layer["transform"](x))
    return self.projection(x).reshape(b, t, -1)


class LSTMP(nnx.Module):
  """An LSTM with a projection of its output (Sak et al. 2014), clipped as the released biLM's."""

  def __init__(self, input_dim: int, cell_dim: int, proj_dim: int, *, cell_clip: float, proj_clip: float,
               rngs: nnx.Rngs):
    self.input = Dense(input_dim, (4, cell_dim), axes=(None, None, None), rngs=rngs,
                       bias_init=lambda key, shape, dtype: jnp.zeros(shape, dtype).at[1].set(1.0))  # forget: +1
    self.hidden = Dense(proj_dim, (4, cell_dim), axes=(None, None, None), use_bias=False, rngs=rngs)
    self.proj = Dense(cell_dim, proj_dim, axes=(None, None), use_bias=False, rngs=rngs)
    self.cell_dim, self.proj_dim, self.cell_clip, self.proj_clip = cell_dim, proj_dim, cell_clip, proj_clip

  def step(self, carry, x_gates):
    """One time step: carry (c (B, cell), h (B, proj)), x_gates (B, 4, cell) the input's share of the gates."""
    c, h = carry
    gates = x_gates + self.hidden(h)
    i, f, g, o = (gates[:, k] for k in range(4))
    c = jax.nn.sigmoid(f) * c + jax.nn.sigmoid(i) * jnp.tanh(g)
    if self.cell_clip:
      c = jnp.clip(c, -self.cell_clip, self.cell_clip)
    h = self.proj(jax.nn.sigmoid(o) * jnp.tanh(c))
    if self.proj_clip:
      h = jnp.clip(h, -self.proj_clip, self.proj_clip)
    return (c, h), h

  def __call__(self, xs):
    """xs (B, T, input) → hs (B, T, proj), left to right from a zero state."""
    b = xs.shape[0]
    x_gates = self.input(xs)  # all time steps at once
    carry = (jnp.zeros((b, self.cell_dim), xs.dtype), jnp.zeros((b, self.proj_dim), xs.dtype))
    graphdef, state = nnx.split(self)

    def body(carry, x):
      return nnx.merge(graphdef, state).step(carry, x)

    _, hs = jax.lax.scan(body, carry, jnp.swapaxes(x_gates, 0, 1))
    return jnp.swapaxes(hs, 0, 1)


def reverse_rows(x, lengths):
  """Each row's first `lengths[b]` steps in reverse order, the padding after them in place: (B, T, ...)."""
  t = jnp.arange(x.shape[1])[None, :]
  index = jnp.where(t < lengths[:, None], lengths[:, None] - 1 - t, t)
  return jnp.take_along_axis(x, index.reshape(index.shape + (1,) * (x.ndim - 2)), axis=1)


class ELMo(nnx.Module):
  """`model(chars, lengths)` → the L + 1 layers (B, T, 2·proj) each; `model.lm_logits(layers)` → the forward
  and backward next/previous-token logits (B, T, vocab) through the tied softmax."""

  def __init__(self, *, vocab_size: int = 793471, char_dim: int = 16, filters=ORIGINAL_FILTERS, num_highway: int = 2,
               projection_dim: int = 512, cell_dim: int = 4096, num_layers: int = 2, cell_clip: float = 3.0,
               proj_clip: float = 3.0, dropout_rate: float = 0.1, rngs: nnx.Rngs):
    if num_layers < 1 or vocab_size < 1 or not filters:
      raise ConfigError(f"ELMo needs num_layers ≥ 1, vocab_size ≥ 1 and filters, got {num_layers}, {vocab_size}, "
                        f"{filters}")
    self.vocab_size, self.projection_dim, self.num_layers = vocab_size, projection_dim, num_layers
    self.cell_dim, self.dropout_rate = cell_dim, dropout_rate
    self.char_cnn = CharCNN(char_dim=char_dim, filters=filters, num_highway=num_highway,
                            projection_dim=projection_dim, rngs=rngs)
    lstm = lambda: LSTMP(projection_dim, cell_dim, projection_dim, cell_clip=cell_clip, proj_clip=proj_clip,
                         rngs=rngs)
    self.forward = nnx.List([lstm() for _ in range(num_layers)])
    self.backward = nnx.List([lstm() for _ in range(num_layers)])
    self.softmax = Dense(projection_dim, vocab_size, axes=("embed", "vocab"), rngs=rngs)

  def _dropout(self, x, train, rngs):
    if not train or not self.dropout_rate:
      return x
    keep = jax.random.bernoulli(rngs.dropout(), 1.0 - self.dropout_rate, x.shape)
    return jnp.where(keep, x / (1.0 - self.dropout_rate), 0.0)

  def directions(self, chars, lengths, *, train: bool = False, rngs=None):
    """(token vectors, [forward layer outputs], [backward layer outputs]), each (B, T, proj), the backward
    ones in the original order. Layer 2 onwards adds its input (the residual connection)."""
    x = self.char_cnn(chars)
    outputs = {}
    for name, stack in (("forward", self.forward), ("backward", self.backward)):
      h = x if name == "forward" else reverse_rows(x, lengths)
      layers = []
      for i, lstm in enumerate(stack):
        out = lstm(self._dropout(h, train, rngs))
        h = out + h if i > 0 else out
        layers.append(h if name == "forward" else reverse_rows(h, lengths))
      outputs[name] = layers
    return x, outputs["forward"], outputs["backward"]

  def __call__(self, chars, lengths, *, train: bool = False, rngs=None):
    x, forward, backward = self.directions(chars, lengths, train=train, rngs=rngs)
    return [jnp.concatenate([x, x], -1)] + [jnp.concatenate([f, b], -1) for f, b in zip(forward, backward)]

  def lm_logits(self, chars, lengths, *, train: bool = False, rngs=None):
    """(forward logits, backward logits), (B, T, vocab) float32: position t's forward logits score token t + 1,
    its backward logits token t − 1."""
    _, forward, backward = self.directions(chars, lengths, train=train, rngs=rngs)
    top = lambda h: self.softmax(self._dropout(h, train, rngs)).astype(jnp.float32)
    return top(forward[-1]), top(backward[-1])


class ScalarMix(nnx.Module):
  """ELMo's task-specific combination (Eq. 1): γ Σ_j softmax(w)_j h_j, w initialised to 0 (equal weights), γ to 1."""

  def __init__(self, num_layers: int = 3, *, rngs: nnx.Rngs):
    del rngs
    self.weights = nnx.Param(jnp.zeros((num_layers,), jnp.float32))
    self.gamma = nnx.Param(jnp.ones((), jnp.float32))

  def __call__(self, layers):
    if len(layers) != self.weights.shape[0]:
      raise ConfigError(f"ScalarMix was built for {self.weights.shape[0]} layers, got {len(layers)}")
    s = jax.nn.softmax(self.weights[...])
    return self.gamma[...] * sum(s[j] * h for j, h in enumerate(layers))


register("elmo_original", ELMo)  # the released 93.6M model; its softmax over the 1B Word Benchmark's vocabulary


def forward_flops(model: ELMo, seq_len: int = 20, max_chars: int = 50) -> float:
  """Matmul and convolution FLOPs of one sequence of `seq_len` tokens of `max_chars` characters (2 per
  multiply-add): the char-CNN, both LSTM stacks and the softmax of both directions."""
  cnn = model.char_cnn
  char_dim = cnn.char_embed.shape[1]
  width = sum(n for _, n in cnn.filters)
  per_token = sum(2 * w * char_dim * n * max(max_chars - w + 1, 0) for w, n in cnn.filters)
  per_token += len(cnn.highways) * 2 * (2 * width * width) + 2 * width * model.projection_dim
  p, c = model.projection_dim, model.cell_dim
  per_token += 2 * model.num_layers * (2 * (p + p) * 4 * c + 2 * c * p)
  per_token += 2 * 2 * p * model.vocab_size
  return float(seq_len * per_token)


EMBEDDINGS = ("softmax", "char_cnn.char_embed")
