"""wav2vec 2.0 (Baevski et al., 2020, "wav2vec 2.0: A Framework for Self-Supervised Learning of Speech
Representations"), laid out as HF transformers' `Wav2Vec2ForPreTraining` / `Wav2Vec2ForCTC`.

  waveform (B, N) → feature encoder: 7 strided 1-D convolutions (512 channels, kernels 10/3/3/3/3/2/2,
      strides 5/2/2/2/2/2/2: one frame per 320 samples = 20 ms at 16 kHz, a 25 ms receptive field), GELU;
      "group" norm mode (BASE): a per-channel GroupNorm after the first convolution only; "layer" mode
      (LARGE, lv60): a LayerNorm after every convolution
  → z (B, T, 512) → LayerNorm → linear projection to the model width → (time masking) → Transformer
      with a convolutional relative position embedding (kernel 128, 16 groups, weight norm, GELU),
      post-norm layers (BASE) or pre-norm "stable layer norm" layers with a final LayerNorm (LARGE)
  → context c (B, T, D).
  Pre-training (§3.2, §3.3): the Gumbel-softmax product quantiser of the normalised z (G = 2 codebooks ×
  V = 320 entries, straight-through hard samples in training, argmax in evaluation) gives q; `project_hid`
  and `project_q` map c and q to the same space, where the contrastive loss compares them
  (objectives/speech.py). The CTC head (`vocab_size` > 0) is dropout + a linear layer on c.

Variants (`VARIANTS`, HF's configs): `wav2vec2_base` (95M with its pre-training heads, "group" norm,
post-norm) and `wav2vec2_large` (317M, the LV-60k model: "layer" norm, conv biases, pre-norm); the
`_ctc` names carry a 32-symbol CTC head instead of the quantiser (HF's `Wav2Vec2ForCTC`). The paper's
LARGE trained on LibriSpeech (fairseq's LS-960 model) has the BASE encoder layout at LARGE width:
`wav2vec2_large(feat_extract_norm="group", conv_bias=False, stable_layer_norm=False)`.

Span masking (`compute_mask`) and the negative sampler (`sample_negatives`) draw with jax.random inside
the step; both also accept given indices (HF draws its own with numpy), which the parity tests pass.
The Gumbel temperature is a model-state variable (`quantizer.temperature`) that the pre-training task
anneals after each step (2 → 0.5 by a factor 0.999995 per update, §4.2).
"""

import math

import jax
import jax.numpy as jnp
from flax import nnx

from papers_jax.models import conv_flops
from papers_jax.models.registry import register
from papers_jax.nn.attention import Attention
from papers_jax.nn.conv import Conv1D
from papers_jax.nn.drop import Dropout
from papers_jax.nn.linear import Dense, param
from papers_jax.nn.mlp import gelu
from papers_jax.nn.norms import GroupNorm, LayerNorm

CONV_DIM = (512,) * 7
CONV_KERNEL = (10, 3, 3, 3, 3, 2, 2)
CONV_STRIDE = (5, 2, 2, 2, 2, 2, 2)

# name: hidden size, layers, heads, MLP width, feature-encoder norm, conv bias, stable (pre-norm) layers,
# codevector dim, projected codevector dim (HF's facebook/wav2vec2-base and -large-lv60 configs).
VARIANTS = {
    "base": dict(hidden_size=768, num_layers=12, num_heads=12, mlp_dim=3072, feat_extract_norm="group",
                 conv_bias=False, stable_layer_norm=False, codevector_dim=256, proj_codevector_dim=256),
    "large": dict(hidden_size=1024, num_layers=24, num_heads=16, mlp_dim=4096, feat_extract_norm="layer",
                  conv_bias=True, stable_layer_norm=True, codevector_dim=768, proj_codevector_dim=768),
}
LN_EPS = 1e-5


def conv_output_length(length, kernels=CONV_KERNEL, strides=CONV_STRIDE):
  """Frames of the feature encoder for `length` samples (no padding: ⌊(L − k) / s⌋ + 1 per layer)."""
  for k, s in zip(kernels, strides):
    length = (length - k) // s + 1
  return length


def frame_mask(audio_mask, num_frames: int, kernels=CONV_KERNEL, strides=CONV_STRIDE):
  """(B, num_frames) validity of the frames from the (B, N) sample mask (a prefix of valid samples)."""
  lengths = conv_output_length(jnp.sum(audio_mask, axis=-1).astype(jnp.int32), kernels, strides)
  return jnp.arange(num_frames)[None, :] < lengths[:, None]


# ----------------------------------------------------------------------------- masking and negatives
def compute_mask(rng, frame_valid, *, mask_prob: float = 0.65, mask_length: int = 10, min_masks: int = 2):
  """wav2vec 2.0's span mask (§3.3, fairseq's / HF's `_compute_mask_indices`): in each utterance of L valid
  frames, ⌊p·L / M + u⌋ (u ~ U[0, 1), at least `min_masks`) distinct start frames drawn uniformly from the
  first L − M + 1, each masking the M frames from it; spans may overlap. (B, T) bool.

  `mask_prob` is fairseq's and HF's p = 0.65: the paper's "p = 0.065 of all time steps are start indices"
  with M = 10 (0.065 · L starts = 0.65 · L / M); about 49% of the frames end up masked."""
  b, t = frame_valid.shape
  lengths = frame_valid.sum(-1)
  count_rng, start_rng = jax.random.split(rng)
  num_spans = jnp.floor(mask_prob * lengths / mask_length + jax.random.uniform(count_rng, (b,))).astype(jnp.int32)
  num_starts = jnp.maximum(lengths - mask_length + 1, 1)
  num_spans = jnp.clip(num_spans, min_masks, jnp.maximum(lengths // mask_length, 1))
  # Distinct starts: the `num_spans` allowed starts with the smallest random scores.
  scores = jnp.where(jnp.arange(t)[None] < num_starts[:, None], jax.random.uniform(start_rng, (b, t)), 2.0)
  rank = jnp.argsort(jnp.argsort(scores, axis=-1), axis=-1)
  starts = (rank < num_spans[:, None]).astype(jnp.int32)
  covered = jnp.cumsum(starts, axis=-1)
  covered = covered - jnp.pad(covered, ((0, 0), (mask_length, 0)))[:, :t]  # starts within the last M frames
  return (covered > 0) & frame_valid


def sample_negatives(rng, mask, num_negatives: int = 100):
  """K distractors per frame drawn uniformly from the other masked frames of the same utterance (§3.3;
  HF's `_sample_negative_indices`), as indices into the flattened (B·T) frames: (B, T, K) int32. Rows of
  unmasked frames are unused (they point at the utterance's first frame)."""
  b, t = mask.shape
  count = mask.sum(-1)  # masked frames per utterance
  order = jnp.argsort(~mask, axis=-1, stable=True)  # the masked frames first, in time order
  own = jnp.cumsum(mask, axis=-1) - 1  # each masked frame's rank among them
  draw = jnp.floor(jax.random.uniform(rng, (b, t, num_negatives)) * jnp.maximum(count - 1, 1)[:, None, None])
  draw = draw.astype(jnp.int32)
  draw = jnp.where(draw >= own[..., None], draw + 1, draw)  # skip the frame itself
  draw = jnp.minimum(draw, jnp.maximum(count - 1, 0)[:, None, None])
  frames = jnp.take_along_axis(order[:, None, :], draw.reshape(b, 1, -1), axis=-1).reshape(b, t, num_negatives)
  frames = jnp.where(mask[..., None], frames, 0)
  return (frames + (jnp.arange(b) * t)[:, None, None]).astype(jnp.int32)


# ----------------------------------------------------------------------------- layers
class FeatureEncoderLayer(nnx.Module):
  """Conv1d → (GroupNorm per channel | LayerNorm | nothing) → GELU."""

  def __init__(self, in_dim, out_dim, kernel, stride, *, norm: str | None, bias: bool, kw):
    self.conv = Conv1D(in_dim, out_dim, kernel, stride=stride, use_bias=bias,
                       kernel_init=nnx.initializers.he_normal(in_axis=(0, 1), out_axis=2), **kw)
    if norm == "group":
      self.layer_norm = GroupNorm(out_dim, num_groups=out_dim, eps=LN_EPS, **kw)
    elif norm == "layer":
      self.layer_norm = LayerNorm(out_dim, eps=LN_EPS, axis_name="conv_out", **kw)
    else:
      self.layer_norm = None

  def __call__(self, x):
    x = self.conv(x)
    if self.layer_norm is not None:
      x = self.layer_norm(x)
    return gelu(x)


class FeatureEncoder(nnx.Module):
  def __init__(self, *, conv_dim, conv_kernel, conv_stride, norm: str, bias: bool, kw):
    ins = (1,) + tuple(conv_dim[:-1])
    self.conv_layers = nnx.List([
        FeatureEncoderLayer(i, o, k, s, norm=norm if (norm == "layer" or n == 0) else None, bias=bias, kw=kw)
        for n, (i, o, k, s) in enumerate(zip(ins, conv_dim, conv_kernel, conv_stride))])

  def __call__(self, audio):
    x = audio[..., None]
    for layer in self.conv_layers:
      x = layer(x)
    return x


class PositionalConvEmbedding(nnx.Module):
  """Grouped convolution (kernel K, `groups`) with weight normalisation over each kernel tap (torch's
  weight_norm(dim=2): w[k] = g[k] · v[k] / ‖v[k]‖), the last output dropped for an even K, then GELU."""

  def __init__(self, dim: int, kernel: int, groups: int, *, dtype, param_dtype, rngs):
    self.kernel_size, self.groups, self.dtype = kernel, groups, dtype
    std = 2.0 * math.sqrt(1.0 / (kernel * dim))  # fairseq's init of the unnormalised weight
    self.weight_v = param(rngs, nnx.initializers.normal(std), (kernel, dim // groups, dim), param_dtype,
                          (None, None, "embed"))
    self.weight_g = nnx.Param(jnp.sqrt(jnp.sum(jnp.square(self.weight_v[...]), axis=(1, 2))), axes=(None,))
    self.bias = param(rngs, nnx.initializers.zeros, (dim,), param_dtype, ("embed",))

  def __call__(self, x):
    dtype = self.dtype or x.dtype
    v = self.weight_v[...].astype(jnp.float32)
    w = v * (self.weight_g[...].astype(jnp.float32) / jnp.sqrt(jnp.sum(v * v, axis=(1, 2))))[:, None, None]
    pad = self.kernel_size // 2
    y = jax.lax.conv_general_dilated(x.astype(dtype), w.astype(dtype), (1,), ((pad, pad),),
                                     dimension_numbers=("NWC", "WIO", "NWC"), feature_group_count=self.groups)
    y = y + self.bias[...].astype(dtype)
    if self.kernel_size % 2 == 0:
      y = y[:, :-1]
    return gelu(y)


class FeedForward(nnx.Module):
  def __init__(self, dim, hidden, *, activation_dropout, hidden_dropout, kw):
    self.intermediate_dense = Dense(dim, hidden, axes=("embed", "mlp"), **kw)
    self.output_dense = Dense(hidden, dim, axes=("mlp", "embed"), **kw)
    self.intermediate_dropout = Dropout(activation_dropout)
    self.output_dropout = Dropout(hidden_dropout)

  def __call__(self, x, *, deterministic, rngs):
    h = self.intermediate_dropout(gelu(self.intermediate_dense(x)), deterministic=deterministic, rngs=rngs)
    return self.output_dropout(self.output_dense(h), deterministic=deterministic, rngs=rngs)


class EncoderLayer(nnx.Module):
  """Post-norm (BASE: x = LN(x + attn(x)); x = LN(x + ff(x))) or pre-norm (`stable`, LARGE:
  x = x + attn(LN(x)); x = x + ff(LN(x)))."""

  def __init__(self, dim, heads, mlp_dim, *, stable: bool, attention_dropout, hidden_dropout, activation_dropout,
               attn_implementation, kw):
    self.stable = stable
    self.attention = Attention(dim, heads, attn_drop=attention_dropout, implementation=attn_implementation, **kw)
    self.dropout = Dropout(hidden_dropout)
    self.layer_norm = LayerNorm(dim, eps=LN_EPS, **kw)
    self.feed_forward = FeedForward(dim, mlp_dim, activation_dropout=activation_dropout,
                                    hidden_dropout=hidden_dropout, kw=kw)
    self.final_layer_norm = LayerNorm(dim, eps=LN_EPS, **kw)

  def __call__(self, x, attn_mask, *, deterministic, rngs):
    attend = lambda h: self.dropout(self.attention(h, mask=attn_mask, deterministic=deterministic, rngs=rngs),
                                    deterministic=deterministic, rngs=rngs)
    if self.stable:
      x = x + attend(self.layer_norm(x))
      return x + self.feed_forward(self.final_layer_norm(x), deterministic=deterministic, rngs=rngs)
    x = self.layer_norm(x + attend(x))
    return self.final_layer_norm(x + self.feed_forward(x, deterministic=deterministic, rngs=rngs))


class GumbelVectorQuantizer(nnx.Module):
  """Product quantisation with Gumbel-softmax (§3.2): logits over G × V codewords from the normalised
  features; training picks each group's codeword by a hard, straight-through Gumbel-softmax sample at
  the current temperature, evaluation by argmax; the G chosen codewords (each codevector_dim / G wide)
  are concatenated. Also returns the perplexity of the codeword distribution averaged over the masked
  frames (soft probabilities in training, one-hot in evaluation), for the diversity loss."""

  def __init__(self, in_dim, *, groups: int, entries: int, codevector_dim: int, kw, rngs):
    if codevector_dim % groups:
      raise ValueError(f"codevector_dim {codevector_dim} does not split into {groups} groups")
    self.groups, self.entries = groups, entries
    self.weight_proj = Dense(in_dim, groups * entries, axes=(None, None),
                             kernel_init=nnx.initializers.normal(1.0), **kw)
    self.codevectors = param(rngs, nnx.initializers.uniform(1.0), (1, groups * entries, codevector_dim // groups),
                             kw["param_dtype"], (None, None, None))
    self.temperature = nnx.Variable(jnp.asarray(2.0, jnp.float32))  # annealed by the pre-training task

  def __call__(self, x, mask=None, *, gumbel_rng=None):
    b, t, _ = x.shape
    logits = self.weight_proj(x).astype(jnp.float32).reshape(b * t, self.groups, self.entries)
    if gumbel_rng is not None:
      soft = jax.nn.softmax((logits + jax.random.gumbel(gumbel_rng, logits.shape)) / self.temperature[...], axis=-1)
      hard = jax.nn.one_hot(jnp.argmax(soft, axis=-1), self.entries, dtype=soft.dtype)
      probs = hard - jax.lax.stop_gradient(soft) + soft
      dist = jax.nn.softmax(logits, axis=-1)
    else:
      probs = dist = jax.nn.one_hot(jnp.argmax(logits, axis=-1), self.entries, dtype=jnp.float32)
    if mask is None:
      marginal = dist.mean(0)
    else:
      m = mask.reshape(-1, 1, 1).astype(jnp.float32)
      marginal = (dist * m).sum(0) / m.sum()
    entropy = -jnp.sum(jnp.where(marginal > 0, marginal * jnp.log(jnp.where(marginal > 0, marginal, 1.0)), 0.0), -1)
    perplexity = jnp.exp(entropy).sum()
    codebook = self.codevectors[...].reshape(self.groups, self.entries, -1).astype(jnp.float32)
    codes = jnp.einsum("ngv,gvd->ngd", probs, codebook).reshape(b, t, -1)
    return codes, perplexity


# ----------------------------------------------------------------------------- model
class Wav2Vec2(nnx.Module):
  """The wav2vec 2.0 encoder with its pre-training heads (`quantizer=True`) and/or a CTC head
  (`vocab_size` > 0). Inputs are normalised waveforms (B, N) with an optional (B, N) sample mask.

  `__call__` returns the CTC logits (B, T, vocab) with a head, else the context (B, T, D).
  `pretrain` returns what the pre-training losses need (objectives/speech.py)."""

  def __init__(self, *, hidden_size: int = 768, num_layers: int = 12, num_heads: int = 12, mlp_dim: int = 3072,
               conv_dim=CONV_DIM, conv_kernel=CONV_KERNEL, conv_stride=CONV_STRIDE, feat_extract_norm: str = "group",
               conv_bias: bool = False, stable_layer_norm: bool = False, pos_conv_kernel: int = 128,
               pos_conv_groups: int = 16, quantizer: bool = True, num_codevector_groups: int = 2,
               num_codevectors_per_group: int = 320, codevector_dim: int = 256, proj_codevector_dim: int = 256,
               vocab_size: int = 0, hidden_dropout: float = 0.1, attention_dropout: float = 0.1,
               activation_dropout: float = 0.0, feat_proj_dropout: float = 0.1, feat_quantizer_dropout: float = 0.0,
               final_dropout: float = 0.0, layerdrop: float = 0.05, attn_implementation: str | None = None,
               dtype=None, param_dtype=jnp.float32, rngs: nnx.Rngs):
    if feat_extract_norm not in ("group", "layer"):
      raise ValueError(f"feat_extract_norm={feat_extract_norm!r}; choose 'group' (BASE) or 'layer' (LARGE)")
    if not len(conv_dim) == len(conv_kernel) == len(conv_stride):
      raise ValueError("conv_dim, conv_kernel and conv_stride need one entry per feature-encoder layer")
    kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
    self.hidden_size, self.num_layers, self.vocab_size = hidden_size, num_layers, vocab_size
    self.conv_kernel, self.conv_stride = tuple(conv_kernel), tuple(conv_stride)
    self.stable_layer_norm, self.layerdrop = stable_layer_norm, layerdrop
    self.num_codevectors = num_codevector_groups * num_codevectors_per_group
    self.feature_extractor = FeatureEncoder(conv_dim=tuple(conv_dim), conv_kernel=conv_kernel, conv_stride=conv_stride,
                                            norm=feat_extract_norm, bias=conv_bias, kw=kw)
    c = conv_dim[-1]
    self.feature_layer_norm = LayerNorm(c, eps=LN_EPS, axis_name="conv_out", **kw)
    self.feature_projection = Dense(c, hidden_size, axes=("conv_out", "embed"), **kw)
    self.feature_dropout = Dropout(feat_proj_dropout)
    self.masked_spec_embed = param(rngs, nnx.initializers.uniform(1.0), (hidden_size,), param_dtype, ("embed",))
    self.pos_conv_embed = PositionalConvEmbedding(hidden_size, pos_conv_kernel, pos_conv_groups, dtype=dtype,
                                                  param_dtype=param_dtype, rngs=rngs)
    self.encoder_layer_norm = LayerNorm(hidden_size, eps=LN_EPS, **kw)
    self.encoder_dropout = Dropout(hidden_dropout)
    self.layers = nnx.List([
        EncoderLayer(hidden_size, num_heads, mlp_dim, stable=stable_layer_norm, attention_dropout=attention_dropout,
                     hidden_dropout=hidden_dropout, activation_dropout=activation_dropout,
                     attn_implementation=attn_implementation, kw=kw)
        for _ in range(num_layers)])
    if quantizer:
      self.quantizer = GumbelVectorQuantizer(c, groups=num_codevector_groups, entries=num_codevectors_per_group,
                                             codevector_dim=codevector_dim, kw=kw, rngs=rngs)
      self.quantizer_dropout = Dropout(feat_quantizer_dropout)
      self.project_hid = Dense(hidden_size, proj_codevector_dim, axes=("embed", None), **kw)
      self.project_q = Dense(codevector_dim, proj_codevector_dim, axes=(None, None), **kw)
    else:
      self.quantizer = None
    if vocab_size:
      self.final_dropout = Dropout(final_dropout)
      self.lm_head = Dense(hidden_size, vocab_size, axes=("embed", "vocab"), **kw)
    else:
      self.lm_head = None

  def num_frames(self, num_samples: int) -> int:
    return int(conv_output_length(num_samples, self.conv_kernel, self.conv_stride))

  def frame_mask(self, audio_mask, num_frames: int):
    return frame_mask(audio_mask, num_frames, self.conv_kernel, self.conv_stride)

  def encode(self, audio, audio_mask=None, *, mask_time_indices=None, deterministic: bool = True, rngs=None):
    """{"context" (B, T, D), "extract_features" (the normalised z, B × T × C), "conv_features" (z),
    "frame_mask" (B, T) bool}."""
    z = self.feature_extractor(audio)
    b, t, _ = z.shape
    valid = jnp.ones((b, t), bool) if audio_mask is None else self.frame_mask(audio_mask, t)
    normed = self.feature_layer_norm(z)
    x = self.feature_dropout(self.feature_projection(normed), deterministic=deterministic, rngs=rngs)
    if mask_time_indices is not None:
      x = jnp.where(mask_time_indices[..., None], self.masked_spec_embed[...].astype(x.dtype), x)
    x = jnp.where(valid[..., None], x, 0)  # padded frames enter the position convolution as zeros
    x = x + self.pos_conv_embed(x)
    if not self.stable_layer_norm:
      x = self.encoder_layer_norm(x)
    x = self.encoder_dropout(x, deterministic=deterministic, rngs=rngs)
    attn_mask = valid[:, None, None, :]
    for layer in self.layers:
      y = layer(x, attn_mask, deterministic=deterministic, rngs=rngs)
      if not deterministic and self.layerdrop > 0:  # LayerDrop (Fan et al., 2019): skip the whole layer
        x = jnp.where(jax.random.uniform(rngs["dropout"]()) < self.layerdrop, x, y)
      else:
        x = y
    if self.stable_layer_norm:
      x = self.encoder_layer_norm(x)
    return {"context": x, "extract_features": normed, "conv_features": z, "frame_mask": valid}

  def __call__(self, audio, audio_mask=None, *, mask_time_indices=None, train: bool = False, rngs=None):
    deterministic = not train
    x = self.encode(audio, audio_mask, mask_time_indices=mask_time_indices, deterministic=deterministic,
                    rngs=rngs)["context"]
    if self.lm_head is None:
      return x
    return self.lm_head(self.final_dropout(x, deterministic=deterministic, rngs=rngs))

  def pretrain(self, audio, audio_mask=None, *, mask_time_indices, train: bool = False, rngs=None,
               gumbel_rng=None):
    """{"projected_states" (B, T, P), "projected_quantized_states" (B, T, P), "perplexity",
    "conv_features", "frame_mask"}; the quantiser samples (Gumbel) when `gumbel_rng` is given."""
    if self.quantizer is None:
      raise ValueError("this wav2vec 2.0 has no quantiser (quantizer=False); build it with quantizer=True")
    deterministic = not train
    out = self.encode(audio, audio_mask, mask_time_indices=mask_time_indices, deterministic=deterministic, rngs=rngs)
    features = self.quantizer_dropout(out["extract_features"], deterministic=deterministic, rngs=rngs)
    codes, perplexity = self.quantizer(features, mask_time_indices, gumbel_rng=gumbel_rng)
    return {"projected_states": self.project_hid(out["context"]),
            "projected_quantized_states": self.project_q(codes.astype(out["context"].dtype)),
            "perplexity": perplexity, "conv_features": out["conv_features"], "frame_mask": out["frame_mask"]}


def gumbel_temperature(step, start: float = 2.0, end: float = 0.5, decay: float = 0.999995):
  """The quantiser's temperature after `step` updates: max(start · decay^step, end) (§4.2)."""
  return jnp.maximum(start * jnp.power(decay, jnp.asarray(step, jnp.float32)), end)


for _variant, _settings in VARIANTS.items():
  register(f"wav2vec2_{_variant}", Wav2Vec2, **_settings)
  register(f"wav2vec2_{_variant}_ctc", Wav2Vec2, **_settings, quantizer=False, vocab_size=32)


def forward_flops(model: Wav2Vec2, num_samples: int = 250_000, *, count_padding: bool = True) -> float:
  """FLOPs of one forward pass on one waveform of num_samples samples (default: the paper's 15.6 s crop),
  element-wise work included (models/conv_flops.py): the feature encoder's convolutions and norms, the
  position convolution, the transformer; with the quantiser the pre-training forward (the quantiser's
  logits, its codeword lookup and both projections; the Gumbel noise of training is left out), else the
  CTC head. The contrastive loss's similarities (tasks/wav2vec2.py) are left out."""
  audio = jax.ShapeDtypeStruct((1, num_samples), jnp.float32)
  if model.quantizer is None:
    return conv_flops.traced_flops(lambda m, a: m(a), model, audio, count_padding=count_padding)
  mask = jax.ShapeDtypeStruct((1, model.num_frames(num_samples)), jnp.bool_)
  return conv_flops.traced_flops(lambda m, a, k: m.pretrain(a, mask_time_indices=k), model, audio, mask,
                                 count_padding=count_padding)


EMBEDDINGS = ("masked_spec_embed", "quantizer.codevectors")  # the mask vector and the codebooks
