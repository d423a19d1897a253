"""2-D convolution (NHWC) with PyTorch's symmetric padding (or TensorFlow's "SAME"), grouped and depthwise, the
weight-standardised convolution of BiT and the ViT hybrids, MixNet's mixed depthwise convolution, and torch's
max / average / adaptive average pooling."""

import numpy as np

import jax
import jax.numpy as jnp
from flax import nnx

from papers_jax.nn.linear import Initializer, param

# He-normal over the fan-out (torch's kaiming_normal_(mode="fan_out", nonlinearity="relu")).
KAIMING_FAN_OUT = nnx.initializers.variance_scaling(2.0, "fan_out", "normal", in_axis=(0, 1, 2), out_axis=3)


def _pair(x) -> tuple:
  return tuple(x) if isinstance(x, (tuple, list)) else (x, x)


class Conv(nnx.Module):
  """y = conv(x, W) + b with kernel (kh, kw, in / groups, out), stride s and symmetric padding p (torch's);
  padding="SAME" is TensorFlow's (the extra row / column, when there is one, goes at the end). `kernel_size`
  and `padding` may be (h, w) pairs (Inception-v3's 1×7 / 7×1); `groups` splits the channels as torch's
  `groups` (groups = channels: depthwise); `dilation` spaces the kernel taps (atrous convolution, DANet's
  dilated ResNet), the default padding growing with it so that a stride-1 conv keeps the map size."""

  def __init__(self, in_features: int, out_features: int, kernel_size: int | tuple[int, int], *, stride: int = 1,
               padding: int | tuple[int, int] | str | None = None, groups: int = 1, dilation: int = 1,
               use_bias: bool = False,
               kernel_init: Initializer = KAIMING_FAN_OUT, bias_init: Initializer = nnx.initializers.zeros,
               dtype=None, param_dtype=jnp.float32, rngs: nnx.Rngs):
    if in_features % groups or out_features % groups:
      raise ValueError(f"Conv: {in_features} → {out_features} channels do not split into {groups} groups")
    kh, kw = _pair(kernel_size)
    self.stride, self.groups, self.dilation = stride, groups, dilation
    self.padding = (dilation * (kh // 2) if kh == kw else (dilation * (kh // 2), dilation * (kw // 2))
                    ) if padding is None else padding
    self.dtype = dtype
    self.kernel = param(rngs, kernel_init, (kh, kw, in_features // groups, out_features), param_dtype,
                        (None, None, "conv_in", "conv_out"))
    self.bias = (param(rngs, bias_init, (out_features,), param_dtype, ("conv_out",))
                 if use_bias else None)

  def _kernel(self):
    return self.kernel[...]

  def __call__(self, x):
    dtype = self.dtype or x.dtype
    p = self.padding
    padding = p if isinstance(p, str) else tuple((q, q) for q in _pair(p))
    y = jax.lax.conv_general_dilated(x.astype(dtype), self._kernel().astype(dtype), (self.stride, self.stride),
                                     padding, rhs_dilation=(self.dilation, self.dilation),
                                     dimension_numbers=("NHWC", "HWIO", "NHWC"), feature_group_count=self.groups)
    if self.bias is not None:
      y = y + self.bias[...].astype(dtype)
    return y


class StdConv(Conv):
  """Convolution with Weight Standardization (Qiao et al., 2019), as BiT's ResNet-V2 and the ViT
  hybrids use it: each output filter is standardised to zero mean and unit (biased) variance over
  (kh, kw, in) before it is applied. Defaults follow timm's `StdConv2dSame(eps=1e-8)` of the hybrids."""

  def __init__(self, in_features: int, out_features: int, kernel_size: int, *, stride: int = 1,
               padding: int | str = "SAME", eps: float = 1e-8, **kwargs):
    super().__init__(in_features, out_features, kernel_size, stride=stride, padding=padding, **kwargs)
    self.eps = eps

  def _kernel(self):
    w = self.kernel[...].astype(jnp.float32)
    mean = w.mean(axis=(0, 1, 2), keepdims=True)
    var = jnp.square(w - mean).mean(axis=(0, 1, 2), keepdims=True)
    return (w - mean) * jax.lax.rsqrt(var + self.eps)


def split_channels(channels: int, groups: int) -> list[int]:
  """timm's `_split_channels`: equal parts, the remainder added to the first."""
  split = [channels // groups] * groups
  split[0] += channels - sum(split)
  return split


class MixedConv(nnx.Module):
  """MixConv (Tan & Le, 2019): the channels split into len(kernel_sizes) groups (`split_channels`), each
  convolved with its own kernel size (padding k // 2), the outputs concatenated. `depthwise=True` is the
  paper's mixed depthwise convolution; otherwise each group is a dense conv from its input part to its output
  part (MixNet's grouped 1×1 expansions and projections). Sub-convolutions are `convs[i]` (timm's `i`)."""

  def __init__(self, in_features: int, out_features: int, kernel_sizes, *, stride: int = 1, depthwise: bool = False,
               kernel_init: Initializer = KAIMING_FAN_OUT, dtype=None, param_dtype=jnp.float32, rngs: nnx.Rngs):
    ins = split_channels(in_features, len(kernel_sizes))
    outs = split_channels(out_features, len(kernel_sizes))
    if depthwise and ins != outs:
      raise ValueError(f"MixedConv: a depthwise conv keeps the channels ({in_features} → {out_features})")
    self.splits = ins
    self.convs = nnx.List([Conv(i, o, k, stride=stride, groups=i if depthwise else 1, kernel_init=kernel_init,
                                dtype=dtype, param_dtype=param_dtype, rngs=rngs)
                           for k, i, o in zip(kernel_sizes, ins, outs)])

  def __call__(self, x):
    parts = jnp.split(x, np.cumsum(self.splits)[:-1], axis=-1)
    return jnp.concatenate([conv(part) for conv, part in zip(self.convs, parts)], axis=-1)


def _ceil_pad(size: int, window: int, stride: int, padding: int) -> int:
  """The extra padding at the end that torch's `ceil_mode=True` adds (the last window must start inside the
  input or its left padding)."""
  out = -(-(size + 2 * padding - window) // stride) + 1
  if (out - 1) * stride >= size + padding:
    out -= 1
  return max(0, (out - 1) * stride + window - (size + 2 * padding))


def max_pool(x, window: int = 3, stride: int = 2, padding: int | str = 1, *, ceil_mode: bool = False):
  """torch's MaxPool2d: padding counts as −inf; padding="SAME" is TensorFlow's; `ceil_mode` as torch's."""
  if isinstance(padding, str):
    pad = padding
  else:
    extra = [_ceil_pad(n, window, stride, padding) if ceil_mode else 0 for n in x.shape[1:3]]
    pad = ((0, 0), (padding, padding + extra[0]), (padding, padding + extra[1]), (0, 0))
  return jax.lax.reduce_window(x, -jnp.inf, jax.lax.max, (1, window, window, 1), (1, stride, stride, 1), pad)


def avg_pool(x, window: int = 3, stride: int = 1, padding: int = 0):
  """torch's AvgPool2d with `count_include_pad=True` (its default): the zero padding counts in the mean."""
  pad = ((0, 0), (padding, padding), (padding, padding), (0, 0))
  total = jax.lax.reduce_window(x, 0.0, jax.lax.add, (1, window, window, 1),  # a literal 0: differentiable
                                (1, stride, stride, 1), pad)
  return total / (window * window)


def _adaptive_matrix(size: int, out: int) -> np.ndarray:
  """(out, size) averaging weights of torch's adaptive pooling: bin i covers [⌊i·n/o⌋, ⌈(i+1)·n/o⌉)."""
  m = np.zeros((out, size), np.float32)
  for i in range(out):
    start, end = (i * size) // out, -(-((i + 1) * size) // out)
    m[i, start:end] = 1.0 / (end - start)
  return m


def adaptive_avg_pool(x, output_size: int | tuple[int, int]):
  """torch's AdaptiveAvgPool2d on NHWC maps (bins may overlap when the size does not divide)."""
  oh, ow = _pair(output_size)
  h, w = x.shape[1:3]
  if (h, w) == (oh, ow):
    return x
  if h % oh == 0 and w % ow == 0:  # equal bins: a plain reshape-mean
    return x.reshape(x.shape[0], oh, h // oh, ow, w // ow, x.shape[3]).mean(axis=(2, 4))
  rows, cols = jnp.asarray(_adaptive_matrix(h, oh), x.dtype), jnp.asarray(_adaptive_matrix(w, ow), x.dtype)
  return jnp.einsum("oh,bhwc,pw->bopc", rows, x, cols, precision=jax.lax.Precision.HIGHEST)


def _taps(size: int, k: int, stride: int, padding: int | str, dilation: int = 1) -> tuple[int, int]:
  """(output size, kernel taps summed over the outputs that land inside the input, not on its padding)
  along one axis; "SAME" pads (out - 1)·s + k - size in all, the extra one at the end. A dilated kernel
  spans dilation·(k - 1) + 1 inputs."""
  span = dilation * (k - 1) + 1
  if isinstance(padding, str):
    out = -(-size // stride)
    before = max((out - 1) * stride + span - size, 0) // 2
  else:
    out = (size + 2 * padding - span) // stride + 1
    before = padding
  if dilation == 1:
    inside = sum(min(k, size + before - o * stride) - max(0, before - o * stride) for o in range(out))
  else:
    inside = sum(0 <= o * stride - before + t * dilation < size for o in range(out) for t in range(k))
  return out, inside


def conv_flops(conv: Conv, h: int, w: int, *, count_padding: bool = True) -> tuple[int, int, int]:
  """(FLOPs, output height, output width) of `conv` on an h × w map, 2 per multiply-add. With
  `count_padding=False` the kernel taps that land on the zero padding are left out, as XLA's cost
  analysis does (a 3×3 conv on a 7×7 map: 18% fewer); papers count them."""
  kh, kw, cin, cout = conv.kernel.shape  # cin: the input channels of one group
  ph, pw = (conv.padding, conv.padding) if isinstance(conv.padding, str) else _pair(conv.padding)
  d = getattr(conv, "dilation", 1)
  (oh, taps_h), (ow, taps_w) = _taps(h, kh, conv.stride, ph, d), _taps(w, kw, conv.stride, pw, d)
  if count_padding:
    taps_h, taps_w = oh * kh, ow * kw
  return 2 * taps_h * taps_w * cin * cout, oh, ow


class ConvTranspose(nnx.Module):
  """Transposed 2-D convolution (NHWC) with torch's ConvTranspose2d sizes: out = (in − 1)·stride − 2·padding +
  kernel_size. Computed as the stride-dilated input convolved with the kernel (kh, kw, in, out) over a
  padding of kernel_size − 1 − padding; torch's weight (in, out, kh, kw) maps to it spatially flipped."""

  def __init__(self, in_features: int, out_features: int, kernel_size: int, *, stride: int = 1, padding: int = 0,
               use_bias: bool = False, kernel_init: Initializer = KAIMING_FAN_OUT,
               bias_init: Initializer = nnx.initializers.zeros, dtype=None, param_dtype=jnp.float32, rngs: nnx.Rngs):
    if padding > kernel_size - 1:
      raise ValueError(f"ConvTranspose: padding {padding} must be below kernel_size {kernel_size}")
    self.stride, self.padding, self.kernel_size, self.dtype = stride, padding, kernel_size, dtype
    self.kernel = param(rngs, kernel_init, (kernel_size, kernel_size, in_features, out_features), param_dtype,
                        (None, None, "conv_in", "conv_out"))
    self.bias = param(rngs, bias_init, (out_features,), param_dtype, ("conv_out",)) if use_bias else None

  def __call__(self, x):
    dtype = self.dtype or x.dtype
    q = self.kernel_size - 1 - self.padding
    y = jax.lax.conv_general_dilated(x.astype(dtype), self.kernel[...].astype(dtype), (1, 1), ((q, q), (q, q)),
                                     lhs_dilation=(self.stride, self.stride),
                                     dimension_numbers=("NHWC", "HWIO", "NHWC"))
    if self.bias is not None:
      y = y + self.bias[...].astype(dtype)
    return y


class Conv1D(nnx.Module):
  """1-D convolution over (batch, time, channels) with torch's Conv1d semantics (symmetric `padding`,
  `groups`, `dilation`); kernel (k, in / groups, out). Used by the speech encoders (wav2vec 2.0, CPC) and
  TS2Vec's dilated encoder."""

  def __init__(self, in_features: int, out_features: int, kernel_size: int, *, stride: int = 1, padding: int = 0,
               groups: int = 1, dilation: int = 1, use_bias: bool = True, kernel_init: Initializer | None = None,
               bias_init: Initializer = nnx.initializers.zeros, dtype=None, param_dtype=jnp.float32,
               rngs: nnx.Rngs):
    if in_features % groups or out_features % groups:
      raise ValueError(f"Conv1D: {in_features} → {out_features} channels do not split into {groups} groups")
    self.stride, self.padding, self.groups, self.dilation, self.dtype = stride, padding, groups, dilation, dtype
    kernel_init = kernel_init or nnx.initializers.variance_scaling(2.0, "fan_in", "normal", in_axis=(0, 1), out_axis=2)
    self.kernel = param(rngs, kernel_init, (kernel_size, in_features // groups, out_features), param_dtype,
                        (None, "conv_in", "conv_out"))
    self.bias = param(rngs, bias_init, (out_features,), param_dtype, ("conv_out",)) if use_bias else None

  def _kernel(self):
    return self.kernel[...]

  def __call__(self, x):
    dtype = self.dtype or x.dtype
    y = jax.lax.conv_general_dilated(x.astype(dtype), self._kernel().astype(dtype), (self.stride,),
                                     ((self.padding, self.padding),), rhs_dilation=(self.dilation,),
                                     dimension_numbers=("NWC", "WIO", "NWC"), feature_group_count=self.groups)
    if self.bias is not None:
      y = y + self.bias[...].astype(dtype)
    return y
