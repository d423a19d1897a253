"""The parts every super-resolution transformer here shares (SwinIR, DAT, ATD all take them from SwinIR's
code): the 3×3 shallow-feature convolution, the convolution after the body ("1conv", or "3conv":
3×3 to C/4, LeakyReLU(0.2), 1×1, LeakyReLU(0.2), 3×3 back to C), and the reconstruction:
"pixelshuffle" (classical SR: 3×3 conv to 64 + LeakyReLU(0.01), then (3×3 conv to 4·64 + PixelShuffle(2))
per factor 2, or one 3×3 conv to 9·64 + PixelShuffle(3) for ×3, then a 3×3 conv to the image channels) or
"pixelshuffledirect" (lightweight SR: one 3×3 conv to scale²·channels + PixelShuffle(scale)).

The models take images already normalised by the task ((x − mean) / std, the DIV2K RGB mean and std 1 as
their code's `img_range = 1`) and return the residual-free output in that space; the task adds the mean back.
Convolutions start as torch's default (kaiming-uniform, a = √5) with zero biases (torch draws its conv biases
from U(±1/√fan_in)); linear layers N(0, 0.02) and zero biases as the papers' `trunc_normal_(std=.02)`.
"""

import math

import jax.numpy as jnp
import numpy as np
from flax import nnx

from papers_jax.models.registry import Preprocessing
from papers_jax.nn.conv import Conv

TORCH_CONV_INIT = nnx.initializers.variance_scaling(1 / 3, "fan_in", "uniform", in_axis=(0, 1, 2), out_axis=3)
NORMAL_INIT = nnx.initializers.normal(0.02)
NUM_FEAT = 64  # the reconstruction width of the "pixelshuffle" upsampler in every paper's code
DIV2K_MEAN = (0.4488, 0.4371, 0.4040)
# The SR models read LR images in [0, 1] less the DIV2K mean (their code's `(x - mean) * img_range`).
SR_PREPROCESSING = Preprocessing(64, DIV2K_MEAN, (1.0, 1.0, 1.0), crop_pct=1.0, interpolation="bicubic")
UPSAMPLERS = ("pixelshuffle", "pixelshuffledirect")
RESI_CONNECTIONS = ("1conv", "3conv")


def conv(in_features: int, out_features: int, kernel_size: int = 3, *, groups: int = 1, **kw) -> Conv:
  return Conv(in_features, out_features, kernel_size, groups=groups, use_bias=True, kernel_init=TORCH_CONV_INIT, **kw)


def pixel_shuffle(x, r: int):
  """torch's PixelShuffle(r) in NHWC: channel c·r² + i·r + j of pixel (h, w) → channel c of (h·r + i, w·r + j)."""
  b, h, w, c = x.shape
  x = x.reshape(b, h, w, c // (r * r), r, r).transpose(0, 1, 4, 2, 5, 3)
  return x.reshape(b, h * r, w * r, c // (r * r))


def leaky_relu(x, slope: float):
  return jnp.where(x >= 0, x, slope * x)


class ResidualConv(nnx.Module):
  """The conv of a residual group / after the body: "1conv" (3×3) or "3conv" (3×3 → C/4, 1×1, 3×3 → C)."""

  def __init__(self, dim: int, kind: str, *, dtype=None, param_dtype=jnp.float32, rngs: nnx.Rngs):
    if kind not in RESI_CONNECTIONS:
      raise ValueError(f"resi_connection={kind!r}; choose from {RESI_CONNECTIONS}")
    kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
    self.kind = kind
    if kind == "1conv":
      self.conv = conv(dim, dim, **kw)
    else:
      self.conv1, self.conv2, self.conv3 = conv(dim, dim // 4, **kw), conv(dim // 4, dim // 4, 1, **kw), conv(
          dim // 4, dim, **kw)

  def __call__(self, x):
    if self.kind == "1conv":
      return self.conv(x)
    x = leaky_relu(self.conv1(x), 0.2)
    x = leaky_relu(self.conv2(x), 0.2)
    return self.conv3(x)


class Upsampler(nnx.Module):
  """The reconstruction: "pixelshuffle" or "pixelshuffledirect" (module docstring)."""

  def __init__(self, dim: int, out_chans: int, scale: int, kind: str, *, dtype=None, param_dtype=jnp.float32,
               rngs: nnx.Rngs):
    if kind not in UPSAMPLERS:
      raise ValueError(f"upsampler={kind!r}; choose from {UPSAMPLERS}")
    kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
    self.kind, self.scale = kind, scale
    if kind == "pixelshuffledirect":
      self.upsample = conv(dim, scale * scale * out_chans, **kw)
      return
    if scale & (scale - 1) == 0:
      self.factors = (2,) * int(math.log2(scale))
    elif scale == 3:
      self.factors = (3,)
    else:
      raise ValueError(f"scale {scale} is not supported by the pixelshuffle upsampler; use 2^n or 3")
    self.conv_before_upsample = conv(dim, NUM_FEAT, **kw)
    self.upsample = nnx.List([conv(NUM_FEAT, f * f * NUM_FEAT, **kw) for f in self.factors])
    self.conv_last = conv(NUM_FEAT, out_chans, **kw)

  def __call__(self, x):
    if self.kind == "pixelshuffledirect":
      return pixel_shuffle(self.upsample(x), self.scale)
    x = leaky_relu(self.conv_before_upsample(x), 0.01)  # torch's nn.LeakyReLU() default slope
    for factor, layer in zip(self.factors, self.upsample):
      x = pixel_shuffle(layer(x), factor)
    return self.conv_last(x)


def reflect_pad_to(x, multiple: int):
  """Pads H and W of (B, H, W, C) up to a multiple by mirroring (ATD's `torch.flip` padding); (x, (H, W))."""
  h, w = x.shape[1:3]
  ph, pw = -h % multiple, -w % multiple
  if ph:
    x = jnp.concatenate([x, x[:, ::-1]], 1)[:, :h + ph]
  if pw:
    x = jnp.concatenate([x, x[:, :, ::-1]], 2)[:, :, :w + pw]
  return x, (h, w)


def region_labels(size: int, window: int, shift: int) -> np.ndarray:
  """Swin's shifted-window regions along one axis: slices (0:-window), (-window:-shift), (-shift:) → 0, 1, 2."""
  labels = np.zeros(size, np.int32)
  if shift:
    labels[size - window:size - shift] = 1
    labels[size - shift:] = 2
  return labels


def same_region_mask(grid: tuple[int, int], window: tuple[int, int], shift: tuple[int, int]) -> np.ndarray:
  """(num_windows, N, N) bool of a cyclically shifted grid: query and key from the same pre-shift region."""
  label = region_labels(grid[0], window[0], shift[0])[:, None] * 3 + region_labels(grid[1], window[1], shift[1])[None]
  gh, gw = grid
  wh, ww = window
  windows = label.reshape(gh // wh, wh, gw // ww, ww).transpose(0, 2, 1, 3).reshape(-1, wh * ww)
  return windows[:, :, None] == windows[:, None, :]


def sr_flops(model, **kw) -> float:
  """FLOPs of one eval-mode forward of an SR model on one `model.img_size`² LR image (element-wise work
  included: models/conv_flops.py)."""
  from papers_jax.models import conv_flops
  return conv_flops.forward_flops(model, model.img_size, elementwise=True, **kw)
