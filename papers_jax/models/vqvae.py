"""VQ-VAE (van den Oord et al. 2017, "Neural Discrete Representation Learning", §4.1): a convolutional
encoder, the vector-quantisation bottleneck (nn/quantize.py) and a convolutional decoder.

Encoder (the paper's image model): two 4×4 stride-2 convolutions with ReLU, `hidden` wide, two residual
blocks (ReLU → 3×3 conv to `res_hidden` → ReLU → 1×1 conv back, added to the input; a final ReLU), and a
1×1 convolution to the `code_dim`-dimensional latents, which the quantiser snaps to the nearest of
`num_codes` codes. The decoder mirrors it: a 3×3 convolution from the codes to `hidden` channels, two
residual blocks, then two ×2 upsampling stages (ReLU between them). Inputs (B, H, W, in_chans) with H, W
divisible by 4; latents (B, H/4, W/4, code_dim).

Departure: the decoder upsamples by nearest-neighbour ×2 followed by a 3×3 convolution instead of the
paper's 4×4 stride-2 transposed convolutions (same receptive growth, no checkerboard artefacts).
"""

import jax
import jax.numpy as jnp
from flax import nnx

from papers_jax.models import conv_flops
from papers_jax.models.registry import register
from papers_jax.nn.conv import Conv
from papers_jax.nn.quantize import VectorQuantizer

# torch's default Conv2d init (kaiming_uniform with a = √5: U(±1/√fan_in)), as the reference implementations.
TORCH_CONV_INIT = nnx.initializers.variance_scaling(1 / 3, "fan_in", "uniform", in_axis=(0, 1, 2), out_axis=3)


class ResidualStack(nnx.Module):
  def __init__(self, ch: int, res_hidden: int, num_blocks: int, *, dtype=None, param_dtype=jnp.float32,
               rngs: nnx.Rngs):
    kw = dict(use_bias=True, kernel_init=TORCH_CONV_INIT, dtype=dtype, param_dtype=param_dtype, rngs=rngs)
    self.conv3 = nnx.List([Conv(ch, res_hidden, 3, **kw) for _ in range(num_blocks)])
    self.conv1 = nnx.List([Conv(res_hidden, ch, 1, **kw) for _ in range(num_blocks)])

  def __call__(self, x):
    for conv3, conv1 in zip(self.conv3, self.conv1):
      x = x + conv1(jax.nn.relu(conv3(jax.nn.relu(x))))
    return jax.nn.relu(x)


class VQVAE(nnx.Module):
  """`model(x, train=..., rngs=...) -> (reconstruction, aux)`; aux holds the quantiser's loss and metrics
  (nn/quantize.py). `encode(x) -> indices`, `decode_indices(indices) -> images`."""

  def __init__(self, *, in_chans: int = 3, hidden: int = 128, res_hidden: int = 32, num_res_blocks: int = 2,
               num_codes: int = 512, code_dim: int = 64, beta: float = 0.25, ema_decay: float = 0.0,
               restart_threshold: float = 0.0, dtype=None, param_dtype=jnp.float32, rngs: nnx.Rngs):
    kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
    conv = dict(use_bias=True, kernel_init=TORCH_CONV_INIT, **kw)
    self.enc_conv1 = Conv(in_chans, hidden, 4, stride=2, padding=1, **conv)
    self.enc_conv2 = Conv(hidden, hidden, 4, stride=2, padding=1, **conv)
    self.enc_res = ResidualStack(hidden, res_hidden, num_res_blocks, **kw)
    self.pre_quant = Conv(hidden, code_dim, 1, **conv)
    self.quantizer = VectorQuantizer(num_codes, code_dim, beta=beta, ema_decay=ema_decay,
                                     restart_threshold=restart_threshold, param_dtype=param_dtype, rngs=rngs)
    self.dec_conv1 = Conv(code_dim, hidden, 3, **conv)
    self.dec_res = ResidualStack(hidden, res_hidden, num_res_blocks, **kw)
    self.dec_up1 = Conv(hidden, hidden, 3, **conv)
    self.dec_up2 = Conv(hidden, in_chans, 3, **conv)

  def encode_continuous(self, x):
    h = jax.nn.relu(self.enc_conv1(x))
    h = jax.nn.relu(self.enc_conv2(h))
    return self.pre_quant(self.enc_res(h))

  def decode(self, z_q):
    h = self.dec_res(self.dec_conv1(z_q))
    up = lambda t: jnp.repeat(jnp.repeat(t, 2, axis=1), 2, axis=2)  # noqa: E731
    h = jax.nn.relu(self.dec_up1(up(h)))
    return self.dec_up2(up(h))

  def encode(self, x):
    return self.quantizer(self.encode_continuous(x))[1]["indices"]

  def decode_indices(self, indices):
    return self.decode(self.quantizer.lookup(indices))

  def __call__(self, x, *, train: bool = False, rngs: nnx.Rngs | None = None):
    if x.shape[1] % 4 or x.shape[2] % 4:
      raise ValueError(f"VQVAE downsamples by 4: image sides must be divisible by 4, got {x.shape[1:3]}")
    z_q, aux = self.quantizer(self.encode_continuous(x), train=train, rngs=rngs)
    return self.decode(z_q), aux


# The paper's CIFAR-10 image model: 256 hidden units, K = 512 codes; code_dim 64 as the reference Sonnet
# example (the paper gives D only for its ImageNet model). The residual blocks' 32-unit bottleneck is Sonnet's.
register("vqvae", VQVAE, hidden=256, res_hidden=32, num_res_blocks=2, num_codes=512, code_dim=64)


def forward_flops(model: VQVAE, img_size: int = 32, *, count_padding: bool = True) -> float:
  """FLOPs of one forward pass on one img_size × img_size image (default: CIFAR-10's 32), element-wise work
  included (models/conv_flops.py): the encoder, the quantiser's distances to every code, and the decoder."""
  in_chans = model.enc_conv1.kernel.shape[2]
  return conv_flops.traced_flops(lambda m, x: m(x)[0], model, conv_flops.images(img_size, in_chans),
                                 count_padding=count_padding)


EMBEDDINGS = ("quantizer",)  # the codebook (a table looked up by index; a statistic, not a parameter, with EMA)
