"""Image-text data for CLIP: captions made from class names, the caption tokenizer, image-text sources.

Captions from labels. A labelled image source (the bundled digits, an image folder, a TFDS
classification set) becomes an image-text source by writing each image's class name into a caption
template ("a handwritten {}."). A class may have several names ("seven", "7"); training draws a
template and a name per example. Zero-shot evaluation uses other templates, never used in training,
and each class's first name (DIGIT_TRAIN_TEMPLATES / DIGIT_HELD_OUT_TEMPLATES for the digits demo:
the held-out templates are new sentences made of words the training captions contain).

Tokenizer (`CaptionTokenizer`): ids of [SOT] caption [EOT], zero-padded (or cut, keeping [EOT] last)
to the context length, as OpenAI's `clip.tokenize`. [SOT] and [EOT] take the two largest ids, so
the [EOS] position is the argmax of each row (models/clip.py's default). Either trained here with
the `tokenizers` package (a lower-cased word-level vocabulary of the training captions, for the
bundled demo) or read from a `tokenizers` JSON file, such as the `tokenizer.json` of HF's
openai/clip-vit-base-patch32 (OpenAI's 49,408-token BPE, <|startoftext|> = 49406, <|endoftext|> = 49407).

Image-text sources (`source[i] -> {"image": uint8 (H, W, C), "texts": tuple of str, "label": int32}`,
label = the example's index):
  - "tfds:<name>" with a text feature, e.g. coco_captions ("captions/text", five per image), prepared
    as ArrayRecord: `tfds build coco_captions --file_format=array_record`.
  - "vqa_scenes": the bundled generated scenes with templated captions (data/vqa_scenes.py).
  - "captions_folder": images with a caption file of the same stem beside them,
    <data_dir>/<split>/**/<id>.{jpg,png,...} + <id>.txt — the `--output_format files` layout of
    img2dataset, which downloads LAION / CC3M / CC12M-style URL lists.
"""

import functools
import os

import numpy as np

from papers_jax.errors import ConfigError, DataError

SOT, EOT, PAD, UNK = "<|startoftext|>", "<|endoftext|>", "[PAD]", "[UNK]"
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp")

# The digits demo. Names: the word first (zero-shot prompts use it), then the numeral.
DIGIT_NAMES = tuple((word, str(i)) for i, word in enumerate(
    ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")))
DIGIT_TRAIN_TEMPLATES = (
    "a handwritten {}.",
    "the digit {}.",
    "an image of the number {}.",
    "a photo of the digit {}.",
    "a small scan of a handwritten {}.",
    "the number {}, written by hand.",
    "a low resolution image of a {}.",
    "a blurry photo of the number {}.",
)
DIGIT_HELD_OUT_TEMPLATES = (
    "a photo of a {}.",
    "a blurry image of the digit {}.",
    "a scan of the number {}.",
    "the {}, written by hand.",
)

# The paper's default prompt, and the seven ImageNet templates OpenAI's prompt-engineering notebook
# selected as a small ensemble.
PAPER_TEMPLATES = ("a photo of a {}.",)
IMAGENET_TEMPLATES_7 = (
    "itap of a {}.", "a bad photo of the {}.", "a origami {}.", "a photo of the large {}.",
    "a {} in a video game.", "art of the {}.", "a photo of the small {}.",
)


def captions(templates, names) -> list[str]:
  """Every template filled with every name."""
  return [t.format(n) for t in templates for n in names]


def caption_for(label: int, class_names, templates, rng: np.random.Generator | None, index: int = 0) -> str:
  """A caption of class `label`: a random template and name with `rng`, else template `index`
  (cycled) with the class's first name."""
  names = class_names[int(label)]
  if rng is None:
    return templates[index % len(templates)].format(names[0])
  return templates[int(rng.integers(len(templates)))].format(names[int(rng.integers(len(names)))])


def parse_class_names(names) -> tuple[tuple[str, ...], ...]:
  """("seven|7", ...) or (("seven", "7"), ...) → tuple of name tuples; "a_b" reads "a b"."""
  out = []
  for entry in names:
    parts = entry.split("|") if isinstance(entry, str) else list(entry)
    out.append(tuple(p.strip().replace("_", " ") for p in parts if p.strip()))
    if not out[-1]:
      raise ConfigError(f"empty class name in {names!r}")
  return tuple(out)


def read_class_names(path: str) -> tuple[tuple[str, ...], ...]:
  """One class per line ("name" or "name|synonym|..."), in label order."""
  if not os.path.isfile(path):
    raise DataError(f"class-name file {path} does not exist; write one class name per line, in label order.")
  lines = [line.strip() for line in read_text_file(path).splitlines() if line.strip()]
  if not lines:
    raise DataError(f"class-name file {path} is empty; write one class name per line, in label order.")
  return parse_class_names(lines)


def read_text_file(path: str) -> str:
  """A user's UTF-8 text file; one that cannot be read or decoded is a DataError naming it."""
  try:
    with open(path, encoding="utf-8") as f:
      return f.read()
  except UnicodeDecodeError as e:
    raise DataError(f"{path} is not UTF-8 text (byte {e.start}: {e.reason}); re-encode it as UTF-8 or remove "
                    "it.") from e
  except OSError as e:
    raise DataError(f"cannot read {path} ({e.strerror or e}).") from e


# ----------------------------------------------------------------------------- tokenizer


class CaptionTokenizer:
  """Captions → (N, context_length) int32 ids: [SOT] tokens [EOT] then zeros."""

  def __init__(self, backend, context_length: int = 77):
    self.backend = backend
    self.context_length = int(context_length)
    self.sot_id, self.eot_id = backend.token_to_id(SOT), backend.token_to_id(EOT)
    if self.sot_id is None or self.eot_id is None:
      raise DataError(f"the tokenizer has no {SOT} / {EOT} tokens; use a CLIP tokenizer.json "
                      "(e.g. the one of HF's openai/clip-vit-base-patch32) or train one with CaptionTokenizer.train")
    if max(self.sot_id, self.eot_id) != self.vocab_size - 1:
      raise DataError(f"{EOT} must have the largest id (the text tower reads its output at the argmax of "
                      f"each row); this tokenizer has it at {self.eot_id} of {self.vocab_size}")

  @classmethod
  def train(cls, texts, context_length: int = 77) -> "CaptionTokenizer":
    """A lower-cased word-level vocabulary (words and punctuation) of `texts`, sorted by frequency then
    alphabetically (deterministic); [PAD] = 0, [UNK] = 1, then the words, then [SOT] and [EOT]."""
    import tokenizers
    from tokenizers import models, normalizers, pre_tokenizers

    backend = tokenizers.Tokenizer(models.WordLevel({PAD: 0, UNK: 1}, unk_token=UNK))
    backend.normalizer = normalizers.Sequence([normalizers.NFKC(), normalizers.Lowercase()])
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    counts = {}
    for text in texts:
      for word, _ in backend.pre_tokenizer.pre_tokenize_str(backend.normalizer.normalize_str(text)):
        counts[word] = counts.get(word, 0) + 1
    words = sorted(counts, key=lambda w: (-counts[w], w))
    vocab = {PAD: 0, UNK: 1, **{w: i + 2 for i, w in enumerate(words)}}
    vocab[SOT], vocab[EOT] = len(vocab), len(vocab) + 1
    backend.model = models.WordLevel(vocab, unk_token=UNK)
    return cls(backend, context_length)

  @classmethod
  def from_file(cls, path: str, context_length: int = 77) -> "CaptionTokenizer":
    import tokenizers
    if os.path.isdir(path):
      path = os.path.join(path, "tokenizer.json")
    if not os.path.isfile(path):
      raise DataError(f"no tokenizer file at {path}; give the path of a tokenizers JSON file, e.g. the "
                      "tokenizer.json of HF's openai/clip-vit-base-patch32 (OpenAI's BPE vocabulary).")
    try:
      return cls(tokenizers.Tokenizer.from_file(path), context_length)
    except DataError:
      raise
    except Exception as e:  # the package raises a bare Exception for malformed files
      raise DataError(f"cannot read tokenizer {path} ({e}); it must be a `tokenizers` JSON file.") from e

  @property
  def vocab_size(self) -> int:
    return self.backend.get_vocab_size(with_added_tokens=True)

  def save(self, path: str):
    tmp = f"{path}.tmp{os.getpid()}"
    self.backend.save(tmp)
    os.replace(tmp, path)

  def unknown_words(self, texts) -> set[str]:
    """Words of `texts` outside the vocabulary (a check that held-out prompts use known words)."""
    unk = self.backend.token_to_id(UNK)
    out = set()
    for text in texts:
      enc = self.backend.encode(text, add_special_tokens=False)
      out |= {tok for tok, i in zip(enc.tokens, enc.ids) if i == unk and unk is not None}
    return out

  def __call__(self, texts) -> np.ndarray:
    if isinstance(texts, str):
      texts = [texts]
    out = np.zeros((len(texts), self.context_length), np.int32)
    for row, enc in zip(out, self.backend.encode_batch(list(texts), add_special_tokens=False)):
      ids = [self.sot_id, *enc.ids][:self.context_length - 1] + [self.eot_id]
      row[:len(ids)] = ids
    return out


# ----------------------------------------------------------------------------- image-text sources


def _image(x) -> np.ndarray:
  x = np.asarray(x)
  if x.ndim == 2:
    x = x[:, :, None]
  if x.dtype != np.uint8 or x.ndim != 3:
    raise DataError(f"expected uint8 (H, W, C) images, got {x.dtype} {x.shape}")
  return x


def _texts(x) -> tuple[str, ...]:
  values = np.asarray(x, dtype=object).reshape(-1)
  return tuple(v.decode("utf-8") if isinstance(v, bytes) else str(v) for v in values)


class TfdsImageTextSource:
  """A TFDS image-text dataset prepared as ArrayRecord; `text_key` may be nested ("captions/text")."""

  def __init__(self, name: str, split: str, *, text_key: str, image_key: str = "image", data_dir=None):
    import tensorflow_datasets as tfds
    self.name, self.split, self.image_key, self.text_key = f"tfds:{name}", split, image_key, text_key
    hint = (f"Prepare it once with `tfds build {name} --data_dir={data_dir or '~/tensorflow_datasets'} "
            "--file_format=array_record` (building needs `pip install tensorflow`; reading does not).")
    try:
      builder = tfds.builder(name, data_dir=data_dir)
    except tfds.core.registered.DatasetNotFoundError as e:
      raise DataError(f"TFDS dataset {name!r} is not in the TFDS catalog; check the name. {hint}") from e
    if not builder.is_prepared():
      raise DataError(f"TFDS image-text dataset {name!r} is not prepared in {builder.data_dir}. {hint}")
    try:
      self._source = builder.as_data_source(split=split)
    except (NotImplementedError, FileNotFoundError, AssertionError, ValueError) as e:
      raise DataError(f"cannot read split {split!r} of {name!r} in {builder.data_dir} ({e}). {hint}") from e
    self.num_classes = 0

  def __len__(self):
    return len(self._source)

  def __getitem__(self, i) -> dict:
    example = self._source[i]
    value = example
    for part in self.text_key.split("/"):
      if part not in value:
        raise DataError(f"{self.name} examples have no {self.text_key!r} (at {part!r}: {sorted(value)}); "
                        "set clip.text_key to the caption feature")
      value = value[part]
    return {"image": _image(example[self.image_key]), "texts": _texts(value), "label": np.int32(i)}


@functools.lru_cache(maxsize=8)
def _caption_files(root: str) -> tuple[tuple[str, str], ...]:
  pairs = []
  for directory, _, files in sorted(os.walk(root)):
    names = set(files)
    for f in sorted(files):
      stem, ext = os.path.splitext(f)
      if ext.lower() in IMAGE_EXTENSIONS and stem + ".txt" in names:
        pairs.append((os.path.join(directory, f), os.path.join(directory, stem + ".txt")))
  return tuple(pairs)


class CaptionFolderSource:
  """<root>/<split>/**/<id>.<image ext> with <id>.txt beside it (one caption per line)."""

  def __init__(self, root: str, split: str):
    layout = f"{root or '<data_dir>'}/{split}/**/<id>.jpg + <id>.txt (img2dataset --output_format files)"
    if not root:
      raise DataError(f'data.name="captions_folder" needs data.data_dir, the root of {layout}.')
    split_dir = os.path.join(root, split)
    if not os.path.isdir(split_dir):
      raise DataError(f"image-text folder {split_dir} does not exist; expected {layout}. Set data.data_dir.")
    self.name, self.split, self.num_classes = "captions_folder", split, 0
    self._pairs = _caption_files(os.path.abspath(split_dir))
    if not self._pairs:
      raise DataError(f"no image with a caption file found under {split_dir}; expected {layout}.")

  def __len__(self):
    return len(self._pairs)

  def __getitem__(self, i) -> dict:
    from papers_jax.data.sources import decode_image
    image_path, text_path = self._pairs[i]
    pixels = decode_image(image_path)
    texts = tuple(line.strip() for line in read_text_file(text_path).splitlines() if line.strip())
    if not texts:
      raise DataError(f"caption file {text_path} holds no caption; write at least one line, or remove it and "
                      f"{image_path}.")
    return {"image": pixels, "texts": texts, "label": np.int32(i)}


def image_text_source(data_config, split: str, text_key: str):
  """The image-text source of `data_config` (None when it names a labelled image source)."""
  name = data_config.name
  if name == "vqa_scenes":  # the generated scenes' captions (data/vqa_scenes.py)
    from papers_jax.data.vqa_scenes import VQAScenesSource
    return VQAScenesSource(split, "captions")
  if name == "captions_folder":
    return CaptionFolderSource(data_config.data_dir, split)
  if name.startswith("tfds:") and text_key:
    return TfdsImageTextSource(name[len("tfds:"):], split, text_key=text_key,
                               image_key=data_config.get("image_key", "image"), data_dir=data_config.data_dir)
  return None
