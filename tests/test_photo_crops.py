"""The photo_crops source (data/photos.py): crops of scikit-image's bundled photographs, fixed and disjoint splits."""

import ml_collections
import numpy as np
import pytest

from papers_jax.data import photos
from papers_jax.data.sources import get_source
from papers_jax.errors import DataError


def test_photo_crops_are_fixed_disjoint_and_from_the_photos():
  for name in photos.PHOTOS:
    assert photos._photo(name).shape == photos.SIZES[name] + (3,)
  config = ml_collections.ConfigDict({"name": "photo_crops", "crop": 16, "crops_per_photo": 8})
  train, test = get_source(config, "train"), get_source(config, "test")
  assert (len(train), len(test), train.num_classes) == (64, 16, 8)
  example = train[13]
  assert example["image"].shape == (16, 16, 3) and example["image"].dtype == np.uint8 and example["label"] == 1
  top, left = train._corners[13]
  np.testing.assert_array_equal(example["image"], photos._photo("chelsea")[top:top + 16, left:left + 16])
  again = photos.PhotoCropsSource("train", crop=16, crops_per_photo=8)
  np.testing.assert_array_equal(again._corners, train._corners)  # fixed positions, whatever the process
  # The splits share no pixel: train crops end left of the 80% column, test crops start at or after it.
  for source, inside in ((train, lambda left, cut: left + 16 <= cut), (test, lambda left, cut: left >= cut)):
    for i in range(len(source)):
      width = photos.SIZES[photos.PHOTOS[i // source.count]][1]
      assert inside(source._corners[i][1], int(width * photos.TRAIN_FRACTION))
  grey = photos.PhotoCropsSource("test", crop=16, crops_per_photo=8, channels=1)[0]["image"]
  want = test[0]["image"].astype(np.float64) @ np.array([0.2125, 0.7154, 0.0721])
  assert grey.shape == (16, 16, 1) and np.abs(grey[..., 0] - want).max() <= 0.5
  with pytest.raises(DataError, match="split"):
    photos.PhotoCropsSource("val")
  with pytest.raises(DataError, match="data.crop"):
    photos.PhotoCropsSource("train", crop=100)


def test_texture_by_hand_and_the_filter_keeps_the_textured_crops():
  assert photos.texture(np.full((6, 6, 3), 77, np.uint8)) == 0.0
  stripes = np.zeros((4, 6, 3), np.uint8)
  stripes[:, 1::2] = 255  # luma 16 and 235: every horizontal step 219, every vertical step 0
  assert np.isclose(photos.texture(stripes), 219 / 2)
  ramp = np.tile(np.arange(0, 50, 10, dtype=np.uint8)[:, None, None], (1, 5, 3))  # grey rows 0, 10, ..., 40
  assert np.isclose(photos.texture(ramp), 0.5 * 10 * 219 / 255)  # luma per grey level: (65.481+128.553+24.966)/255
  kept = photos.PhotoCropsSource("test", crop=16, crops_per_photo=32, min_texture=4.0)
  every = photos.PhotoCropsSource("test", crop=16, crops_per_photo=32)
  textures = np.array([photos.texture(every[i]["image"]) for i in range(len(every))])
  assert 0 < len(kept) == (textures >= 4.0).sum() < len(every)
  np.testing.assert_array_equal(kept._corners, every._corners[textures >= 4.0])  # same positions, same order
  labels = np.array([every[i]["label"] for i in range(len(every))])[textures >= 4.0]
  np.testing.assert_array_equal([kept[i]["label"] for i in range(len(kept))], labels)
  with pytest.raises(DataError, match="min_texture"):
    photos.PhotoCropsSource("test", crop=16, crops_per_photo=8, min_texture=1e3)
