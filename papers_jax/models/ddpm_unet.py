"""The DDPM UNet (Ho et al. 2020, "Denoising Diffusion Probabilistic Models", Appendix B; the official
TensorFlow code `diffusion_tf/models/unet.py`): it predicts the noise ε of a noisy image x_t at step t.

- Time: the sinusoidal embedding of t (Transformer-style, `ch` wide, sin half then cos half, frequencies
  10000^(-i / (ch/2 - 1))), then Dense(4·ch) → swish → Dense(4·ch).
- A 3×3 conv to `ch` channels, then one level per entry of `ch_mult`: `num_res_blocks` residual blocks of
  `ch · mult` channels, each followed by self-attention where the level is in `attn_levels` (the paper's
  16×16 resolution: level 1 of a 32×32 input); every level but the last ends with a 3×3 stride-2 conv
  (TensorFlow's "SAME" padding). Every output of the down path is kept for a skip connection.
- Middle: residual block, self-attention, residual block.
- Up path: per level in reverse, `num_res_blocks + 1` residual blocks, each taking the concatenation of
  the running map and one skip (popped last-in first-out), attention where the down path had it, and a
  nearest-neighbour ×2 upsample followed by a 3×3 conv (all but the last level).
- Out: GroupNorm → swish → 3×3 conv to the image channels.

Residual block: GroupNorm(32) → swish → 3×3 conv → + Dense(swish(temb)) → GroupNorm → swish → dropout →
3×3 conv, plus the input (through a 1×1 conv when the width changes). Attention: single-head self-attention
over the H·W positions after a GroupNorm, with a residual connection. GroupNorm ε = 1e-6 (TensorFlow's).
Init as the official code: Xavier-uniform kernels, zero biases, and the last conv of each residual branch,
the attention output and the final conv start at zero (the code's `init_scale=0.`, i.e. 1e-10).

Parameter names follow diffusers' `UNet2DModel` (convert/diffusers_unet.py maps its state dicts onto this
module; tests/test_ddpm.py proves parity). `ddpm_cifar10` (ch 128, (1, 2, 2, 2), 2 blocks, attention at
16×16, dropout 0.1) has the paper's 35.7M parameters. NHWC.
"""

import math

import jax
import jax.numpy as jnp
from flax import nnx

from papers_jax.models import conv_flops
from papers_jax.models.registry import register
from papers_jax.nn.attention import dot_product_attention
from papers_jax.nn.conv import Conv
from papers_jax.nn.drop import Dropout
from papers_jax.nn.linear import Dense
from papers_jax.nn.norms import GroupNorm

XAVIER = nnx.initializers.variance_scaling(1.0, "fan_avg", "uniform")
XAVIER_CONV = nnx.initializers.variance_scaling(1.0, "fan_avg", "uniform", in_axis=(0, 1, 2), out_axis=3)
ZEROS = nnx.initializers.zeros


def timestep_embedding(t, dim: int, max_period: float = 10_000.0, *, flip_sin_to_cos: bool = False,
                       freq_shift: int = 1):
  """(B,) steps → (B, dim) float32: [sin(t·f_i), cos(t·f_i)] with f_i = max_period^(-i / (dim/2 - freq_shift)),
  the DDPM code's `get_timestep_embedding` (diffusers: flip_sin_to_cos=False, downscale_freq_shift=1).
  `flip_sin_to_cos=True, freq_shift=0` is the GLIDE / unCLIP code's order [cos, sin]."""
  half = dim // 2
  freqs = jnp.exp(-math.log(max_period) * jnp.arange(half, dtype=jnp.float32) / (half - freq_shift))
  args = jnp.asarray(t, jnp.float32)[:, None] * freqs[None, :]
  parts = [jnp.cos(args), jnp.sin(args)] if flip_sin_to_cos else [jnp.sin(args), jnp.cos(args)]
  emb = jnp.concatenate(parts, axis=-1)
  return jnp.pad(emb, ((0, 0), (0, dim % 2)))


def swish(x):
  return x * jax.nn.sigmoid(x)


class TimestepEmbedding(nnx.Module):
  """Dense → swish → Dense (diffusers' `TimestepEmbedding`: linear_1, linear_2)."""

  def __init__(self, dim: int, out_dim: int, *, dtype=None, param_dtype=jnp.float32, rngs: nnx.Rngs):
    kw = dict(kernel_init=XAVIER, dtype=dtype, param_dtype=param_dtype, rngs=rngs)
    self.linear_1 = Dense(dim, out_dim, axes=("embed", "mlp"), **kw)
    self.linear_2 = Dense(out_dim, out_dim, axes=("mlp", "embed"), **kw)

  def __call__(self, emb):
    return self.linear_2(swish(self.linear_1(emb)))


class ResnetBlock(nnx.Module):
  """The residual block with the time embedding added after the first conv (see the module docstring)."""

  def __init__(self, in_ch: int, out_ch: int, temb_ch: int, *, dropout: float, num_groups: int, eps: float,
               dtype=None, param_dtype=jnp.float32, rngs: nnx.Rngs):
    kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
    conv = dict(use_bias=True, kernel_init=XAVIER_CONV, **kw)
    self.norm1 = GroupNorm(in_ch, num_groups=num_groups, eps=eps, **kw)
    self.conv1 = Conv(in_ch, out_ch, 3, **conv)
    self.time_emb_proj = Dense(temb_ch, out_ch, axes=("embed", "conv_out"), kernel_init=XAVIER, **kw)
    self.norm2 = GroupNorm(out_ch, num_groups=num_groups, eps=eps, **kw)
    self.dropout = Dropout(dropout)
    self.conv2 = Conv(out_ch, out_ch, 3, **(conv | dict(kernel_init=ZEROS)))
    self.conv_shortcut = Conv(in_ch, out_ch, 1, **conv) if in_ch != out_ch else None

  def __call__(self, x, temb, *, rngs=None):
    h = self.conv1(swish(self.norm1(x)))
    h = h + self.time_emb_proj(swish(temb))[:, None, None, :].astype(h.dtype)
    h = self.conv2(self.dropout(swish(self.norm2(h)), deterministic=rngs is None, rngs=rngs))
    return (x if self.conv_shortcut is None else self.conv_shortcut(x)) + h


class AttentionBlock(nnx.Module):
  """x + proj(softmax(q·kᵀ / √C)·v) over the H·W positions, q, k, v from GroupNorm(x), one head."""

  def __init__(self, ch: int, *, num_groups: int, eps: float, dtype=None, param_dtype=jnp.float32, rngs: nnx.Rngs):
    kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
    self.group_norm = GroupNorm(ch, num_groups=num_groups, eps=eps, **kw)
    self.to_q = Dense(ch, ch, axes=("embed", "mlp"), kernel_init=XAVIER, **kw)
    self.to_k = Dense(ch, ch, axes=("embed", "mlp"), kernel_init=XAVIER, **kw)
    self.to_v = Dense(ch, ch, axes=("embed", "mlp"), kernel_init=XAVIER, **kw)
    self.to_out = Dense(ch, ch, axes=("mlp", "embed"), kernel_init=ZEROS, **kw)

  def __call__(self, x):
    b, hh, ww, c = x.shape
    h = self.group_norm(x).reshape(b, hh * ww, 1, c)
    y = dot_product_attention(self.to_q(h), self.to_k(h), self.to_v(h))
    return x + self.to_out(y.reshape(b, hh, ww, c))


class DownBlock(nnx.Module):
  def __init__(self, in_ch, out_ch, temb_ch, *, num_res_blocks, attention, downsample, block_kw, rngs):
    self.resnets = nnx.List([ResnetBlock(in_ch if i == 0 else out_ch, out_ch, temb_ch, **block_kw, rngs=rngs)
                             for i in range(num_res_blocks)])
    attn_kw = {k: v for k, v in block_kw.items() if k != "dropout"}
    self.attentions = nnx.List([AttentionBlock(out_ch, **attn_kw, rngs=rngs) for _ in range(num_res_blocks)]
                               if attention else [])
    conv_kw = dict(use_bias=True, kernel_init=XAVIER_CONV, dtype=block_kw["dtype"],
                   param_dtype=block_kw["param_dtype"], rngs=rngs)
    self.downsampler = Conv(out_ch, out_ch, 3, stride=2, padding="SAME", **conv_kw) if downsample else None

  def __call__(self, x, temb, *, rngs=None):
    skips = []
    for i, resnet in enumerate(self.resnets):
      x = resnet(x, temb, rngs=rngs)
      if self.attentions:
        x = self.attentions[i](x)
      skips.append(x)
    if self.downsampler is not None:
      x = self.downsampler(x)
      skips.append(x)
    return x, skips


class UpBlock(nnx.Module):
  def __init__(self, prev_ch, out_ch, skip_chs, temb_ch, *, attention, upsample, block_kw, rngs):
    self.resnets = nnx.List([ResnetBlock((prev_ch if i == 0 else out_ch) + s, out_ch, temb_ch, **block_kw, rngs=rngs)
                             for i, s in enumerate(skip_chs)])
    attn_kw = {k: v for k, v in block_kw.items() if k != "dropout"}
    self.attentions = nnx.List([AttentionBlock(out_ch, **attn_kw, rngs=rngs) for _ in skip_chs] if attention else [])
    conv_kw = dict(use_bias=True, kernel_init=XAVIER_CONV, dtype=block_kw["dtype"],
                   param_dtype=block_kw["param_dtype"], rngs=rngs)
    self.upsampler = Conv(out_ch, out_ch, 3, **conv_kw) if upsample else None

  def __call__(self, x, skips, temb, *, rngs=None):
    for i, resnet in enumerate(self.resnets):
      x = resnet(jnp.concatenate([x, skips.pop()], axis=-1), temb, rngs=rngs)
      if self.attentions:
        x = self.attentions[i](x)
    if self.upsampler is not None:
      x = self.upsampler(jnp.repeat(jnp.repeat(x, 2, axis=1), 2, axis=2))  # nearest ×2
    return x


class MidBlock(nnx.Module):
  def __init__(self, ch, temb_ch, *, block_kw, rngs):
    attn_kw = {k: v for k, v in block_kw.items() if k != "dropout"}
    self.resnets = nnx.List([ResnetBlock(ch, ch, temb_ch, **block_kw, rngs=rngs) for _ in range(2)])
    self.attention = AttentionBlock(ch, **attn_kw, rngs=rngs)

  def __call__(self, x, temb, *, rngs=None):
    x = self.resnets[0](x, temb, rngs=rngs)
    return self.resnets[1](self.attention(x), temb, rngs=rngs)


class DDPMUNet(nnx.Module):
  """ε_θ(x_t, t): `in_chans` image channels in and out; `ch` the base width, `ch_mult` one width multiplier
  per level, `num_res_blocks` per level, `attn_levels` the levels with self-attention (level i works at
  1/2^i of the input size), `dropout` in every residual block."""

  def __init__(self, *, in_chans: int = 3, ch: int = 128, ch_mult=(1, 2, 2, 2), num_res_blocks: int = 2,
               attn_levels=(1,), dropout: float = 0.1, num_groups: int = 32, eps: float = 1e-6,
               dtype=None, param_dtype=jnp.float32, rngs: nnx.Rngs):
    self.ch, self.ch_mult, self.in_chans = ch, tuple(ch_mult), in_chans
    kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
    conv = dict(use_bias=True, kernel_init=XAVIER_CONV, **kw)
    block_kw = dict(dropout=dropout, num_groups=num_groups, eps=eps, dtype=dtype, param_dtype=param_dtype)
    temb_ch = 4 * ch
    self.time_embedding = TimestepEmbedding(ch, temb_ch, **kw)
    self.conv_in = Conv(in_chans, ch, 3, **conv)
    widths = [ch * m for m in self.ch_mult]
    last = len(widths) - 1
    skip_chs, prev = [ch], ch
    down = []
    for level, width in enumerate(widths):
      down.append(DownBlock(prev, width, temb_ch, num_res_blocks=num_res_blocks, attention=level in attn_levels,
                            downsample=level != last, block_kw=block_kw, rngs=rngs))
      skip_chs += [width] * num_res_blocks + ([width] if level != last else [])
      prev = width
    self.down_blocks = nnx.List(down)
    self.mid_block = MidBlock(prev, temb_ch, block_kw=block_kw, rngs=rngs)
    up = []
    for level in reversed(range(len(widths))):
      skips = [skip_chs.pop() for _ in range(num_res_blocks + 1)]
      up.append(UpBlock(prev, widths[level], skips, temb_ch, attention=level in attn_levels, upsample=level != 0,
                        block_kw=block_kw, rngs=rngs))
      prev = widths[level]
    self.up_blocks = nnx.List(up)
    self.conv_norm_out = GroupNorm(prev, num_groups=num_groups, eps=eps, **kw)
    self.conv_out = Conv(prev, in_chans, 3, **(conv | dict(kernel_init=ZEROS)))

  def __call__(self, x, t, *, train: bool = False, rngs: nnx.Rngs | None = None):
    """x: (B, H, W, in_chans) noisy images; t: (B,) or scalar integer steps. Returns ε̂, shaped like x.
    Dropout is on with `train=True` (then `rngs` must hold a "dropout" stream)."""
    down = 2 ** (len(self.ch_mult) - 1)
    if x.shape[1] % down or x.shape[2] % down:
      raise ValueError(f"DDPMUNet with {len(self.ch_mult)} levels needs image sides divisible by {down}, "
                       f"got {x.shape[1:3]}")
    rngs = rngs if train else None
    t = jnp.broadcast_to(jnp.asarray(t), (x.shape[0],))
    temb = self.time_embedding(timestep_embedding(t, self.ch).astype(self.conv_in.dtype or x.dtype))
    h = self.conv_in(x)
    skips = [h]
    for block in self.down_blocks:
      h, s = block(h, temb, rngs=rngs)
      skips += s
    h = self.mid_block(h, temb, rngs=rngs)
    for block in self.up_blocks:
      h = block(h, skips, temb, rngs=rngs)
    return self.conv_out(swish(self.conv_norm_out(h)))


# name: the paper's models (Appendix B) and the small digits model.
VARIANTS = {
    "ddpm_cifar10": dict(ch=128, ch_mult=(1, 2, 2, 2), num_res_blocks=2, attn_levels=(1,), dropout=0.1),
    # 256×256 (LSUN, CelebA-HQ): six levels, attention at 16×16 (level 4); 114M parameters.
    "ddpm_256": dict(ch=128, ch_mult=(1, 1, 2, 2, 4, 4), num_res_blocks=2, attn_levels=(4,), dropout=0.0),
}
for _name, _kwargs in VARIANTS.items():
  register(_name, DDPMUNet, **_kwargs)


def forward_flops(model: DDPMUNet, img_size: int = 32, *, count_padding: bool = True) -> float:
  """FLOPs of one call ε_θ(x_t, t) on one img_size × img_size image (default: CIFAR-10's 32), element-wise
  work included (models/conv_flops.py): the time embedding, every residual block with its GroupNorms,
  the attention blocks, the resampling and the output head. A training example runs it once; sampling
  runs it once per step."""
  return conv_flops.traced_flops(lambda m, x, t: m(x, t), model, conv_flops.images(img_size, model.in_chans),
                                 jax.ShapeDtypeStruct((1,), jnp.int32), count_padding=count_padding)


EMBEDDINGS = ()  # the time embedding is an MLP on sinusoids, not a table
