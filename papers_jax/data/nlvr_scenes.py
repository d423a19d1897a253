"""NLVR2-style pair reasoning on generated scenes (bundled, offline): `data.name = "nlvr_scenes"`.

Each example is two scenes of data/vqa_scenes.py (the left and the right image, drawn from that set's
train split for training and its test split for testing, so no test image or digit image is seen in
training) and one statement about the pair, true or false:
  both images have a {colour} {kind}.                         (both contain one)
  exactly one image has a {colour} {kind}.                    (one does, the other does not)
  neither image has a {colour} {kind}.
  the left image has more {colour} {kinds} than the right image.
  the right image has more {colour} {kinds} than the left image.
where {colour} is one of vqa_scenes' four colours or empty (any colour) and {kind} a shape (circle,
square, triangle) or "object" (shapes and digits alike; "object" without a colour is left out: every
scene has one). That gives 5 templates × 19 subjects = 95 statements. About a fifth of them (those with
(template + subject) % 5 == 2) are test statements and never occur in training; every template, colour
and kind still does, in other combinations.

Labels are balanced per statement: an example picks a statement of its split uniformly, a label at
even odds, then a pair of scenes for which the statement has that truth value (rejection over random
pairs). So a statement alone says nothing about its label; `label_baselines()` measures that on the
test set. Fixed seeds: train 10,000 pairs, test 1,000; example i is the same on every call.

  NLVRScenesSource(split)  source[i] → {"image": (2, 64, 64, 3) uint8 [left, right], "statement",
                                        "label": 1 true / 0 false, "template": index into TEMPLATES,
                                        "scenes": (left, right) scene indices}
"""

import functools

import numpy as np

from papers_jax.data import vqa_scenes
from papers_jax.errors import DataError

SPLITS = {"train": 10000, "test": 1000}
_SPLIT_SEED = {"train": 0, "test": 1}
SEED = 404
COLOURS = ("",) + tuple(vqa_scenes.COLOURS)     # "" = any colour
KINDS = ("object",) + vqa_scenes.SHAPES           # "object" = any kind, digits included
TEMPLATES = ("both", "exactly_one", "neither", "left_more", "right_more")
SUBJECTS = tuple((c, k) for c in COLOURS for k in KINDS if (c, k) != ("", "object"))


def statement(template: int, subject: int) -> str:
  colour, kind = SUBJECTS[subject]
  singular = f"{colour} {kind}".strip()
  plural = f"{colour} {kind}s".strip()
  article = "an" if singular[0] in "aeiou" else "a"
  return {
      "both": f"both images have {article} {singular}.",
      "exactly_one": f"exactly one image has {article} {singular}.",
      "neither": f"neither image has {article} {singular}.",
      "left_more": f"the left image has more {plural} than the right image.",
      "right_more": f"the right image has more {plural} than the left image.",
  }[TEMPLATES[template]]


def is_test_statement(template: int, subject: int) -> bool:
  return (template + subject) % 5 == 2


# `subjects`: "all" (the 19 subjects), or "colours": only "{colour} object" (20 statements, 4 of them test-only).
SUBJECT_SETS = ("all", "colours")


def _subject_ids(subjects: str) -> list[int]:
  if subjects not in SUBJECT_SETS:
    raise DataError(f"nlvr_scenes subjects must be one of {SUBJECT_SETS} (data.subjects), got {subjects!r}")
  return [s for s, (c, k) in enumerate(SUBJECTS) if subjects == "all" or (c and k == "object")]


def split_statements(split: str, subjects: str = "all") -> list[tuple[int, int]]:
  """(template, subject) pairs of a split's statements; train and test share none."""
  test = split != "train"
  return [(t, s) for t in range(len(TEMPLATES)) for s in _subject_ids(subjects) if is_test_statement(t, s) == test]


def scene_counts(split: str) -> np.ndarray:
  """(scenes, subjects) int: how many objects of each subject every scene of vqa_scenes' split has."""
  out = []
  for scene in vqa_scenes.scenes(split):
    out.append([sum((not c or o["colour"] == c) and (k == "object" or o["kind"] == k) for o in scene["objects"])
                for c, k in SUBJECTS])
  return np.asarray(out, np.int32)


def truth(template: int, left, right):
  """Truth of a template given the subject's counts in the left and right scenes (arrays broadcast)."""
  name = TEMPLATES[template]
  if name == "both":
    return (left > 0) & (right > 0)
  if name == "exactly_one":
    return (left > 0) != (right > 0)
  if name == "neither":
    return (left == 0) & (right == 0)
  if name == "left_more":
    return left > right
  return right > left


@functools.cache
def examples(split: str, subjects: str = "all") -> tuple[np.ndarray, ...]:
  """(left, right, template, subject, label) int arrays of a split's examples; deterministic."""
  if split not in SPLITS:
    raise DataError(f"Unknown nlvr_scenes split {split!r} (data.train_split / data.eval_split); use one of "
                    f"{list(SPLITS)}.")
  counts = scene_counts(split)
  statements = split_statements(split, subjects)
  rng = np.random.default_rng([SEED, _SPLIT_SEED[split]])
  rows = []
  while len(rows) < SPLITS[split]:
    template, subject = statements[int(rng.integers(len(statements)))]
    label = bool(rng.integers(2))
    left, right = rng.integers(len(counts), size=(2, 4096))
    ok = np.flatnonzero(truth(template, counts[left, subject], counts[right, subject]) == label)
    if len(ok):  # otherwise draw another statement (never seen: every statement is common enough)
      rows.append((left[ok[0]], right[ok[0]], template, subject, int(label)))
  return tuple(np.asarray(col, np.int32) for col in zip(*rows))


def training_statements() -> list[str]:
  """Every training statement of the full set (the tokenizer's texts, whichever `subjects` a run uses)."""
  return [statement(t, s) for t, s in split_statements("train")]


class NLVRScenesSource:
  """The pair-reasoning examples of `split`; see the module docstring."""

  def __init__(self, split: str, subjects: str = "all"):
    self.split, self.name, self.num_classes = split, "nlvr_scenes", 2
    self.left, self.right, self.template, self.subject, self.label = examples(split, subjects)
    self.scenes = vqa_scenes.VQAScenesSource(split)

  def __len__(self) -> int:
    return len(self.label)

  def __getitem__(self, i) -> dict:
    i = int(i)
    l, r = int(self.left[i]), int(self.right[i])
    return {"image": np.stack([self.scenes.image(l), self.scenes.image(r)]),
            "statement": statement(int(self.template[i]), int(self.subject[i])),
            "label": np.int32(self.label[i]), "template": np.int32(self.template[i]), "scenes": np.int32([l, r])}


def label_baselines(subjects: str = "all") -> dict:
  """Test accuracy of answers that never look at the images: the majority training label, and the majority
  training label of each exact statement (falling back to the majority label for statements unseen in
  training, which every test statement is)."""
  _, _, t_tr, s_tr, y_tr = examples("train", subjects)
  _, _, t_te, s_te, y_te = examples("test", subjects)
  majority = int(np.mean(y_tr) >= 0.5)
  prior = {}
  for key in set(zip(t_tr.tolist(), s_tr.tolist())):
    sel = (t_tr == key[0]) & (s_tr == key[1])
    prior[key] = int(np.mean(y_tr[sel]) >= 0.5)
  guesses = np.asarray([prior.get(k, majority) for k in zip(t_te.tolist(), s_te.tolist())])
  return {"majority_label": majority, "majority": float(np.mean(y_te == majority)),
          "statement_prior": float(np.mean(y_te == guesses)),
          "unseen_test_statements": float(np.mean([k not in prior for k in zip(t_te.tolist(), s_te.tolist())]))}


def downsample(images: np.ndarray, factor: int) -> np.ndarray:
  """uint8 (..., H, W, C) → (..., H/f, W/f, C) by the mean of each f×f block (rounded)."""
  *lead, h, w, c = images.shape
  blocks = images.reshape(*lead, h // factor, factor, w // factor, factor, c).astype(np.float32)
  return np.round(blocks.mean(axis=(-4, -2))).astype(np.uint8)


class SceneImagesSource:
  """The vqa_scenes images alone, downsampled by `factor` (`data.name = "vqa_scene_images"`): what the
  BEiT-3 demo's visual tokenizer (a VQ-VAE, configs/beit3/tokenizer.py) trains on. {"image", "label": 0}."""

  def __init__(self, split: str, factor: int = 4):
    self.split, self.factor, self.name, self.num_classes = split, factor, "vqa_scene_images", 0
    self.scenes = vqa_scenes.VQAScenesSource(split)

  def __len__(self) -> int:
    return len(self.scenes)

  def __getitem__(self, i) -> dict:
    return {"image": downsample(self.scenes.image(int(i)), self.factor), "label": np.int32(0)}
