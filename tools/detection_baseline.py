"""The image-blind baseline of a detection set: the COCO mAP of predictions that never look at the image.

Every test image gets the same predictions: the k-means centres (k = --boxes) of the training boxes,
in fractions of the image size, each once per class, scored by (share of training boxes in that
cluster) × (frequency of the class). A detector that learns anything from the pixels must beat it.

  PYTHONPATH=$PWD python tools/detection_baseline.py --data shapes_scenes --boxes 12
"""

import argparse
import json

import ml_collections
import numpy as np

from papers_jax.data import scenes
from papers_jax.evaluators import coco


def kmeans(points: np.ndarray, k: int, iterations: int = 50, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
  """(centres (k, d), share of the points nearest each centre)."""
  rng = np.random.default_rng(seed)
  centres = points[rng.choice(len(points), k, replace=False)]
  for _ in range(iterations):
    nearest = ((points[:, None] - centres[None]) ** 2).sum(-1).argmin(1)
    centres = np.stack([points[nearest == j].mean(0) if (nearest == j).any() else centres[j] for j in range(k)])
  nearest = ((points[:, None] - centres[None]) ** 2).sum(-1).argmin(1)
  return centres, np.bincount(nearest, minlength=k) / len(points)


def image_blind_map(train, test, num_boxes: int, max_train: int = 1000) -> dict:
  examples = [train[i] for i in range(min(max_train, len(train)))]
  fractions = np.concatenate([e["boxes"] / np.tile(e["image"].shape[1::-1], 2) for e in examples])
  labels = np.concatenate([e["labels"] for e in examples])
  centres, shares = kmeans(fractions, num_boxes)
  class_freq = np.bincount(labels, minlength=train.num_classes) / len(labels)
  gt_boxes, gt_labels, pred_boxes, pred_scores, pred_labels = [], [], [], [], []
  for i in range(len(test)):
    e = test[i]
    size = np.tile(e["image"].shape[1::-1], 2)
    gt_boxes.append(e["boxes"])
    gt_labels.append(e["labels"])
    pred_boxes.append(np.repeat(centres * size, train.num_classes, axis=0))
    pred_scores.append((shares[:, None] * class_freq[None, :]).reshape(-1))
    pred_labels.append(np.tile(np.arange(train.num_classes), num_boxes))
  return coco.coco_map(gt_boxes, gt_labels, pred_boxes, pred_scores, pred_labels, num_classes=train.num_classes)


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--data", default="shapes_scenes", help="shapes_scenes or digits_scenes")
  parser.add_argument("--boxes", type=int, default=12, help="k-means centres (a detector's number of queries)")
  args = parser.parse_args()
  data = ml_collections.ConfigDict({"name": args.data})
  train, test = scenes.get_detection_source(data, "train"), scenes.get_detection_source(data, "test")
  print(json.dumps({"data": args.data, "boxes": args.boxes, **image_blind_map(train, test, args.boxes)}, indent=1))


if __name__ == "__main__":
  main()
