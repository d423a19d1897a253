"""Writes an ImageNet-shaped folder of JPEG photos, for measuring the input pipeline without ImageNet.

  python tools/make_image_folder.py --out /tmp/jpegs --images 2000 --classes 10
  python tools/benchmark.py --config configs/vit/imagenet.py --mode input \
      --set data.name=folder --set data.data_dir=/tmp/jpegs --set data.train_split=train

Decoding dominates the cost of an ImageNet input pipeline, and it depends on the pixel count and
the JPEG's content and quality. So the images are real photographs (the ones scikit-image and
scikit-learn install, nothing is downloaded), cut and resized to ImageNet's common sizes (longer
side 500, aspect 4:3, 3:2 or 1:1, either orientation) and saved at JPEG quality 95 with 4:2:0
chroma subsampling. Each file is a different random crop, flip and brightness of a photo. Gaussian
grain (sigma 8 by default) restores the detail that resizing the small source photos smooths away,
so the files come out near the roughly 110 KB commonly reported for ImageNet's; the tool prints
the mean it wrote.
The layout is `folder`'s: <out>/<split>/<class_name>/<image>.jpg.
"""

import argparse
import json
import os

import numpy as np
from PIL import Image

# (width, height) with the longer side 500, as most ImageNet training images are.
SIZES = ((500, 375), (375, 500), (500, 333), (333, 500), (500, 500))


def photos() -> list[np.ndarray]:
  """The colour photographs bundled with scikit-image and scikit-learn."""
  import skimage.data
  from sklearn.datasets import load_sample_images
  names = ("astronaut", "coffee", "chelsea", "rocket", "hubble_deep_field", "retina")
  return [getattr(skimage.data, n)() for n in names] + list(load_sample_images().images)


def make_image(photo: np.ndarray, rng: np.random.Generator, noise: float) -> Image.Image:
  width, height = SIZES[rng.integers(len(SIZES))]
  ph, pw = photo.shape[:2]
  # The largest crop of the target's aspect that fits, scaled by 0.5-1 in each side.
  scale = min(pw / width, ph / height) * rng.uniform(0.5, 1.0)
  cw, ch = max(1, int(width * scale)), max(1, int(height * scale))
  top, left = rng.integers(ph - ch + 1), rng.integers(pw - cw + 1)
  crop = photo[top:top + ch, left:left + cw].astype(np.float32) * rng.uniform(0.8, 1.2)
  if rng.random() < 0.5:
    crop = crop[:, ::-1]
  image = np.asarray(Image.fromarray(np.clip(crop, 0, 255).astype(np.uint8)).resize((width, height), Image.BICUBIC))
  grain = rng.normal(0.0, noise, image.shape) if noise else 0.0
  return Image.fromarray(np.clip(image + grain, 0, 255).astype(np.uint8))


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--out", required=True, help="root of the folder to write")
  parser.add_argument("--split", default="train")
  parser.add_argument("--images", type=int, default=2000)
  parser.add_argument("--classes", type=int, default=10)
  parser.add_argument("--quality", type=int, default=95)
  parser.add_argument("--noise", type=float, default=8.0, help="std of the Gaussian grain, in 0-255 levels")
  parser.add_argument("--seed", type=int, default=0)
  args = parser.parse_args(argv)
  if args.images < 1 or args.classes < 1:
    raise SystemExit("error: --images and --classes must be at least 1")
  rng = np.random.default_rng(args.seed)
  sources = photos()
  total_bytes, total_pixels = 0, 0
  for i in range(args.images):
    class_dir = os.path.join(args.out, args.split, f"class_{i % args.classes:04d}")
    os.makedirs(class_dir, exist_ok=True)
    image = make_image(sources[rng.integers(len(sources))], rng, args.noise)
    path = os.path.join(class_dir, f"{i:07d}.jpg")
    image.save(path, quality=args.quality, subsampling="4:2:0")
    total_bytes += os.path.getsize(path)
    total_pixels += image.width * image.height
  summary = {"out": args.out, "split": args.split, "images": args.images, "classes": args.classes,
             "mean_file_kb": round(total_bytes / args.images / 1024, 1),
             "mean_megapixels": round(total_pixels / args.images / 1e6, 4)}
  print(json.dumps(summary))
  return summary


if __name__ == "__main__":
  main()
