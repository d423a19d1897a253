"""Pretext-task objectives (tasks/ssl/pretext.py): rotation prediction (Gidaris et al. 2018), jigsaw
puzzles (Noroozi & Favaro 2016), relative patch position (Doersch et al. 2015) and colourisation
(Zhang et al. 2016). Pure functions of arrays; tests/test_pretext.py checks each against numpy.
"""

import functools
import itertools

import jax
import jax.numpy as jnp
import numpy as np

NUM_ROTATIONS = 4
# Doersch et al.'s eight positions: the 3 × 3 grid's cells other than the centre (4), row-major, so label 0
# is the top-left neighbour, 1 the one above, 2 the top-right, 3 left, 4 right, 5 bottom-left, 6 below, 7
# bottom-right (the paper's Figure 2 numbers them 1-8 in the same order).
CENTRE = 4
NEIGHBOURS = (0, 1, 2, 3, 5, 6, 7, 8)


# ---------------------------------------------------------------------------- rotation
def rotations(images):
  """(B, H, W, C) square images → (4B, H, W, C) copies rotated by 0°, 90°, 180°, 270° (counter-clockwise) and
  their labels (4B,) = 0, 1, 2, 3: RotNet feeds all four rotations of every image in one batch."""
  b = images.shape[0]
  rotated = jnp.concatenate([jnp.rot90(images, k, axes=(1, 2)) for k in range(NUM_ROTATIONS)])
  return rotated, jnp.repeat(jnp.arange(NUM_ROTATIONS, dtype=jnp.int32), b)


def classification_loss(logits, labels):
  """Per-example softmax cross-entropy against integer labels (every classification pretext task)."""
  return -jnp.take_along_axis(jax.nn.log_softmax(logits.astype(jnp.float32)), labels[:, None], axis=-1)[:, 0]


# ---------------------------------------------------------------------------- tiles
def grid_tiles(images, key, *, cell: int, tile: int, jitter: int, grid: int = 3):
  """(B, grid², tile, tile, C): one tile per cell of a grid × grid grid of `cell`-px cells centred in the
  image, row-major. Each tile sits at the centre of its cell moved by an integer offset drawn uniformly in
  [−jitter, jitter] per axis (clipped to the cell): Noroozi & Favaro's 64-px tiles at random positions
  in 75-px cells (jitter 5), Doersch et al.'s 96-px patches with 48-px gaps (cell 144) jittered by ≤ 7 px."""
  b, h, w, c = images.shape
  if grid * cell > min(h, w) or tile > cell:
    raise ValueError(f"a {grid}×{grid} grid of {cell}-px cells with {tile}-px tiles does not fit {h}×{w} images")
  base = (cell - tile) // 2
  offsets = jnp.clip(base + jax.random.randint(key, (b, grid * grid, 2), -jitter, jitter + 1), 0, cell - tile)
  cells = jnp.arange(grid * grid)
  top = (h - grid * cell) // 2 + (cells // grid) * cell + offsets[..., 0]
  left = (w - grid * cell) // 2 + (cells % grid) * cell + offsets[..., 1]

  def one(image, tops, lefts):
    return jax.vmap(lambda y, x: jax.lax.dynamic_slice(image, (y, x, 0), (tile, tile, c)))(tops, lefts)

  return jax.vmap(one)(images, top, left)


def normalize_tiles(tiles, eps: float = 1e-5):
  """Each tile to zero mean and unit standard deviation on its own (Noroozi & Favaro: so that the
  puzzle cannot be solved from the tiles' mean brightness and contrast)."""
  axes = tuple(range(tiles.ndim - 3, tiles.ndim))
  mean = tiles.mean(axis=axes, keepdims=True)
  return (tiles - mean) / jnp.sqrt(tiles.var(axis=axes, keepdims=True) + eps)


# ---------------------------------------------------------------------------- jigsaw
@functools.cache
def maximal_hamming_permutations(num_permutations: int, num_tiles: int = 9, seed: int = 0) -> np.ndarray:
  """(num_permutations, num_tiles) int32: Noroozi & Favaro's Algorithm 1 (the "maximal" set). Start from one
  permutation drawn uniformly among all num_tiles!; then repeatedly add the unchosen permutation whose summed
  Hamming distance to the chosen ones is largest (first index on ties, in itertools' lexicographic order).
  The summed distances are kept up to date incrementally: one pass over the num_tiles! per added one."""
  candidates = np.array(list(itertools.permutations(range(num_tiles))), np.int8)
  if not 1 <= num_permutations <= len(candidates):
    raise ValueError(f"{num_permutations} permutations of {num_tiles} tiles: choose 1 to {len(candidates)}")
  columns = np.ascontiguousarray(candidates.T)  # one contiguous row per tile position: fast compares
  chosen = [int(np.random.default_rng(seed).integers(len(candidates)))]
  total = np.zeros(len(candidates), np.int32)
  for _ in range(num_permutations - 1):
    for position, tile in enumerate(candidates[chosen[-1]]):
      total += columns[position] != tile
    total[chosen] = -1  # chosen ones are out (a chosen one's distance to itself is 0 anyway)
    chosen.append(int(np.argmax(total)))
  return candidates[chosen].astype(np.int32)


def shuffle_tiles(tiles, key, permutations):
  """Tiles (B, T, ...) reordered by a permutation drawn per example from `permutations` (P, T):
  position i of the puzzle shows tile permutations[p, i]. Returns (shuffled tiles, p (B,))."""
  labels = jax.random.randint(key, (tiles.shape[0],), 0, permutations.shape[0])
  order = jnp.asarray(permutations)[labels]
  return jnp.take_along_axis(tiles, order.reshape(order.shape + (1,) * (tiles.ndim - 2)), axis=1), labels


# ---------------------------------------------------------------------------- relative position
def patch_pairs(tiles, key):
  """Doersch et al.'s pairs from grid tiles (B, 9, ...): the centre tile, a neighbour drawn uniformly among
  the eight, and the neighbour's position label (B,) in NEIGHBOURS' order."""
  labels = jax.random.randint(key, (tiles.shape[0],), 0, len(NEIGHBOURS))
  index = jnp.asarray(NEIGHBOURS)[labels]
  neighbour = jnp.take_along_axis(tiles, index.reshape((-1,) + (1,) * (tiles.ndim - 1)), axis=1)[:, 0]
  return tiles[:, CENTRE], neighbour, labels


# ---------------------------------------------------------------------------- colourisation
def rgb_to_lab_numpy(rgb: np.ndarray) -> np.ndarray:
  """data/views.py's rgb_to_lab in numpy (float32): sRGB in [0, 1] (..., 3) → L*a*b*."""
  from papers_jax.data.views import D65_WHITE, XYZ_FROM_RGB
  rgb = np.asarray(rgb, np.float32)
  linear = np.where(rgb > 0.04045, ((rgb + 0.055) / 1.055) ** 2.4, rgb / 12.92)
  xyz = (linear @ np.asarray(XYZ_FROM_RGB).T) / np.asarray(D65_WHITE)
  f = np.where(xyz > 0.008856, np.cbrt(xyz), 7.787 * xyz + 16.0 / 116.0)
  return np.stack([116.0 * f[..., 1] - 16.0, 500.0 * (f[..., 0] - f[..., 1]), 200.0 * (f[..., 1] - f[..., 2])], axis=-1)


@functools.cache
def ab_bins(grid: int = 10, samples: int = 128) -> np.ndarray:
  """(Q, 2) float32 centres of Zhang et al.'s quantised ab space: the bins of a `grid`-wide grid (centres on
  multiples of `grid`) that some sRGB colour falls in, found by converting a samples² lattice on each face of
  the sRGB cube to Lab and rounding its ab to the nearest centre. The paper keeps the 313 bins of ImageNet's
  pixels' hull; the sRGB gamut fills 262 at grid 10 (tests/test_pretext.py)."""
  # Lab is a continuous bijection of the cube, and every line along L through the image of the solid cube
  # meets the image of its surface: the six faces reach the same ab as the whole cube.
  axis = np.linspace(0.0, 1.0, samples, dtype=np.float32)
  u, v = [a.ravel() for a in np.meshgrid(axis, axis, indexing="ij")]
  faces = [np.insert(np.stack([u, v], axis=1), i, value, axis=1) for i in range(3) for value in (0.0, 1.0)]
  ab = rgb_to_lab_numpy(np.concatenate(faces))[:, 1:]
  cells = set(map(tuple, np.unique(np.round(ab / grid).astype(np.int64), axis=0)))
  return (np.array(sorted(cells), np.int64) * grid).astype(np.float32)


def soft_encode(ab, bins, *, neighbours: int = 5, sigma: float = 5.0):
  """ab values (..., 2) → (..., Q) soft targets: Gaussian weights (σ = `sigma`) on the `neighbours` nearest
  bin centres, normalised to sum 1 (Zhang et al.'s soft encoding, 5 neighbours, σ = 5)."""
  d2 = jnp.sum((ab[..., None, :] - jnp.asarray(bins)) ** 2, axis=-1)
  neg, index = jax.lax.top_k(-d2, neighbours)
  weights = jax.nn.softmax(neg / (2.0 * sigma ** 2), axis=-1)  # exp(−d²/2σ²), normalised
  return jnp.sum(jax.nn.one_hot(index, bins.shape[0], dtype=jnp.float32) * weights[..., None], axis=-2)


def rebalancing_weights(prior: np.ndarray, bins: np.ndarray, *, lam: float = 0.5, sigma: float = 5.0) -> np.ndarray:
  """Zhang et al.'s class-rebalancing weights (Q,): w ∝ ((1 − λ)·p̃ + λ/Q)⁻¹ with p̃ the empirical bin
  distribution `prior` smoothed by a Gaussian of σ = `sigma` over the ab plane, scaled so that E_p̃[w] = 1."""
  prior = np.asarray(prior, np.float64) / np.sum(prior)
  d2 = np.sum((bins[:, None, :] - bins[None, :, :]) ** 2, axis=-1)
  kernel = np.exp(-d2 / (2.0 * sigma ** 2))
  smoothed = kernel @ prior
  smoothed /= smoothed.sum()
  weights = 1.0 / ((1.0 - lam) * smoothed + lam / len(bins))
  return (weights / np.sum(smoothed * weights)).astype(np.float32)


def colorization_loss(logits, targets, weights):
  """Zhang et al.'s multinomial loss per image: −Σ_pixels v(Z) Σ_q Z_q log Ẑ_q with v(Z) = w[argmax_q Z],
  averaged over the pixels. logits, targets (B, ..., Q); weights (Q,)."""
  log_probs = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)
  per_pixel = -jnp.sum(targets * log_probs, axis=-1) * jnp.asarray(weights)[jnp.argmax(targets, axis=-1)]
  return per_pixel.reshape(per_pixel.shape[0], -1).mean(axis=1)
