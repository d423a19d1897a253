"""BEV detection mAP with nuScenes' centre-distance matching (Caesar et al. 2020, the devkit's `accumulate`
and `calc_ap`), in numpy.

For each class and distance threshold: every prediction of the class over all samples, by descending
score (ties: the order given), takes the nearest not yet taken ground-truth box of its class in its
sample by BEV centre distance; it is a true positive when that distance is below the threshold (the box
is then taken), else a false positive. Precision and recall along the list are interpolated at the 101
recall points 0, 0.01, …, 1 (precision 0 beyond the last recall reached); AP is the mean over the recall
points above `min_recall` of max(precision - min_precision, 0), divided by (1 - min_precision).
A class without ground truth is left out of the mean. mAP averages over classes and thresholds.
Defaults are nuScenes' (thresholds 0.5, 1, 2, 4 m; min recall and precision 0.1).
"""

import numpy as np

THRESHOLDS = (0.5, 1.0, 2.0, 4.0)


def average_precision(tp: np.ndarray, num_gt: int, *, min_recall=0.1, min_precision=0.1) -> float:
  """AP of a score-sorted list of true-positive flags against num_gt boxes (nuScenes' interpolation)."""
  if num_gt == 0:
    return float("nan")
  if len(tp) == 0:
    return 0.0
  tp = np.asarray(tp, np.float64)
  ctp, cfp = np.cumsum(tp), np.cumsum(1 - tp)
  precision, recall = ctp / (ctp + cfp), ctp / num_gt
  precision = np.interp(np.linspace(0, 1, 101), recall, precision, right=0)
  precision = precision[round(100 * min_recall) + 1:] - min_precision
  return float(np.mean(np.maximum(precision, 0))) / (1.0 - min_precision)


def match_class(gt_centres, pred_centres, pred_scores, threshold: float) -> tuple[np.ndarray, int]:
  """Per-sample lists of one class's gt centres (n_i, 2), predicted centres (m_i, 2) and scores (m_i,) →
  the true-positive flags of all predictions by descending score, and the number of gt boxes."""
  order = [(s, i, j) for i, scores in enumerate(pred_scores) for j, s in enumerate(scores)]
  order = sorted(range(len(order)), key=lambda k: -order[k][0])  # stable: ties keep their order
  flat = [(i, j) for i, scores in enumerate(pred_scores) for j in range(len(scores))]
  taken = [np.zeros(len(g), bool) for g in gt_centres]
  tp = np.zeros(len(flat))
  for rank, k in enumerate(order):
    i, j = flat[k]
    gt = np.asarray(gt_centres[i], np.float64).reshape(-1, 2)
    if len(gt) == 0:
      continue
    dist = np.linalg.norm(gt - np.asarray(pred_centres[i][j], np.float64), axis=-1)
    dist[taken[i]] = np.inf
    nearest = int(np.argmin(dist))
    if dist[nearest] < threshold:
      taken[i][nearest] = True
      tp[rank] = 1
  return tp, sum(len(np.asarray(g).reshape(-1, 2)) for g in gt_centres)


def bev_map(gt_boxes, gt_labels, pred_boxes, pred_scores, pred_labels, *, num_classes: int,
            class_names=None, thresholds=THRESHOLDS, min_recall=0.1, min_precision=0.1) -> dict:
  """Lists over samples of gt boxes (n, ≥ 2) and labels, predicted boxes (m, ≥ 2), scores and labels (only the
  boxes' first two numbers, the BEV centre, are used) → {"mAP", "AP_<class>", "mAP@<threshold>"}."""
  names = class_names or [str(c) for c in range(num_classes)]
  table = np.full((num_classes, len(thresholds)), np.nan)
  for c in range(num_classes):
    gt = [np.asarray(b, np.float64).reshape(-1, np.shape(b)[-1] if np.size(b) else 2)[np.asarray(l) == c, :2]
          for b, l in zip(gt_boxes, gt_labels)]
    keep = [np.asarray(l) == c for l in pred_labels]
    centres = [np.asarray(b, np.float64).reshape(len(k), -1)[k, :2] for b, k in zip(pred_boxes, keep)]
    scores = [np.asarray(s, np.float64)[k] for s, k in zip(pred_scores, keep)]
    for t, threshold in enumerate(thresholds):
      tp, num_gt = match_class(gt, centres, scores, threshold)
      table[c, t] = average_precision(tp, num_gt, min_recall=min_recall, min_precision=min_precision)
  present = ~np.isnan(table[:, 0])
  out = {"mAP": float(table[present].mean()) if present.any() else 0.0}
  for c in range(num_classes):
    if present[c]:
      out[f"AP_{names[c]}"] = float(table[c].mean())
  for t, threshold in enumerate(thresholds):
    out[f"mAP@{threshold:g}m"] = float(table[present, t].mean()) if present.any() else 0.0
  return out
