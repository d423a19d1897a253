"""The "Intriguing Properties of ViTs" probes against numpy: which patches a drop zeroes, that a shuffle is a
permutation of whole cells, the occluded box."""

import jax
import jax.numpy as jnp
import numpy as np

from papers_jax.evaluators import robustness


def _images():
  return jnp.asarray(np.random.RandomState(0).rand(3, 8, 8, 2).astype(np.float32) + 1.0)  # no zero pixels


def _cells(x, cell):
  x = np.asarray(x)
  return [x[:, r:r + cell, c:c + cell] for r in range(0, x.shape[1], cell) for c in range(0, x.shape[2], cell)]


def test_drop_zeroes_that_fraction_of_whole_cells():
  x = _images()
  out = robustness.drop_patches(x, jax.random.key(1), patch=2, fraction=0.5)
  for b in range(3):
    zero = [bool((cell[b] == 0).all()) for cell in _cells(out, 2)]
    kept = [np.array_equal(cell_out[b], cell_in[b]) for cell_out, cell_in in zip(_cells(out, 2), _cells(x, 2))]
    assert sum(zero) == 8 and all(z != k for z, k in zip(zero, kept))
  other = robustness.drop_patches(x, jax.random.key(2), patch=2, fraction=0.5)
  assert not np.array_equal(np.asarray(out), np.asarray(other))  # the key picks the cells
  np.testing.assert_array_equal(robustness.drop_patches(x, jax.random.key(1), patch=2, fraction=0.0), x)


def test_shuffle_permutes_whole_cells():
  x = _images()
  out = robustness.shuffle_patches(x, jax.random.key(0), cells=4)
  for b in range(3):
    before = sorted(c[b].tobytes() for c in _cells(x, 2))
    after = sorted(c[b].tobytes() for c in _cells(out, 2))
    assert before == after
  assert not np.array_equal(np.asarray(out), np.asarray(x))
  np.testing.assert_array_equal(robustness.shuffle_patches(x, jax.random.key(0), cells=1), x)


def test_occlusion_zeroes_the_centred_box():
  x = _images()
  out = np.asarray(robustness.occlude_box(x, fraction=0.25))
  want = np.asarray(x).copy()
  want[:, 2:6, 2:6] = 0
  np.testing.assert_array_equal(out, want)
