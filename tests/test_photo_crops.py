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
