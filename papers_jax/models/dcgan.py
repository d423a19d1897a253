"""DCGAN (Radford et al., 2016) and the MLP GAN of Goodfellow et al. (2014)'s 1-D illustration (Fig. 1).

DCGAN's guidelines (§3): no pooling (strided convolutions in D, transposed convolutions in G), BatchNorm in
both networks except G's output layer and D's input layer, ReLU in G with tanh on its output, LeakyReLU (slope
0.2) in D, no fully connected hidden layers; every weight initialised from N(0, 0.02) (§4). G maps z (B, z_dim)
to images in [−1, 1] (B, H, W, C); D maps images to one logit per image. Following the authors' reference code
(and PyTorch's DCGAN example), the convolutions have no bias (BatchNorm follows them) and the BatchNorm scales
start at N(1, 0.02).

Variants: `dcgan_64` is the paper's 64×64 network (G: 4×4×8g → 8×8×4g → 16×16×2g → 32×32×g → 64×64×C with
g = 64; D mirrored with 64, 128, 256, 512 channels); `dcgan_32` drops one stage for 32×32 images (CIFAR-10,
MNIST at 32 px), `dcgan_16` one more; any of them with img_size=8 is one more still (the digits demo at their
native 8 px: one hidden layer in each network, and so no BatchNorm in D); `gan_mlp_1d` is a small MLP pair
on scalars for the 1-D toy.

`GAN` holds the pair as `generator` and `discriminator`, so a task's optimizer phases select their params by
path ("^generator/", "^discriminator/").
"""

import jax
import jax.numpy as jnp
from flax import nnx

from papers_jax.models import conv_flops
from papers_jax.models.registry import INCEPTION_MEAN, INCEPTION_STD, Preprocessing, register
from papers_jax.nn.conv import Conv, ConvTranspose
from papers_jax.nn.linear import Dense, param
from papers_jax.nn.norms import BatchNorm

DCGAN_INIT = nnx.initializers.normal(0.02)


def _batch_norm(features: int, rngs: nnx.Rngs, **kw) -> BatchNorm:
  bn = BatchNorm(features, rngs=rngs, **kw)
  bn.scale = param(rngs, lambda k, s, d: 1.0 + 0.02 * jax.random.normal(k, s, d), (features,), jnp.float32,
                   ("norm",))
  return bn


class DCGANGenerator(nnx.Module):
  """z (B, z_dim) → images (B, S, S, C) in [−1, 1], S = 4 · 2^(len(widths)) with widths from the 4×4 stage up."""

  def __init__(self, *, z_dim: int = 100, widths=(512, 256, 128, 64), out_chans: int = 3, dtype=None,
               rngs: nnx.Rngs):
    kw = dict(kernel_init=DCGAN_INIT, dtype=dtype, rngs=rngs)
    self.z_dim, self.out_chans = z_dim, out_chans
    self.img_size = 4 * 2 ** len(widths)
    ins = (z_dim,) + tuple(widths)
    outs = tuple(widths) + (out_chans,)
    # The first layer maps the 1×1 "image" z to 4×4 (kernel 4, stride 1, no padding); then ×2 per layer.
    self.convs = nnx.List([ConvTranspose(i, o, 4, stride=1 if n == 0 else 2, padding=0 if n == 0 else 1, **kw)
                           for n, (i, o) in enumerate(zip(ins, outs))])
    self.norms = nnx.List([_batch_norm(w, rngs, dtype=dtype) for w in widths])  # none on the output

  def __call__(self, z, *, train: bool = False):
    x = z.reshape(z.shape[0], 1, 1, -1)
    for conv, norm in zip(self.convs[:-1], self.norms):
      x = jax.nn.relu(norm(conv(x), train=train))
    return jnp.tanh(self.convs[-1](x).astype(jnp.float32))


class DCGANDiscriminator(nnx.Module):
  """Images (B, S, S, C) → logits (B,): stride-2 4×4 convolutions halving to 4×4, then a 4×4 "valid" one."""

  def __init__(self, *, widths=(64, 128, 256, 512), in_chans: int = 3, dtype=None, rngs: nnx.Rngs):
    kw = dict(kernel_init=DCGAN_INIT, dtype=dtype, rngs=rngs)
    self.in_chans, self.img_size = in_chans, 4 * 2 ** len(widths)
    ins = (in_chans,) + tuple(widths[:-1])
    self.convs = nnx.List([Conv(i, o, 4, stride=2, padding=1, **kw) for i, o in zip(ins, widths)])
    self.norms = nnx.List([_batch_norm(w, rngs, dtype=dtype) for w in widths[1:]])  # none on the input layer
    self.head = Conv(widths[-1], 1, 4, stride=1, padding=0, **kw)

  def __call__(self, x, *, train: bool = False):
    x = jax.nn.leaky_relu(self.convs[0](x), 0.2)
    for conv, norm in zip(self.convs[1:], self.norms):
      x = jax.nn.leaky_relu(norm(conv(x), train=train), 0.2)
    return self.head(x).astype(jnp.float32).reshape(x.shape[0])


class MLPGenerator(nnx.Module):
  """The 1-D toy's generator: z (B, z_dim) → x (B, 1) through ReLU layers."""

  def __init__(self, *, z_dim: int = 1, width: int = 32, depth: int = 2, rngs: nnx.Rngs):
    dims = (z_dim,) + (width,) * depth + (1,)
    self.z_dim = z_dim
    self.layers = nnx.List([Dense(a, b, axes=(None, None), rngs=rngs) for a, b in zip(dims[:-1], dims[1:])])

  def __call__(self, z, *, train: bool = False):
    del train
    for layer in self.layers[:-1]:
      z = jax.nn.relu(layer(z))
    return self.layers[-1](z)


class MLPDiscriminator(nnx.Module):
  """The 1-D toy's discriminator: x (B, 1) → logits (B,) through LeakyReLU layers."""

  def __init__(self, *, width: int = 32, depth: int = 2, rngs: nnx.Rngs):
    dims = (1,) + (width,) * depth + (1,)
    self.layers = nnx.List([Dense(a, b, axes=(None, None), rngs=rngs) for a, b in zip(dims[:-1], dims[1:])])

  def __call__(self, x, *, train: bool = False):
    del train
    for layer in self.layers[:-1]:
      x = jax.nn.leaky_relu(layer(x), 0.2)
    return self.layers[-1](x)[:, 0]


class GAN(nnx.Module):
  """A generator and a discriminator; `GAN(z)` samples."""

  def __init__(self, generator: nnx.Module, discriminator: nnx.Module):
    self.generator, self.discriminator = generator, discriminator
    self.z_dim = generator.z_dim

  def __call__(self, z, *, train: bool = False):
    return self.generator(z, train=train)


def dcgan(*, img_size: int = 64, z_dim: int = 100, in_chans: int = 3, g_width: int = 64, d_width: int = 64,
          dtype=None, param_dtype=jnp.float32, rngs: nnx.Rngs) -> GAN:
  """DCGAN for `img_size` 32 or 64 (and any 4·2^n): G's widths g·2^(n−1) … g, D's d … d·2^(n−1).
  Parameters are float32 (`param_dtype` is accepted for models.create's uniform call)."""
  del param_dtype
  n = (img_size // 4).bit_length() - 1
  if img_size < 8 or 4 * 2 ** n != img_size:
    raise ValueError(f"DCGAN takes img_size = 4·2^n ≥ 8 (32, 64, ...), got {img_size}")
  g_widths = tuple(g_width * 2 ** i for i in reversed(range(n)))
  d_widths = tuple(d_width * 2 ** i for i in range(n))
  return GAN(DCGANGenerator(z_dim=z_dim, widths=g_widths, out_chans=in_chans, dtype=dtype, rngs=rngs),
             DCGANDiscriminator(widths=d_widths, in_chans=in_chans, dtype=dtype, rngs=rngs))


def gan_mlp_1d(*, z_dim: int = 1, width: int = 32, depth: int = 2, dtype=None, param_dtype=None,
               rngs: nnx.Rngs) -> GAN:
  del dtype, param_dtype  # float32 only: a toy
  return GAN(MLPGenerator(z_dim=z_dim, width=width, depth=depth, rngs=rngs),
             MLPDiscriminator(width=width, depth=depth, rngs=rngs))


# Images scaled to [−1, 1] (G's tanh range): mean ½, std ½ of pixels in [0, 1], no crop. Only the recorded
# convention of models.preprocessing: tasks/gan.py scales the uint8 images itself.
for _size in (64, 32, 16):
  register(f"dcgan_{_size}", dcgan, img_size=_size,
           preprocessing=Preprocessing(_size, INCEPTION_MEAN, INCEPTION_STD, crop_pct=1.0))
register("gan_mlp_1d", gan_mlp_1d)



def _generator_input(gan: GAN) -> jax.ShapeDtypeStruct:
  return jax.ShapeDtypeStruct((1, gan.z_dim), jnp.float32)


def _discriminator_input(gan: GAN) -> jax.ShapeDtypeStruct:
  d = gan.discriminator
  if isinstance(d, DCGANDiscriminator):
    return conv_flops.images(d.img_size, d.in_chans)
  return jax.ShapeDtypeStruct((1, 1), jnp.float32)


def generator_flops(gan: GAN, *, count_padding: bool = True) -> float:
  """FLOPs of G on one z (eval mode), element-wise work included (models/conv_flops.py)."""
  return conv_flops.traced_flops(lambda m, z: m.generator(z), gan, _generator_input(gan),
                                 count_padding=count_padding)


def discriminator_flops(gan: GAN, *, count_padding: bool = True) -> float:
  """FLOPs of D on one image (eval mode), element-wise work included."""
  return conv_flops.traced_flops(lambda m, x: m.discriminator(x), gan, _discriminator_input(gan),
                                 count_padding=count_padding)


def forward_flops(gan: GAN, *, count_padding: bool = True) -> float:
  """One forward pass of each network: G on one z and D on one image. A training step runs more
  (tasks/gan.py counts it: G twice, D three times)."""
  return generator_flops(gan, count_padding=count_padding) + discriminator_flops(gan, count_padding=count_padding)


EMBEDDINGS = ()
