"""Why bicubic was so strong on the super-resolution demo's crops: per photograph, and per `data.min_texture`
threshold, the number of test crops and the PSNR of MATLAB-bicubic ×2 (Y channel, `scale` pixels cut per side,
the task's metric), numpy only.

  PYTHONPATH=. python tools/sr_crop_stats.py

The crops are the photo demo's test split (configs/super_resolution/photos.py: 48×48, 64 per photo before the
texture filter); `texture` is data/photos.py's (mean |neighbour difference| of the luma, grey levels).
"""

import argparse
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from papers_jax.data import photos  # noqa: E402
from papers_jax.data import super_resolution as data  # noqa: E402
from papers_jax.objectives.super_resolution import MSE_FLOOR, Y_WEIGHTS  # noqa: E402


def y_psnr(pred: np.ndarray, target: np.ndarray, border: int) -> float:
  """The task's PSNR (objectives/super_resolution.py) of two uint8 RGB images, in numpy."""
  y = lambda img: img.astype(np.float64) @ (np.asarray(Y_WEIGHTS) / 255.0) + 16.0  # noqa: E731
  diff = (y(pred) - y(target))[border:-border, border:-border]
  return 10.0 * np.log10(255.0 ** 2 / max(np.mean(diff ** 2), MSE_FLOOR))


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--crop", type=int, default=48)
  parser.add_argument("--crops_per_photo", type=int, default=256)
  parser.add_argument("--scale", type=int, default=2)
  parser.add_argument("--thresholds", type=float, nargs="+", default=[0, 1, 2, 3, 4])
  args = parser.parse_args()
  source = photos.PhotoCropsSource("test", crop=args.crop, crops_per_photo=args.crops_per_photo)
  rows = []
  for i in range(len(source)):
    example = source[i]
    lr, hr = data.degrade_patch(example["image"], args.scale, args.crop // args.scale)
    rows.append((int(example["label"]), y_psnr(data.imresize(lr, args.scale), hr, args.scale),
                 photos.texture(hr)))
  label, psnr, texture = (np.array(column) for column in zip(*rows))
  print("photo               crops  bicubic PSNR  texture (median)")
  for k, name in enumerate(photos.PHOTOS):
    mine = label == k
    print(f"{name:18s}  {mine.sum():5d}  {psnr[mine].mean():12.2f}  {np.median(texture[mine]):8.2f}")
  print("\nmin_texture  crops  bicubic PSNR  crops per photo")
  for threshold in args.thresholds:
    kept = texture >= threshold
    per_photo = [int((label[kept] == k).sum()) for k in range(len(photos.PHOTOS))]
    print(f"{threshold:11.1f}  {kept.sum():5d}  {psnr[kept].mean():12.2f}  {per_photo}")


if __name__ == "__main__":
  main()
