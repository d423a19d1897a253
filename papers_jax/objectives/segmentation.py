"""Per-pixel objectives and metrics of semantic segmentation.

`pixel_cross_entropy` is torch's CrossEntropyLoss(ignore_index=...) before its reduction; the mean over
the counted pixels of a batch is `(losses * valid).sum() / valid.sum()`. `confusion_matrix` counts
(true class, predicted class) pairs over the counted pixels; `iou_from_confusion` turns a summed matrix
into per-class IoU = TP / (TP + FP + FN) and mIoU, the mean over the classes that occur in the labels
or the predictions (a class absent from both has no IoU and does not count, as in DANet's and
mmsegmentation's evaluation); pixel accuracy = TP summed / counted pixels.
"""

import jax
import jax.numpy as jnp
import numpy as np


def pixel_cross_entropy(logits, labels, ignore_index: int):
  """(per-pixel losses with 0 where ignored, float32 valid mask) of logits (..., K) against labels (...)."""
  valid = labels != ignore_index
  safe = jnp.where(valid, labels, 0)
  logp = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)
  losses = -jnp.take_along_axis(logp, safe[..., None], axis=-1)[..., 0]
  return jnp.where(valid, losses, 0.0), valid.astype(jnp.float32)


def mean_pixel_cross_entropy(logits, labels, ignore_index: int):
  """The mean cross-entropy over the counted pixels (0 when none is counted)."""
  losses, valid = pixel_cross_entropy(logits, labels, ignore_index)
  return losses.sum() / jnp.maximum(valid.sum(), 1.0)


def confusion_matrix(predictions, labels, num_classes: int, weights=None):
  """(K, K) float32 counts of (label, prediction) pairs; pixels with weight 0 (ignored labels, padded
  examples) do not count. Labels outside [0, K) count nowhere."""
  valid = (labels >= 0) & (labels < num_classes)
  w = valid.astype(jnp.float32) if weights is None else valid * weights.astype(jnp.float32)
  index = jnp.where(valid, labels, 0) * num_classes + predictions
  return jnp.zeros(num_classes * num_classes, jnp.float32).at[index.ravel()].add(w.ravel()).reshape(
      num_classes, num_classes)


def iou_from_confusion(confusion) -> dict:
  """{"iou": per-class IoU (nan where the class occurs nowhere), "miou", "pixel_accuracy"} of a (K, K)
  confusion matrix (rows: labels, columns: predictions), in numpy float64."""
  cm = np.asarray(confusion, np.float64)
  tp = np.diag(cm)
  union = cm.sum(0) + cm.sum(1) - tp
  iou = np.where(union > 0, tp / np.maximum(union, 1e-12), np.nan)
  present = union > 0
  return {"iou": iou, "miou": float(iou[present].mean()) if present.any() else float("nan"),
          "pixel_accuracy": float(tp.sum() / cm.sum()) if cm.sum() else float("nan")}
