"""2-D convolution (NHWC) with PyTorch's symmetric padding, and max pooling."""

import jax
import jax.numpy as jnp
from flax import nnx

from papers_jax.nn.linear import Initializer, param

# He-normal over the fan-out (torch's kaiming_normal_(mode="fan_out", nonlinearity="relu")).
KAIMING_FAN_OUT = nnx.initializers.variance_scaling(2.0, "fan_out", "normal", in_axis=(0, 1, 2), out_axis=3)


class Conv(nnx.Module):
  """y = conv(x, W) + b with kernel (kh, kw, in, out), stride s and symmetric padding p (torch's)."""

  def __init__(self, in_features: int, out_features: int, kernel_size: int, *, stride: int = 1,
               padding: int | None = None, use_bias: bool = False, kernel_init: Initializer = KAIMING_FAN_OUT,
               dtype=None, param_dtype=jnp.float32, rngs: nnx.Rngs):
    self.stride = stride
    self.padding = kernel_size // 2 if padding is None else padding
    self.dtype = dtype
    self.kernel = param(rngs, kernel_init, (kernel_size, kernel_size, in_features, out_features), param_dtype,
                        (None, None, "conv_in", "conv_out"))
    self.bias = (param(rngs, nnx.initializers.zeros, (out_features,), param_dtype, ("conv_out",))
                 if use_bias else None)

  def __call__(self, x):
    dtype = self.dtype or x.dtype
    p = self.padding
    y = jax.lax.conv_general_dilated(x.astype(dtype), self.kernel[...].astype(dtype), (self.stride, self.stride),
                                     ((p, p), (p, p)), dimension_numbers=("NHWC", "HWIO", "NHWC"))
    if self.bias is not None:
      y = y + self.bias[...].astype(dtype)
    return y


def max_pool(x, window: int = 3, stride: int = 2, padding: int = 1):
  """torch's MaxPool2d: padding counts as −inf."""
  pad = ((0, 0), (padding, padding), (padding, padding), (0, 0))
  return jax.lax.reduce_window(x, -jnp.inf, jax.lax.max, (1, window, window, 1), (1, stride, stride, 1), pad)
