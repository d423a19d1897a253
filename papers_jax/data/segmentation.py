"""Semantic-segmentation sources: generated shape scenes (bundled, offline) and Cityscapes (the user's files).

Examples are {"image": uint8 (H, W, 3), "label": int32 (H, W) class per pixel}; `IGNORE_INDEX` (255)
marks pixels that no loss or metric counts.

`data.name = "segmentation_shapes"`: scenes of 1 to `max_shapes` filled shapes (rectangle, circle,
triangle, ellipse from `skimage.draw.random_shapes`, each drawn alone so that its pixels are its mask)
in random colours on a random plain background with mild noise; a later shape occludes an earlier one.
Classes: 0 background, then the shape kinds (`SHAPE_CLASSES`). Each example is generated from its own
seed (split, index), so the data are fixed, need no cache and cost about a millisecond per shape.
Splits: "train" (`SPLIT_SIZES`), "test".

`data.name = "cityscapes"` reads `data.data_dir` laid out as the official download unpacks
(leftImg8bit_trainvaltest.zip and gtFine_trainvaltest.zip):
<data_dir>/leftImg8bit/<split>/<city>/<name>_leftImg8bit.png and
<data_dir>/gtFine/<split>/<city>/<name>_gtFine_labelIds.png; the 34 label ids map to the 19 training
classes of the benchmark (`CITYSCAPES_TRAIN_IDS`), the others to IGNORE_INDEX.
"""

import glob
import os

import numpy as np
from PIL import Image

from papers_jax.errors import DataError

IGNORE_INDEX = 255
SHAPE_CLASSES = ("background", "rectangle", "circle", "triangle", "ellipse")
SPLIT_SIZES = {"train": 2048, "test": 512}
_SPLIT_SEEDS = {"train": 0, "test": 1}


class ShapesSegmentationSource:
  """Generated shape scenes with per-pixel class masks (see the module docstring)."""

  classes = SHAPE_CLASSES
  num_classes = len(SHAPE_CLASSES)

  def __init__(self, split: str, *, image_size: int = 64, max_shapes: int = 4, min_size: int | None = None,
               max_size: int | None = None, seed: int = 0):
    if split not in SPLIT_SIZES:
      raise DataError(f"segmentation_shapes has the splits {sorted(SPLIT_SIZES)}, not {split!r}")
    if image_size < 16:
      raise DataError(f"segmentation_shapes needs data.image_size >= 16, got {image_size}")
    self.split, self.image_size, self.max_shapes, self.seed = split, image_size, max_shapes, seed
    self.min_size = min_size or max(4, image_size // 6)
    self.max_size = max_size or image_size // 2

  def __len__(self) -> int:
    return SPLIT_SIZES[self.split]

  def __getitem__(self, index: int) -> dict:
    if not 0 <= index < len(self):
      raise IndexError(index)
    image, label = scene(np.random.default_rng([self.seed, _SPLIT_SEEDS[self.split], index]), self.image_size,
                         self.max_shapes, self.min_size, self.max_size)
    return {"image": image, "label": label}


def scene(rng: np.random.Generator, size: int, max_shapes: int, min_size: int, max_size: int):
  """One scene: (uint8 image (size, size, 3), int32 labels (size, size))."""
  from skimage.draw import random_shapes  # imported here: the trainer's start-up skips scikit-image otherwise

  background = rng.integers(0, 256, 3)
  noise = rng.normal(0.0, 6.0, (size, size, 3))
  image = np.clip(background + noise, 0, 255).astype(np.uint8)
  label = np.zeros((size, size), np.int32)
  for _ in range(int(rng.integers(1, max_shapes + 1))):
    kind = int(rng.integers(1, len(SHAPE_CLASSES)))
    drawn, shapes = random_shapes((size, size), 1, 1, min_size=min_size, max_size=max_size,
                                  shape=SHAPE_CLASSES[kind], rng=int(rng.integers(2**31)))
    if not shapes:  # it did not fit
      continue
    mask = (drawn != 255).any(axis=-1)  # the background is 255 and colours are drawn from [0, 254]
    image[mask] = drawn[mask]
    label[mask] = kind
  return image, label


# Cityscapes label id → training id (cityscapesScripts' labels.py); -1 in the table: ignored.
CITYSCAPES_CLASSES = ("road", "sidewalk", "building", "wall", "fence", "pole", "traffic light", "traffic sign",
                      "vegetation", "terrain", "sky", "person", "rider", "car", "truck", "bus", "train",
                      "motorcycle", "bicycle")
_CITYSCAPES_IDS = (7, 8, 11, 12, 13, 17, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 31, 32, 33)
CITYSCAPES_TRAIN_IDS = np.full(256, IGNORE_INDEX, np.uint8)
CITYSCAPES_TRAIN_IDS[list(_CITYSCAPES_IDS)] = np.arange(len(_CITYSCAPES_IDS))


class CityscapesSource:
  """Cityscapes' fine annotations: "train" (2,975 images), "val" (500), 1024 × 2048."""

  classes = CITYSCAPES_CLASSES
  num_classes = len(CITYSCAPES_CLASSES)

  def __init__(self, root: str | None, split: str):
    hint = ("download leftImg8bit_trainvaltest.zip and gtFine_trainvaltest.zip from "
            "https://www.cityscapes-dataset.com (a free account), unzip both into one folder and set "
            "--config.data.data_dir to it")
    if not root:
      raise DataError(f'data.name="cityscapes" needs data.data_dir: {hint}')
    pattern = os.path.join(root, "leftImg8bit", split, "*", "*_leftImg8bit.png")
    self.images = sorted(glob.glob(pattern))
    if not self.images:
      raise DataError(f"no Cityscapes images match {pattern}: {hint}")
    self.labels = [p.replace(os.sep + "leftImg8bit" + os.sep, os.sep + "gtFine" + os.sep, 1)
                   .replace("_leftImg8bit.png", "_gtFine_labelIds.png") for p in self.images]
    missing = [p for p in self.labels if not os.path.exists(p)]
    if missing:
      raise DataError(f"{len(missing)} Cityscapes images have no fine annotation, e.g. {missing[0]}: {hint}")

  def __len__(self) -> int:
    return len(self.images)

  def __getitem__(self, index: int) -> dict:
    image = np.asarray(Image.open(self.images[index]).convert("RGB"))
    ids = np.asarray(Image.open(self.labels[index]))
    return {"image": image, "label": CITYSCAPES_TRAIN_IDS[ids].astype(np.int32)}


def get_source(data_config, split: str):
  """The segmentation source of `data.name` ("segmentation_shapes" or "cityscapes"), else None."""
  if data_config.name == "segmentation_shapes":
    return ShapesSegmentationSource(split, image_size=data_config.image_size,
                                    max_shapes=data_config.get("max_shapes", 4))
  if data_config.name == "cityscapes":
    return CityscapesSource(data_config.get("data_dir"), split)
  return None


def scale_crop_flip(image: np.ndarray, label: np.ndarray, rng: np.random.Generator, *, crop_size: int,
                    scale_range=(1.0, 1.0), flip: bool = True):
  """The training augmentation of DANet's code (`_sync_transform`): rescale both by a factor drawn from
  `scale_range` (bilinear for the image, nearest for the labels), pad to at least crop_size (image with
  0, labels with IGNORE_INDEX), take a random crop_size × crop_size window, flip left-right half the time."""
  lo, hi = scale_range
  if (lo, hi) != (1.0, 1.0):
    s = rng.uniform(lo, hi)
    h, w = label.shape
    size = (max(1, round(w * s)), max(1, round(h * s)))
    image = np.asarray(Image.fromarray(image).resize(size, Image.BILINEAR))
    label = np.asarray(Image.fromarray(label.astype(np.uint8)).resize(size, Image.NEAREST)).astype(np.int32)
  h, w = label.shape
  ph, pw = max(crop_size - h, 0), max(crop_size - w, 0)
  if ph or pw:
    image = np.pad(image, ((0, ph), (0, pw), (0, 0)))
    label = np.pad(label, ((0, ph), (0, pw)), constant_values=IGNORE_INDEX)
  top = int(rng.integers(0, label.shape[0] - crop_size + 1))
  left = int(rng.integers(0, label.shape[1] - crop_size + 1))
  image = image[top:top + crop_size, left:left + crop_size]
  label = label[top:top + crop_size, left:left + crop_size]
  if flip and rng.random() < 0.5:
    image, label = image[:, ::-1], label[:, ::-1]
  return np.ascontiguousarray(image), np.ascontiguousarray(label)
