"""The ViT paper's masked patch prediction: mean-colour classes, the corruption draw and the loss against
numpy, and that the model replaces exactly the drawn embeddings."""

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from papers_jax import models
from papers_jax.objectives import masked_patch


def test_mean_colour_classes_equal_numpy():
  images = np.random.RandomState(0).rand(2, 8, 8, 3).astype(np.float32)
  got = np.asarray(masked_patch.mean_colour_classes(jnp.asarray(images), 4, bits=3))
  want = np.zeros((2, 4), np.int64)
  for b in range(2):
    for n, (r, c) in enumerate([(0, 0), (0, 4), (4, 0), (4, 4)]):
      mean = images[b, r:r + 4, c:c + 4].reshape(-1, 3).mean(0)
      digits = np.minimum((mean * 8).astype(int), 7)
      want[b, n] = digits[0] * 64 + digits[1] * 8 + digits[2]
  np.testing.assert_array_equal(got, want)
  assert masked_patch.mean_colour_classes(jnp.ones((1, 4, 4, 1)), 2).max() == 7  # white is the top bin


def test_corruption_draw_and_loss():
  corrupted, to_mask, to_other, other = (np.asarray(a) for a in masked_patch.corruption(jax.random.key(0), 400, 16))
  assert (corrupted.sum(1) == 8).all()  # half of the 16 patches of every example
  assert not (to_mask & ~corrupted).any() and not (to_other & ~corrupted).any() and not (to_mask & to_other).any()
  frac_mask, frac_other = to_mask.sum() / corrupted.sum(), to_other.sum() / corrupted.sum()
  assert abs(frac_mask - 0.8) < 0.02 and abs(frac_other - 0.1) < 0.02, (frac_mask, frac_other)
  assert (other != np.arange(16)[None]).all()
  logits = np.random.RandomState(1).randn(3, 5, 4).astype(np.float32)
  classes = np.random.RandomState(2).randint(0, 4, (3, 5))
  mask = np.array([[1, 0, 1, 0, 0], [0, 0, 0, 0, 1], [1, 1, 1, 1, 1]], bool)
  logp = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
  want = [np.mean([-logp[b, n, classes[b, n]] for n in range(5) if mask[b, n]]) for b in range(3)]
  np.testing.assert_allclose(masked_patch.masked_patch_loss(logits, classes, mask), want, rtol=1e-5)


def test_model_replaces_exactly_the_drawn_embeddings():
  model = models.create("mpp_vit_tiny_patch16_224", img_size=8, patch_size=2, in_chans=1, embed_dim=16, depth=1,
                        num_heads=2, rngs=nnx.Rngs(0))
  assert model.num_colours == 8
  images = jnp.asarray(np.random.RandomState(0).randn(2, 8, 8, 1).astype(np.float32))
  key = jax.random.key(3)
  seen = {}
  model.vit.encode_patches = lambda x, **kw: (seen.setdefault("x", x), jnp.zeros((2, 17, 16)))[1]  # capture
  logits, corrupted = model(images, rng=key)
  assert logits.shape == (2, 16, 8) and corrupted.shape == (2, 16)
  clean = np.asarray(model.vit.patch_embed(images))
  _, to_mask, to_other, other = (np.asarray(a) for a in masked_patch.corruption(key, 2, 16))
  want = np.where(to_mask[..., None], np.asarray(model.mask_token[...]),
                  np.where(to_other[..., None], np.take_along_axis(clean, other[..., None], axis=1), clean))
  np.testing.assert_allclose(np.asarray(seen["x"]), want, atol=1e-6)
