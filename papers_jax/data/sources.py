"""Random-access image classification sources.

Every source has `len(source)`, `source[i] -> {"image": uint8 (H, W, C), "label": int32 scalar}`
and the attributes `num_classes` and `name`. Sources hold no open files that break on fork and
are cheap to construct, so grain can pickle them into worker processes.
"""

import functools
import importlib.util
import os

import numpy as np

from papers_jax.errors import DataError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp")
SOURCE_FORMS = ('"digits"', '"digits_canvas"', '"tfds:<name>" (e.g. "tfds:cifar10")', '"folder"', '"synthetic"',
                '"spoken_digits"', '"spoken_numbers"', '"manifest"', '"segmentation_shapes"', '"cityscapes"',
                '"photo_crops"')


def _example(image, label) -> dict:
  image = np.asarray(image)
  if image.ndim == 2:
    image = image[:, :, None]
  if image.dtype != np.uint8 or image.ndim != 3:
    raise DataError(
        f"Expected uint8 images of shape (H, W, C), got {image.dtype} {image.shape}. "
        "Use an image dataset whose images are 8-bit.")
  return {"image": image, "label": np.int32(label)}


# --- scikit-learn digits ---

DIGITS_TEST_SIZE = 360


# The test split: scikit-learn's `model_selection.train_test_split(np.arange(1797), test_size=360,
# stratify=labels, random_state=0)`, written out as a bit mask (np.packbits, hex) so that a run does not
# import scikit-learn, about 2 s of CPU at every start (tests/test_data_sources.py checks it against the call).
_DIGITS_TEST_MASK = (
    "000004883524104000064100934205001a00080100240028062c12001000940a009019120420f8a0028110a000080a882044"
    "1524494240a00a0000004004d80000818020004805c400104008a0100005404800301000020ec409000224840083a8013c20"
    "a6980a0000000b08400804a0184802024041c1008004404684376a810216004480004042a0a4180a5000840b8561c6081080"
    "08004c80c02004068e00010882008100380803c008190000100e01008410a0210033282904c044c080680e01028300820088"
    "22a6402c24042108a860809081a00c02820242120138a41500"
)


@functools.cache
def _digits() -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
  """All 1797 images as uint8 (8, 8, 1), int32 labels, and the split indices into them."""
  spec = importlib.util.find_spec("sklearn")
  path = spec and os.path.join(spec.submodule_search_locations[0], "datasets", "data", "digits.csv.gz")
  if path and os.path.exists(path):  # scikit-learn's bundled copy, read as its load_digits() reads it
    data = np.loadtxt(path, delimiter=",")
    pixels, labels = data[:, :-1].reshape(-1, 8, 8), data[:, -1].astype(np.int32)
  else:
    from sklearn import datasets  # an error naming scikit-learn where it is missing
    digits = datasets.load_digits()
    pixels, labels = digits.images, digits.target.astype(np.int32)
  images = np.round(pixels * (255 / 16)).astype(np.uint8)[..., None]
  test = np.unpackbits(np.frombuffer(bytes.fromhex(_DIGITS_TEST_MASK), np.uint8), count=len(labels))
  return images, labels, {"train": np.flatnonzero(test == 0), "test": np.flatnonzero(test == 1)}


class DigitsSource:
  """scikit-learn's bundled 8x8 digits (1797 images, 10 classes), as uint8 (8, 8, 1) in 0..255.

  Fixed stratified split (`random_state=0`): `train` has 1437 images and `test` 360. The splits
  are disjoint and the `test` split is never used for training.
  """

  SPLITS = ("train", "test")

  def __init__(self, split: str):
    if split not in self.SPLITS:
      raise DataError(f"Unknown digits split {split!r} (data.train_split / data.eval_split); "
                      f"use one of {list(self.SPLITS)}.")
    self.split = split
    self.name = "digits"
    self.num_classes = 10
    images, labels, split_indices = _digits()
    self.indices = split_indices[split]  # Into the full 1797-image set.
    self._images = images[self.indices]
    self._labels = labels[self.indices]

  def __len__(self) -> int:
    return len(self._labels)

  def __getitem__(self, i) -> dict:
    return {"image": self._images[i], "label": self._labels[i]}


class DigitsCanvasSource:
  """The digits, each upsampled `scale`× (nearest) and pasted at a random position on a black
  `canvas` × `canvas` image: the weakly supervised localisation task of the CAM paper in miniature
  (tools/cam_localization.py). The position of image i is fixed (seeded by split and index);
  `box(i)` is the tight (top, left, bottom, right) box of the digit's non-zero pixels, bottom/right
  exclusive. Labels only are trained on; the boxes are for evaluation.
  """

  def __init__(self, split: str, *, canvas: int = 32, scale: int = 2):
    self._digits = DigitsSource(split)
    size = 8 * scale
    if canvas < size:
      raise DataError(f"data.canvas={canvas} is smaller than a digit ({size}×{size} at data.scale={scale})")
    self.name, self.split, self.num_classes, self.canvas, self.scale = "digits_canvas", split, 10, canvas, scale
    rng = np.random.default_rng(0 if split == "train" else 1)
    self._corners = rng.integers(0, canvas - size + 1, (len(self._digits), 2))

  def __len__(self) -> int:
    return len(self._digits)

  def _digit(self, i):
    return np.kron(self._digits[i]["image"][..., 0], np.ones((self.scale, self.scale), np.uint8))

  def __getitem__(self, i) -> dict:
    i = int(i)
    digit, (top, left) = self._digit(i), self._corners[i]
    image = np.zeros((self.canvas, self.canvas, 1), np.uint8)
    image[top:top + digit.shape[0], left:left + digit.shape[1], 0] = digit
    return {"image": image, "label": self._digits[i]["label"]}

  def box(self, i) -> tuple[int, int, int, int]:
    rows, cols = np.nonzero(self._digit(int(i)))
    top, left = self._corners[int(i)]
    return (int(top + rows.min()), int(left + cols.min()), int(top + rows.max()) + 1, int(left + cols.max()) + 1)


# --- TensorFlow Datasets (ArrayRecord) ---


def _tfds_prepare_hint(name: str, data_dir: str | None, builder=None) -> str:
  shown_dir = data_dir or os.environ.get("TFDS_DATA_DIR", "~/tensorflow_datasets")
  hint = (
      f"Prepare it once with `tfds build {name} --data_dir={shown_dir} "
      "--file_format=array_record` (building needs `pip install tensorflow`; reading does not).")
  if getattr(builder, "MANUAL_DOWNLOAD_INSTRUCTIONS", None):
    if name.startswith("imagenet2012"):
      files = "the ImageNet tars (ILSVRC2012_img_train.tar, ILSVRC2012_img_val.tar)"
    else:
      files = "the files listed on its TFDS catalog page"
    hint += f" tfds cannot download it: first place {files} in {shown_dir}/downloads/manual/."
  return hint


def open_tfds(name: str, split: str, data_dir: str | None, features, *, extra_hint: str = "",
              features_hint: str = ""):
  """(builder, `builder.as_data_source(split)`) of a dataset prepared as ArrayRecord, after checking
  that it exists, is prepared, has `features` and has every shard of the split on disk; each failure
  is a DataError that says how to fix it.

  Never downloads or prepares anything (`tfds.data_source` would, by default), so TensorFlow is not
  needed at train time. `split` may use TFDS slicing, e.g. "train[:90%]".
  """
  import tensorflow_datasets as tfds  # Slow to import; only when used.

  try:
    builder = tfds.builder(name, data_dir=data_dir)
  except tfds.core.registered.DatasetNotFoundError as e:
    # Without TensorFlow installed, TFDS registers few text builders, so a catalog name that is not
    # prepared on disk lands here as well.
    raise DataError(
        f"TFDS dataset {name!r} is neither in the TFDS catalog nor prepared under "
        f"{data_dir or 'the default data dir'}. {_tfds_prepare_hint(name, data_dir)}{extra_hint} Check the name "
        "against https://www.tensorflow.org/datasets/catalog, or set data.data_dir to where you built it.") from e
  hint = _tfds_prepare_hint(name, data_dir, builder) + extra_hint
  if not builder.is_prepared():
    raise DataError(f"TFDS dataset {name!r} is not prepared in {builder.data_dir}. {hint}")
  missing = [f for f in features if f not in builder.info.features]
  if missing:
    raise DataError(f"TFDS dataset {name!r} has no feature(s) {missing}; its features are "
                    f"{sorted(builder.info.features.keys())}.{features_hint}")
  try:
    source = builder.as_data_source(split=split)
  except NotImplementedError as e:  # Prepared, but only as TFRecord (no random access).
    raise DataError(f"TFDS dataset {name!r} in {builder.data_dir} is prepared as TFRecord, which has no random "
                    f"access. Delete {builder.data_dir} and rebuild it. {hint}") from e
  except (FileNotFoundError, AssertionError) as e:
    raise DataError(f"TFDS dataset {name!r} in {builder.data_dir} is incomplete ({e}). {hint}") from e
  except ValueError as e:  # Unknown split or bad slicing syntax.
    raise DataError(f"Bad split {split!r} (data.train_split / data.eval_split) for TFDS dataset {name!r} ({e}). Available splits: "
                    f"{sorted(builder.info.splits.keys())}; slicing like 'train[:90%]' is allowed.") from e
  # Shards are opened lazily on first read; catch deleted ones now rather than in a worker.
  lost = [str(p) for p in builder.info.splits[split].filepaths if not p.exists()]
  if lost:
    raise DataError(f"TFDS dataset {name!r} in {builder.data_dir} is missing {len(lost)} file(s), e.g. {lost[0]}. "
                    f"Delete {builder.data_dir} and rebuild it. {hint}")
  return builder, source


class TfdsSource:
  """A split of an image-classification TFDS dataset prepared ahead of time in ArrayRecord format
  (see `open_tfds`)."""

  def __init__(self, name: str, split: str, data_dir: str | None = None,
               image_key: str = "image", label_key: str = "label"):
    self.name = f"tfds:{name}"
    self.split = split
    self.image_key = image_key
    self.label_key = label_key
    builder, self._source = open_tfds(name, split, data_dir, (image_key, label_key),
                                      features_hint=" Set data.image_key / data.label_key accordingly.")
    num_classes = getattr(builder.info.features[label_key], "num_classes", None)
    if not num_classes:
      raise DataError(
          f"Feature {label_key!r} of TFDS dataset {name!r} is not a ClassLabel, so the number of "
          "classes is unknown. Set data.label_key to a ClassLabel feature.")
    self.num_classes = int(num_classes)

  def __len__(self) -> int:
    return len(self._source)

  def __getitem__(self, i) -> dict:
    example = self._source[i]
    return _example(example[self.image_key], example[self.label_key])


# --- Image folder ---


CLASSES_FILE = "classes.txt"


def folder_classes(root: str, train_split: str) -> list[str] | None:
  """The class names of an image folder, in label order: the lines of <root>/classes.txt when it
  exists, else the class directories of the train split sorted by name (None when there is neither,
  e.g. a folder used only for evaluation). Every split is labelled through this one list, so a class
  missing from one split cannot shift the labels of the others."""
  path = os.path.join(root, CLASSES_FILE)
  if os.path.isfile(path):
    try:
      with open(path, encoding="utf-8") as f:
        names = [line.strip() for line in f if line.strip()]
    except (OSError, UnicodeDecodeError) as e:
      raise DataError(f"Cannot read the class list {path} ({e}); write it as UTF-8 text, one class per line.") from e
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if not names or duplicates:
      raise DataError(f"The class list {path} must name each class once, one per line; "
                      + (f"{duplicates} appear more than once." if duplicates else "it is empty."))
    return names
  train_dir = os.path.join(root, train_split)
  if os.path.isdir(train_dir):
    return sorted(d for d in os.listdir(train_dir) if os.path.isdir(os.path.join(train_dir, d)))
  return None


class ImageFolderSource:
  """Images in `root/<split>/<class_name>/*.{jpg,jpeg,png,bmp,webp}`, decoded to RGB uint8.

  Labels index `classes`: the list that `folder_classes` derives from the train split (or from
  <root>/classes.txt), the same for every split; without it, this split's class directories sorted
  by name. A class directory that is not in the list, or that holds no image, is an error. Files
  are sorted within a class. 16-bit images keep their 8 high bits; palette, CMYK and grayscale
  images become RGB.
  """

  def __init__(self, root: str, split: str, classes: list[str] | None = None):
    layout = f"{root}/{split}/<class_name>/<image>.{{jpg,jpeg,png,bmp,webp}}"
    split_dir = os.path.join(root, split)
    if not os.path.isdir(split_dir):
      raise DataError(
          f"Image folder {split_dir} does not exist. Expected the layout {layout}, "
          "one sub-directory per class; check data.data_dir, data.train_split and data.eval_split.")
    self.name = "folder"
    self.split = split
    found = sorted(d for d in os.listdir(split_dir) if os.path.isdir(os.path.join(split_dir, d)))
    self.classes = list(found if classes is None else classes)
    self.num_classes = len(self.classes)
    unknown = [d for d in found if d not in self.classes]
    if unknown:
      raise DataError(
          f"Class directories {unknown[:5]} of {split_dir} are not among the {len(self.classes)} classes of the "
          f"train split (or of {root}/{CLASSES_FILE}); their labels would mean nothing to the model. Remove them, "
          f"or add the classes to the train split (or to {CLASSES_FILE}).")
    label_of = {name: label for label, name in enumerate(self.classes)}
    self._paths, self._labels = [], []
    for class_name in found:
      class_dir = os.path.join(split_dir, class_name)
      files = [f for f in sorted(os.listdir(class_dir)) if f.lower().endswith(IMAGE_EXTENSIONS)]
      if not files:
        raise DataError(f"Class directory {class_dir} holds no images (.jpg, .jpeg, .png, .bmp, .webp). "
                        "Add its images or remove the directory.")
      self._paths += [os.path.join(class_dir, f) for f in files]
      self._labels += [label_of[class_name]] * len(files)
    if not self._paths:
      raise DataError(
          f"No images found in {split_dir}. Expected the layout {layout}, "
          "one sub-directory per class.")

  def __len__(self) -> int:
    return len(self._paths)

  def __getitem__(self, i) -> dict:
    return _example(decode_image(self._paths[i]), self._labels[i])


def decode_image(path: str) -> np.ndarray:
  """An image file as RGB uint8 (H, W, 3); a file that is not a readable image is a DataError naming it."""
  from PIL import Image
  try:
    with Image.open(path) as image:
      if image.mode.startswith("I"):  # 16-bit grayscale ("I;16", or "I" holding 16-bit values): the high byte
        pixels = np.asarray(image, np.int64)
        if image.mode.startswith("I;16") or pixels.max() > 255:
          pixels = pixels >> 8
        image = Image.fromarray(pixels.clip(0, 255).astype(np.uint8))
      return np.asarray(image.convert("RGB"))
  except (OSError, ValueError, Image.DecompressionBombError) as e:
    raise DataError(f"Cannot decode image {path} ({e}). Remove or replace it.") from e


# --- Generated images (smoke runs without a dataset) ---


class SyntheticSource:
  """Generated images that stand in for a dataset that is not on disk (every `smoke` config of an
  ImageNet- or CIFAR-scale recipe uses it, so the test suite needs no download).

  Class c is a fixed random 4×4 colour pattern, upsampled to `size` × `size`, plus per-image noise,
  so a model can learn the classes. `train` has 512 images and `test` 128; image i of a split is
  the same on every call.
  """

  SPLITS = {"train": 512, "test": 128}

  def __init__(self, split: str, *, size: int, channels: int, num_classes: int = 10):
    if split not in self.SPLITS:
      raise DataError(f"Unknown synthetic split {split!r} (data.train_split / data.eval_split); "
                      f"use one of {list(self.SPLITS)}.")
    self.name, self.split, self.size, self.num_classes = "synthetic", split, size, num_classes
    cells = np.random.default_rng(0).integers(32, 224, (num_classes, 4, 4, channels))
    reps = -(-size // 4)
    self._patterns = np.repeat(np.repeat(cells, reps, axis=1), reps, axis=2)[:, :size, :size].astype(np.int16)
    self._offset = 0 if split == "train" else self.SPLITS["train"]

  def __len__(self) -> int:
    return self.SPLITS[self.split]

  def __getitem__(self, i) -> dict:
    i = int(i)
    rng = np.random.default_rng(self._offset + i + 1)
    label = i % self.num_classes
    noise = rng.integers(-32, 33, self._patterns.shape[1:], dtype=np.int16)
    return _example(np.clip(self._patterns[label] + noise, 0, 255).astype(np.uint8), label)


def folder_num_classes(root: str, split: str) -> int:
  """The number of class directories of an image folder's split (what ImageFolderSource labels)."""
  split_dir = os.path.join(root, split)
  if not os.path.isdir(split_dir):
    raise DataError(f"Image folder {split_dir} does not exist. Expected the layout "
                    f"{root}/{split}/<class_name>/<image files>, one sub-directory per class.")
  return sum(os.path.isdir(os.path.join(split_dir, d)) for d in os.listdir(split_dir))


def known_num_classes(data_config) -> int | None:
  """The class count a folder or generated source will have, known without reading images (None for
  other sources: their configs give it)."""
  if data_config.name == "folder" and getattr(data_config, "data_dir", None):
    return folder_num_classes(data_config.data_dir, data_config.train_split)
  if data_config.name == "synthetic":
    return 10
  return None


# --- A fixed fraction of a split ---


class Subset:
  """The first `fraction` of a fixed random permutation of `source` (seed 0, whatever the run's seed).

  Every run with the same fraction trains on the same examples, and a smaller fraction's examples are
  all inside a larger one's (10% ⊂ 25% ⊂ 50%), so a data-size sweep changes only how much data a
  model sees. Not stratified: on the digits 10% is 144 images, 12 to 18 of each class.
  """

  def __init__(self, source, fraction: float):
    count = int(round(fraction * len(source)))
    if not 0.0 < fraction <= 1.0 or count < 1:
      raise DataError(f"data.train_fraction={fraction} keeps {count} of the {len(source)} training examples; "
                      "set it in (0, 1] so that it keeps at least one")
    self.source = source
    self.fraction = fraction
    self.indices = np.sort(np.random.default_rng(0).permutation(len(source))[:count])

  def __len__(self) -> int:
    return len(self.indices)

  def __getitem__(self, i) -> dict:
    return self.source[int(self.indices[i])]

  def __getattr__(self, name):  # name, num_classes, ... of the whole source
    if name == "source":  # not set yet (unpickling): no recursion
      raise AttributeError(name)
    return getattr(self.source, name)


# --- Factory ---


def get_source(data_config, split: str):
  """Builds the source for `data_config.name` ("digits", "tfds:<name>", "folder" or "synthetic")."""
  name = data_config.name
  data_dir = getattr(data_config, "data_dir", None)
  if name == "digits":
    return DigitsSource(split)
  if name == "digits_canvas":
    return DigitsCanvasSource(split, canvas=data_config.get("canvas", 32), scale=data_config.get("scale", 2))
  if name in ("spoken_digits", "spoken_numbers"):
    from papers_jax.data.spoken import SpokenSource
    return SpokenSource(split, kind=name[len("spoken_"):], num_speakers=data_config.get("num_speakers", 64),
                        repeats=data_config.get("repeats", 2), seed=data_config.get("seed", 0))
  if name == "manifest":
    from papers_jax.data.audio import ManifestSource
    if not data_dir:
      raise DataError('data.name="manifest" needs data.data_dir: the folder of <split>.tsv and <split>.wrd')
    return ManifestSource(data_dir, split)
  if name.startswith("tfds:") and (name.startswith("tfds:librispeech") or data_config.get("audio_key")):
    from papers_jax.data.audio import TfdsSpeechSource
    return TfdsSpeechSource(name[len("tfds:"):], split, data_dir=data_dir,
                            audio_key=data_config.get("audio_key", "speech"), text_key=data_config.get("text_key", "text"))
  if name.startswith("tfds:") and name[len("tfds:"):]:
    return TfdsSource(
        name[len("tfds:"):], split, data_dir=data_dir,
        image_key=getattr(data_config, "image_key", "image"),
        label_key=getattr(data_config, "label_key", "label"))
  if name == "folder":
    if not data_dir:
      raise DataError(
          'data.name="folder" needs data.data_dir set to the root of '
          "<root>/<split>/<class_name>/<image files>.")
    return ImageFolderSource(data_dir, split, folder_classes(data_dir, data_config.get("train_split", "train")))
  if name in ("segmentation_shapes", "cityscapes"):  # per-pixel labels (data/segmentation.py)
    from papers_jax.data import segmentation
    return segmentation.get_source(data_config, split)
  if name == "photo_crops":  # crops of scikit-image's bundled photographs (data/photos.py)
    from papers_jax.data.photos import PhotoCropsSource
    return PhotoCropsSource(split, crop=data_config.get("crop", 32), channels=data_config.get("channels", 3),
                            crops_per_photo=data_config.get("crops_per_photo", 512),
                            min_texture=data_config.get("min_texture", 0.0))
  if name == "vqa_scene_images":  # the BEiT-3 demo's tokenizer images (data/nlvr_scenes.py)
    from papers_jax.data.nlvr_scenes import SceneImagesSource
    return SceneImagesSource(split, factor=data_config.get("factor", 4))
  if name == "synthetic":
    # As many channels as the normalisation has; unset (the model name's), three as every registered one.
    mean = data_config.get("mean")
    return SyntheticSource(split, size=data_config.image_size, channels=3 if mean is None else len(mean))
  raise DataError(f"Unknown data.name {name!r}; use one of {', '.join(SOURCE_FORMS)}.")
