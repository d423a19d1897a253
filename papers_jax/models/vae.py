"""Variational autoencoders (Kingma & Welling, 2014: "Auto-Encoding Variational Bayes").

`VAE` pairs an encoder q(z|x) = N(μ(x), diag σ²(x)) with a decoder p(x|z) and a prior p(z) = N(0, I).
`encode(x) -> (μ, log σ²)`; `decode(z)` returns the likelihood's parameters per pixel: Bernoulli logits
(C channels) or a Gaussian's mean and log-variance (2C channels, as the paper's Frey Face decoder).
`reparameterize(rng, μ, log σ²)` draws z = μ + σ·ε, ε ~ N(0, I) (§2.4), so gradients flow through μ and σ.

Encoders / decoders:
  - "mlp": the paper's networks (App. C): one hidden layer (500 units for MNIST) with tanh, on the flattened
    image; the decoder's output layer gives the likelihood's parameters.
  - "conv": a small convolutional pair for 32×32 images: stride-2 4×4 convolutions 32→16→8→4 with ReLU and a
    dense layer to (μ, log σ²); the decoder mirrors it with transposed convolutions.
Images enter as floats in [0, 1], NHWC.
"""

import math

import jax
import jax.numpy as jnp
from flax import nnx

from papers_jax.models import conv_flops
from papers_jax.models.registry import Preprocessing, register
from papers_jax.nn.conv import Conv, ConvTranspose
from papers_jax.nn.linear import Dense

LIKELIHOODS = ("bernoulli", "gaussian")
ACTIVATIONS = {"tanh": jnp.tanh, "relu": jax.nn.relu}


class MLPEncoder(nnx.Module):
  def __init__(self, in_dim: int, hidden: int, latent_dim: int, activation: str, *, dtype, rngs: nnx.Rngs):
    self.hidden = Dense(in_dim, hidden, axes=("embed", "mlp"), dtype=dtype, rngs=rngs)
    self.out = Dense(hidden, 2 * latent_dim, axes=("mlp", None), dtype=dtype, rngs=rngs)
    self.act = activation

  def __call__(self, x):
    return self.out(ACTIVATIONS[self.act](self.hidden(x.reshape(x.shape[0], -1))))


class MLPDecoder(nnx.Module):
  def __init__(self, latent_dim: int, hidden: int, out_shape: tuple, activation: str, *, dtype, rngs: nnx.Rngs):
    self.out_shape = tuple(out_shape)
    self.hidden = Dense(latent_dim, hidden, axes=(None, "mlp"), dtype=dtype, rngs=rngs)
    self.out = Dense(hidden, math.prod(out_shape), axes=("mlp", "embed"), dtype=dtype, rngs=rngs)
    self.act = activation

  def __call__(self, z):
    return self.out(ACTIVATIONS[self.act](self.hidden(z))).reshape((z.shape[0],) + self.out_shape)


class ConvEncoder(nnx.Module):
  def __init__(self, img_size: int, in_chans: int, widths, latent_dim: int, *, dtype, rngs: nnx.Rngs):
    ins = (in_chans,) + tuple(widths[:-1])
    self.convs = nnx.List([Conv(i, o, 4, stride=2, padding=1, use_bias=True, dtype=dtype, rngs=rngs)
                           for i, o in zip(ins, widths)])
    side = img_size // 2 ** len(widths)
    self.out = Dense(side * side * widths[-1], 2 * latent_dim, axes=("embed", None), dtype=dtype, rngs=rngs)

  def __call__(self, x):
    for conv in self.convs:
      x = jax.nn.relu(conv(x))
    return self.out(x.reshape(x.shape[0], -1))


class ConvDecoder(nnx.Module):
  def __init__(self, img_size: int, out_chans: int, widths, latent_dim: int, *, dtype, rngs: nnx.Rngs):
    self.side, self.width = img_size // 2 ** len(widths), widths[-1]
    self.inp = Dense(latent_dim, self.side * self.side * widths[-1], axes=(None, "embed"), dtype=dtype, rngs=rngs)
    chans = tuple(reversed(widths)) + (out_chans,)
    self.convs = nnx.List([ConvTranspose(i, o, 4, stride=2, padding=1, use_bias=True, dtype=dtype, rngs=rngs)
                           for i, o in zip(chans[:-1], chans[1:])])

  def __call__(self, z):
    x = jax.nn.relu(self.inp(z)).reshape(z.shape[0], self.side, self.side, self.width)
    for conv in self.convs[:-1]:
      x = jax.nn.relu(conv(x))
    return self.convs[-1](x)


class VAE(nnx.Module):
  """`arch` "mlp" or "conv"; `likelihood` "bernoulli" or "gaussian"; images (B, img_size, img_size, in_chans)."""

  def __init__(self, *, arch: str = "mlp", likelihood: str = "bernoulli", img_size: int = 28, in_chans: int = 1,
               latent_dim: int = 20, hidden: int = 500, activation: str = "tanh", widths=(32, 64, 128),
               dtype=None, param_dtype=jnp.float32, rngs: nnx.Rngs):
    del param_dtype  # float32 parameters
    if likelihood not in LIKELIHOODS:
      raise ValueError(f"likelihood={likelihood!r}; choose from {LIKELIHOODS}")
    if arch not in ("mlp", "conv"):
      raise ValueError(f"arch={arch!r}; choose 'mlp' or 'conv'")
    self.likelihood, self.latent_dim, self.img_size, self.in_chans = likelihood, latent_dim, img_size, in_chans
    out_chans = in_chans * (2 if likelihood == "gaussian" else 1)
    if arch == "mlp":
      self.encoder = MLPEncoder(img_size * img_size * in_chans, hidden, latent_dim, activation, dtype=dtype, rngs=rngs)
      self.decoder = MLPDecoder(latent_dim, hidden, (img_size, img_size, out_chans), activation, dtype=dtype,
                                rngs=rngs)
    else:
      if img_size % 2 ** len(widths):
        raise ValueError(f"the conv VAE halves img_size {len(widths)} times; {img_size} does not divide")
      self.encoder = ConvEncoder(img_size, in_chans, tuple(widths), latent_dim, dtype=dtype, rngs=rngs)
      self.decoder = ConvDecoder(img_size, out_chans, tuple(widths), latent_dim, dtype=dtype, rngs=rngs)

  def encode(self, x):
    """(μ, log σ²), each (B, latent_dim), float32."""
    h = self.encoder(x).astype(jnp.float32)
    return h[:, :self.latent_dim], h[:, self.latent_dim:]

  def decode(self, z):
    """Bernoulli logits (B, H, W, C), or the Gaussian's (mean, log-variance), each (B, H, W, C); float32."""
    out = self.decoder(z).astype(jnp.float32)
    if self.likelihood == "bernoulli":
      return out
    return out[..., :self.in_chans], out[..., self.in_chans:]

  def __call__(self, x, rng):
    """(decoder output, μ, log σ²) for one z ~ q(z|x)."""
    mu, logvar = self.encode(x)
    return self.decode(reparameterize(rng, mu, logvar)), mu, logvar


def reparameterize(rng, mu, logvar):
  """z = μ + σ·ε with ε ~ N(0, I), σ = exp(½ log σ²)."""
  return mu + jnp.exp(0.5 * logvar) * jax.random.normal(rng, mu.shape, mu.dtype)


# Pixels in [0, 1] (mean 0, std 1), no crop: the recorded convention of models.preprocessing; tasks/vae.py
# binarises or dequantises the uint8 images itself.
register("vae_mlp", VAE, arch="mlp", preprocessing=Preprocessing(28, (0.0,) * 3, (1.0,) * 3, crop_pct=1.0))
register("vae_conv", VAE, arch="conv", activation="relu", img_size=32,
         preprocessing=Preprocessing(32, (0.0,) * 3, (1.0,) * 3, crop_pct=1.0))



def forward_flops(model: VAE, *, count_padding: bool = True) -> float:
  """FLOPs of one training forward pass per image, element-wise work included (models/conv_flops.py): the
  encoder, one reparameterised z (the ELBO's L = 1 sample) and the decoder."""
  return conv_flops.traced_flops(lambda m, x: m(x, jax.random.key(0)), model,
                                 conv_flops.images(model.img_size, model.in_chans), count_padding=count_padding)


EMBEDDINGS = ()
