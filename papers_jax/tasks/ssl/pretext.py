"""Pretext tasks as SSL methods: each predicts a label the data makes by itself, with the backbone's
features as the only input of a small head, so the backbone is what the other SSL methods' probes read.

- rotation (Gidaris et al. 2018, RotNet): all four rotations of every image in the batch, 4-way.
- jigsaw (Noroozi & Favaro 2016): a 3 × 3 grid of jittered tiles, each normalised on its own, shuffled by
  one of `num_permutations` permutations of maximal Hamming distance; the backbone encodes every tile
  (shared weights: the "context-free network"), the head sees the 9 features concatenated.
- relative_position (Doersch et al. 2015): the centre tile and one of its eight neighbours (gap and
  jitter from the grid's `cell_size` − `tile_size` and `tile_jitter`), 8-way from the pair's features.
- colorization (Zhang et al. 2016): the backbone sees the L channel; a head on every patch token
  predicts the patch's mean ab colour as a distribution over the quantised ab bins, against soft
  targets, each pixel weighted by the class-rebalancing weight of its bin.
"""

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from papers_jax.data import views
from papers_jax.errors import ConfigError
from papers_jax.objectives import pretext
from papers_jax.tasks.ssl.common import _backbone_at

PRETEXT = ("rotation", "jigsaw", "relative_position", "colorization")
NUM_INPUTS = {"rotation": 1, "jigsaw": 9, "relative_position": 2, "colorization": 1}  # features per head input


def num_outputs(c) -> int:
  if c.method == "colorization":
    return len(pretext.ab_bins(c.ab_grid))
  return {"rotation": pretext.NUM_ROTATIONS, "jigsaw": c.num_permutations,
          "relative_position": len(pretext.NEIGHBOURS)}[c.method]


def _view(task, images, key):
  """The method's one view (SSLTask checks there is exactly one: `ssl.views = "pretext"`, a crop + flip)."""
  return views.make_views(images, key, task.recipes)[0]


def _accuracy(logits, labels):
  return jnp.mean(jnp.argmax(logits, axis=-1) == labels)


def rotation_loss(task, model, images, batch, rng):
  k_view, k_drop = jax.random.split(rng)
  x, labels = pretext.rotations(task._normalize(_view(task, images, k_view)))
  logits = model.projector(model.backbone(x, train=True, rngs=nnx.Rngs(dropout=k_drop)), train=True)
  return pretext.classification_loss(logits, labels).mean(), {"pretext_accuracy": _accuracy(logits, labels)}


def _tiles(task, images, key):
  """(B, 9, s, s, C): the grid's tiles of the view, resized to `tile_view_size` s."""
  c = task.c
  tiles = pretext.grid_tiles(images, key, cell=c.cell_size, tile=c.tile_size, jitter=c.tile_jitter)
  s = c.tile_view_size
  if s != c.tile_size:
    tiles = jax.image.resize(tiles, tiles.shape[:2] + (s, s) + tiles.shape[-1:], "bilinear")
  return tiles


def _encode_tiles(model, tiles, rng):
  """(B, n, s, s, C) tiles → (B, n·D): every tile through the backbone (a ViT sees them through a
  weight-sharing view with resampled position embeddings), features concatenated in tile order."""
  b, n, s = tiles.shape[:3]
  backbone = _backbone_at(model.backbone, s)
  feats = backbone(tiles.reshape((b * n,) + tiles.shape[2:]), train=True, rngs=nnx.Rngs(dropout=rng))
  return feats.reshape(b, -1)


def jigsaw_loss(task, model, images, batch, rng):
  k_view, k_tiles, k_perm, k_drop = jax.random.split(rng, 4)
  tiles = pretext.normalize_tiles(_tiles(task, _view(task, images, k_view), k_tiles))
  shuffled, labels = pretext.shuffle_tiles(tiles, k_perm, task.permutations)
  logits = model.projector(_encode_tiles(model, shuffled, k_drop), train=True)
  return pretext.classification_loss(logits, labels).mean(), {"pretext_accuracy": _accuracy(logits, labels)}


def relative_position_loss(task, model, images, batch, rng):
  k_view, k_tiles, k_pair, k_drop = jax.random.split(rng, 4)
  tiles = _tiles(task, task._normalize(_view(task, images, k_view)), k_tiles)
  centre, neighbour, labels = pretext.patch_pairs(tiles, k_pair)
  logits = model.projector(_encode_tiles(model, jnp.stack([centre, neighbour], axis=1), k_drop), train=True)
  return pretext.classification_loss(logits, labels).mean(), {"pretext_accuracy": _accuracy(logits, labels)}


def lightness(images):
  """RGB (or grey, one channel) in [0, 1] → the L channel scaled to [−1, 1] (Zhang et al. centre L at 50),
  and the Lab image (B, H, W, 3)."""
  rgb = jnp.repeat(images, 3, axis=-1) if images.shape[-1] == 1 else images
  lab = views.rgb_to_lab(rgb)
  return (lab[..., :1] - 50.0) / 50.0, lab


def _patch_grid(backbone):
  patch_embed = getattr(backbone, "patch_embed", None)
  if patch_embed is None:
    raise ConfigError("ssl.method='colorization' predicts a colour per patch token: use a ViT backbone")
  return patch_embed.patch_size


def colorization_loss(task, model, images, batch, rng):
  c = task.c
  k_view, k_drop = jax.random.split(rng)
  x = _view(task, images, k_view)
  if x.shape[-1] != 3:
    raise ConfigError("ssl.method='colorization' needs RGB data (3 channels): e.g. data.name='photo_crops'")
  ell, lab = lightness(x)
  backbone = model.backbone
  ph, pw = _patch_grid(backbone)
  tokens = backbone.forward_features(ell, deterministic=False, rngs=nnx.Rngs(dropout=k_drop))
  logits = model.projector(tokens[:, backbone.num_prefix_tokens:], train=True)  # (B, patches, Q)
  b, h, w = lab.shape[:3]
  ab = lab[..., 1:].reshape(b, h // ph, ph, w // pw, pw, 2).mean(axis=(2, 4)).reshape(b, -1, 2)  # the patch's mean
  bins = pretext.ab_bins(c.ab_grid)
  targets = pretext.soft_encode(ab, bins, neighbours=c.ab_neighbours, sigma=c.ab_sigma)
  loss = pretext.colorization_loss(logits, targets, task.rebalancing).mean()
  return loss, {"pretext_accuracy": jnp.mean(jnp.argmax(logits, -1) == jnp.argmax(targets, -1))}


LOSSES = {"rotation": rotation_loss, "jigsaw": jigsaw_loss, "relative_position": relative_position_loss,
          "colorization": colorization_loss}


def bin_histogram(source, grid: int, max_examples: int) -> np.ndarray:
  """(Q,) counts of the ab bins (nearest centre: rounding to the grid) over the pixels of the first
  `max_examples` images of `source` (RGB uint8): Zhang et al.'s empirical colour distribution."""
  bins = pretext.ab_bins(grid)
  lookup = {(int(a), int(b)): i for i, (a, b) in enumerate(np.round(bins / grid).astype(np.int64))}
  counts = np.zeros(len(bins), np.int64)
  n = min(len(source), max_examples)
  for start in range(0, n, 256):
    images = np.stack([source[i]["image"] for i in range(start, min(n, start + 256))]).astype(np.float32) / 255.0
    lab = pretext.rgb_to_lab_numpy(images)  # numpy: concrete even when first asked for under a trace
    cells = np.round(lab[..., 1:].reshape(-1, 2) / grid).astype(np.int64)
    keys, freq = np.unique(cells, axis=0, return_counts=True)
    for key, f in zip(map(tuple, keys), freq):
      counts[lookup[key]] += f  # every sRGB colour rounds into a bin of ab_bins (its construction)
  return counts


_WEIGHTS = {}  # data config → weights: counted once per process


def rebalancing(task) -> np.ndarray:
  """The colourisation weights of this config's train split (λ = 1: uniform, nothing to count)."""
  from papers_jax.data.sources import get_source
  c, d = task.c, task.config.data
  if not c.rebalance_lambda < 1.0:
    return np.ones(len(pretext.ab_bins(c.ab_grid)), np.float32)
  key = (repr(d), c.ab_grid, c.prior_max_examples, c.rebalance_lambda, c.ab_sigma)
  if key not in _WEIGHTS:
    counts = bin_histogram(get_source(d, d.train_split), c.ab_grid, c.prior_max_examples)
    _WEIGHTS[key] = pretext.rebalancing_weights(counts, pretext.ab_bins(c.ab_grid), lam=c.rebalance_lambda,
                                                sigma=c.ab_sigma)
  return _WEIGHTS[key]
