"""Features of a whole data source through a jitted function, in fixed-size batches (the last one
padded, so one compilation serves every batch), and the feature of a model that they read: one
named entry of its `forward_intermediates` (models/intermediates.py).

  apply = jax.jit(lambda images: features.named(model, normalize(images), "pre_logits"))
  train_x, train_y = features.extract(apply, train_source, preprocess_fn)
"""

import re

import jax.numpy as jnp
import numpy as np


def named(model, images, name: str = "pre_logits", **kwargs):
  """(batch, d) float32: the `name` entry of `model.forward_intermediates(images)` in evaluation mode.

  Token sequences (batch, tokens, d) and feature maps (batch, H, W, d) are averaged over their
  positions. For a block or stage ("block03/+mlp", "stage2") the forward stops after it.
  """
  picked = re.match(r"(?:block|stage)(\d+)", name)
  if picked:
    kwargs = dict(indices=[int(picked.group(1))], stop_early=True, **kwargs)
  out = model.forward_intermediates(images, train=False, **kwargs)
  if name not in out:
    raise KeyError(f"{type(model).__name__} has no intermediate {name!r}; it has {sorted(out)}")
  x = out[name].astype(jnp.float32)
  return x.mean(axis=tuple(range(1, x.ndim - 1))) if x.ndim > 2 else x


def extract(apply_fn, source, preprocess_fn, *, batch_size: int = 256, max_examples: int | None = None):
  """(features (n, d) float32, labels (n,) int32) of the first `max_examples` examples of `source`.

  `apply_fn(images uint8 (b, H, W, C)) -> (b, d)` is called on batches of exactly `batch_size`;
  `preprocess_fn(example, rng)` is the evaluation transform (called with rng=None).
  """
  n = len(source) if max_examples is None else min(len(source), max_examples)
  feats, labels = [], []
  for start in range(0, n, batch_size):
    idx = list(range(start, min(start + batch_size, n)))
    examples = [preprocess_fn(dict(source[i]), None) for i in idx]
    images = np.stack([e["image"] for e in examples])
    pad = batch_size - len(idx)
    if pad:
      images = np.concatenate([images, np.repeat(images[:1], pad, axis=0)])
    out = np.asarray(apply_fn(images), np.float32)[:len(idx)]
    feats.append(out)
    labels.append(np.asarray([e["label"] for e in examples], np.int32))
  return np.concatenate(feats), np.concatenate(labels)
