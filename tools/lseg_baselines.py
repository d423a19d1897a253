"""Trivial baselines for LSeg's 53-way scene segmentation (tasks/lseg.py's eval/miou over the 500 test scenes).

  PYTHONPATH=. python tools/lseg_baselines.py

All background, and bright pixels (max channel > 100) as the most frequent seen pair of the first 500 training
scenes; each as mIoU over the 53 classes, the mean IoU of the seen and the held-out pairs, background IoU and pixel
accuracy.
"""

import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def main():
  from papers_jax.data import vqa_scenes
  from papers_jax.objectives.segmentation import confusion_matrix, iou_from_confusion
  k = len(vqa_scenes.PAIR_CLASSES)
  held = [i for i, n in enumerate(vqa_scenes.PAIR_CLASSES) if i and vqa_scenes.held_out_pair(*n.split())]
  seen = [i for i in range(1, k) if i not in held]
  train = vqa_scenes.SegmentationScenesSource("train")
  counts = sum(np.bincount(np.asarray(train[i]["label"]).ravel(), minlength=k) for i in range(500))
  counts[held], counts[0] = 0, 0
  majority = int(counts.argmax())
  test = vqa_scenes.SegmentationScenesSource("test")
  labels = np.stack([np.asarray(test[i]["label"]) for i in range(len(test))])
  images = np.stack([np.asarray(test[i]["image"]) for i in range(len(test))])
  for name, pred in (("all background", np.zeros_like(labels)),
                     (f"bright pixels as {vqa_scenes.PAIR_CLASSES[majority]!r}", np.where(images.max(-1) > 100,
                                                                                         majority, 0))):
    r = iou_from_confusion(confusion_matrix(pred, labels, k))
    print(f"{name}: mIoU {r['miou']:.4f}, seen pairs {np.nanmean(r['iou'][seen]):.4f}, held-out pairs "
          f"{np.nanmean(r['iou'][held]):.4f}, background IoU {r['iou'][0]:.3f}, pixel accuracy "
          f"{r['pixel_accuracy']:.4f}")


if __name__ == "__main__":
  main()
