"""Masked image modelling baselines of the MAE paper (He et al., 2022, §2 and Table 3): BEiT's visual-token
prediction, iGPT's pixel objectives and a denoising autoencoder. Float32 losses, per example.

  block_mask_bank     BEiT's block-wise masks (objectives/beit3.py `block_mask`, Bao et al. Algorithm 1), drawn
                      on the host once into a fixed bank that the train step samples from with its key;
  beit_loss           cross-entropy of the visual token at each masked patch, mean over the masked patches;
  fit_palette         iGPT's colour palette: k-means (Lloyd, k-means++ seeding) over pixel colours;
  palette_ids         each pixel's nearest palette colour, in raster order: the token sequence;
  autoregressive_loss the negative log-likelihood of every pixel given the previous ones (nats per pixel);
  bert_mask           iGPT's BERT mask: every pixel independently with probability `prob` (0.15);
  masked_pixel_loss   the negative log-likelihood of the masked pixels given the unmasked ones;
  corrupt             a denoising autoencoder's input: additive Gaussian noise, then pixels dropped to 0;
  denoising_loss      the squared error of the reconstructed pixels against the clean image, every pixel.
"""

import jax
import jax.numpy as jnp
import numpy as np

from papers_jax.objectives.beit3 import block_mask


def block_mask_bank(grid: tuple[int, int], ratio: float, size: int, seed: int = 0, *, min_patches: int = 16,
                    min_aspect: float = 0.3) -> np.ndarray:
  """(size, h·w) bool: `size` block-wise masks of round(ratio · h·w) patches (fewer where the blocks stall)."""
  rng = np.random.default_rng(seed)
  count = int(round(ratio * grid[0] * grid[1]))
  return np.stack([block_mask(grid, count, rng, min_patches=min_patches, min_aspect=min_aspect).reshape(-1)
                   for _ in range(size)])


def beit_loss(logits, tokens, mask):
  """logits (B, N, V), tokens (B, N) int, mask (B, N) bool → (B,) mean cross-entropy over the masked patches."""
  logp = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)
  nll = -jnp.take_along_axis(logp, tokens[..., None], axis=-1)[..., 0]
  weight = mask.astype(jnp.float32)
  return (nll * weight).sum(-1) / jnp.maximum(weight.sum(-1), 1.0)


def fit_palette(pixels: np.ndarray, k: int, *, iters: int = 50, seed: int = 0) -> np.ndarray:
  """(n, C) colours in [0, 1] → (k, C) float32 cluster centres, sorted by brightness (so ids order by grey
  level); k-means++ seeding, then Lloyd's iterations until the assignment stops changing or `iters`."""
  x = np.asarray(pixels, np.float64).reshape(len(pixels), -1)
  if len(np.unique(x, axis=0)) < k:
    raise ValueError(f"{len(np.unique(x, axis=0))} distinct colours cannot make a palette of {k}")
  rng = np.random.default_rng(seed)
  centres = [x[rng.integers(len(x))]]
  for _ in range(1, k):
    d2 = np.min(((x[:, None] - np.asarray(centres)[None]) ** 2).sum(-1), axis=1)
    centres.append(x[rng.choice(len(x), p=d2 / d2.sum())])
  centres = np.asarray(centres)
  assign = None
  for _ in range(iters):
    new = np.argmin(((x[:, None] - centres[None]) ** 2).sum(-1), axis=1)
    if assign is not None and np.array_equal(new, assign):
      break
    assign = new
    for j in range(k):
      if np.any(assign == j):
        centres[j] = x[assign == j].mean(0)
  return centres[np.argsort(centres.sum(-1))].astype(np.float32)


def palette_ids(images01, palette) -> jax.Array:
  """(B, H, W, C) images in [0, 1] → (B, H·W) int32 ids of the nearest palette colour, raster order."""
  b = images01.shape[0]
  x = images01.astype(jnp.float32).reshape(b, -1, 1, images01.shape[-1])
  return jnp.argmin(jnp.square(x - jnp.asarray(palette)[None, None]).sum(-1), axis=-1).astype(jnp.int32)


def autoregressive_loss(logits, ids):
  """logits (B, n, K) where position i predicts pixel i (its input is [SOS, x_1..x_{n-1}]), ids (B, n) → (B,)
  mean negative log-likelihood in nats per pixel."""
  logp = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)
  return -jnp.take_along_axis(logp, ids[..., None], axis=-1)[..., 0].mean(-1)


def bert_mask(key, shape, prob: float = 0.15):
  """(B, n) bool, each pixel independently with probability `prob` (iGPT §2.2)."""
  return jax.random.bernoulli(key, prob, shape)


def masked_pixel_loss(logits, ids, mask):
  """(B,) mean negative log-likelihood of the masked pixels (0 for an example with none)."""
  return beit_loss(logits, ids, mask)


def corrupt(key, images, *, noise_std: float, drop_prob: float):
  """images + N(0, noise_std²) per pixel, then each pixel (all its channels) set to 0 with probability drop_prob."""
  k_noise, k_drop = jax.random.split(key)
  x = images.astype(jnp.float32) + noise_std * jax.random.normal(k_noise, images.shape)
  dropped = jax.random.bernoulli(k_drop, drop_prob, images.shape[:-1] + (1,))
  return jnp.where(dropped, 0.0, x)


def denoising_loss(pred_patches, clean_patches):
  """(B, N, P) predicted and clean patches → (B,) mean squared error over every pixel."""
  return jnp.square(pred_patches.astype(jnp.float32) - clean_patches.astype(jnp.float32)).mean((-2, -1))
