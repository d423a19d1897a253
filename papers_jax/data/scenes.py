"""Detection data: generated scenes (bundled, offline), a COCO-format source, and box-aware augmentation.

Every detection source has `len(source)`, `num_classes`, `class_names`, `name`, and
`source[i] -> {"image": uint8 (H, W, 3), "boxes": float32 (n, 4) xyxy in pixels (x0, y0, x1, y1; pixel
edges, so a one-pixel object is 1 wide), "labels": int32 (n,), "instance_masks": bool (n, H, W)}`
with a number of objects n that varies by image. `pad_targets` turns an example into the static
shapes a jitted step needs: the first `max_boxes` objects, padded, with a `box_valid` mask.

Generated sets (fixed seed, fixed split; image i of a split is the same on every call and every host):
  shapes_scenes   rectangles, circles, triangles and ellipses (scikit-image's `draw.random_shapes`,
                  one shape at a time so that each object has its own exact mask), 1 to `max_objects`
                  per image, not overlapping, on a plain background of a random colour;
                  4 classes, train 2000 / test 250 images of 64×64.
  digits_scenes   the harder one: scikit-learn's 8×8 digits, each scaled 2× to 4× (nearest) and tinted,
                  pasted without overlap on a noisy dark canvas; the digit is the class (10 classes), its
                  mask the digit's strokes. The train scenes use only train-split digits and the test
                  scenes only test-split digits (data/sources.py), so no digit image is in both.
                  train 2000 / test 250 images of 64×64.

The COCO source reads `<data_dir>/annotations/instances_<split>.json` and `<data_dir>/<split>/<file_name>`
(COCO 2017's own layout); category ids become labels 0..K-1 in increasing id order, crowd annotations
are left out (as DETR does), and polygon segmentations are rasterised when masks are asked for.
`write_coco` writes any detection source in that layout.
"""

import json
import os

import numpy as np

from papers_jax.data import preprocess
from papers_jax.data.sources import decode_image
from papers_jax.errors import DataError

SHAPE_CLASSES = ("rectangle", "circle", "triangle", "ellipse")
SCENE_SPLITS = {"train": 2000, "test": 250}
_SPLIT_SEED = {"train": 0, "test": 1}


def tight_box(mask: np.ndarray) -> np.ndarray:
  """The xyxy pixel-edge box of a non-empty boolean mask."""
  rows, cols = np.nonzero(mask)
  return np.array([cols.min(), rows.min(), cols.max() + 1, rows.max() + 1], np.float32)


def _example(image, masks, labels) -> dict:
  masks = np.asarray(masks, bool).reshape(-1, *image.shape[:2])
  boxes = np.stack([tight_box(m) for m in masks]) if len(masks) else np.zeros((0, 4), np.float32)
  return {"image": image, "boxes": boxes, "labels": np.asarray(labels, np.int32).reshape(-1),
          "instance_masks": masks}


class _Scenes:
  SPLITS = SCENE_SPLITS

  def __init__(self, split: str, *, size: int, max_objects: int):
    if split not in self.SPLITS:
      raise DataError(f"Unknown {self.name} split {split!r} (data.train_split / data.eval_split); "
                      f"use one of {list(self.SPLITS)}.")
    if size < 32 or max_objects < 1:
      raise DataError(f"{self.name}: data.image_size={size} must be at least 32 and data.max_objects={max_objects} "
                      "at least 1")
    self.split, self.size, self.max_objects = split, size, max_objects

  def __len__(self) -> int:
    return self.SPLITS[self.split]

  def _rng(self, i: int) -> np.random.Generator:
    return np.random.default_rng([self.SEED, _SPLIT_SEED[self.split], int(i)])


class ShapesScenesSource(_Scenes):
  """Generated scenes of 1..max_objects shapes (see the module docstring)."""

  name, SEED, num_classes, class_names = "shapes_scenes", 101, len(SHAPE_CLASSES), SHAPE_CLASSES

  def __init__(self, split: str, *, size: int = 64, max_objects: int = 6):
    super().__init__(split, size=size, max_objects=max_objects)

  def __getitem__(self, i) -> dict:
    from skimage.draw import random_shapes
    rng = self._rng(i)
    image = np.empty((self.size, self.size, 3), np.uint8)
    image[:] = rng.integers(0, 90, 3)  # a dark background; shapes are drawn bright
    taken = np.zeros((self.size, self.size), bool)
    masks, labels = [], []
    for _ in range(int(rng.integers(1, self.max_objects + 1))):
      for _ in range(10):  # a few tries to place a shape that overlaps none already drawn
        drawn, found = random_shapes((self.size, self.size), max_shapes=1, min_shapes=1, min_size=self.size // 8,
                                     max_size=self.size // 3, intensity_range=((120, 254),) * 3, rng=rng, channel_axis=-1)
        mask = (drawn != 255).any(-1)
        if found and mask.any() and not (mask & taken).any():
          taken |= mask
          image[mask] = drawn[mask]
          masks.append(mask)
          labels.append(SHAPE_CLASSES.index(found[0][0]))
          break
    return _example(image, masks, labels)


class DigitsScenesSource(_Scenes):
  """Generated scenes of 1..max_objects tinted digits on a noisy canvas (see the module docstring)."""

  name, SEED, num_classes, class_names = "digits_scenes", 202, 10, tuple(str(d) for d in range(10))

  def __init__(self, split: str, *, size: int = 64, max_objects: int = 5):
    super().__init__(split, size=size, max_objects=max_objects)
    from papers_jax.data.sources import DigitsSource
    self._digits = DigitsSource(split)

  def __getitem__(self, i) -> dict:
    rng = self._rng(i)
    image = rng.integers(0, 40, (self.size, self.size, 3)).astype(np.uint8)
    taken = np.zeros((self.size, self.size), bool)
    masks, labels = [], []
    for _ in range(int(rng.integers(1, self.max_objects + 1))):
      j = int(rng.integers(len(self._digits)))
      scale = int(rng.integers(2, 5))
      digit = np.kron(self._digits[j]["image"][..., 0], np.ones((scale, scale), np.uint8))
      h, w = digit.shape
      for _ in range(20):
        top, left = rng.integers(0, self.size - h + 1), rng.integers(0, self.size - w + 1)
        if not taken[top:top + h, left:left + w].any():
          break
      else:
        continue
      taken[top:top + h, left:left + w] = True
      mask = np.zeros_like(taken)
      mask[top:top + h, left:left + w] = digit > 64
      tint = rng.uniform(0.5, 1.0, 3)
      ink = (digit[..., None] * tint).astype(np.uint8)
      patch = image[top:top + h, left:left + w]
      image[top:top + h, left:left + w] = np.maximum(patch, ink)
      masks.append(mask)
      labels.append(int(self._digits[j]["label"]))
    return _example(image, masks, labels)


class CocoSource:
  """A COCO-format detection split: instances JSON + image folder (see the module docstring)."""

  def __init__(self, root: str, split: str, *, with_masks: bool = False):
    path = os.path.join(root, "annotations", f"instances_{split}.json")
    if not os.path.isfile(path):
      raise DataError(f"COCO annotations {path} not found. Expected {root}/annotations/instances_<split>.json and "
                      f"the images in {root}/<split>/; check data.data_dir and the split names.")
    try:
      with open(path, encoding="utf-8") as f:
        data = json.load(f)
      self.category_ids = sorted(c["id"] for c in data["categories"])
      names = {c["id"]: c.get("name", str(c["id"])) for c in data["categories"]}
      images = sorted(data["images"], key=lambda im: im["id"])
      self._image_info = [(im["id"], im["file_name"], im["height"], im["width"]) for im in images]
      per_image = {im["id"]: [] for im in images}
      for a in data["annotations"]:
        if not a.get("iscrowd", 0):
          per_image[a["image_id"]].append(a)
    except (OSError, ValueError, KeyError) as e:
      raise DataError(f"Cannot read COCO annotations {path} ({e!r}); it must be COCO 'instances' JSON with "
                      "images, annotations and categories.") from e
    self.name, self.split, self.root, self.with_masks = "coco", split, root, with_masks
    self.class_names = tuple(names[c] for c in self.category_ids)
    self.num_classes = len(self.category_ids)
    self._label_of = {c: i for i, c in enumerate(self.category_ids)}
    self._annotations = [per_image[image_id] for image_id, *_ in self._image_info]

  def __len__(self) -> int:
    return len(self._image_info)

  def image_id(self, i) -> int:
    return self._image_info[int(i)][0]

  def __getitem__(self, i) -> dict:
    image_id, file_name, height, width = self._image_info[int(i)]
    image = decode_image(os.path.join(self.root, self.split, file_name))
    annotations = [a for a in self._annotations[int(i)] if a["bbox"][2] > 0 and a["bbox"][3] > 0]
    boxes = np.array([[x, y, x + w, y + h] for x, y, w, h in (a["bbox"] for a in annotations)], np.float32)
    example = {"image": image, "boxes": boxes.reshape(-1, 4),
               "labels": np.array([self._label_of[a["category_id"]] for a in annotations], np.int32)}
    if self.with_masks:
      example["instance_masks"] = np.stack([_polygon_mask(a.get("segmentation"), height, width) for a in annotations]
                                           ) if annotations else np.zeros((0, height, width), bool)
    return example


def _polygon_mask(segmentation, height: int, width: int) -> np.ndarray:
  from skimage.draw import polygon
  mask = np.zeros((height, width), bool)
  if not isinstance(segmentation, list):
    raise DataError("COCO masks: only polygon segmentations are read (RLE is for crowd regions, left out)")
  for poly in segmentation:
    xy = np.asarray(poly, np.float64).reshape(-1, 2)
    rows, cols = polygon(xy[:, 1], xy[:, 0], (height, width))
    mask[rows, cols] = True
  return mask


def write_coco(source, root: str, split: str, count: int | None = None) -> str:
  """Writes the first `count` examples of a detection source as a COCO split under `root`; returns the JSON path.
  Category ids are label + 1. Each segmentation is written as its box's polygon (enough for box
  evaluation; the instance masks themselves are not traced into polygons)."""
  from PIL import Image
  count = len(source) if count is None else min(count, len(source))
  os.makedirs(os.path.join(root, split), exist_ok=True)
  os.makedirs(os.path.join(root, "annotations"), exist_ok=True)
  images, annotations = [], []
  for i in range(count):
    example = source[i]
    file_name = f"{i:06d}.png"
    Image.fromarray(example["image"]).save(os.path.join(root, split, file_name))
    h, w = example["image"].shape[:2]
    images.append({"id": i + 1, "file_name": file_name, "height": h, "width": w})
    for box, label in zip(example["boxes"], example["labels"]):
      x0, y0, x1, y1 = (float(v) for v in box)
      annotations.append({"id": len(annotations) + 1, "image_id": i + 1, "category_id": int(label) + 1,
                          "bbox": [x0, y0, x1 - x0, y1 - y0], "area": (x1 - x0) * (y1 - y0), "iscrowd": 0,
                          "segmentation": [[x0, y0, x1, y0, x1, y1, x0, y1]]})
  categories = [{"id": c + 1, "name": name} for c, name in enumerate(source.class_names)]
  path = os.path.join(root, "annotations", f"instances_{split}.json")
  with open(path, "w", encoding="utf-8") as f:
    json.dump({"images": images, "annotations": annotations, "categories": categories}, f)
  return path


def get_detection_source(data_config, split: str):
  """The detection source of `data_config.name`: "shapes_scenes", "digits_scenes", "vqa_scenes" or "coco"."""
  name = data_config.name
  if name == "shapes_scenes":
    return ShapesScenesSource(split, size=data_config.get("scene_size", 64), max_objects=data_config.get("max_objects", 6))
  if name == "digits_scenes":
    return DigitsScenesSource(split, size=data_config.get("scene_size", 64), max_objects=data_config.get("max_objects", 5))
  if name == "vqa_scenes":
    from papers_jax.data.vqa_scenes import DetectionScenesSource

    return DetectionScenesSource(split)
  if name == "coco":
    if not data_config.get("data_dir"):
      raise DataError('data.name="coco" needs data.data_dir: the folder holding annotations/ and the split folders')
    return CocoSource(data_config.data_dir, split)
  raise DataError(f"Unknown detection data.name {name!r}; use shapes_scenes, digits_scenes, vqa_scenes or coco")


# --- Augmentation that keeps boxes and masks consistent (host numpy, per example) ---


def hflip(example: dict) -> dict:
  """Mirror left-right: x0' = W - x1, x1' = W - x0."""
  out = dict(example)
  width = example["image"].shape[1]
  out["image"] = np.ascontiguousarray(example["image"][:, ::-1])
  boxes = example["boxes"]
  out["boxes"] = np.stack([width - boxes[:, 2], boxes[:, 1], width - boxes[:, 0], boxes[:, 3]], -1).astype(np.float32)
  if "instance_masks" in example:
    out["instance_masks"] = np.ascontiguousarray(example["instance_masks"][:, :, ::-1])
  return out


def resize(example: dict, height: int, width: int) -> dict:
  """Bilinear image, nearest masks, boxes scaled by the same factors."""
  out = dict(example)
  h, w = example["image"].shape[:2]
  if (h, w) == (height, width):
    return out
  out["image"] = preprocess._resize(example["image"], width, height, preprocess.Image.BILINEAR)
  out["boxes"] = (example["boxes"] * np.array([width / w, height / h] * 2, np.float32)).astype(np.float32)
  if "instance_masks" in example:
    rows = np.minimum((np.arange(height) + 0.5) * h / height, h - 1).astype(int)
    cols = np.minimum((np.arange(width) + 0.5) * w / width, w - 1).astype(int)
    out["instance_masks"] = example["instance_masks"][:, rows][:, :, cols]
  return out


def crop(example: dict, top: int, left: int, height: int, width: int) -> dict:
  """The window [top, top+height) × [left, left+width): boxes shifted and clipped to it; objects left with
  no width or height (or, with masks, no pixel) are dropped."""
  out = dict(example)
  out["image"] = example["image"][top:top + height, left:left + width]
  boxes = example["boxes"] - np.array([left, top, left, top], np.float32)
  boxes = np.clip(boxes, 0, np.array([width, height, width, height], np.float32))
  keep = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
  if "instance_masks" in example:
    masks = example["instance_masks"][:, top:top + height, left:left + width]
    keep &= masks.reshape(len(masks), -1).any(-1)
    out["instance_masks"] = masks[keep]
  out["boxes"], out["labels"] = boxes[keep].astype(np.float32), example["labels"][keep]
  return out


def random_crop(example: dict, rng: np.random.Generator, min_scale: float = 0.5) -> dict:
  """A window of random height and width (each a uniform fraction in [min_scale, 1] of the image's) at a
  random position (DETR's RandomSizeCrop)."""
  h, w = example["image"].shape[:2]
  ch = int(rng.integers(max(1, int(np.ceil(min_scale * h))), h + 1))
  cw = int(rng.integers(max(1, int(np.ceil(min_scale * w))), w + 1))
  top, left = int(rng.integers(0, h - ch + 1)), int(rng.integers(0, w - cw + 1))
  return crop(example, top, left, ch, cw)


def pad(example: dict, top: int, left: int, bottom: int, right: int, value: int = 127) -> dict:
  """Border of `value` pixels around the image (masks padded with False), boxes shifted with it."""
  out = dict(example)
  out["image"] = np.pad(example["image"], ((top, bottom), (left, right), (0, 0)), constant_values=value)
  out["boxes"] = (example["boxes"] + np.array([left, top, left, top], np.float32)).astype(np.float32)
  if "instance_masks" in example:
    out["instance_masks"] = np.pad(example["instance_masks"], ((0, 0), (top, bottom), (left, right)))
  return out


def random_jitter(example: dict, rng: np.random.Generator, jitter: float) -> dict:
  """Darknet's jitter (YOLOv1's random scaling and translation): each side of the window moves by a uniform
  fraction in [-jitter, jitter] of the image's size, inwards (a crop) or outwards (grey padding); the
  caller resizes the window back to the network's size, which scales and translates the content."""
  h, w = example["image"].shape[:2]
  top, bottom = (int(round(v)) for v in rng.uniform(-jitter, jitter, 2) * h)
  left, right = (int(round(v)) for v in rng.uniform(-jitter, jitter, 2) * w)
  example = pad(example, max(0, -top), max(0, -left), max(0, -bottom), max(0, -right))
  return crop(example, max(0, top), max(0, left), h - top - bottom, w - left - right)


def random_hsv(example: dict, rng: np.random.Generator, exposure: float, saturation: float) -> dict:
  """YOLOv1's colour augmentation: the HSV value (exposure) and saturation each scaled by a random factor,
  uniform in [1, f] and inverted with probability 1/2 (Darknet's `rand_scale`), then clipped. A grey image
  gets only the exposure."""
  from skimage.color import hsv2rgb, rgb2hsv

  def factor(f):
    scale = rng.uniform(1, f)
    return scale if rng.random() < 0.5 else 1 / scale
  out = dict(example)
  image = example["image"].astype(np.float64) / 255
  exp, sat = factor(exposure), factor(saturation)
  if image.shape[-1] == 3:
    hsv = rgb2hsv(image)
    hsv[..., 1] = np.clip(hsv[..., 1] * sat, 0, 1)
    hsv[..., 2] = np.clip(hsv[..., 2] * exp, 0, 1)
    image = hsv2rgb(hsv)
  else:
    image = np.clip(image * exp, 0, 1)
  out["image"] = np.round(image * 255).astype(np.uint8)
  return out


def pad_targets(example: dict, max_boxes: int) -> dict:
  """Static shapes: boxes (max_boxes, 4), labels (max_boxes,), box_valid (max_boxes,) and instance masks
  (max_boxes, H, W) when present; objects past the first max_boxes are left out."""
  out = dict(example)
  n = min(len(example["labels"]), max_boxes)
  out["boxes"] = np.zeros((max_boxes, 4), np.float32)
  out["boxes"][:n] = example["boxes"][:n]
  out["labels"] = np.zeros((max_boxes,), np.int32)
  out["labels"][:n] = example["labels"][:n]
  out["box_valid"] = np.arange(max_boxes) < n
  if "instance_masks" in example:
    masks = np.zeros((max_boxes,) + example["image"].shape[:2], bool)
    masks[:n] = example["instance_masks"][:n]
    out["instance_masks"] = masks
  return out
