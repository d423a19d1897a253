"""CLIP for video: CLIP4Clip (Luo et al., 2022) and ActionCLIP (Wang et al., 2021).

Both encode a video as its frames' CLIP image features (models/clip.py's `encode_image` on every
frame, projection included) and then summarise the T frame features; the text tower is CLIP's. The
model is a `CLIP` with the temporal part added (`VideoCLIP`), so a CLIP checkpoint's params land on
it by name (`init_from` a CLIP run, `init_skip` the temporal params).

`temporal` picks the summary ("similarity calculator" in CLIP4Clip §3.2, "fusion" in ActionCLIP):
  "single_frame"  the middle frame's feature only (a baseline that cannot see motion);
  "mean"          parameter-free mean pooling of the frame features (CLIP4Clip "meanP");
  "transformer"   frame position embeddings added, a pre-LN transformer over the T frame features,
                  its output added back to its input, then the mean (CLIP4Clip "seqTransf", ActionCLIP
                  "Transf"); `TemporalTransformer`, the same computation as HF X-CLIP's
                  `XCLIPMultiframeIntegrationTransformer` (its "MIT");
  "lstm"          a one-layer LSTM over the frames, added back to its input, then the mean
                  (CLIP4Clip "seqLSTM"; torch.nn.LSTM's gates and layout);
  "tight"         no video vector: text and frames meet in a joint transformer (CLIP4Clip "tightTransf",
                  `TightTransformer`): the caption's feature as one token followed by the T frame
                  features, plus type and position embeddings, pre-LN blocks, a pooler (LayerNorm,
                  Dense, QuickGELU) on the first token and a linear layer to one matching score.
                  Every text-video pair is one pass (`tight_scores`).

`normalize_frames` (CLIP4Clip's rule): each frame's output is L2-normalised before the mean; ActionCLIP
averages the raw outputs. Every video vector is L2-normalised before the cosine similarity.

  model = models.create("clip4clip_seqtransf_vit_base_patch32")
  frames = model.encode_frames(videos)      # videos (B, T, H, W, C) normalised → (B, T, embed_dim)
  video = model.pool_frames(frames)         # (B, embed_dim); not for temporal="tight"
  text = model.encode_text(tokens)          # (B, embed_dim)
  scores = model.tight_scores(text, frames) # (B_text, B_video), temporal="tight" only

Registered (ViT-B/32 towers, the papers' main backbone): clip4clip_{meanp,seqlstm,seqtransf,tight}_vit_base_patch32
(the seqTransf / tight transformers: 4 layers of width 512, 8 heads, 128 frame positions, as CLIP4Clip's
`cross_num_hidden_layers=4` and cross config), actionclip_{meanp,transf}_vit_base_patch32 (the fusion
transformer: 6 layers of width 512, 8 heads, 8 frame positions, ActionCLIP's visual prompt).
"""

import math

import jax
import jax.numpy as jnp
from flax import nnx

from papers_jax.errors import ConfigError
from papers_jax.models import clip, vit
from papers_jax.models.registry import OPENAI_CLIP_MEAN, OPENAI_CLIP_STD, Preprocessing, register
from papers_jax.models.vit import Block
from papers_jax.nn import LayerNorm, param
from papers_jax.nn.linear import Dense

TEMPORAL = ("single_frame", "mean", "transformer", "lstm", "tight")
_INIT_STD = 0.02  # both papers' reference code draws their new weights from N(0, 0.02²)


def quick_gelu(x):
  return x * jax.nn.sigmoid(1.702 * x)


def _blocks(width, layers, heads, mlp_ratio, norm_eps, attention_impl, kw, rngs):
  blocks = nnx.List([Block(width, heads, mlp_ratio=mlp_ratio, norm_eps=norm_eps, act="quick_gelu",
                           attention_impl=attention_impl, **kw) for _ in range(layers)])
  for block in blocks:  # N(0, 0.02²) kernels, as the references' init_weights
    for dense in (block.attn.qkv, block.attn.proj, block.mlp.fc1, block.mlp.fc2):
      clip._renormal(dense.kernel, _INIT_STD, rngs)
  return blocks


class TemporalTransformer(nnx.Module):
  """Frame features (B, T, D) → blocks(x + frame positions) + x, (B, T, D). HF X-CLIP's MIT computes the
  same (its `last_hidden_state`; its pooled output is the mean over frames)."""

  def __init__(self, width: int, layers: int, num_heads: int, *, max_frames: int, mlp_ratio: float = 4.0,
               norm_eps: float = 1e-5, attention_impl: str | None = None, dtype=None, param_dtype=jnp.float32,
               rngs: nnx.Rngs):
    if width % num_heads:
      raise ConfigError(f"temporal transformer width {width} is not divisible by its {num_heads} heads")
    kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
    self.pos_embed = param(rngs, nnx.initializers.normal(_INIT_STD), (max_frames, width), param_dtype,
                           (None, "embed"))
    self.blocks = _blocks(width, layers, num_heads, mlp_ratio, norm_eps, attention_impl, kw, rngs)

  def __call__(self, x, *, deterministic=None, rngs=None):
    t = x.shape[1]
    if t > self.pos_embed.shape[0]:
      raise ValueError(f"{t} frames exceed the {self.pos_embed.shape[0]} frame positions (max_frames)")
    y = x + self.pos_embed[:t].astype(x.dtype)
    for block in self.blocks:
      y = block(y, deterministic=deterministic, rngs=rngs)
    return y + x


class LSTM(nnx.Module):
  """One-layer unidirectional LSTM, torch.nn.LSTM's gates (i, f, g, o) and two biases:
  (B, T, D) → (B, T, H), zero initial state."""

  def __init__(self, in_features: int, hidden: int, *, dtype=None, param_dtype=jnp.float32, rngs: nnx.Rngs):
    kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
    init = nnx.initializers.uniform(2 * hidden ** -0.5)  # torch's U(−1/√H, 1/√H), shifted below
    self.hidden = hidden
    self.ih = Dense(in_features, 4 * hidden, axes=("embed", "mlp"), kernel_init=init, bias_init=init, **kw)
    self.hh = Dense(hidden, 4 * hidden, axes=("embed", "mlp"), kernel_init=init, bias_init=init, **kw)
    for p in (self.ih.kernel, self.ih.bias, self.hh.kernel, self.hh.bias):
      p[...] = p[...] - hidden ** -0.5

  def __call__(self, x):
    b = x.shape[0]
    inputs = self.ih(x)                                                  # (B, T, 4H), all steps at once
    h0 = jnp.zeros((b, self.hidden), inputs.dtype)

    def step(carry, gates_x):
      h, c = carry
      i, f, g, o = jnp.split(gates_x + self.hh(h), 4, axis=-1)
      c = jax.nn.sigmoid(f) * c + jax.nn.sigmoid(i) * jnp.tanh(g)
      h = jax.nn.sigmoid(o) * jnp.tanh(c)
      return (h, c), h

    _, hs = jax.lax.scan(step, (h0, h0), jnp.swapaxes(inputs, 0, 1))
    return jnp.swapaxes(hs, 0, 1)


class TightTransformer(nnx.Module):
  """CLIP4Clip's tight calculator: text tokens (N, L, D) and frames (N, T, D) of N pairs → (N,) scores."""

  def __init__(self, width: int, layers: int, num_heads: int, *, max_positions: int, mlp_ratio: float = 4.0,
               norm_eps: float = 1e-5, attention_impl: str | None = None, dtype=None, param_dtype=jnp.float32,
               rngs: nnx.Rngs):
    if width % num_heads:
      raise ConfigError(f"tight transformer width {width} is not divisible by its {num_heads} heads")
    kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
    normal = nnx.initializers.normal(_INIT_STD)
    self.type_embed = param(rngs, normal, (2, width), param_dtype, (None, "embed"))
    self.pos_embed = param(rngs, normal, (max_positions, width), param_dtype, (None, "embed"))
    self.blocks = _blocks(width, layers, num_heads, mlp_ratio, norm_eps, attention_impl, kw, rngs)
    self.pool_norm = LayerNorm(width, eps=norm_eps, **kw)
    self.pool_dense = Dense(width, width, axes=("embed", "embed"), kernel_init=normal, **kw)
    self.score = Dense(width, 1, axes=("embed", None), kernel_init=normal, **kw)

  def __call__(self, text, frames, *, deterministic=None, rngs=None):
    x = jnp.concatenate([text, frames.astype(text.dtype)], axis=1)
    n = x.shape[1]
    if n > self.pos_embed.shape[0]:
      raise ValueError(f"{n} text and frame tokens exceed the {self.pos_embed.shape[0]} positions")
    types = jnp.concatenate([jnp.zeros(text.shape[1], jnp.int32), jnp.ones(frames.shape[1], jnp.int32)])
    x = x + (self.pos_embed[:n] + jnp.take(self.type_embed[...], types, axis=0)).astype(x.dtype)
    for block in self.blocks:
      x = block(x, deterministic=deterministic, rngs=rngs)
    pooled = quick_gelu(self.pool_dense(self.pool_norm(x)[:, 0]))
    return self.score(pooled)[:, 0].astype(jnp.float32)


class VideoCLIP(clip.CLIP):
  """CLIP with a temporal summary of per-frame features (see the module docstring). Every CLIP argument
  is accepted; `temporal_width` is the joint space (embed_dim): the calculators act on projected features."""

  def __init__(self, *, temporal: str = "mean", temporal_layers: int = 4, temporal_heads: int | None = None,
               temporal_mlp_ratio: float = 4.0, max_frames: int = 128, normalize_frames: bool = True, **kwargs):
    if temporal not in TEMPORAL:
      raise ConfigError(f"temporal must be one of {TEMPORAL}, got {temporal!r}")
    super().__init__(**kwargs)
    rngs = kwargs["rngs"]
    kw = dict(dtype=kwargs.get("dtype"), param_dtype=kwargs.get("param_dtype", jnp.float32), rngs=rngs)
    width, heads = self.embed_dim, temporal_heads or max(1, self.embed_dim // 64)
    opts = dict(mlp_ratio=temporal_mlp_ratio, norm_eps=kwargs.get("norm_eps", 1e-5),
                attention_impl=kwargs.get("attention_impl"), **kw)
    self.temporal, self.normalize_frames = temporal, bool(normalize_frames)
    self.temporal_transformer = nnx.data(
        TemporalTransformer(width, temporal_layers, heads, max_frames=max_frames, **opts)
        if temporal == "transformer" else None)
    self.lstm = nnx.data(LSTM(width, width, **kw) if temporal == "lstm" else None)
    self.tight = nnx.data(TightTransformer(width, temporal_layers, heads, max_positions=max_frames, **opts)
                          if temporal == "tight" else None)

  def encode_frames(self, videos, *, train: bool | None = None, rngs=None):
    """Videos (B, T, H, W, C), normalised → (B, T, embed_dim) float32 per-frame image features."""
    if videos.ndim != 5:
      raise ValueError(f"videos must be (batch, frames, height, width, channels), got shape {videos.shape}")
    b, t = videos.shape[:2]
    if self.temporal == "single_frame":  # the only frame it reads; the others never enter the image tower
      videos, t = videos[:, (t - 1) // 2][:, None], 1
    features = self.encode_image(videos.reshape((b * t,) + videos.shape[2:]), train=train, rngs=rngs)
    return features.reshape(b, t, -1)

  def pool_frames(self, frames, *, train: bool | None = None, rngs=None):
    """(B, T, embed_dim) frame features → (B, embed_dim) video features (not L2-normalised)."""
    if self.temporal == "tight":
      raise ValueError("temporal='tight' has no video vector; score text-video pairs with tight_scores")
    deterministic = None if train is None else not train
    if self.temporal == "transformer":
      frames = self.temporal_transformer(frames, deterministic=deterministic, rngs=rngs)
    elif self.temporal == "lstm":
      frames = self.lstm(frames) + frames
    frames = frames.astype(jnp.float32)
    if self.normalize_frames:
      frames = frames * jax.lax.rsqrt(jnp.sum(frames * frames, axis=-1, keepdims=True))
    return frames.mean(axis=1)

  def encode_video(self, videos, *, train: bool | None = None, rngs=None):
    return self.pool_frames(self.encode_frames(videos, train=train, rngs=rngs), train=train, rngs=rngs)

  def tight_scores(self, text_features, frames, *, train: bool | None = None, rngs=None):
    """(N_text, N_video) matching scores of every pair: text features (N_text, embed_dim) as one token,
    frames (N_video, T, embed_dim); one joint pass per pair."""
    nt, nv = text_features.shape[0], frames.shape[0]
    text = jnp.broadcast_to(text_features[:, None, None], (nt, nv, 1, text_features.shape[-1]))
    video = jnp.broadcast_to(frames[None], (nt,) + frames.shape)
    scores = self.tight(text.reshape((nt * nv, 1, -1)), video.reshape((nt * nv,) + frames.shape[1:]),
                        deterministic=None if train is None else not train, rngs=rngs)
    return scores.reshape(nt, nv)

  def video_text_logits(self, videos, tokens, *, train: bool | None = None, rngs=None):
    """(N_video, N_text) logits: scaled cosines, or the tight scores."""
    frames = self.encode_frames(videos, train=train, rngs=rngs)
    text = self.encode_text(tokens, train=train, rngs=rngs)
    if self.temporal == "tight":
      return self.tight_scores(text, frames, train=train, rngs=rngs).T
    video = self.pool_frames(frames, train=train, rngs=rngs)
    video = video * jax.lax.rsqrt(jnp.sum(video * video, axis=-1, keepdims=True))
    text = text * jax.lax.rsqrt(jnp.sum(text * text, axis=-1, keepdims=True))
    return self.temperature_scale() * video @ text.T


_B32 = dict(clip.VARIANTS["clip_vit_base_patch32"])
VARIANTS = {
    "clip4clip_meanp_vit_base_patch32": dict(_B32, temporal="mean"),
    "clip4clip_seqlstm_vit_base_patch32": dict(_B32, temporal="lstm"),
    "clip4clip_seqtransf_vit_base_patch32": dict(_B32, temporal="transformer", temporal_layers=4, max_frames=128),
    "clip4clip_tight_vit_base_patch32": dict(_B32, temporal="tight", temporal_layers=4, max_frames=128),
    "actionclip_meanp_vit_base_patch32": dict(_B32, temporal="mean", normalize_frames=False),
    "actionclip_transf_vit_base_patch32": dict(_B32, temporal="transformer", temporal_layers=6, max_frames=8,
                                               normalize_frames=False),
}
for _name, _row in VARIANTS.items():
  register(_name, VideoCLIP, **_row, preprocessing=Preprocessing(224, OPENAI_CLIP_MEAN, OPENAI_CLIP_STD, crop_pct=1.0))


def forward_flops(model, *, num_frames: int = 8, count_padding: bool = True) -> float:
  """Matmul FLOPs per (video of `num_frames` frames, caption) pair: the image tower on each frame read,
  the text tower, and the temporal part (for "tight", one joint pass: the pair's own score)."""
  text_and_image = clip.forward_flops(model, count_padding=count_padding)
  image = text_and_image - _text_flops(model)
  frames = 1 if model.temporal == "single_frame" else num_frames
  flops = frames * image + _text_flops(model)
  d = model.embed_dim
  if model.temporal == "transformer":
    blocks = model.temporal_transformer.blocks
    flops += sum(vit.block_flops(frames, d, b.mlp.fc1.kernel.shape[1]) for b in blocks)
  elif model.temporal == "lstm":
    flops += frames * 2 * (d * 4 * d + d * 4 * d)
  elif model.temporal == "tight":
    flops += sum(vit.block_flops(frames + 1, d, b.mlp.fc1.kernel.shape[1]) for b in model.tight.blocks)
    flops += 2 * d * d + 2 * d
  return float(flops)


def _text_flops(model) -> float:
  text = model.text
  n, d = text.context_length, text.token_embed.shape[1]
  return float(sum(vit.block_flops(n, d, b.mlp.fc1.kernel.shape[1]) for b in text.blocks) + 2 * d * model.embed_dim)


EMBEDDINGS = clip.EMBEDDINGS + ("temporal_transformer.pos_embed", "tight.pos_embed", "tight.type_embed")
