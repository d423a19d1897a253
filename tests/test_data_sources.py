"""Tests for papers_jax.data.sources and papers_jax.data.preprocess (host side, no JAX)."""

import io
import math
import os

import ml_collections
import numpy as np
import pytest
from PIL import Image

from papers_jax.data import preprocess
from papers_jax.data import sources
from papers_jax.errors import DataError

# --- Sources ---


def test_digits_splits_are_fixed_disjoint_and_complete():
  train, test = sources.DigitsSource("train"), sources.DigitsSource("test")
  assert (len(train), len(test)) == (1437, 360)
  assert not set(train.indices) & set(test.indices)
  assert sorted(np.concatenate([train.indices, test.indices])) == list(range(1797))
  # Stratified: every class is in the held-out split.
  assert sorted({int(test[i]["label"]) for i in range(len(test))}) == list(range(10))

  sources._digits.cache_clear()  # Recompute the split from scratch.
  again = sources.DigitsSource("test")
  np.testing.assert_array_equal(again.indices, test.indices)
  np.testing.assert_array_equal(again[5]["image"], test[5]["image"])


def test_digits_are_scikit_learns_with_its_stratified_split():
  """The source reads sklearn's bundled file without importing sklearn; the same data and split as
  `load_digits()` and `train_test_split(..., stratify=labels, random_state=0)`."""
  from sklearn import datasets, model_selection
  digits = datasets.load_digits()
  train, test = model_selection.train_test_split(np.arange(1797), test_size=sources.DIGITS_TEST_SIZE,
                                                 stratify=digits.target, random_state=0)
  sources._digits.cache_clear()
  images, labels, split = sources._digits()
  np.testing.assert_array_equal(images[..., 0], np.round(digits.images * (255 / 16)).astype(np.uint8))
  np.testing.assert_array_equal(labels, digits.target)
  np.testing.assert_array_equal(split["train"], np.sort(train))
  np.testing.assert_array_equal(split["test"], np.sort(test))


def test_digits_values():
  source = sources.DigitsSource("train")
  example = source[0]
  assert example["image"].shape == (8, 8, 1) and example["image"].dtype == np.uint8
  assert example["label"].dtype == np.int32 and example["label"].shape == ()
  assert (source.name, source.num_classes) == ("digits", 10)
  images = np.stack([source[i]["image"] for i in range(len(source))])
  assert images.min() == 0 and images.max() == 255
  # Raw values are 0..16, so every pixel is one of the 17 levels round(v * 255 / 16).
  assert set(np.unique(images)) <= {round(v * 255 / 16) for v in range(17)}


def test_digits_unknown_split():
  with pytest.raises(DataError, match="train"):
    sources.DigitsSource("validation")


def test_train_fraction_is_a_fixed_nested_subset_of_the_train_split_only():
  from types import SimpleNamespace

  from papers_jax.core import config as config_lib
  from papers_jax.core import loop
  from papers_jax.errors import ConfigError
  train = sources.DigitsSource("train")
  subsets = {f: sources.Subset(train, f) for f in (0.1, 0.25, 0.5)}
  assert [len(s) for s in subsets.values()] == [144, 359, 718]
  assert set(subsets[0.1].indices) < set(subsets[0.25].indices) < set(subsets[0.5].indices)
  np.testing.assert_array_equal(sources.Subset(train, 0.1).indices, subsets[0.1].indices)  # the same every time
  i = int(subsets[0.1].indices[3])
  np.testing.assert_array_equal(subsets[0.1][3]["image"], train[i]["image"])
  assert subsets[0.1][3]["label"] == train[i]["label"] and subsets[0.1].num_classes == 10
  assert len({int(subsets[0.1][j]["label"]) for j in range(144)}) == 10
  with pytest.raises(DataError, match="at least one"):
    sources.Subset(train, 1e-4)
  # The trainer cuts the train split, never the eval split; the config refuses fractions outside (0, 1].
  config = config_lib.base_config()
  config.data.train_fraction = 0.25
  trainer = SimpleNamespace(config=config, task=object())
  assert len(loop.Trainer._source(trainer, "train")) == 359 and len(loop.Trainer._source(trainer, "test")) == 360
  config.data.train_fraction = 0.0
  with pytest.raises(ConfigError, match="train_fraction"):
    config_lib.check_ranges(config, config_lib.RANGES)


def _write_png(path, array):
  os.makedirs(os.path.dirname(path), exist_ok=True)
  Image.fromarray(array).save(path, format="PNG")


def test_image_folder_source(tmp_path):
  rgb = np.arange(4 * 5 * 3, dtype=np.uint8).reshape(4, 5, 3)
  _write_png(tmp_path / "train" / "cat" / "b.png", rgb)
  _write_png(tmp_path / "train" / "cat" / "a.PNG", rgb[::-1])  # Extensions are case-insensitive.
  _write_png(tmp_path / "train" / "ant" / "x.png", rgb[:, :, 0])  # Grayscale becomes RGB.
  (tmp_path / "train" / "ant" / "notes.txt").write_text("not an image")
  config = ml_collections.ConfigDict({"name": "folder", "data_dir": str(tmp_path)})

  source = sources.get_source(config, "train")
  assert (len(source), source.num_classes, source.classes) == (3, 2, ["ant", "cat"])
  labels = [int(source[i]["label"]) for i in range(3)]
  assert labels == [0, 1, 1]  # ant < cat; files sorted within a class.
  np.testing.assert_array_equal(source[0]["image"], np.repeat(rgb[:, :, :1], 3, axis=-1))
  np.testing.assert_array_equal(source[1]["image"], rgb[::-1])
  np.testing.assert_array_equal(source[2]["image"], rgb)
  assert source[2]["image"].dtype == np.uint8 and source[2]["label"].dtype == np.int32


def test_image_folder_errors(tmp_path):
  with pytest.raises(DataError, match="<class_name>"):
    sources.ImageFolderSource(str(tmp_path), "train")
  (tmp_path / "train" / "cat").mkdir(parents=True)
  with pytest.raises(DataError, match="holds no images"):
    sources.ImageFolderSource(str(tmp_path), "train")
  with pytest.raises(DataError, match="data_dir"):
    sources.get_source(ml_collections.ConfigDict({"name": "folder", "data_dir": None}), "train")


def test_get_source_unknown_name():
  with pytest.raises(DataError, match="tfds:<name>"):
    sources.get_source(ml_collections.ConfigDict({"name": "cifar10", "data_dir": None}), "train")


def test_tfds_missing_dataset_says_how_to_build(tmp_path):
  config = ml_collections.ConfigDict({"name": "tfds:cifar10", "data_dir": str(tmp_path)})
  with pytest.raises(DataError) as error:
    sources.get_source(config, "train")
  assert f"tfds build cifar10 --data_dir={tmp_path} --file_format=array_record" in str(error.value)
  assert not list(tmp_path.iterdir())  # Nothing was downloaded or prepared.


def test_tfds_prepared_array_record(tmp_path):
  # Builds a tiny ArrayRecord dataset the way `tfds build` would, then reads it back.
  import tensorflow_datasets as tfds

  class PapersJaxTinyImages(tfds.core.GeneratorBasedBuilder, skip_registration=True):
    VERSION = tfds.core.Version("1.0.0")

    def _info(self):
      return tfds.core.DatasetInfo(builder=self, features=tfds.features.FeaturesDict({
          "image": tfds.features.Image(shape=(6, 5, 1)),
          "label": tfds.features.ClassLabel(num_classes=3)}))

    def _split_generators(self, dl_manager):
      return {"train": self._generate_examples(10)}

    def _generate_examples(self, n):
      for i in range(n):
        png = io.BytesIO()  # Pre-encoded, since encoding numpy images needs TensorFlow.
        Image.fromarray(np.full((6, 5), 20 * i, np.uint8)).save(png, format="PNG")
        yield i, {"image": png.getvalue(), "label": i % 3}

  PapersJaxTinyImages(data_dir=str(tmp_path), file_format="array_record").download_and_prepare(
      download_config=tfds.download.DownloadConfig(try_download_gcs=False))

  config = ml_collections.ConfigDict(
      {"name": "tfds:papers_jax_tiny_images", "data_dir": str(tmp_path)})
  source = sources.get_source(config, "train[:50%]")
  assert (len(source), source.num_classes, source.name) == (5, 3, "tfds:papers_jax_tiny_images")
  example = source[0]
  assert example["image"].shape == (6, 5, 1) and example["image"].dtype == np.uint8
  assert example["label"].dtype == np.int32
  # Each image is constant 20 * i, and its label is i % 3.
  assert int(example["label"]) == example["image"][0, 0, 0] // 20 % 3
  with pytest.raises(DataError, match="Available splits"):
    sources.get_source(config, "validation")


# --- Preprocessing ---


def _image(height, width, channels, seed=0):
  return np.random.default_rng(seed).integers(0, 256, (height, width, channels), dtype=np.uint8)


@pytest.mark.parametrize("channels", [1, 3])
def test_inception_crop(channels):
  image = _image(40, 60, channels)
  out = preprocess.inception_crop(image, np.random.default_rng(1), 16)
  assert out.shape == (16, 16, channels) and out.dtype == np.uint8
  np.testing.assert_array_equal(
      out, preprocess.inception_crop(image, np.random.default_rng(1), 16))
  # Full-area square crop of a square image is a plain resize.
  square = _image(32, 32, channels)
  full = preprocess.inception_crop(square, np.random.default_rng(2), 16, scale=(1, 1), ratio=(1, 1))
  np.testing.assert_array_equal(full, preprocess.resize(square, 16))


def test_inception_crop_falls_back_to_central_crop():
  # Too flat for any crop with aspect ratio <= 4/3 and area >= 8%: central 10x13 crop instead.
  image = _image(10, 200, 3)
  out = preprocess.inception_crop(image, np.random.default_rng(0), 8)
  np.testing.assert_array_equal(out, preprocess.resize(image[:, 93:106], 8))


def _pil(image):
  return Image.fromarray(image[..., 0] if image.shape[-1] == 1 else image)


def _numpy(pil):
  array = np.asarray(pil)
  return array[..., None] if array.ndim == 2 else array


def pil_eval_transform(image, size, crop_pct):
  """timm's eval transform written out with PIL: Resize(floor(size / crop_pct), BICUBIC) as torchvision's
  Resize(int) (shorter side to that, longer side truncated), then CenterCrop(size) (offsets rounded)."""
  pil = _pil(image)
  width, height = pil.size
  short = math.floor(size / crop_pct)
  new = (short, int(short * height / width)) if width <= height else (int(short * width / height), short)
  pil = pil.resize(new, Image.BICUBIC)
  left, top = int(round((new[0] - size) / 2.0)), int(round((new[1] - size) / 2.0))
  return _numpy(pil.crop((left, top, left + size, top + size)))


@pytest.mark.parametrize("shape, size, crop_pct", [((300, 400, 3), 224, 0.875), ((250, 200, 1), 224, 0.875),
                                                    ((100, 100, 3), 224, 0.875), ((301, 457, 3), 64, 0.9),
                                                    ((97, 61, 1), 32, 1.0)])
def test_resize_shorter_then_center_crop(shape, size, crop_pct):
  image = _image(*shape)
  out = preprocess.resize_shorter_then_center_crop(image, size, crop_pct=crop_pct)
  assert out.shape == (size, size, shape[-1]) and out.dtype == np.uint8
  np.testing.assert_array_equal(out, pil_eval_transform(image, size, crop_pct))


def test_center_crop_without_resize():
  image = _image(256, 320, 3)  # Shorter side already 224 / 0.875 = 256.
  out = preprocess.resize_shorter_then_center_crop(image, 224, crop_pct=0.875)
  np.testing.assert_array_equal(out, image[16:240, 48:272])


@pytest.mark.parametrize("shape, size", [((8, 8, 1), 32), ((40, 30, 3), 16), ((9, 13, 3), 11)])
def test_resize(shape, size):
  image = _image(*shape)
  out = preprocess.resize(image, size)
  assert out.shape == (size, size, shape[-1]) and out.dtype == np.uint8
  np.testing.assert_array_equal(out, _numpy(_pil(image).resize((size, size), Image.BILINEAR)))
  assert preprocess.resize(out, size) is out


def test_inception_crop_of_a_box_is_pils_bilinear_resize_of_that_box():
  # The fallback box of a too-flat image is known (central, 10x13): the crop must be PIL's bilinear
  # resize of exactly those pixels.
  image = _image(10, 200, 3)
  out = preprocess.inception_crop(image, np.random.default_rng(0), 8)
  np.testing.assert_array_equal(out, _numpy(_pil(image).crop((93, 0, 106, 10)).resize((8, 8), Image.BILINEAR)))


def test_random_crop_with_padding_is_a_shifted_copy():
  image = _image(12, 10, 3)
  outs = [preprocess.random_crop_with_padding(image, np.random.default_rng(s), 4) for s in range(8)]
  padded = np.pad(image, ((4, 4), (4, 4), (0, 0)))
  for out in outs:
    assert out.shape == image.shape and out.dtype == np.uint8
    assert any(np.array_equal(out, padded[top:top + 12, left:left + 10])
               for top in range(9) for left in range(9))
  assert len({out.tobytes() for out in outs}) > 1
  np.testing.assert_array_equal(
      outs[3], preprocess.random_crop_with_padding(image, np.random.default_rng(3), 4))


def test_random_flip():
  image = _image(4, 6, 3)
  outs = [preprocess.random_flip(image, np.random.default_rng(s)) for s in range(16)]
  flipped = [np.array_equal(out, image[:, ::-1]) for out in outs]
  assert all(f or np.array_equal(out, image) for f, out in zip(flipped, outs))
  assert any(flipped) and not all(flipped)
  np.testing.assert_array_equal(outs[5], preprocess.random_flip(image, np.random.default_rng(5)))


def test_random_translate():
  image = _image(8, 8, 1)
  for seed in range(8):
    out = preprocess.random_translate(image, np.random.default_rng(seed), 2)
    dy, dx = np.random.default_rng(seed).integers(-2, 3, size=2)  # The draw the op makes.
    expected = np.zeros_like(image)
    expected[max(dy, 0):8 + min(dy, 0), max(dx, 0):8 + min(dx, 0)] = (
        image[max(-dy, 0):8 + min(-dy, 0), max(-dx, 0):8 + min(-dx, 0)])
    assert out.dtype == np.uint8
    np.testing.assert_array_equal(out, expected)


# --- Image folder labels (issue 22): one class list from the train split for every split ---


def _folder(root, layout):
  """layout: {split: {class: number of images}} of 4x4 RGB PNGs."""
  for split, classes in layout.items():
    for name, count in classes.items():
      os.makedirs(root / split / name, exist_ok=True)
      for i in range(count):
        _write_png(str(root / split / name / f"{i}.png"), np.full((4, 4, 3), i, np.uint8))
  return ml_collections.ConfigDict({"name": "folder", "data_dir": str(root), "train_split": "train"})


def test_image_folder_eval_split_missing_a_class_keeps_the_train_labels(tmp_path):
  config = _folder(tmp_path, {"train": {"c0": 1, "c1": 1, "c2": 1}, "test": {"c0": 1, "c2": 1}})
  test = sources.get_source(config, "test")
  assert test.classes == ["c0", "c1", "c2"] and test.num_classes == 3
  assert [int(test[i]["label"]) for i in range(2)] == [0, 2]  # c2 stays label 2 (was 1)


def test_image_folder_class_absent_from_train_is_an_error(tmp_path):
  config = _folder(tmp_path, {"train": {"c0": 1, "c1": 1}, "test": {"c0": 1, "c9": 1}})
  with pytest.raises(DataError, match=r"\['c9'\].*not among the 2 classes of the train split"):
    sources.get_source(config, "test")


def test_image_folder_empty_class_directory_is_an_error(tmp_path):
  config = _folder(tmp_path, {"train": {"c0": 1, "c1": 0}})
  with pytest.raises(DataError, match=f"{tmp_path}/train/c1 holds no images"):
    sources.get_source(config, "train")


def test_image_folder_classes_file_sets_the_label_order(tmp_path):
  config = _folder(tmp_path, {"train": {"cat": 1, "ant": 1}})
  (tmp_path / "classes.txt").write_text("cat\nant\nbee\n")
  train = sources.get_source(config, "train")
  assert train.classes == ["cat", "ant", "bee"]
  assert [int(train[i]["label"]) for i in range(2)] == [1, 0]  # ant/0.png, cat/0.png
  (tmp_path / "classes.txt").write_text("cat\ncat\n")
  with pytest.raises(DataError, match="more than once"):
    sources.get_source(config, "train")


def test_more_folder_classes_than_the_model_head_stops_before_the_workdir(tmp_path, config_loader):
  from papers_jax.core import loop
  _folder(tmp_path / "data", {"train": {f"c{i:02d}": 1 for i in range(12)}, "test": {"c00": 1}})
  config = config_loader("vit/digits.py", "smoke").unlock()
  config.data.name, config.data.data_dir = "folder", str(tmp_path / "data")
  config.data.train_split, config.data.eval_split = "train", "test"
  with pytest.raises(DataError, match="12 classes but the model's head has model.num_classes=10"):
    loop.Trainer(config.lock(), str(tmp_path / "run"))
  assert not (tmp_path / "run").exists()


# --- Data fuzz (issue 22): odd image and text files train correctly or stop with one error naming the file ---


def _png_header_only(path, width, height):
  """A PNG whose header claims width x height (no pixel data): enough for PIL to see its size."""
  import struct
  import zlib
  def chunk(kind, data):
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
  ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
  path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IEND", b""))


def _write_valid_odd_images(directory):
  """Files that are valid images in unusual forms; returns {name: the RGB pixels they must decode to}."""
  os.makedirs(directory, exist_ok=True)
  rng = np.random.default_rng(0)
  y, x = np.mgrid[:12, :10]
  rgb = np.stack([y * 15, x * 20, (x + y) * 8], -1).astype(np.uint8)  # smooth, so that JPEG keeps it
  expected = {}
  Image.fromarray(rgb).save(directory / "jpeg_named.png", format="JPEG", quality=95)  # wrong extension
  expected["jpeg_named.png"] = rgb
  Image.fromarray(rgb).convert("CMYK").save(directory / "cmyk.jpg", format="JPEG", quality=95)
  expected["cmyk.jpg"] = rgb
  gray = rng.integers(0, 256, (12, 10), dtype=np.uint16)
  Image.fromarray(gray * 257).save(directory / "gray16.png")  # 16-bit: v * 257 has high byte v
  expected["gray16.png"] = np.repeat(gray.astype(np.uint8)[..., None], 3, -1)
  palette = Image.fromarray(rgb).convert("P")
  palette.save(directory / "palette.png")
  expected["palette.png"] = np.asarray(palette.convert("RGB"))
  Image.fromarray(np.dstack([rgb, np.full((12, 10), 128, np.uint8)])).save(directory / "rgba.png")
  expected["rgba.png"] = rgb
  big = np.broadcast_to(rgb[:1, :1], (900, 1200, 3))
  Image.fromarray(np.ascontiguousarray(big)).save(directory / "large.png")
  expected["large.png"] = big
  return expected


def _write_broken_images(directory):
  os.makedirs(directory, exist_ok=True)
  Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(directory / "whole.png")
  data = (directory / "whole.png").read_bytes()
  (directory / "whole.png").unlink()
  (directory / "truncated.png").write_bytes(data[: len(data) // 2])
  (directory / "zero_bytes.jpg").write_bytes(b"")
  (directory / "text.jpg").write_text("not an image")
  _png_header_only(directory / "huge.png", 30000, 30000)  # 900 Mpixel: a decompression bomb
  return ["truncated.png", "zero_bytes.jpg", "text.jpg", "huge.png"]


def test_decode_image_of_odd_but_valid_files(tmp_path):
  for name, pixels in _write_valid_odd_images(tmp_path).items():
    decoded = sources.decode_image(str(tmp_path / name))
    assert decoded.dtype == np.uint8 and decoded.shape == pixels.shape, name
    tolerance = 4 if name.endswith(".jpg") or name == "jpeg_named.png" else 0  # JPEG is lossy
    assert np.abs(decoded.astype(int) - pixels).mean() <= tolerance, name


def test_decode_image_of_broken_files_names_the_file(tmp_path):
  for name in _write_broken_images(tmp_path):
    with pytest.raises(DataError, match=f"Cannot decode image {tmp_path / name}") as error:
      sources.decode_image(str(tmp_path / name))
    assert "\n" not in str(error.value)


def test_fuzzed_image_folder_trains_or_stops_naming_the_file(tmp_path, config_loader):
  """A folder of odd but valid images trains; one broken file stops the run with a DataError naming it."""
  from papers_jax.core import loop
  for split in ("train", "test"):
    for c in ("a", "b"):
      _write_valid_odd_images(tmp_path / "data" / split / c)
  config = config_loader("vit/digits.py", "smoke").unlock()
  config.data.update(name="folder", data_dir=str(tmp_path / "data"), mean=(0.5,) * 3, std=(0.5,) * 3)
  config.data.train_split, config.data.eval_split = "train", "test"
  config.model.in_chans, config.model.num_classes = 3, 2
  config.batch_size, config.num_steps, config.log_every, config.checkpoint_every = 8, 3, 1, 3
  config.schedule.warmup_steps, config.async_checkpoint = 1, False
  summary = loop.train(config.lock(), str(tmp_path / "run"))
  assert summary["steps"] == 3 and np.isfinite(summary["train/loss"]) and summary["eval/count"] == 12

  (tmp_path / "data" / "train" / "b" / "large.png").write_bytes(b"")  # every epoch reads it
  with pytest.raises(DataError, match=f"Cannot decode image {tmp_path}/data/train/b/large.png"):
    loop.train(config.lock(), str(tmp_path / "run2"))


def test_caption_and_class_name_text_files_name_the_bad_file(tmp_path):
  from papers_jax.data import captions
  root = tmp_path / "data" / "train"
  _write_png(str(root / "0.png"), np.zeros((8, 8, 3), np.uint8))
  _write_png(str(root / "1.png"), np.zeros((8, 8, 3), np.uint8))
  (root / "0.txt").write_bytes("a caf\u00e9\n".encode("utf-8"))
  (root / "1.txt").write_bytes(b"caf\xe9 latin-1\n")  # not UTF-8
  source = captions.CaptionFolderSource(str(tmp_path / "data"), "train")
  assert source[0]["texts"] == ("a caf\u00e9",)
  with pytest.raises(DataError, match=f"{root / '1.txt'} is not UTF-8"):
    source[1]
  (root / "1.txt").write_text("\n  \n")  # an empty document
  with pytest.raises(DataError, match=f"caption file {root / '1.txt'} holds no caption"):
    source[1]

  names = tmp_path / "names.txt"
  names.write_bytes(b"\xff\xfeseven\n")
  with pytest.raises(DataError, match=f"{names} is not UTF-8"):
    captions.read_class_names(str(names))
  names.write_text("\n")
  with pytest.raises(DataError, match="is empty"):
    captions.read_class_names(str(names))


def test_any_source_with_more_classes_than_the_head_is_refused():
  """The trainer's check reads `num_classes` of whatever source it has (a TFDS ClassLabel's count, a
  folder's class list), so a TFDS dataset with 100 classes under a 10-class head stops too."""
  from types import SimpleNamespace
  from papers_jax.core import loop
  check = lambda classes, head: loop.Trainer._check_data(SimpleNamespace(  # noqa: E731
      config=ml_collections.ConfigDict({"data": {"name": "tfds:cifar100"}}),
      task=SimpleNamespace(num_classes=head), train_source=SimpleNamespace(num_classes=classes)))
  check(10, 10)
  check(10, 1000)
  with pytest.raises(DataError, match="has 100 classes but the model's head has model.num_classes=10"):
    check(100, 10)
