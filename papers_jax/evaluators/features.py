"""Features of a whole data source through a jitted function, in fixed-size batches (the last one
padded, so one compilation serves every batch)."""

import numpy as np


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
