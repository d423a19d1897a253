"""RandAugment and random erasing against timm's own implementations."""

import math
import random

import numpy as np
import pytest
from PIL import Image

from papers_jax.convert.torch_compat import import_timm
from papers_jax.data import pipeline, preprocess
from papers_jax.data.randaugment import (INCREASING_TRANSFORMS, LEVEL_TO_ARG, TRANSFORMS, RandAugment,
                                         op_fn)
from papers_jax.errors import ConfigError

import_timm()
import torch  # noqa: E402
from timm.data import auto_augment as timm_aa  # noqa: E402
from timm.data import random_erasing as timm_random_erasing  # noqa: E402

MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
FILL = (124, 116, 104)  # timm's img_mean for these: round(255 * mean)
ALL_NAMES = sorted(set(TRANSFORMS) | set(INCREASING_TRANSFORMS))


def _image(height=37, width=29, seed=0):
  # Smooth gradients plus noise, so every op (equalize, posterize, sharpness, shears) changes it.
  y, x = np.mgrid[:height, :width]
  base = np.stack([x * 255 / width, y * 255 / height, (x + y) * 127 / (width + height)], -1)
  noise = np.random.default_rng(seed).integers(-40, 40, base.shape)
  return np.clip(base + noise, 0, 255).astype(np.uint8)


def test_transform_sets_are_timms():
  assert list(TRANSFORMS) == timm_aa._RAND_TRANSFORMS
  assert list(INCREASING_TRANSFORMS) == timm_aa._RAND_INCREASING_TRANSFORMS


@pytest.mark.parametrize("name", ALL_NAMES)
def test_level_to_arg_matches_timm(name, monkeypatch):
  timm_fn = timm_aa.LEVEL_TO_ARG[name]
  for negate in (False, True):
    # timm negates when random.random() > 0.5.
    monkeypatch.setattr(timm_aa.random, "random", lambda: 1.0 if negate else 0.0)
    for level in np.linspace(0.0, 10.0, 41):
      ours = LEVEL_TO_ARG[name](float(level), negate)
      if timm_fn is None:
        assert ours is None
      else:
        assert ours == timm_fn(float(level), dict(timm_aa._HPARAMS_DEFAULT))[0], (name, level, negate)


@pytest.mark.parametrize("name", ALL_NAMES)
def test_op_matches_timm(name):
  img = Image.fromarray(_image())
  timm_op = timm_aa.NAME_TO_OP[name]
  for level in (0.0, 3.0, 8.6, 9.0, 10.0):
    for negate in (False, True):
      arg = LEVEL_TO_ARG[name](level, negate)
      args = () if arg is None else (arg,)
      if "Posterize" in name and arg == 0:
        # timm calls ImageOps.posterize(img, 0), which recent Pillow rejects; zero bits kept is black.
        np.testing.assert_array_equal(np.asarray(op_fn(name)(img, arg, FILL)), 0)
        continue
      want = np.asarray(timm_op(img, *args, fillcolor=FILL, resample=Image.Resampling.BICUBIC))
      got = np.asarray(op_fn(name)(img, arg, FILL))
      np.testing.assert_array_equal(got, want, err_msg=f"{name} level={level} negate={negate}")


def test_parse():
  assert RandAugment.parse("rand-m9-mstd0.5-inc1") == RandAugment(
      magnitude=9.0, num_ops=2, prob=0.5, magnitude_std=0.5, increasing=True)
  assert RandAugment.parse("rand-n3-m7-p0.7") == RandAugment(magnitude=7.0, num_ops=3, prob=0.7)
  for bad in ("rand-m9-x1", "auto-m9", "rand-mstd1000"):
    with pytest.raises(ConfigError):
      RandAugment.parse(bad)


def test_randaugment_applies_each_op_with_its_probability():
  # With p = 0 nothing changes; with p = 1 and n = 2 almost every image changes.
  image = _image(32, 32)
  rng = np.random.default_rng(0)
  off = RandAugment(magnitude=9, prob=0.0, increasing=True)
  assert all(np.array_equal(off(image, rng, FILL), image) for _ in range(20))
  on = RandAugment(magnitude=9, prob=1.0, increasing=True)
  changed = np.mean([not np.array_equal(on(image, rng, FILL), image) for _ in range(200)])
  assert changed > 0.95
  # p = 0.5, n = 2: about a quarter of the images get no op at all (a few ops leave this image as is).
  half = RandAugment(magnitude=9, prob=0.5, increasing=True)
  unchanged = np.mean([np.array_equal(half(image, rng, FILL), image) for _ in range(1000)])
  assert 0.2 < unchanged < 0.32, unchanged


def test_randaugment_single_channel():
  image = _image(16, 16)[:, :, :1]
  out = RandAugment.parse("rand-m9-mstd0.5-inc1")(image, np.random.default_rng(0), (124,))
  assert out.shape == image.shape and out.dtype == np.uint8


def _ks_distance(a, b):
  """Two-sample Kolmogorov-Smirnov statistic."""
  grid = np.sort(np.concatenate([a, b]))
  cdf = lambda s: np.searchsorted(np.sort(s), grid, side="right") / len(s)
  return np.max(np.abs(cdf(a) - cdf(b)))


def test_erasing_box_distribution_matches_timm(monkeypatch):
  size, n = 224, 3000
  rng = np.random.default_rng(0)
  boxes = [preprocess.erasing_box(rng, size, size) for _ in range(n)]
  assert all(b is not None for b in boxes)
  hs, ws = np.array([b[2] for b in boxes]), np.array([b[3] for b in boxes])
  tops, lefts = np.array([b[0] for b in boxes]), np.array([b[1] for b in boxes])
  assert np.all(tops + hs <= size) and np.all(lefts + ws <= size)
  area = hs * ws / size**2
  log_aspect = np.log(hs / ws)
  # The stated distributions: area uniform in [0.02, 1/3], aspect log-uniform in [0.3, 1/0.3].
  assert area.min() > 0.018 and area.max() < 0.345
  assert log_aspect.min() > math.log(0.3) - 0.05 and log_aspect.max() < math.log(1 / 0.3) + 0.05
  uniform = np.random.default_rng(1)
  assert _ks_distance(area, uniform.uniform(0.02, 1 / 3, n)) < 0.05
  assert _ks_distance(log_aspect, uniform.uniform(math.log(0.3), math.log(1 / 0.3), n)) < 0.05
  # And timm's own RandomErasing: its `_erase` on an object that records the box it writes.
  class Recorder:
    def __setitem__(self, key, value):
      self.box = key[1:]

  random.seed(0)
  monkeypatch.setattr(timm_random_erasing, "_get_pixels", lambda *args, **kwargs: None)
  erase = timm_random_erasing.RandomErasing(probability=1.0, mode="pixel", max_count=1, device="cpu")
  timm_area, timm_log_aspect = [], []
  for _ in range(n):
    recorder = Recorder()
    erase._erase(recorder, 3, size, size, torch.float32)
    rows, cols = recorder.box
    h, w = rows.stop - rows.start, cols.stop - cols.start
    timm_area.append(h * w / size**2)
    timm_log_aspect.append(math.log(h / w))
  assert _ks_distance(area, np.array(timm_area)) < 0.05
  assert _ks_distance(log_aspect, np.array(timm_log_aspect)) < 0.05


def test_random_erasing_probability_and_noise():
  image = np.full((64, 64, 3), 7, np.uint8)
  rng = np.random.default_rng(0)
  outs = [preprocess.random_erasing(image, rng, 0.25, MEAN, STD) for _ in range(4000)]
  changed = [o for o in outs if not np.array_equal(o, image)]
  assert 0.22 < len(changed) / len(outs) < 0.28
  # Erased pixels, normalised as the device does, are N(0, 1) noise up to clipping to [0, 255].
  pixels = np.concatenate([((o / 255.0 - MEAN) / STD)[(o != 7).any(-1)] for o in changed[:200]])
  assert pixels.shape[0] > 10_000
  assert abs(pixels.mean()) < 0.05
  assert 0.85 < pixels.std() < 1.0  # clipping at about ±2.2 trims the tails


def test_pipeline_deterministic_given_seed():
  image = _image(48, 40)
  kwargs = dict(train=True, randaugment="rand-m9-mstd0.5-inc1", random_erasing=0.25, mean=MEAN, std=STD)
  fn = pipeline.image_preprocess("inception", 32, **kwargs)
  plain = pipeline.image_preprocess("inception", 32, train=True)
  example = {"image": image, "label": 3}
  runs = [[fn(dict(example), np.random.default_rng([5, i, 1]))["image"] for i in range(20)] for _ in range(2)]
  for a, b in zip(*runs):
    np.testing.assert_array_equal(a, b)
  # The augmentations do something: most images differ from the crop-and-flip-only pipeline's.
  differ = [not np.array_equal(a, plain(dict(example), np.random.default_rng([5, i, 1]))["image"])
            for i, a in enumerate(runs[0])]
  assert sum(differ) >= 10
  # Evaluation ignores both.
  evaluate = pipeline.image_preprocess("inception", 32, **{**kwargs, "train": False})
  np.testing.assert_array_equal(evaluate(dict(example), None)["image"],
                                pipeline.image_preprocess("inception", 32, train=False)(dict(example), None)["image"])


def test_pipeline_rejects_bad_settings():
  with pytest.raises(ConfigError):
    pipeline.image_preprocess("inception", 32, train=True, random_erasing=1.5)
  with pytest.raises(ConfigError):
    pipeline.image_preprocess("inception", 32, train=True, randaugment="rand-q9")
