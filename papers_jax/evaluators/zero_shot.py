"""Zero-shot classification with an image-text dual encoder (CLIP, Radford et al. 2021, §3.1.4).

Each class name is written into every prompt template ("a photo of a {}."); the class's text
features are L2-normalised, averaged over the templates (prompt ensembling, §3.1.4) and normalised
again, giving one classifier row per class. An image is assigned the class whose row has the largest
cosine with its (normalised) image feature. The rows depend only on the text tower, so
`ZeroShotClassifier` computes them once per model version (e.g. per train step) and reuses them
for every image batch; every prediction needs the whole label set (a drawback the notes point out).

  clf = ZeroShotClassifier(class_names, templates, tokenize)
  weights = clf.weights(encode_text, key=step)              # (classes, D), cached under `key`
  scores = clf.evaluate(image_features, labels, encode_text, key=step)   # {"top1": ..., "top5": ...}
"""

import numpy as np


def l2_normalize(x, axis: int = -1, eps: float = 1e-12) -> np.ndarray:
  x = np.asarray(x, np.float32)
  return x / np.maximum(np.linalg.norm(x, axis=axis, keepdims=True), eps)


def encode_in_batches(encode, tokens: np.ndarray, batch_size: int) -> np.ndarray:
  """`encode` over fixed-size batches (the last one padded: one compilation serves all) → float32."""
  n = len(tokens)
  out = []
  for start in range(0, n, batch_size):
    chunk = tokens[start:start + batch_size]
    pad = batch_size - len(chunk)
    if pad:
      chunk = np.concatenate([chunk, np.repeat(chunk[:1], pad, axis=0)])
    out.append(np.asarray(encode(chunk), np.float32)[:batch_size - pad])
  return np.concatenate(out)


def classifier_weights(encode_text, tokenize, class_names, templates, *, batch_size: int = 256) -> np.ndarray:
  """(classes, D) rows: per class, the renormalised mean of its normalised prompt features.

  class_names: one name per class (a str), or a sequence of names whose first is used;
  templates: strings with one "{}"; tokenize(list of str) → int ids (N, T); encode_text(ids) → (N, D).
  """
  names = [n if isinstance(n, str) else n[0] for n in class_names]
  texts = [t.format(name) for name in names for t in templates]
  features = l2_normalize(encode_in_batches(encode_text, tokenize(texts), batch_size))
  features = features.reshape(len(names), len(templates), -1).mean(axis=1)
  return l2_normalize(features)


def top_k_accuracy(image_features, labels, weights, ks=(1, 5)) -> dict[str, float]:
  """Fractions of images whose label is among the k classes of largest cosine (k ≤ classes)."""
  scores = l2_normalize(image_features) @ np.asarray(weights, np.float32).T
  labels = np.asarray(labels)
  order = np.argsort(-scores, axis=1, kind="stable")
  out = {}
  for k in ks:
    if k <= scores.shape[1]:
      out[f"top{k}"] = float(np.mean(np.any(order[:, :k] == labels[:, None], axis=1)))
  return out


class ZeroShotClassifier:
  """Prompt-ensembled class rows, computed once per `key` (e.g. the train step) and cached."""

  def __init__(self, class_names, templates, tokenize, *, batch_size: int = 256):
    if not templates or any("{}" not in t for t in templates):
      raise ValueError(f"templates must be non-empty strings with one '{{}}', got {templates!r}")
    self.class_names, self.templates, self.tokenize = list(class_names), tuple(templates), tokenize
    self.batch_size = batch_size
    self._key, self._weights = None, None
    self.num_text_encodings = 0  # how often the rows were computed (the cache's test)

  def weights(self, encode_text, key) -> np.ndarray:
    if self._weights is None or key != self._key:
      self._weights = classifier_weights(encode_text, self.tokenize, self.class_names, self.templates,
                                         batch_size=self.batch_size)
      self._key = key
      self.num_text_encodings += 1
    return self._weights

  def evaluate(self, image_features, labels, encode_text, key, ks=(1, 5)) -> dict[str, float]:
    return top_k_accuracy(image_features, labels, self.weights(encode_text, key), ks)
