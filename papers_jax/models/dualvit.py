"""Dual-ViT (Yao et al., TPAMI 2023, "Dual Vision Transformer").

Two pathways over four stages (strides 4, 8, 16, 32):
  - the pixel pathway: the token map of each stage, as in a pyramid ViT (PVTv2-style FFN with a 3×3
    depthwise convolution between its two linears);
  - the semantic pathway: a few compressed tokens (M = 64 at 224²) that summarise the image. At stage 1
    they are made by pooling the map (k × k average, stride k) and letting M learned queries attend to
    the pooled tokens; a squeeze-excitation over {attended, pooled} mixes the two (a softmax over the pair
    per channel). Between stages a linear + LayerNorm carries them to the next width.
In stages 1-2 (`DualBlock`), the two pathways interact in each block (`dual_attention`): the semantic
tokens first attend among themselves, then to the pixel tokens (their queries, the pixels' keys and values),
then pass an MLP; the pixel tokens then attend to the updated semantic tokens only (M keys, so attention costs
N·M, not N²). Every semantic update carries a layer scale (init 1e-6). In stages 3-4 (`MergeBlock`) the
semantic tokens are appended to the pixel tokens and one self-attention runs over both; the FFN is the
depthwise one for pixels and a plain MLP (ratio 2) for the semantic tokens. The head: the mean of all tokens
as a class token, one class-attention block (CaiT's), LayerNorm, linear.

Variants (`VARIANTS`): S / B / L, widths, heads, MLP ratios and depths as the official code's
`dualvit_{s,b,l}` (stage 3's odd blocks use its MLP ratio minus one, and the class block ratio 2, as that
code does). `token_label`
adds the official token-labeling auxiliary head (a linear classifier on every final pixel token); the
prediction is then the class head plus half the maximum over the tokens of the auxiliary logits, as the
official code's evaluation. The official models are built with it (their parameter counts include it).
Token labeling's training (dense targets from a pretrained annotator, MixToken) is not implemented: with
`token_label=True` training uses the same prediction.

Where we had to choose (the paper leaves it to its code): LayerNorm epsilon 1e-6 in the blocks, between
stages and in the head, 1e-5 in the stem, downsampling, semantic embeddings and inside the dual attention
(torch's default, as the official code); the stage-1 query count is (img_size / 4 / semantic_pool)², 64 at
224² with the official 7 × 7 pool (the official code resizes its 8 × 8 query grid bicubically for other
inputs; here a model is built for one input size and names a mismatch). Init as the official code: trunc-normal(0.02) linears and queries,
He-normal(fan-out / groups) convolutions, zero biases, layer scales 1e-6.
"""

import math

import jax
import jax.numpy as jnp
from flax import nnx

from papers_jax.core import sharding
from papers_jax.errors import ConfigError
from papers_jax.models import conv_flops, intermediates
from papers_jax.models.registry import IMAGENET_MEAN, IMAGENET_STD, Preprocessing, register
from papers_jax.nn import LayerNorm
from papers_jax.nn.attention import dot_product_attention
from papers_jax.nn.conv import Conv
from papers_jax.nn.drop import DropPath
from papers_jax.nn.linear import Dense, param
from papers_jax.nn.norms import BatchNorm

# name: stem width, stage widths, heads, MLP ratios, depths (the official dualvit_{s,b,l}).
VARIANTS = {
    "dualvit_s": dict(stem_width=32, dims=(64, 128, 320, 448), num_heads=(2, 4, 10, 14), mlp_ratios=(8, 8, 4, 3),
                      depths=(3, 4, 6, 3)),
    "dualvit_b": dict(stem_width=64, dims=(64, 128, 320, 512), num_heads=(2, 4, 10, 16), mlp_ratios=(8, 8, 4, 3),
                      depths=(3, 4, 15, 3)),
    "dualvit_l": dict(stem_width=64, dims=(96, 192, 384, 512), num_heads=(3, 6, 12, 16), mlp_ratios=(8, 8, 4, 3),
                      depths=(3, 6, 21, 3)),
}
# Millions of parameters in the paper's Table 1 (and the official README).
PAPER_PARAMS_M = {"dualvit_s": 25.1, "dualvit_b": 42.6, "dualvit_l": 73.0}
SEPARATE_STAGES = 2  # stages 1-2 keep the pathways apart (DualBlock), 3-4 merge them (MergeBlock)

TRUNC_NORMAL = nnx.initializers.truncated_normal(0.02)
EPS_BLOCK, EPS_TORCH = 1e-6, 1e-5


def _conv_init(groups: int):
  """N(0, 2 / fan_out) with fan_out = k·k·out / groups (the official init; a depthwise kernel's fan-out is k·k)."""

  def init(key, shape, dtype=jnp.float32):
    kh, kw, _, out = shape
    return jax.random.normal(key, shape, dtype) * math.sqrt(2.0 / (kh * kw * out / groups))

  return init


def _dense(din, dout, kw, axes=("embed", "mlp")):
  return Dense(din, dout, axes=axes, kernel_init=TRUNC_NORMAL, **kw)


def _heads(x, num_heads):
  """(B, L, C) → (B, L, heads, C / heads)."""
  return x.reshape(x.shape[:-1] + (num_heads, x.shape[-1] // num_heads))


def _attend(q, k, v, num_heads):
  """Multi-head attention of q (B, Lq, C) over k, v (B, Lk, C), scale head_dim^-1/2; (B, Lq, C)."""
  out = dot_product_attention(_heads(q, num_heads), _heads(k, num_heads), _heads(v, num_heads))
  return out.reshape(q.shape)


class LayerScale(nnx.Module):
  def __init__(self, dim: int, init: float = 1e-6, *, param_dtype=jnp.float32, rngs: nnx.Rngs):
    self.scale = param(rngs, nnx.initializers.constant(init), (dim,), param_dtype, ("norm",))

  def __call__(self, x):
    return x * self.scale[...].astype(x.dtype)


class DepthwiseFFN(nnx.Module):
  """fc1 → 3×3 depthwise conv on the token map → GELU → fc2 (PVTv2's FFN), on (B, H, W, C) maps."""

  def __init__(self, dim: int, hidden: int, *, dtype=None, param_dtype=jnp.float32, rngs: nnx.Rngs):
    kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
    self.fc1 = _dense(dim, hidden, kw)
    self.dwconv = Conv(hidden, hidden, 3, groups=hidden, use_bias=True, kernel_init=_conv_init(hidden), **kw)
    self.fc2 = _dense(hidden, dim, kw, axes=("mlp", "embed"))

  def __call__(self, x):
    return self.fc2(jax.nn.gelu(self.dwconv(self.fc1(x)), approximate=False))


class DualAttention(nnx.Module):
  """The stage-1/2 token mixer: returns (the pixel tokens' attention output, the updated semantic tokens)."""

  def __init__(self, dim: int, num_heads: int, *, drop_path: float = 0.0, dtype=None, param_dtype=jnp.float32,
               rngs: nnx.Rngs):
    if dim % num_heads:
      raise ConfigError(f"Dual-ViT width {dim} is not divisible by its {num_heads} heads")
    kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
    self.num_heads = num_heads
    self.q, self.kv, self.proj = _dense(dim, dim, kw), _dense(dim, 2 * dim, kw), _dense(dim, dim, kw)
    # The semantic tokens: self-attention (its own LayerNorm + qkv), cross-attention to the pixels, MLP.
    self.qkv_proxy_norm = LayerNorm(dim, eps=EPS_TORCH, **kw)
    self.qkv_proxy = _dense(dim, 3 * dim, kw)
    self.q_proxy_norm = LayerNorm(dim, eps=EPS_TORCH, **kw)
    self.q_proxy, self.kv_proxy = _dense(dim, dim, kw), _dense(dim, 2 * dim, kw)
    self.mlp_proxy_norm = LayerNorm(dim, eps=EPS_TORCH, **kw)
    self.mlp_proxy_fc1, self.mlp_proxy_fc2 = _dense(dim, 4 * dim, kw), _dense(4 * dim, dim, kw, ("mlp", "embed"))
    self.proxy_norm = LayerNorm(dim, eps=EPS_TORCH, **kw)  # the semantic tokens as the pixels' keys / values
    self.gamma1, self.gamma2, self.gamma3 = (LayerScale(dim, param_dtype=param_dtype, rngs=rngs) for _ in range(3))
    self.drop_path = DropPath(drop_path)

  def __call__(self, x, semantics, *, deterministic=None, rngs=None):
    """x: normalised pixel tokens (B, N, C); semantics: (B, M, C)."""
    kw = dict(deterministic=deterministic, rngs=rngs)
    h = self.num_heads
    q, k, v = jnp.split(self.qkv_proxy(self.qkv_proxy_norm(semantics)), 3, axis=-1)
    semantics = semantics + self.drop_path(self.gamma1(_attend(q, k, v, h)), **kw)
    k, v = jnp.split(self.kv_proxy(x), 2, axis=-1)
    semantics = semantics + self.drop_path(self.gamma2(_attend(self.q_proxy(self.q_proxy_norm(semantics)), k, v, h)),
                                           **kw)
    mlp = self.mlp_proxy_fc2(jax.nn.relu(self.mlp_proxy_fc1(self.mlp_proxy_norm(semantics))))
    semantics = semantics + self.drop_path(self.gamma3(mlp), **kw)
    k, v = jnp.split(self.kv(self.proxy_norm(semantics)), 2, axis=-1)
    return self.proj(_attend(self.q(x), k, v, h)), semantics


class DualBlock(nnx.Module):
  def __init__(self, dim: int, num_heads: int, mlp_ratio: float, *, drop_path: float = 0.0, dtype=None,
               param_dtype=jnp.float32, rngs: nnx.Rngs):
    kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
    self.norm1, self.norm2 = LayerNorm(dim, eps=EPS_BLOCK, **kw), LayerNorm(dim, eps=EPS_BLOCK, **kw)
    self.attn = DualAttention(dim, num_heads, drop_path=drop_path, **kw)
    self.mlp = DepthwiseFFN(dim, int(dim * mlp_ratio), **kw)
    self.gamma1 = LayerScale(dim, param_dtype=param_dtype, rngs=rngs)
    self.gamma2 = LayerScale(dim, param_dtype=param_dtype, rngs=rngs)
    self.drop_path = DropPath(drop_path)

  def __call__(self, x, semantics, *, deterministic=None, rngs=None):
    """x: (B, H, W, C) pixel map; semantics (B, M, C)."""
    kw = dict(deterministic=deterministic, rngs=rngs)
    b, hh, ww, c = x.shape
    out, semantics = self.attn(self.norm1(x).reshape(b, hh * ww, c), semantics, **kw)
    x = x + self.drop_path(self.gamma1(out.reshape(x.shape)), **kw)
    x = x + self.drop_path(self.gamma2(self.mlp(self.norm2(x))), **kw)
    return sharding.constrain(x, ("act_batch", None, None, "act_emb")), semantics


class MergeBlock(nnx.Module):
  """Stages 3-4: one self-attention over [pixel tokens; semantic tokens]; the FFN per pathway."""

  def __init__(self, dim: int, num_heads: int, mlp_ratio: float, *, drop_path: float = 0.0, dtype=None,
               param_dtype=jnp.float32, rngs: nnx.Rngs):
    if dim % num_heads:
      raise ConfigError(f"Dual-ViT width {dim} is not divisible by its {num_heads} heads")
    kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
    self.num_heads = num_heads
    self.norm1, self.norm2 = LayerNorm(dim, eps=EPS_BLOCK, **kw), LayerNorm(dim, eps=EPS_BLOCK, **kw)
    self.q, self.kv, self.proj = _dense(dim, dim, kw), _dense(dim, 2 * dim, kw), _dense(dim, dim, kw)
    self.mlp = DepthwiseFFN(dim, int(dim * mlp_ratio), **kw)
    self.mlp_proxy_fc1, self.mlp_proxy_fc2 = _dense(dim, 2 * dim, kw), _dense(2 * dim, dim, kw, ("mlp", "embed"))
    self.gamma1 = LayerScale(dim, param_dtype=param_dtype, rngs=rngs)
    self.gamma2 = LayerScale(dim, param_dtype=param_dtype, rngs=rngs)
    self.drop_path = DropPath(drop_path)

  def __call__(self, x, semantics, *, deterministic=None, rngs=None):
    kw = dict(deterministic=deterministic, rngs=rngs)
    b, hh, ww, c = x.shape
    n = hh * ww
    tokens = jnp.concatenate([x.reshape(b, n, c), semantics], axis=1)
    y = self.norm1(tokens)
    k, v = jnp.split(self.kv(y), 2, axis=-1)
    tokens = tokens + self.drop_path(self.gamma1(self.proj(_attend(self.q(y), k, v, self.num_heads))), **kw)
    y = self.norm2(tokens)
    pixels = self.mlp(y[:, :n].reshape(b, hh, ww, c)).reshape(b, n, c)
    proxy = self.mlp_proxy_fc2(jax.nn.gelu(self.mlp_proxy_fc1(y[:, n:]), approximate=False))
    tokens = tokens + self.drop_path(self.gamma2(jnp.concatenate([pixels, proxy], axis=1)), **kw)
    x = sharding.constrain(tokens[:, :n].reshape(b, hh, ww, c), ("act_batch", None, None, "act_emb"))
    return x, tokens[:, n:]


class ConvNormAct(nnx.Module):
  """Conv (no bias) → BatchNorm → ReLU (the stem's layers)."""

  def __init__(self, cin: int, cout: int, k: int, stride: int, *, dtype=None, param_dtype=jnp.float32, rngs):
    kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
    self.conv = Conv(cin, cout, k, stride=stride, kernel_init=_conv_init(1), **kw)
    self.bn = BatchNorm(cout, **kw)

  def __call__(self, x, *, train: bool):
    return jax.nn.relu(self.bn(self.conv(x), train=train))


class Embed(nnx.Module):
  """A 3×3 stride-2 convolution with bias, then LayerNorm (the stem's projection and the downsampling)."""

  def __init__(self, cin: int, cout: int, *, dtype=None, param_dtype=jnp.float32, rngs: nnx.Rngs):
    kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
    self.conv = Conv(cin, cout, 3, stride=2, use_bias=True, kernel_init=_conv_init(1), **kw)
    self.norm = LayerNorm(cout, eps=EPS_TORCH, **kw)

  def __call__(self, x):
    return self.norm(self.conv(x))


class SemanticInit(nnx.Module):
  """Stage 1's semantic tokens from the stem's map: M learned queries attend (one head, scale C^-1/2) to the
  pooled map; a squeeze-excitation weighs the attended and the pooled tokens per channel."""

  def __init__(self, dim: int, num_tokens: int, pool: int, *, dtype=None, param_dtype=jnp.float32,
               rngs: nnx.Rngs):
    kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
    self.pool = pool
    self.queries = param(rngs, TRUNC_NORMAL, (num_tokens, dim), param_dtype, (None, "embed"))
    self.query_norm = LayerNorm(dim, eps=EPS_TORCH, **kw)
    self.query_proj = _dense(dim, dim, kw)
    self.kv = _dense(dim, 2 * dim, kw)
    self.se_fc1, self.se_fc2 = _dense(dim, dim, kw), _dense(dim, 2 * dim, kw)
    self.norm = LayerNorm(dim, eps=EPS_TORCH, **kw)

  def __call__(self, x):
    b, _, _, c = x.shape
    p = self.pool
    pooled = jax.lax.reduce_window(x, 0.0, jax.lax.add, (1, p, p, 1), (1, p, p, 1), "VALID") / (p * p)
    pooled = pooled.reshape(b, -1, c)
    if pooled.shape[1] != self.queries.shape[0]:
      raise ConfigError(f"Dual-ViT: the {p}×{p} pool of the stride-4 map gives {pooled.shape[1]} tokens, but the model "
                        f"has {self.queries.shape[0]} semantic queries: build it with img_size = the input size")
    k, v = jnp.split(self.kv(pooled), 2, axis=-1)
    q = self.query_proj(self.query_norm(self.queries[...].astype(x.dtype)))
    logits = jnp.einsum("mc,bnc->bmn", q, k).astype(jnp.float32) * c ** -0.5
    attended = jnp.einsum("bmn,bnc->bmc", jax.nn.softmax(logits, axis=-1).astype(v.dtype), v)
    both = jnp.stack([attended, pooled], axis=2)  # (B, M, 2, C)
    weights = self.se_fc2(jax.nn.relu(self.se_fc1(both.sum(2).mean(1))))  # (B, 2C)
    weights = jax.nn.softmax(weights.reshape(b, 1, 2, c).astype(jnp.float32), axis=2).astype(x.dtype)
    return self.norm((both * weights).sum(2))


class SemanticEmbed(nnx.Module):
  """Linear + LayerNorm: the semantic tokens into the next stage's width."""

  def __init__(self, cin: int, cout: int, *, dtype=None, param_dtype=jnp.float32, rngs: nnx.Rngs):
    kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
    self.proj = _dense(cin, cout, kw)
    self.norm = LayerNorm(cout, eps=EPS_TORCH, **kw)

  def __call__(self, x):
    return self.norm(self.proj(x))


class ClassBlock(nnx.Module):
  """CaiT's class-attention block: the class token attends to all tokens, then an MLP; returns the class token."""

  def __init__(self, dim: int, num_heads: int, mlp_ratio: float, *, dtype=None, param_dtype=jnp.float32,
               rngs: nnx.Rngs):
    kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
    self.num_heads = num_heads
    self.norm1, self.norm2 = LayerNorm(dim, eps=EPS_BLOCK, **kw), LayerNorm(dim, eps=EPS_BLOCK, **kw)
    self.q, self.kv, self.proj = _dense(dim, dim, kw), _dense(dim, 2 * dim, kw), _dense(dim, dim, kw)
    self.fc1, self.fc2 = _dense(dim, int(dim * mlp_ratio), kw), _dense(int(dim * mlp_ratio), dim, kw, ("mlp", "embed"))

  def __call__(self, tokens):
    """tokens: (B, 1 + L, C) with the class token first → the whole sequence with the class token updated."""
    y = self.norm1(tokens)
    k, v = jnp.split(self.kv(y), 2, axis=-1)
    cls = tokens[:, :1] + self.proj(_attend(self.q(y[:, :1]), k, v, self.num_heads))
    cls = cls + self.fc2(jax.nn.gelu(self.fc1(self.norm2(cls)), approximate=False))
    return jnp.concatenate([cls, tokens[:, 1:]], axis=1)


class DualViT(nnx.Module):
  """Dual-ViT classifier. `model(images)` takes NHWC float images of `img_size` and returns float32 logits."""

  def __init__(self, *, stem_width: int = 32, dims=(64, 128, 320, 448), num_heads=(2, 4, 10, 14),
               mlp_ratios=(8, 8, 4, 3), depths=(3, 4, 6, 3), class_mlp_ratio: float = 2.0, in_chans: int = 3,
               num_classes: int = 1000,
               img_size: int = 224, semantic_pool: int = 7, drop_path_rate: float = 0.0, token_label: bool = True,
               dtype=None, param_dtype=jnp.float32, rngs: nnx.Rngs):
    if not len(dims) == len(num_heads) == len(mlp_ratios) == len(depths) == 4:
      raise ConfigError(f"Dual-ViT has four stages: dims {dims}, num_heads {num_heads}, mlp_ratios {mlp_ratios}, "
                        f"depths {depths}")
    side = -(-img_size // 4) // semantic_pool  # the stride-4 map (the stem's two stride-2 convs round up), pooled
    if side < 1:
      raise ConfigError(f"Dual-ViT: img_size={img_size} gives a stride-4 map smaller than the {semantic_pool}×"
                        f"{semantic_pool} semantic pool; lower model.semantic_pool or raise the image size")
    kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
    self.in_chans, self.img_size, self.num_classes, self.num_features = in_chans, img_size, num_classes, dims[-1]
    self.stem_convs = nnx.List([ConvNormAct(in_chans, stem_width, 7, 2, **kw),
                                ConvNormAct(stem_width, stem_width, 3, 1, **kw),
                                ConvNormAct(stem_width, stem_width, 3, 1, **kw)])
    self.embeds = nnx.List([Embed(stem_width if i == 0 else dims[i - 1], dims[i], **kw) for i in range(4)])
    self.semantic_init = SemanticInit(dims[0], side * side, semantic_pool, **kw)
    self.semantic_embeds = nnx.List([SemanticEmbed(dims[i - 1], dims[i], **kw) for i in range(1, 4)])  # stages 2-4
    rates = [drop_path_rate * i / max(sum(depths) - 1, 1) for i in range(sum(depths))]
    stages, start = [], 0
    for i, depth in enumerate(depths):
      blocks = []
      for j in range(depth):
        ratio = mlp_ratios[i] - 1 if (i == 2 and j % 2) else mlp_ratios[i]  # the official stage-3 alternation
        block = DualBlock if i < SEPARATE_STAGES else MergeBlock
        blocks.append(block(dims[i], num_heads[i], ratio, drop_path=rates[start + j], **kw))
      stages.append(nnx.List(blocks))
      start += depth
    self.stages = nnx.List(stages)
    self.norms = nnx.List([LayerNorm(d, eps=EPS_BLOCK, **kw) for d in dims])  # the last one after the class block
    self.semantic_norms = nnx.List([LayerNorm(d, eps=EPS_BLOCK, **kw) for d in dims[:-1]])
    self.class_block = ClassBlock(dims[-1], num_heads[-1], class_mlp_ratio, **kw)
    self.head = _dense(dims[-1], num_classes, kw, ("embed", "classes")) if num_classes else None
    self.aux_head = _dense(dims[-1], num_classes, kw, ("embed", "classes")) if (num_classes and token_label) else None

  def _stem(self, x, train: bool):
    if x.shape[-1] != self.in_chans:
      raise ConfigError(f"Dual-ViT built for {self.in_chans} input channels got images with {x.shape[-1]}")
    for layer in self.stem_convs:
      x = layer(x, train=train)
    return self.embeds[0](x)

  def _stage(self, i, x, semantics, *, deterministic, rngs):
    if i > 0:
      x, semantics = self.embeds[i](x), self.semantic_embeds[i - 1](semantics)
    for block in self.stages[i]:
      x, semantics = block(x, semantics, deterministic=deterministic, rngs=rngs)
    if i < len(self.stages) - 1:
      x, semantics = self.norms[i](x), self.semantic_norms[i](semantics)
    return x, semantics

  def _encode(self, x, *, train: bool, deterministic, rngs, picked=None, out=None, stop_early=False):
    x = self._stem(x, train)
    if out is not None:
      out["stem"] = x = intermediates.tap("stem", x)
    semantics = self.semantic_init(x)
    for i in range(len(self.stages)):
      x, semantics = self._stage(i, x, semantics, deterministic=deterministic, rngs=rngs)
      if out is not None:
        x = intermediates.tap(f"stage{i}", x)
        if i in picked:
          out[f"stage{i}"] = x
        if stop_early and i == picked[-1]:
          return None
    b, hh, ww, c = x.shape
    tokens = jnp.concatenate([x.reshape(b, hh * ww, c), semantics], axis=1)
    tokens = jnp.concatenate([tokens.mean(axis=1, keepdims=True), tokens], axis=1)
    # (B, 1 + H·W, C): the normalised class token, then the pixel tokens (the auxiliary head's input).
    return self.norms[-1](self.class_block(tokens)[:, :1 + hh * ww])

  def forward_features(self, x, *, train: bool = False, deterministic=None, rngs=None):
    """Images (B, H, W, C) → (B, 1 + H/32·W/32, C): the class token, then the last stage's pixel tokens."""
    return self._encode(x, train=train, deterministic=deterministic, rngs=rngs)

  def forward_head(self, x, *, pre_logits: bool = False):
    if pre_logits or self.head is None:
      return x[:, 0]
    logits = self.head(x[:, 0]).astype(jnp.float32)
    if self.aux_head is not None:
      logits = logits + 0.5 * self.aux_head(x[:, 1:]).astype(jnp.float32).max(axis=1)
    return logits

  def forward_intermediates(self, x, *, indices=None, stop_early: bool = False, train: bool | None = None,
                            rngs=None) -> dict:
    """Named features (models/intermediates.py): "stem" and "stage{i}" (the pixel maps, NHWC), then "encoded"
    (the class token and the last pixel tokens), "pre_logits" and "logits" unless `stop_early`."""
    deterministic = None if train is None else not train
    picked, out = intermediates.select(indices, len(self.stages)), {}
    if stop_early and not picked:
      out["stem"] = intermediates.tap("stem", self._stem(x, bool(train)))
      return out
    features = self._encode(x, train=bool(train), deterministic=deterministic, rngs=rngs, picked=picked, out=out,
                            stop_early=stop_early)
    return out if features is None else intermediates.add_head_outputs(out, self, features)

  def __call__(self, x, *, train: bool | None = None, rngs: nnx.Rngs | None = None):
    deterministic = None if train is None else not train
    return self.forward_head(self.forward_features(x, train=bool(train), deterministic=deterministic, rngs=rngs))


PAPER_IN1K = Preprocessing(224, IMAGENET_MEAN, IMAGENET_STD, crop_pct=0.875)
for _name, _variant in VARIANTS.items():
  register(_name, DualViT, **_variant, preprocessing=PAPER_IN1K)


def forward_flops(model: DualViT, img_size: int | None = None, *, count_padding: bool = True) -> float:
  """FLOPs of one forward pass per example (2 per multiply-add), traced from the program: the convolutions,
  linears and attentions, plus the element-wise work (norms, softmaxes, GELUs, layer scales)."""
  return conv_flops.forward_flops(model, img_size or model.img_size, count_padding=count_padding, elementwise=True)


# No embedding table; the semantic queries are image-independent parameters of the first stage.
EMBEDDINGS = ()
