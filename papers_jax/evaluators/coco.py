"""COCO-style box mAP in numpy, and mask IoU.

`coco_map` follows pycocotools' COCOeval (bbox) step for step, so that its numbers are COCO's: per
image and category, detections sorted by score (the 100 best kept) are matched greedily to the
unmatched ground truth of highest IoU at each threshold 0.50:0.05:0.95; ground truth outside an area
range is ignored, as are detections matched to it or unmatched and outside the range; precision is
made monotone and read at 101 recall points; AP averages it over thresholds, recall points and the
categories that have ground truth. tests/test_detection.py checks it against pycocotools.
Not handled: crowd regions (the sources here have none; CocoSource leaves them out).

Boxes are xyxy in pixels of the original image (areas decide small < 32² ≤ medium < 96² ≤ large).
"""

import numpy as np

IOU_THRESHOLDS = np.linspace(0.5, 0.95, int(np.round((0.95 - 0.5) / 0.05)) + 1, endpoint=True)
RECALL_POINTS = np.linspace(0.0, 1.0, int(np.round((1.0 - 0.0) / 0.01)) + 1, endpoint=True)
AREA_RANGES = {"all": (0.0, 1e10), "small": (0.0, 32.0 ** 2), "medium": (32.0 ** 2, 96.0 ** 2),
               "large": (96.0 ** 2, 1e10)}
MAX_DETECTIONS = 100


def box_iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
  """IoU of every pair of xyxy boxes (float64)."""
  a, b = np.asarray(a, np.float64).reshape(-1, 4), np.asarray(b, np.float64).reshape(-1, 4)
  wh = np.clip(np.minimum(a[:, None, 2:], b[None, :, 2:]) - np.maximum(a[:, None, :2], b[None, :, :2]), 0, None)
  inter = wh[..., 0] * wh[..., 1]
  area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
  area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
  union = area_a[:, None] + area_b[None, :] - inter
  return np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)


def _box_areas(boxes):
  boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
  return (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])


def _match_image(dt_boxes, dt_scores, gt_boxes, gt_areas, area_range):
  """One image and category in one area range: (dt scores, matched (T, D), ignored (T, D), gt ignored (G,))."""
  lo, hi = area_range
  gt_ignore = (gt_areas < lo) | (gt_areas > hi)
  gt_order = np.argsort(gt_ignore, kind="mergesort")  # real ground truth first
  gt_boxes, gt_ignore = gt_boxes[gt_order], gt_ignore[gt_order]
  dt_order = np.argsort(-dt_scores, kind="mergesort")[:MAX_DETECTIONS]
  dt_boxes, dt_scores = dt_boxes[dt_order], dt_scores[dt_order]
  ious = box_iou_matrix(dt_boxes, gt_boxes)
  t, d, g = len(IOU_THRESHOLDS), len(dt_boxes), len(gt_boxes)
  dt_matched, dt_ignore = np.zeros((t, d), bool), np.zeros((t, d), bool)
  for ti, threshold in enumerate(IOU_THRESHOLDS):
    gt_taken = np.zeros(g, bool)
    for di in range(d):
      best, m = min(threshold, 1 - 1e-10), -1
      for gi in range(g):
        if gt_taken[gi]:
          continue
        if m > -1 and not gt_ignore[m] and gt_ignore[gi]:
          break  # matched to real ground truth; the ignored ones come after
        if ious[di, gi] < best:
          continue
        best, m = ious[di, gi], gi
      if m > -1:
        dt_matched[ti, di], dt_ignore[ti, di], gt_taken[m] = True, gt_ignore[m], True
  dt_areas = _box_areas(dt_boxes)
  outside = (dt_areas < lo) | (dt_areas > hi)
  dt_ignore |= ~dt_matched & outside[None, :]
  return dt_scores, dt_matched, dt_ignore, gt_ignore


def coco_map(gt_boxes, gt_labels, pred_boxes, pred_scores, pred_labels, *, num_classes: int, gt_areas=None) -> dict:
  """COCO box AP over a list of images.

  Per image i: gt_boxes[i] (n, 4) xyxy, gt_labels[i] (n,), pred_boxes[i] (m, 4), pred_scores[i] (m,),
  pred_labels[i] (m,); `gt_areas[i]` (n,) overrides the box areas (COCO uses the mask area).
  Returns AP, AP50, AP75, APs, APm, APl (COCO's summary; -1 where no ground truth counts) and AR100.
  """
  areas = [_box_areas(b) if gt_areas is None else np.asarray(gt_areas[i], np.float64)
           for i, b in enumerate(gt_boxes)]
  t, r = len(IOU_THRESHOLDS), len(RECALL_POINTS)
  precision = -np.ones((t, r, num_classes, len(AREA_RANGES)))
  recall = -np.ones((t, num_classes, len(AREA_RANGES)))
  for k in range(num_classes):
    per_image = []
    for i in range(len(gt_boxes)):
      g = np.asarray(gt_labels[i]).reshape(-1) == k
      d = np.asarray(pred_labels[i]).reshape(-1) == k
      if g.any() or d.any():
        per_image.append((np.asarray(pred_boxes[i], np.float64).reshape(-1, 4)[d],
                          np.asarray(pred_scores[i], np.float64).reshape(-1)[d],
                          np.asarray(gt_boxes[i], np.float64).reshape(-1, 4)[g], areas[i][g]))
    for a, area_range in enumerate(AREA_RANGES.values()):
      results = [_match_image(*image, area_range) for image in per_image]
      if not results:
        continue
      gt_ignore = np.concatenate([res[3] for res in results])
      num_real = int(np.count_nonzero(~gt_ignore))
      if num_real == 0:
        continue
      scores = np.concatenate([res[0] for res in results])
      order = np.argsort(-scores, kind="mergesort")
      matched = np.concatenate([res[1] for res in results], axis=1)[:, order]
      ignored = np.concatenate([res[2] for res in results], axis=1)[:, order]
      tp = np.cumsum(matched & ~ignored, axis=1).astype(np.float64)
      fp = np.cumsum(~matched & ~ignored, axis=1).astype(np.float64)
      for ti in range(t):
        rc = tp[ti] / num_real
        pr = tp[ti] / (fp[ti] + tp[ti] + np.spacing(1))
        recall[ti, k, a] = rc[-1] if len(rc) else 0.0
        pr = np.maximum.accumulate(pr[::-1])[::-1]  # the precision envelope
        inds = np.searchsorted(rc, RECALL_POINTS, side="left")
        precision[ti, :, k, a] = np.where(inds < len(pr), pr[np.minimum(inds, len(pr) - 1)] if len(pr) else 0, 0)

  def mean_valid(x):
    x = x[x > -1]
    return float(x.mean()) if x.size else -1.0

  return {"AP": mean_valid(precision[..., 0]), "AP50": mean_valid(precision[0, ..., 0]),
          "AP75": mean_valid(precision[5, ..., 0]), "APs": mean_valid(precision[..., 1]),
          "APm": mean_valid(precision[..., 2]), "APl": mean_valid(precision[..., 3]),
          "AR100": mean_valid(recall[..., 0])}


def mask_iou(pred: np.ndarray, target: np.ndarray) -> np.ndarray:
  """IoU of boolean masks (..., H, W) -> (...); two empty masks count 1 (nothing to find, nothing found)."""
  pred, target = np.asarray(pred, bool), np.asarray(target, bool)
  inter = (pred & target).sum((-2, -1))
  union = (pred | target).sum((-2, -1))
  return np.where(union > 0, inter / np.maximum(union, 1), 1.0)


def mean_mask_iou(pred: np.ndarray, target: np.ndarray, valid: np.ndarray | None = None) -> float:
  """mIoU over instances: the mean mask IoU of the valid (prediction, target) pairs (SAM's measure)."""
  ious = mask_iou(pred, target)
  if valid is not None:
    ious = ious[np.asarray(valid, bool)]
  return float(ious.mean()) if ious.size else float("nan")
