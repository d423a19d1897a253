"""2-D convolution (NHWC) with PyTorch's symmetric padding (or TensorFlow's "SAME"), the weight-standardised
convolution of BiT and the ViT hybrids, and max pooling."""

import jax
import jax.numpy as jnp
from flax import nnx

from papers_jax.nn.linear import Initializer, param

# He-normal over the fan-out (torch's kaiming_normal_(mode="fan_out", nonlinearity="relu")).
KAIMING_FAN_OUT = nnx.initializers.variance_scaling(2.0, "fan_out", "normal", in_axis=(0, 1, 2), out_axis=3)


class Conv(nnx.Module):
  """y = conv(x, W) + b with kernel (kh, kw, in, out), stride s and symmetric padding p (torch's);
  padding="SAME" is TensorFlow's (the extra row / column, when there is one, goes at the end)."""

  def __init__(self, in_features: int, out_features: int, kernel_size: int, *, stride: int = 1,
               padding: int | str | None = None, use_bias: bool = False, kernel_init: Initializer = KAIMING_FAN_OUT,
               dtype=None, param_dtype=jnp.float32, rngs: nnx.Rngs):
    self.stride = stride
    self.padding = kernel_size // 2 if padding is None else padding
    self.dtype = dtype
    self.kernel = param(rngs, kernel_init, (kernel_size, kernel_size, in_features, out_features), param_dtype,
                        (None, None, "conv_in", "conv_out"))
    self.bias = (param(rngs, nnx.initializers.zeros, (out_features,), param_dtype, ("conv_out",))
                 if use_bias else None)

  def _kernel(self):
    return self.kernel[...]

  def __call__(self, x):
    dtype = self.dtype or x.dtype
    p = self.padding
    padding = p if isinstance(p, str) else ((p, p), (p, p))
    y = jax.lax.conv_general_dilated(x.astype(dtype), self._kernel().astype(dtype), (self.stride, self.stride),
                                     padding, dimension_numbers=("NHWC", "HWIO", "NHWC"))
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


def max_pool(x, window: int = 3, stride: int = 2, padding: int | str = 1):
  """torch's MaxPool2d: padding counts as −inf; padding="SAME" is TensorFlow's."""
  pad = padding if isinstance(padding, str) else ((0, 0), (padding, padding), (padding, padding), (0, 0))
  return jax.lax.reduce_window(x, -jnp.inf, jax.lax.max, (1, window, window, 1), (1, stride, stride, 1), pad)


def _taps(size: int, k: int, stride: int, padding: int | str) -> tuple[int, int]:
  """(output size, kernel taps summed over the outputs that land inside the input, not on its padding)
  along one axis; "SAME" pads (out - 1)·s + k - size in all, the extra one at the end."""
  if isinstance(padding, str):
    out = -(-size // stride)
    before = max((out - 1) * stride + k - size, 0) // 2
  else:
    out = (size + 2 * padding - k) // stride + 1
    before = padding
  inside = sum(min(k, size + before - o * stride) - max(0, before - o * stride) for o in range(out))
  return out, inside


def conv_flops(conv: Conv, h: int, w: int, *, count_padding: bool = True) -> tuple[int, int, int]:
  """(FLOPs, output height, output width) of `conv` on an h × w map, 2 per multiply-add. With
  `count_padding=False` the kernel taps that land on the zero padding are left out, as XLA's cost
  analysis does (a 3×3 conv on a 7×7 map: 18% fewer); papers count them."""
  k, _, cin, cout = conv.kernel.shape
  (oh, taps_h), (ow, taps_w) = _taps(h, k, conv.stride, conv.padding), _taps(w, k, conv.stride, conv.padding)
  if count_padding:
    taps_h, taps_w = oh * k, ow * k
  return 2 * taps_h * taps_w * cin * cout, oh, ow
