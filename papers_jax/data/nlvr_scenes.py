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
scene has one). That gives 5 templates × 19 subjects = 95 meanings. Each template has three wordings
(WORDINGS; the first is the line above), so 285 statements. With `templates="one_hop"` the templates are
instead "both images have …", "the left image has {a} {colour} {kind}." and "the right image has …", each a
single lookup per image whose evidence always counts the same way (easier than "neither" and "exactly one",
which reverse or cancel it). `templates="mixed"` draws from all seven.

Which statements only occur in testing (`held_out`; never in training either way):
  "combinations"  the first wording of the meanings with (template + subject) % 5 == 2 (19 of 95; 4 of the 20
                  colour meanings): a test statement pairs a template with a subject it is never trained with.
  "wordings"      the wording (template + subject) % 3 of every meaning (95 of 285 statements; 20 of 60 for
                  the colour subjects): a test statement is a sentence never seen in training, whose meaning
                  is trained in its two other wordings, and whose wording is trained with other subjects.
Either way every template, wording, colour and kind occurs in training.

Labels are balanced per statement: an example picks a statement of its split uniformly, a label at
even odds, then a pair of scenes for which the statement has that truth value (rejection over random
pairs). So a statement alone says nothing about its label; `label_baselines()` measures that on the
test set. Fixed seeds: train 10,000 pairs, test 1,000; example i is the same on every call.

  NLVRScenesSource(split, subjects, held_out, templates)  source[i] → {"image": (2, 64, 64, 3) uint8
      [left, right], "statement", "label": 1 true / 0 false, "template": index into TEMPLATES, "scenes": (left, right)}
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
TEMPLATES = ("both", "exactly_one", "neither", "left_more", "right_more", "left_has", "right_has")
# `templates`: "pair" (the first five; NLVR2-like, each needs both images and some reverse the evidence) or
# "one_hop" (one lookup per image, all with the same sign: "the left image has …", "the right image has …",
# "both images have …"; where a model cannot get off the ln 2 plateau on "pair", see docs/beit3.md).
# "mixed": the five pair templates and the two one-hop ones, drawn uniformly, for training a model on the
# five while the one-hop statements give the colour words a first-order signal (a curriculum by mixing).
TEMPLATE_SETS = {"pair": TEMPLATES[:5], "one_hop": ("left_has", "right_has", "both"), "mixed": TEMPLATES}
SUBJECTS = tuple((c, k) for c in COLOURS for k in KINDS if (c, k) != ("", "object"))


# Three wordings of each template ({a}: "a" or "an", {s}: the subject, {p}: its plural), all in words of the
# scenes' captions and questions, so the WordPiece vocabulary (built on the first wording) covers them whole.
WORDINGS = {
    "both": ("both images have {a} {s}.", "the left image and the right image have {a} {s}.",
             "both the left and the right image have {a} {s}."),
    "exactly_one": ("exactly one image has {a} {s}.", "exactly one of the images has {a} {s}.",
                    "one image has {a} {s} and one has no {s}."),
    "neither": ("neither image has {a} {s}.", "neither of the images has {a} {s}.", "no image has {a} {s}."),
    "left_more": ("the left image has more {p} than the right image.",
                  "the left image has more {p} than the right one.", "there are more {p} left than right."),
    "right_more": ("the right image has more {p} than the left image.",
                   "the right image has more {p} than the left one.", "there are more {p} right than left."),
    "left_has": ("the left image has {a} {s}.", "the image to the left has {a} {s}.",
                 "the left one of the two images has {a} {s}."),
    "right_has": ("the right image has {a} {s}.", "the image to the right has {a} {s}.",
                  "the right one of the two images has {a} {s}."),
}
HELD_OUT = ("combinations", "wordings")


def statement(template: int, subject: int, wording: int = 0) -> str:
  colour, kind = SUBJECTS[subject]
  singular = f"{colour} {kind}".strip()
  article = "an" if singular[0] in "aeiou" else "a"
  return WORDINGS[TEMPLATES[template]][wording].format(a=article, s=singular, p=f"{colour} {kind}s".strip())


def is_test_statement(template: int, subject: int, wording: int = 0, held_out: str = "combinations") -> bool:
  if held_out == "wordings":
    return wording == (template + subject) % 3
  return (template + subject) % 5 == 2


# `subjects`: "all" (the 19 subjects), or "colours": only "{colour} object" (20 statements, 4 of them test-only).
SUBJECT_SETS = ("all", "colours")


def _subject_ids(subjects: str) -> list[int]:
  if subjects not in SUBJECT_SETS:
    raise DataError(f"nlvr_scenes subjects must be one of {SUBJECT_SETS} (data.subjects), got {subjects!r}")
  return [s for s, (c, k) in enumerate(SUBJECTS) if subjects == "all" or (c and k == "object")]


def split_statements(split: str, subjects: str = "all", held_out: str = "combinations",
                     templates: str = "pair") -> list[tuple[int, int, int]]:
  """(template, subject, wording) of a split's statements; train and test share none."""
  if held_out not in HELD_OUT:
    raise DataError(f"nlvr_scenes held_out must be one of {HELD_OUT} (data.held_out), got {held_out!r}")
  if templates not in TEMPLATE_SETS:
    raise DataError(f"nlvr_scenes templates must be one of {list(TEMPLATE_SETS)} (data.templates), got {templates!r}")
  test = split != "train"
  wordings = range(len(WORDINGS["both"])) if held_out == "wordings" else (0,)
  return [(t, s, w) for t in range(len(TEMPLATES)) if TEMPLATES[t] in TEMPLATE_SETS[templates]
          for s in _subject_ids(subjects) for w in wordings if is_test_statement(t, s, w, held_out) == test]


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
  if name == "right_more":
    return right > left
  if name == "left_has":
    return left > 0
  return right > 0


@functools.cache
def examples(split: str, subjects: str = "all", held_out: str = "combinations",
             templates: str = "pair") -> tuple[np.ndarray, ...]:
  """(left, right, template, subject, wording, label) int arrays of a split's examples; deterministic."""
  if split not in SPLITS:
    raise DataError(f"Unknown nlvr_scenes split {split!r} (data.train_split / data.eval_split); use one of "
                    f"{list(SPLITS)}.")
  counts = scene_counts(split)
  statements = split_statements(split, subjects, held_out, templates)
  rng = np.random.default_rng([SEED, _SPLIT_SEED[split]])
  rows = []
  while len(rows) < SPLITS[split]:
    template, subject, wording = statements[int(rng.integers(len(statements)))]
    label = bool(rng.integers(2))
    left, right = rng.integers(len(counts), size=(2, 4096))
    ok = np.flatnonzero(truth(template, counts[left, subject], counts[right, subject]) == label)
    if len(ok):  # otherwise draw another statement (never seen: every statement is common enough)
      rows.append((left[ok[0]], right[ok[0]], template, subject, wording, int(label)))
  return tuple(np.asarray(col, np.int32) for col in zip(*rows))


def training_statements() -> list[str]:
  """The tokenizer's texts, whichever `subjects` and `held_out` a run uses: the training statements of the full
  set held out by "combinations" (first wordings only, so the vocabulary, and the checkpoints built on it, stay
  what they were before the other wordings existed; those use the same words, and no test sentence is here)."""
  return [statement(t, s) for t, s, _ in split_statements("train")]


class NLVRScenesSource:
  """The pair-reasoning examples of `split`; see the module docstring."""

  def __init__(self, split: str, subjects: str = "all", held_out: str = "combinations", templates: str = "pair"):
    self.split, self.name, self.num_classes = split, "nlvr_scenes", 2
    self.left, self.right, self.template, self.subject, self.wording, self.label = examples(
        split, subjects, held_out, templates)
    self.scenes = vqa_scenes.VQAScenesSource(split)

  def __len__(self) -> int:
    return len(self.label)

  def __getitem__(self, i) -> dict:
    i = int(i)
    l, r = int(self.left[i]), int(self.right[i])
    return {"image": np.stack([self.scenes.image(l), self.scenes.image(r)]),
            "statement": statement(int(self.template[i]), int(self.subject[i]), int(self.wording[i])),
            "label": np.int32(self.label[i]), "template": np.int32(self.template[i]), "scenes": np.int32([l, r])}


def label_baselines(subjects: str = "all", held_out: str = "combinations", templates: str = "pair") -> dict:
  """Test accuracy of answers that never look at the images: the majority training label; the majority
  training label of each exact statement (falling back to the majority label for statements unseen in
  training, which every test statement is); and the majority training label of each meaning (template and
  subject, any wording; the same fallback)."""
  _, _, t_tr, s_tr, w_tr, y_tr = examples("train", subjects, held_out, templates)
  _, _, t_te, s_te, w_te, y_te = examples("test", subjects, held_out, templates)
  majority = int(np.mean(y_tr) >= 0.5)

  def prior_accuracy(train_keys, test_keys):
    prior = {k: int(np.mean(y_tr[np.all(train_keys == k, axis=1)]) >= 0.5) for k in set(map(tuple, train_keys))}
    guesses = np.asarray([prior.get(tuple(k), majority) for k in test_keys])
    return float(np.mean(y_te == guesses)), float(np.mean([tuple(k) not in prior for k in test_keys]))

  statement_prior, unseen = prior_accuracy(np.stack([t_tr, s_tr, w_tr], 1), np.stack([t_te, s_te, w_te], 1))
  meaning_prior, _ = prior_accuracy(np.stack([t_tr, s_tr], 1), np.stack([t_te, s_te], 1))
  return {"majority_label": majority, "majority": float(np.mean(y_te == majority)), "statement_prior": statement_prior,
          "meaning_prior": meaning_prior, "unseen_test_statements": unseen}


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
