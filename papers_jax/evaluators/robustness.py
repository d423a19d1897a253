"""The input corruptions of "Intriguing Properties of Vision Transformers" (Naseer et al., NeurIPS 2021, §3)
as image probes for any classifier, applied to normalised images (B, H, W, C):

- `drop_patches`: a random fraction of the cells of a grid of patches set to zero, the normalised mean
  (the paper's random PatchDrop, §3.1, at the ViT's patch size);
- `shuffle_patches`: the image cut into a g × g grid whose cells are put back in a random order (§3.3,
  "patch shuffling"; g = 1 leaves the image as it is);
- `occlude_box`: a centred square covering a fraction of the area set to zero (a single-box occlusion, for
  reading the other two against).

Each draw is fixed by its key, so two models see the same corrupted images. `probe_accuracy` runs one
probe over a whole source through a jitted classifier (tools/robustness.py prints a model's table).
"""

import jax
import jax.numpy as jnp
import numpy as np


def _grid(images, cells: int):
  b, h, w, c = images.shape
  if h % cells or w % cells:
    raise ValueError(f"a {h}x{w} image does not cut into a {cells}x{cells} grid")
  ph, pw = h // cells, w // cells
  return images.reshape(b, cells, ph, cells, pw, c).transpose(0, 1, 3, 2, 4, 5).reshape(b, cells * cells, ph, pw, c)


def _ungrid(patches, cells: int):
  b, _, ph, pw, c = patches.shape
  return patches.reshape(b, cells, cells, ph, pw, c).transpose(0, 1, 3, 2, 4, 5).reshape(b, cells * ph, cells * pw, c)


def drop_patches(images, key, *, patch: int, fraction: float):
  """Zeroes round(fraction · N) of the N patch×patch cells of each image, chosen uniformly per image."""
  cells = images.shape[1] // patch
  n = cells * cells
  drop = int(round(fraction * n))
  ranks = jnp.argsort(jax.random.uniform(key, (images.shape[0], n)), axis=1).argsort(axis=1)
  keep = (ranks >= drop)[:, :, None, None, None]
  return _ungrid(_grid(images, cells) * keep.astype(images.dtype), cells)


def shuffle_patches(images, key, *, cells: int):
  """Each image's cells × cells patches in a random order of its own."""
  patches = _grid(images, cells)
  order = jnp.argsort(jax.random.uniform(key, patches.shape[:2]), axis=1)
  return _ungrid(jnp.take_along_axis(patches, order[:, :, None, None, None], axis=1), cells)


def occlude_box(images, key=None, *, fraction: float):
  """A centred square of `fraction` of the image area set to zero."""
  del key
  h, w = images.shape[1:3]
  side_h, side_w = int(round(h * fraction ** 0.5)), int(round(w * fraction ** 0.5))
  rows, cols = jnp.arange(h)[:, None], jnp.arange(w)[None, :]
  top, left = (h - side_h) // 2, (w - side_w) // 2
  inside = (rows >= top) & (rows < top + side_h) & (cols >= left) & (cols < left + side_w)
  return jnp.where(inside[None, :, :, None], 0.0, images).astype(images.dtype)


PROBES = {"drop": drop_patches, "shuffle": shuffle_patches, "occlude": occlude_box}


def probe_accuracy(logits_fn, source, preprocess, normalize, probe: str, seed: int = 0, batch_size: int = 256,
                   **settings) -> float:
  """Top-1 accuracy of `logits_fn(normalised images)` on `source` with `probe` (a PROBES key, with its
  settings) applied to every image; batch b draws with key fold_in(seed, b)."""
  corrupt = PROBES[probe]
  apply = jax.jit(lambda images, key: logits_fn(corrupt(normalize(images), key, **settings)))
  correct = total = 0
  for b, start in enumerate(range(0, len(source), batch_size)):
    examples = [preprocess(dict(source[i]), None) for i in range(start, min(start + batch_size, len(source)))]
    images = np.stack([e["image"] for e in examples])
    pad = batch_size - len(images)
    if pad:  # one shape for every batch: one compilation
      images = np.concatenate([images, np.repeat(images[:1], pad, axis=0)])
    logits = np.asarray(apply(images, jax.random.fold_in(jax.random.key(seed), b)))[:len(examples)]
    correct += int((logits.argmax(-1) == np.asarray([e["label"] for e in examples])).sum())
    total += len(examples)
  return correct / total
