"""Generated image-text scenes with captions and questions (bundled, offline): `data.name = "vqa_scenes"`.

Each scene is a dark, noisy 64×64 canvas with 2 to 4 objects that do not overlap: coloured shapes
(circle, square, triangle) and tinted scikit-learn digits (each 8×8 digit scaled 2×), in one of four
colours (red, green, blue, yellow). The train scenes use only train-split digit images and the test
scenes only test-split ones (data/sources.py DigitsSource), so no digit image is in both.

From each scene's layout (objects, colours, centres) come, deterministically:
  captions   several per scene, templated: the objects from left to right and from top to bottom,
             the counts of shapes and digits, and relations between two objects ("the red circle is
             left of the blue 7.") where their centres are at least `MARGIN` pixels apart. Test
             captions that occur word for word among the training captions are left out, so every
             test caption is unseen in training.
  questions  with one answer each from the fixed vocabulary ANSWERS, of six kinds (QUESTION_TYPES):
             exist ("is there a blue triangle?", one yes and one no per scene), count ("how many
             circles are there?", "how many red objects are there?"), colour ("what colour is the
             square left of the 7?", "what colour is the 7?"), shape/digit ("what shape is the green
             object?", "which digit is yellow?") and relation ("is the red circle left of the 3?",
             yes or no at even odds). Only objects that the words name uniquely are referred to.

Splits (fixed seed; scene i of a split is the same on every call and every host): train 6000 scenes,
test 500. The sources:
  VQAScenesSource(split, kind="captions")  source[i] → {"image", "texts" (captions), "label": i}
  VQAScenesSource(split, kind="vqa")       one example per (scene, question): {"image", "question",
                                           "answer": index into ANSWERS, "qtype", "label": answer}
Generating every layout of both splits takes about a second (cached per process); images are drawn
on access (well under a millisecond each).
"""

import functools

import numpy as np

from papers_jax.errors import DataError

COLOURS = {"red": (225, 45, 45), "green": (45, 195, 70), "blue": (60, 100, 245), "yellow": (230, 210, 45)}
SHAPES = ("circle", "square", "triangle")
DIGIT_NAMES = tuple(str(d) for d in range(10))
KINDS = SHAPES + DIGIT_NAMES
SPLITS = {"train": 6000, "test": 500}
_SPLIT_SEED = {"train": 0, "test": 1}
SEED = 303
SIZE = 64
# Per-channel mean and std of the training scenes' pixels (every 6th scene, in [0, 1]). The scenes are dark: with
# 0.5 / 0.5 the background is a constant of about -0.86 on every input of a patch, which drowned the objects in the
# first BEiT-3 runs (docs/beit3.md). Configs on these scenes normalise with these.
MEAN, STD = (0.114, 0.113, 0.102), (0.161, 0.148, 0.132)
MARGIN = 6          # pixels between two centres for a left/right (or above/below) relation to count
ANSWERS = ("no", "yes") + DIGIT_NAMES + tuple(COLOURS) + SHAPES
_COLOUR_NAMES = tuple(COLOURS)
QUESTION_TYPES = ("exist", "count", "colour", "shape", "digit", "relation")
_NUMBER_WORDS = ("no", "one", "two", "three", "four")


def _plural(kind: str) -> str:
  return kind + "s"


def _phrase(obj, article: str = "a") -> str:
  """ "a red circle", "the blue 7"."""
  return f"{article} {obj['colour']} {obj['kind']}"


def sample_layout(rng: np.random.Generator, num_digit_images: int) -> list[dict]:
  """2-4 non-overlapping objects: {kind, colour, x, y (top-left), size, digit_index}."""
  objects, taken = [], []
  for _ in range(int(rng.integers(2, 5))):
    is_digit = rng.random() < 0.4
    size = 16 if is_digit else int(rng.integers(11, 16))
    for _ in range(30):
      x, y = int(rng.integers(1, SIZE - size)), int(rng.integers(1, SIZE - size))
      if all(x + size + 2 <= a or a + s + 2 <= x or y + size + 2 <= b or b + s + 2 <= y for a, b, s in taken):
        break
    else:
      continue
    taken.append((x, y, size))
    colour = _COLOUR_NAMES[int(rng.integers(len(_COLOUR_NAMES)))]
    if is_digit:
      digit_index = int(rng.integers(num_digit_images))
      kind = None  # set from the digit image's label by the caller
    else:
      digit_index, kind = -1, SHAPES[int(rng.integers(len(SHAPES)))]
    objects.append(dict(kind=kind, colour=colour, x=x, y=y, size=size, digit_index=digit_index,
                        cx=x + size / 2, cy=y + size / 2))
  return objects


def render(objects, digits, rng: np.random.Generator) -> np.ndarray:
  """The uint8 (SIZE, SIZE, 3) image of a layout; `digits` the split's DigitsSource."""
  image = rng.integers(0, 40, (SIZE, SIZE, 3)).astype(np.uint8)
  for obj in objects:
    x, y, s = obj["x"], obj["y"], obj["size"]
    colour = np.asarray(COLOURS[obj["colour"]], np.float32)
    if obj["digit_index"] >= 0:
      digit = np.kron(digits[obj["digit_index"]]["image"][..., 0], np.ones((2, 2), np.uint8)).astype(np.float32)
      ink = digit[..., None] / 255.0 * colour
      region = image[y:y + s, x:x + s]
      image[y:y + s, x:x + s] = np.maximum(region, ink.astype(np.uint8))
      continue
    image[y:y + s, x:x + s][_shape_mask(obj["kind"], s)] = colour.astype(np.uint8)
  return image


def _shape_mask(kind: str, s: int) -> np.ndarray:
  rows, cols = np.mgrid[0:s, 0:s] + 0.5
  if kind == "circle":
    return (rows - s / 2) ** 2 + (cols - s / 2) ** 2 <= (s / 2) ** 2
  if kind == "square":
    return np.ones((s, s), bool)
  return np.abs(cols - s / 2) <= rows / 2  # an upward triangle


def object_masks(objects, digits) -> np.ndarray:
  """(objects, SIZE, SIZE) bool: each object's pixels (a digit's: its ink at half intensity or more)."""
  out = np.zeros((len(objects), SIZE, SIZE), bool)
  for mask, obj in zip(out, objects):
    x, y, s = obj["x"], obj["y"], obj["size"]
    if obj["digit_index"] >= 0:
      mask[y:y + s, x:x + s] = np.kron(digits[obj["digit_index"]]["image"][..., 0], np.ones((2, 2), np.uint8)) >= 128
    else:
      mask[y:y + s, x:x + s] = _shape_mask(obj["kind"], s)
  return out


def semantic_labels(split: str, limit: int | None = None):
  """The first `limit` scenes of `split` with per-pixel labels: (images uint8 (N, SIZE, SIZE, 3),
  colour labels int32 (N, SIZE, SIZE): 0 background, 1 + index into COLOURS, kind labels: 0
  background, 1 + index into KINDS). Objects do not overlap."""
  images, colour_maps, kind_maps = [], [], []
  source = VQAScenesSource(split)
  for i, scene in enumerate(scenes(split)[:limit]):
    images.append(source.image(i))
    colour_map, kind_map = np.zeros((SIZE, SIZE), np.int32), np.zeros((SIZE, SIZE), np.int32)
    for mask, obj in zip(object_masks(scene["objects"], _digits(split)), scene["objects"]):
      colour_map[mask] = 1 + _COLOUR_NAMES.index(obj["colour"])
      kind_map[mask] = 1 + KINDS.index(obj["kind"])
    colour_maps.append(colour_map)
    kind_maps.append(kind_map)
  return np.stack(images), np.stack(colour_maps), np.stack(kind_maps)


def _unique(objects, **match):
  """The one object with these attributes, else None."""
  found = [o for o in objects if all(o[k] == v for k, v in match.items())]
  return found[0] if len(found) == 1 else None


def _name(objects, obj) -> str | None:
  """The shortest unique description: "the 7" / "the red circle", or None."""
  if _unique(objects, kind=obj["kind"]) is obj:
    return f"the {obj['kind']}"
  if _unique(objects, kind=obj["kind"], colour=obj["colour"]) is obj:
    return _phrase(obj, "the")
  return None


def _relation(a, b) -> str | None:
  """The clearest relation of a to b, or None when their centres are too close on both axes."""
  dx, dy = b["cx"] - a["cx"], b["cy"] - a["cy"]
  if abs(dx) >= abs(dy) and abs(dx) >= MARGIN:
    return "left of" if dx > 0 else "right of"
  if abs(dy) >= MARGIN:
    return "above" if dy > 0 else "below"
  return None


_OPPOSITE = {"left of": "right of", "right of": "left of", "above": "below", "below": "above"}


def _listing(objects) -> str:
  phrases = [_phrase(o) for o in objects]
  return ", ".join(phrases[:-1]) + " and " + phrases[-1]


def scene_captions(objects, rng: np.random.Generator) -> list[str]:
  out = [f"from left to right: {_listing(sorted(objects, key=lambda o: o['cx']))}.",
         f"from top to bottom: {_listing(sorted(objects, key=lambda o: o['cy']))}."]
  shapes = sum(o["kind"] in SHAPES for o in objects)
  counts = [f"{_NUMBER_WORDS[shapes]} {'shape' if shapes == 1 else 'shapes'}",
            f"{_NUMBER_WORDS[len(objects) - shapes]} {'digit' if len(objects) - shapes == 1 else 'digits'}"]
  out.append(f"there are {counts[0]} and {counts[1]}.")
  pairs = [(a, b) for a in objects for b in objects if a is not b and _relation(a, b)]
  for k in rng.permutation(len(pairs))[:2]:
    a, b = pairs[k]
    out.append(f"{_phrase(a)} is {_relation(a, b)} {_phrase(b)}.")
  return out


def caption_holds(objects, caption: str) -> bool:
  """Whether `caption` (any scene's, in scene_captions' templates) describes the scene `objects`: the
  listings and counts when they equal this scene's, a relation when two of its objects stand so. Matching
  pairs are more than a scene and its own captions: "there are two shapes and one digit." fits many scenes."""
  own = scene_captions(objects, np.random.default_rng(0))
  if caption.startswith(("from left to right:", "from top to bottom:", "there are ")):
    return caption in own[:3]
  for relation in _OPPOSITE:
    head, sep, tail = caption.rstrip(".").partition(f" is {relation} ")
    if sep:
      a_words, b_words = head.split(), tail.split()
      return any(a is not b and _relation(a, b) == relation
                 and [a["colour"], a["kind"]] == a_words[1:] and [b["colour"], b["kind"]] == b_words[1:]
                 for a in objects for b in objects)
  return False


def scene_questions(objects, rng: np.random.Generator) -> list[tuple[str, str, str]]:
  """(question, answer, type) triples about one scene."""
  qs, names = [], {id(o): _name(objects, o) for o in objects}
  # exist: one yes, one no.
  present = {(o["colour"], o["kind"]) for o in objects}
  o = objects[int(rng.integers(len(objects)))]
  qs.append((f"is there a {o['colour']} {o['kind']}?", "yes", "exist"))
  absent = [(c, k) for c in COLOURS for k in SHAPES + tuple(sorted({o["kind"] for o in objects} - set(SHAPES)))
            if (c, k) not in present]
  c, k = absent[int(rng.integers(len(absent)))]
  qs.append((f"is there a {c} {k}?", "no", "exist"))
  # count: of a shape kind (any of the three, so 0 occurs), and of a colour.
  kind = SHAPES[int(rng.integers(len(SHAPES)))]
  qs.append((f"how many {_plural(kind)} are there?", str(sum(o["kind"] == kind for o in objects)), "count"))
  colour = tuple(COLOURS)[int(rng.integers(len(COLOURS)))]
  qs.append((f"how many {colour} objects are there?", str(sum(o["colour"] == colour for o in objects)), "count"))
  # colour of a uniquely named kind, directly or through a relation.
  named = [o for o in objects if _unique(objects, kind=o["kind"]) is o]
  if named:
    o = named[int(rng.integers(len(named)))]
    others = [b for b in objects if b is not o and names[id(b)] and _relation(o, b)]
    if others and rng.random() < 0.5:
      b = others[int(rng.integers(len(others)))]
      qs.append((f"what colour is the {o['kind']} {_relation(o, b)} {names[id(b)]}?", o["colour"], "colour"))
    else:
      qs.append((f"what colour is the {o['kind']}?", o["colour"], "colour"))
  # what is the object of a unique colour.
  by_colour = [o for o in objects if _unique(objects, colour=o["colour"]) is o]
  if by_colour:
    o = by_colour[int(rng.integers(len(by_colour)))]
    if o["kind"] in SHAPES:
      qs.append((f"what shape is the {o['colour']} object?", o["kind"], "shape"))
    else:
      qs.append((f"which digit is {o['colour']}?", o["kind"], "digit"))
  # relation between two uniquely named objects, true or false at even odds.
  pairs = [(a, b) for a in objects for b in objects
           if a is not b and names[id(a)] and names[id(b)] and _relation(a, b)]
  if pairs:
    a, b = pairs[int(rng.integers(len(pairs)))]
    rel, truth = _relation(a, b), rng.random() < 0.5
    qs.append((f"is {names[id(a)]} {rel if truth else _OPPOSITE[rel]} {names[id(b)]}?",
               "yes" if truth else "no", "relation"))
  return qs


@functools.cache
def _digits(split: str):
  from papers_jax.data.sources import DigitsSource
  return DigitsSource(split)


@functools.cache
def scenes(split: str) -> tuple[tuple[dict, ...], ...]:
  """Every scene of a split: {"objects", "captions", "questions", "seed"}; deterministic."""
  if split not in SPLITS:
    raise DataError(f"Unknown vqa_scenes split {split!r} (data.train_split / data.eval_split); use one of "
                    f"{list(SPLITS)}.")
  digits = _digits(split)
  labels = digits._labels
  seen = set(c for s in scenes("train") for c in s["captions"]) if split != "train" else set()
  out = []
  for i in range(SPLITS[split]):
    rng = np.random.default_rng([SEED, _SPLIT_SEED[split], i])
    objects = sample_layout(rng, len(digits))
    for o in objects:
      if o["digit_index"] >= 0:
        o["kind"] = str(labels[o["digit_index"]])
    captions = [c for c in scene_captions(objects, rng) if c not in seen]
    if not captions:  # every caption seen in training: both listings in one caption
      both = scene_captions(objects, np.random.default_rng(0))[:2]
      captions = [f"{both[0][:-1]}, and {both[1]}"]
    out.append(dict(objects=tuple(objects), captions=tuple(captions),
                    questions=tuple(scene_questions(objects, rng)), seed=(SEED, _SPLIT_SEED[split], i, 1)))
  return tuple(out)


def training_texts() -> list[str]:
  """Every training caption and question (for the tokenizer)."""
  return [t for s in scenes("train") for t in s["captions"] + tuple(q for q, _, _ in s["questions"])]


class VQAScenesSource:
  """The generated scenes of `split` as image-caption examples (kind="captions") or one example per
  question (kind="vqa"); see the module docstring."""

  def __init__(self, split: str, kind: str = "captions"):
    if kind not in ("captions", "vqa"):
      raise DataError(f"vqa_scenes kind must be 'captions' or 'vqa', got {kind!r}")
    self.split, self.kind, self.name = split, kind, "vqa_scenes"
    self.scenes = scenes(split)
    self.num_classes = len(ANSWERS) if kind == "vqa" else 0
    self.index = [(s, q) for s, scene in enumerate(self.scenes) for q in range(len(scene["questions"]))] \
        if kind == "vqa" else None

  def __len__(self) -> int:
    return len(self.index) if self.kind == "vqa" else len(self.scenes)

  def image(self, s: int) -> np.ndarray:
    scene = self.scenes[s]
    return render(scene["objects"], _digits(self.split), np.random.default_rng(scene["seed"]))

  def __getitem__(self, i) -> dict:
    if self.kind == "captions":
      return {"image": self.image(int(i)), "texts": self.scenes[int(i)]["captions"], "label": np.int32(i)}
    s, q = self.index[int(i)]
    question, answer, qtype = self.scenes[s]["questions"][q]
    return {"image": self.image(s), "question": question, "answer": np.int32(ANSWERS.index(answer)),
            "qtype": np.int32(QUESTION_TYPES.index(qtype)), "label": np.int32(ANSWERS.index(answer))}


def single_objects(split: str, limit: int | None = None):
  """Each object of the first `limit` scenes of `split` drawn alone at its place (the scene's noise and
  no other object): (images uint8 (N, SIZE, SIZE, 3), colour ids into COLOURS, kind ids into KINDS)."""
  images, colours, kinds = [], [], []
  for scene in scenes(split)[:limit]:
    for k, obj in enumerate(scene["objects"]):
      images.append(render([obj], _digits(split), np.random.default_rng(scene["seed"] + (k,))))
      colours.append(_COLOUR_NAMES.index(obj["colour"]))
      kinds.append(KINDS.index(obj["kind"]))
  return np.stack(images), np.asarray(colours, np.int32), np.asarray(kinds, np.int32)


def answer_baselines() -> dict:
  """Test accuracy of two answers that never look at the image: the most frequent training answer
  ("majority") and the most frequent training answer of each exact question string, falling back to
  the majority for questions not seen in training ("question_prior")."""
  train, test = scenes("train"), scenes("test")
  counts, per_question = {}, {}
  for s in train:
    for q, a, _ in s["questions"]:
      counts[a] = counts.get(a, 0) + 1
      per_question.setdefault(q, {}).setdefault(a, 0)
      per_question[q][a] += 1
  majority = max(counts, key=counts.get)
  prior = {q: max(c, key=c.get) for q, c in per_question.items()}
  qa = [(q, a) for s in test for q, a, _ in s["questions"]]
  return {"majority_answer": majority,
          "majority": float(np.mean([a == majority for _, a in qa])),
          "question_prior": float(np.mean([a == prior.get(q, majority) for q, a in qa]))}


# Per-pixel labels for open-vocabulary segmentation (tasks/lseg.py): 0 background, then one class per
# (colour, kind) pair, 1 + colour index · len(KINDS) + kind index.
PAIR_CLASSES = ("background",) + tuple(f"{c} {k}" for c in COLOURS for k in KINDS)


def held_out_pair(colour: str, kind: str) -> bool:
  """The pairs never labelled in LSeg's training: a quarter of them, every colour and kind still seen
  in other pairs (colour index + kind index divisible by 4; e.g. red circle, green 2, yellow square)."""
  return (_COLOUR_NAMES.index(colour) + KINDS.index(kind)) % 4 == 0


class SegmentationScenesSource:
  """The scenes of `split` as {"image", "label": int32 (SIZE, SIZE) into PAIR_CLASSES}."""

  def __init__(self, split: str):
    self.split, self.name = split, "vqa_scenes"
    self.scenes = scenes(split)
    self.num_classes = len(PAIR_CLASSES)

  def __len__(self) -> int:
    return len(self.scenes)

  def __getitem__(self, i) -> dict:
    scene = self.scenes[int(i)]
    label = np.zeros((SIZE, SIZE), np.int32)
    for mask, obj in zip(object_masks(scene["objects"], _digits(self.split)), scene["objects"]):
      label[mask] = PAIR_CLASSES.index(f"{obj['colour']} {obj['kind']}")
    return {"image": VQAScenesSource(self.split).image(int(i)), "label": label}


class DetectionScenesSource:
  """The scenes of `split` as a detection source (data/scenes.py's format) for the CLIP family's open-vocabulary
  detectors: {"image", "boxes" (xyxy pixel edges), "labels" (index into KINDS: 13 classes), "instance_masks"}.
  Per object, in the same order: `colours(i)` (index into COLOURS) and `phrases(i)` ("a red circle"), so that
  captions ground to boxes. (Kept out of the example: box augmentations drop objects without knowing them.)"""

  class_names = KINDS
  num_classes = len(KINDS)

  def __init__(self, split: str):
    self.split, self.name = split, "vqa_scenes"
    self.scenes = scenes(split)

  def __len__(self) -> int:
    return len(self.scenes)

  def phrases(self, i) -> tuple[str, ...]:
    return tuple(_phrase(obj) for obj in self.scenes[int(i)]["objects"])

  def colours(self, i) -> np.ndarray:
    return np.array([_COLOUR_NAMES.index(o["colour"]) for o in self.scenes[int(i)]["objects"]], np.int32)

  def __getitem__(self, i) -> dict:
    from papers_jax.data.scenes import tight_box

    objects = self.scenes[int(i)]["objects"]
    masks = object_masks(objects, _digits(self.split))
    return {"image": VQAScenesSource(self.split).image(int(i)), "boxes": np.stack([tight_box(m) for m in masks]),
            "labels": np.array([KINDS.index(o["kind"]) for o in objects], np.int32), "instance_masks": masks}
