"""Crops of the photographs bundled with scikit-image (`data.name = "photo_crops"`): small natural-image
patches that need no download, for generative models and other image tasks at demo size.

The photos are the eight colour photographs scikit-image ships in its package (`PHOTOS`: astronaut, chelsea,
coffee, hubble_deep_field, ihc, motorcycle_left, retina, rocket; read from skimage/data, no network). Each is
split by columns: crops of the `train` split lie in its left 80%, crops of the `test` split in its right 20%,
so the two splits share no pixel. The crop positions are fixed: drawn once per split with
`np.random.default_rng(seed)` (seed 0 for train, 1 for test), `crops_per_photo` of them per photo (train; a
quarter of that for test), each `crop` × `crop` pixels; the data pipeline then resizes to `data.image_size`.
`channels=1` gives the photos' luminance (ITU-R 601, as skimage.color.rgb2gray). The label is the photo's
index in `PHOTOS`, so the source also serves as an eight-way classification toy.

`min_texture` > 0 keeps only the crops whose `texture` (the mean absolute difference between neighbouring
pixels of the crop's BT.601 luma, in grey levels, over both axes) reaches it, in both splits: the fixed
positions are drawn as before and the flat ones dropped, so the splits hold fewer crops, a different number per
photo (the super-resolution demo: on flat crops, such as the retina's dark background, bicubic upscaling is
near exact). This reads the photos when the source is built.

Config: data.name = "photo_crops", data.crop (32), data.crops_per_photo (512), data.channels (3),
data.min_texture (0: every crop).
"""

import functools
import os

import numpy as np

from papers_jax.errors import DataError

PHOTOS = ("astronaut", "chelsea", "coffee", "hubble_deep_field", "ihc", "motorcycle_left", "retina", "rocket")
# (height, width) of each photo: crop positions need no decoding (tests/test_photo_crops.py checks them).
SIZES = {"astronaut": (512, 512), "chelsea": (300, 451), "coffee": (400, 600), "hubble_deep_field": (872, 1000),
         "ihc": (512, 512), "motorcycle_left": (500, 741), "retina": (1411, 1411), "rocket": (427, 640)}
FILES = {"hubble_deep_field": "hubble_deep_field.jpg", "retina": "retina.jpg", "rocket": "rocket.jpg"}  # else .png
TRAIN_FRACTION = 0.8


@functools.cache
def _photo(name: str) -> np.ndarray:
  """The uint8 (H, W, 3) photograph, from scikit-image's package data (no download)."""
  import skimage.data  # imported here: the trainer's start-up skips scikit-image otherwise
  import skimage.io
  path = os.path.join(os.path.dirname(skimage.data.__file__), FILES.get(name, name + ".png"))
  if not os.path.exists(path):
    raise DataError(f"{path} is missing: photo_crops reads the photographs scikit-image installs with its package")
  return np.asarray(skimage.io.imread(path))[..., :3].astype(np.uint8)


def texture(patch: np.ndarray) -> float:
  """Mean |difference| of horizontally and of vertically adjacent pixels of the BT.601 luma (the Y of the SR
  metrics, 16..235), averaged over the two axes; grey levels. 0 for a flat patch."""
  rgb = patch.astype(np.float64)
  luma = 16.0 + (65.481 * rgb[..., 0] + 128.553 * rgb[..., 1] + 24.966 * rgb[..., 2]) / 255.0
  return 0.5 * (np.abs(np.diff(luma, axis=0)).mean() + np.abs(np.diff(luma, axis=1)).mean())


class PhotoCropsSource:
  """Fixed random crops of scikit-image's bundled photographs (module docstring); uint8 (crop, crop, channels)."""

  SPLITS = ("train", "test")

  def __init__(self, split: str, *, crop: int = 32, crops_per_photo: int = 512, channels: int = 3,
               min_texture: float = 0.0):
    if split not in self.SPLITS:
      raise DataError(f"Unknown photo_crops split {split!r} (data.train_split / data.eval_split); "
                      f"use one of {list(self.SPLITS)}.")
    if channels not in (1, 3):
      raise DataError(f"data.channels={channels} for photo_crops; use 3 (colour) or 1 (luminance)")
    if not 4 <= crop <= 64:
      raise DataError(f"data.crop={crop} for photo_crops; use 4 to 64 pixels (the narrowest test strip is 91 wide)")
    if crops_per_photo < 4:
      raise DataError(f"data.crops_per_photo={crops_per_photo}; use at least 4 (the test split has a quarter)")
    self.name, self.split, self.num_classes = "photo_crops", split, len(PHOTOS)
    self.crop, self.channels = crop, channels
    self.count = crops_per_photo if split == "train" else crops_per_photo // 4
    rng = np.random.default_rng(0 if split == "train" else 1)
    corners = []
    for name in PHOTOS:  # positions from the photos' sizes only: the pixels are read on first access
      height, width = SIZES[name]
      cut = int(width * TRAIN_FRACTION)
      lo, hi = (0, cut - crop) if split == "train" else (cut, width - crop)
      tops, lefts = rng.integers(0, height - crop + 1, self.count), rng.integers(lo, hi + 1, self.count)
      corners.append(np.stack([tops, lefts], 1))
    if min_texture > 0:
      corners = [np.array([(t, l) for t, l in c if texture(_photo(name)[t:t + crop, l:l + crop]) >= min_texture],
                          np.int64).reshape(-1, 2) for name, c in zip(PHOTOS, corners)]
      if not sum(map(len, corners)):
        raise DataError(f"data.min_texture={min_texture} leaves no {split} crop of the photos; lower it")
    self._labels = np.concatenate([np.full(len(c), k, np.int32) for k, c in enumerate(corners)])
    self._corners = np.concatenate(corners)

  def __len__(self) -> int:
    return len(self._corners)

  def __getitem__(self, i) -> dict:
    i = int(i)
    label = int(self._labels[i])
    top, left = self._corners[i]
    patch = _photo(PHOTOS[label])[top:top + self.crop, left:left + self.crop]
    if self.channels == 1:
      patch = np.round(patch.astype(np.float64) @ np.array([0.2125, 0.7154, 0.0721]))[..., None].astype(np.uint8)
    return {"image": np.ascontiguousarray(patch), "label": np.int32(label)}
