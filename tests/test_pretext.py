"""Pretext tasks (objectives/pretext.py, tasks/ssl/pretext.py): every piece against numpy written here. The
four configs (FULL_ONLY in tests/test_configs.py) build and trace their losses in test_heavy_config_builds."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from papers_jax.objectives import pretext

grid_tiles = jax.jit(pretext.grid_tiles, static_argnames=("cell", "tile", "jitter", "grid"))


def _coordinate_images(b=2, h=16, w=16):
  """Images whose pixel (y, x) holds y·100 + x, so a tile's top-left pixel says where it was cut."""
  yx = np.arange(h)[:, None] * 100 + np.arange(w)[None, :]
  return jnp.asarray(np.broadcast_to(yx[None, :, :, None], (b, h, w, 1)).astype(np.float32))


def test_rotations_match_numpy():
  x = np.random.default_rng(0).normal(size=(3, 5, 5, 2)).astype(np.float32)
  rotated, labels = pretext.rotations(jnp.asarray(x))
  want = np.concatenate([np.rot90(x, k, axes=(1, 2)) for k in range(4)])
  np.testing.assert_array_equal(np.asarray(rotated), want)
  np.testing.assert_array_equal(np.asarray(labels), np.repeat(np.arange(4), 3))


def test_classification_loss_matches_numpy():
  rng = np.random.default_rng(1)
  logits, labels = rng.normal(size=(6, 8)) * 3, rng.integers(0, 8, 6)
  shifted = logits - logits.max(1, keepdims=True)
  log_p = shifted - np.log(np.exp(shifted).sum(1, keepdims=True))
  got = pretext.classification_loss(jnp.asarray(logits, jnp.float32), jnp.asarray(labels))
  np.testing.assert_allclose(np.asarray(got), -log_p[np.arange(6), labels], rtol=1e-5)


def _reference_permutations(n, num_tiles, seed):
  """Noroozi & Favaro's Algorithm 1 as the reference code spells it: remove the chosen one from the
  candidates, recompute the Hamming distances of every candidate to the whole chosen set, take the
  largest mean (in integer counts here: the float means' rounding would break exact ties at random)."""
  candidates = np.array(list(itertools.permutations(range(num_tiles))))
  j = np.random.default_rng(seed).integers(len(candidates))
  chosen = []
  for _ in range(n):
    chosen.append(candidates[j])
    candidates = np.delete(candidates, j, axis=0)
    if len(chosen) < n:
      distances = (np.asarray(chosen)[:, None, :] != candidates[None]).sum(axis=2)  # (chosen, candidates)
      j = int(np.argmax(distances.sum(axis=0)))
  return np.asarray(chosen)


@pytest.mark.parametrize("n,tiles", [(24, 4), (30, 5), (12, 6)])
def test_permutation_set_is_the_maximal_hamming_algorithm(n, tiles):
  got = pretext.maximal_hamming_permutations(n, tiles, seed=3)
  np.testing.assert_array_equal(got, _reference_permutations(n, tiles, 3))
  assert len({tuple(p) for p in got}) == n and sorted(got[0]) == list(range(tiles))


def test_permutation_set_of_100_is_far_apart():
  perms = pretext.maximal_hamming_permutations(100)
  d = (perms[:, None] != perms[None]).sum(-1)[np.triu_indices(100, 1)]
  assert d.min() >= 2 and d.mean() > 7.5  # random permutations of 9 average 8 mismatches, the set ~8.1


def test_grid_tiles_and_jitter_stay_in_their_cells():
  x = _coordinate_images()
  tiles = grid_tiles(x, jax.random.key(0), cell=5, tile=4, jitter=0)
  assert tiles.shape == (2, 9, 4, 4, 1)
  top = (16 - 15) // 2
  for i in range(9):
    r, c = divmod(i, 3)
    y, xx = top + 5 * r, top + 5 * c  # centred in its cell: (5 − 4) // 2 = 0
    np.testing.assert_array_equal(np.asarray(tiles[0, i]), np.asarray(x[0, y:y + 4, xx:xx + 4]))
  jittered = np.asarray(grid_tiles(_coordinate_images(64, 40, 40), jax.random.key(1), cell=12, tile=6,
                                           jitter=2))
  corner = jittered[:, :, 0, 0, 0]
  ys, xs = corner // 100, corner % 100
  offset_y = ys - (2 + 12 * (np.arange(9) // 3))  # the grid starts at (40 − 36) // 2 = 2
  offset_x = xs - (2 + 12 * (np.arange(9) % 3))
  assert offset_y.min() == 1 and offset_y.max() == 5 and offset_x.min() == 1 and offset_x.max() == 5  # 3 ± 2
  np.testing.assert_array_equal(jittered[..., 0] - corner[..., None, None],  # each tile is one contiguous cut
                                np.broadcast_to(np.arange(6)[:, None] * 100 + np.arange(6), jittered.shape[:-1]))


def test_relative_position_labels_follow_the_geometry():
  x = _coordinate_images(256)
  tiles = grid_tiles(x, jax.random.key(0), cell=5, tile=4, jitter=0)
  centre, neighbour, labels = (np.asarray(a) for a in jax.jit(pretext.patch_pairs)(tiles, jax.random.key(2)))
  dy = (neighbour[:, 0, 0, 0] // 100 - centre[:, 0, 0, 0] // 100) // 5
  dx = (neighbour[:, 0, 0, 0] % 100 - centre[:, 0, 0, 0] % 100) // 5
  # Doersch et al.'s numbering: row-major around the centre, skipping it.
  want = {(-1, -1): 0, (-1, 0): 1, (-1, 1): 2, (0, -1): 3, (0, 1): 4, (1, -1): 5, (1, 0): 6, (1, 1): 7}
  np.testing.assert_array_equal(labels, [want[(a, b)] for a, b in zip(dy, dx)])
  assert set(labels) == set(range(8))
  np.testing.assert_array_equal(centre, np.asarray(tiles[:, 4]))


def test_shuffle_tiles_puts_tile_perm_i_at_position_i():
  perms = pretext.maximal_hamming_permutations(10)
  tiles = jnp.broadcast_to(jnp.arange(9.0)[None, :, None, None, None], (5, 9, 2, 2, 1))
  shuffled, labels = jax.jit(pretext.shuffle_tiles)(tiles, jax.random.key(0), perms)
  np.testing.assert_array_equal(np.asarray(shuffled)[:, :, 0, 0, 0], perms[np.asarray(labels)])


def test_normalize_tiles_matches_numpy():
  t = np.random.default_rng(2).normal(3, 2, size=(2, 9, 4, 4, 3)).astype(np.float32)
  mean, var = t.mean(axis=(2, 3, 4), keepdims=True), t.var(axis=(2, 3, 4), keepdims=True)
  np.testing.assert_allclose(np.asarray(pretext.normalize_tiles(jnp.asarray(t))), (t - mean) / np.sqrt(var + 1e-5),
                             rtol=1e-4, atol=1e-5)


def test_ab_bins_cover_the_srgb_gamut():
  bins = pretext.ab_bins()
  assert len(bins) == 262 and np.all(bins % 10 == 0)
  assert [0.0, 0.0] in bins.tolist() and np.abs(bins).max() <= 110
  assert [-110.0, 110.0] not in bins.tolist()  # far outside sRGB


def test_soft_encoding_matches_numpy():
  bins = pretext.ab_bins()
  ab = np.random.default_rng(3).uniform(-60, 60, size=(4, 7, 2)).astype(np.float32)
  got = np.asarray(pretext.soft_encode(jnp.asarray(ab), bins, neighbours=5, sigma=5.0))
  want = np.zeros((4, 7, len(bins)))
  for i, j in np.ndindex(4, 7):
    d2 = ((bins - ab[i, j]) ** 2).sum(1)
    near = np.argsort(d2)[:5]
    w = np.exp(-d2[near] / (2 * 25.0))
    want[i, j, near] = w / w.sum()
  np.testing.assert_allclose(got, want, atol=1e-6)


def test_rebalancing_weights_match_numpy():
  bins = pretext.ab_bins()
  counts = np.random.default_rng(4).integers(0, 1000, len(bins)) * (np.random.default_rng(5).random(len(bins)) < 0.3)
  got = pretext.rebalancing_weights(counts, bins, lam=0.5, sigma=5.0)
  p = counts / counts.sum()
  smoothed = np.array([sum(p[j] * np.exp(-((bins[i] - bins[j]) ** 2).sum() / 50.0) for j in range(len(bins)))
                       for i in range(len(bins))])
  smoothed /= smoothed.sum()
  w = 1.0 / (0.5 * smoothed + 0.5 / len(bins))
  np.testing.assert_allclose(got, w / (smoothed * w).sum(), rtol=1e-5)
  np.testing.assert_allclose((smoothed * got).sum(), 1.0, rtol=1e-5)
  np.testing.assert_allclose(pretext.rebalancing_weights(counts, bins, lam=1.0), 1.0, rtol=1e-6)


def test_bin_histogram_counts_rounded_ab():
  from papers_jax.tasks.ssl.pretext import bin_histogram
  rng = np.random.default_rng(7)
  images = rng.integers(0, 256, size=(5, 3, 4, 3), dtype=np.uint8)
  counts = bin_histogram([{"image": im} for im in images], 10.0, 4)  # the first 4 images only
  bins = pretext.ab_bins()
  ab = pretext.rgb_to_lab_numpy(images[:4].astype(np.float32) / 255.0)[..., 1:].reshape(-1, 2)
  nearest = np.argmin(((ab[:, None] - bins[None]) ** 2).sum(-1), axis=1)  # rounding = the nearest centre
  np.testing.assert_array_equal(counts, np.bincount(nearest, minlength=len(bins)))


def test_colorization_loss_matches_numpy():
  rng = np.random.default_rng(6)
  logits = rng.normal(size=(2, 3, 4, 6)).astype(np.float32)
  targets = rng.dirichlet(np.ones(6), size=(2, 3, 4)).astype(np.float32)
  weights = rng.uniform(0.5, 2.0, 6).astype(np.float32)
  log_p = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
  per_pixel = -(targets * log_p).sum(-1) * weights[targets.argmax(-1)]
  got = pretext.colorization_loss(jnp.asarray(logits), jnp.asarray(targets), jnp.asarray(weights))
  np.testing.assert_allclose(np.asarray(got), per_pixel.reshape(2, -1).mean(1), rtol=1e-5)
