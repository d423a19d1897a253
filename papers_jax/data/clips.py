"""Generated short video clips of one moving shape whose class is the motion (bundled, offline):
`data.name = "moving_shapes"`.

Each clip is T frames (default 8) of a C×H×W canvas (default 32×32 RGB): one coloured shape (triangle,
square, bar, cross; red, green, blue, yellow) on a dark, noisy background doing one of twelve motions
(MOTIONS): moving left / right / up / down, moving up and left / up and right / down and left / down
and right (diagonals at the same speed), growing, shrinking, rotating clockwise, rotating
anticlockwise. Captions are templates over the three ("a red triangle moving left.", CAPTION_TEMPLATES);
the class names of ActionCLIP are the motions themselves.

Made so that motion matters, and order does:
  - the canvas is a torus (a shape leaving one edge enters at the other) and the start point is
    uniform, so every frame's position is uniform whatever the direction;
  - growing and shrinking scale by r^((t − (T−1)/2)/(T−1)) around a random middle size, and rotations
    start at a uniform angle, so each reversed pair (left/right, up/down, the opposite diagonals,
    growing/shrinking, clockwise/anticlockwise) has identically distributed single frames, and the
    same *set* of frames in reverse order: a single frame is at chance within those pairs, and any
    order-blind summary of the frames (a mean of per-frame features) is too. Only the size range of
    growing / shrinking clips and the motion's axis hint anything to a set of frames.

Splits (fixed seeds; clip i of a split is the same on every call and every host; clips are drawn on
access, well under a millisecond each): train 4800, test 480 (with other seeds: no test clip is a
training clip). `classes` keeps only clips of those classes (labels keep their global index), e.g. the
seen classes of a zero-shot experiment; `shots` keeps the first `shots` clips of each class (few-shot).

  source = MovingShapesSource("train")   # source[i] → {"frames": uint8 (T, H, W, C), "label": int32 motion,
                                         #   "caption": str, "colour": int32, "shape": int32}
"""

import math

import numpy as np

from papers_jax.errors import DataError

MOTIONS = ("moving left", "moving right", "moving up", "moving down",
           "moving up and left", "moving up and right", "moving down and left", "moving down and right",
           "growing", "shrinking", "rotating clockwise", "rotating anticlockwise")
# (dx, dy) per frame in units of the speed; y grows downwards.
_DIRECTIONS = {0: (-1, 0), 1: (1, 0), 2: (0, -1), 3: (0, 1), 4: (-1, -1), 5: (1, -1), 6: (-1, 1), 7: (1, 1)}
REVERSED_PAIRS = ((0, 1), (2, 3), (4, 7), (5, 6), (8, 9), (10, 11))
COLOURS = {"red": (225, 45, 45), "green": (45, 195, 70), "blue": (60, 100, 245), "yellow": (230, 210, 45)}
SHAPES = ("triangle", "square", "bar", "cross")
CAPTION_TEMPLATES = ("a {colour} {shape} {motion}.", "a video of a {colour} {shape} {motion}.",
                     "the {colour} {shape} is {motion}.", "a clip of a {shape}, {colour}, {motion}.")
# Without the colour: 48 captions, so that a batch holds many clips told apart by their motion alone.
SHAPE_MOTION_TEMPLATES = ("a {shape} {motion}.", "a video of a {shape} {motion}.", "the {shape} is {motion}.",
                          "a clip of a {shape} {motion}.")
# ActionCLIP's prompts ("a video of {}"-style; the label name alone is one of them).
ACTION_TEMPLATES = ("{}.", "a video of a shape {}.", "a clip of something {}.", "a shape is {}.",
                    "a video of an object {}.", "something {}.", "a clip of a shape {}.", "an object is {}.")
ACTION_HELD_OUT_TEMPLATES = ("a video of something {}.", "an object {}.")
# The class of a clip: its motion, or (ActionCLIP's compositional zero-shot) its shape and motion, class
# shape · 12 + motion, named "triangle moving left".
LABELS = {"motion": MOTIONS, "shape_motion": tuple(f"{s} {m}" for s in SHAPES for m in MOTIONS)}
SPLITS = {"train": 4800, "test": 480}
_SPLIT_SEED = {"train": 0, "test": 1}
SEED = 3232
SPEED = (1.5, 2.5)           # pixels per frame (at 32 px; scaled with the canvas)
SIZE_RANGE = (4.5, 7.0)      # half-size of the shape in the middle frame (at 32 px)
GROWTH = (2.2, 3.0)          # last / first size of growing clips
SPIN = (15.0, 30.0)          # degrees per frame


def _polygons(shape: str) -> list[np.ndarray]:
  """Convex polygons (unit half-size) whose union is the shape."""
  if shape == "triangle":
    return [np.array([(0.0, -1.0), (-0.95, 0.75), (0.95, 0.75)])]
  if shape == "square":
    return [np.array([(-0.8, -0.8), (-0.8, 0.8), (0.8, 0.8), (0.8, -0.8)])]
  if shape == "bar":
    return [np.array([(-1.0, -0.35), (-1.0, 0.35), (1.0, 0.35), (1.0, -0.35)])]
  if shape == "cross":
    return [np.array([(-1.0, -0.3), (-1.0, 0.3), (1.0, 0.3), (1.0, -0.3)]),
            np.array([(-0.3, -1.0), (-0.3, 1.0), (0.3, 1.0), (0.3, -1.0)])]
  raise ValueError(shape)


_POLYGONS = {s: _polygons(s) for s in SHAPES}


def _coverage(points, polygons) -> np.ndarray:
  """Whether each point (..., 2) lies inside the union of convex polygons."""
  x, y = points[..., 0], points[..., 1]
  inside = np.zeros(x.shape, bool)
  for poly in polygons:  # convex: inside every edge's half-plane, on the side of the polygon's orientation
    nxt = np.roll(poly, -1, axis=0)
    sign = np.sign(np.sum(poly[:, 0] * nxt[:, 1] - nxt[:, 0] * poly[:, 1]))
    inner = np.ones(x.shape, bool)
    for (x0, y0), (x1, y1) in zip(poly, nxt):
      inner &= sign * ((x1 - x0) * (y - y0) - (y1 - y0) * (x - x0)) >= 0
    inside |= inner
  return inside


def render(shape: str, colour, centres, sizes, angles, *, size: int, noise, supersample: int = 2) -> np.ndarray:
  """Frames uint8 (T, size, size, 3): the shape at each frame's centre (x, y), half-size and angle (radians,
  clockwise on screen) on a torus, anti-aliased by `supersample`² samples per pixel, over `noise` (T, size,
  size, 1) background levels."""
  offsets = (np.arange(supersample) + 0.5) / supersample
  grid = (np.arange(size)[:, None] + offsets[None, :]).reshape(-1)     # (size·s,)
  centres, sizes, angles = (np.asarray(v, np.float64) for v in (centres, sizes, angles))
  cx, cy = centres[:, 0, None, None], centres[:, 1, None, None]
  dx = (grid[None, None, :] - cx + size / 2) % size - size / 2          # torus: the nearest copy of the centre
  dy = (grid[None, :, None] - cy + size / 2) % size - size / 2
  dx, dy = np.broadcast_arrays(dx, dy)                                  # (T, size·s, size·s)
  c, sn, s = np.cos(angles)[:, None, None], np.sin(angles)[:, None, None], sizes[:, None, None]
  # rotated by −angle, in units of the half-size
  local = np.stack([(c * dx + sn * dy) / s, (-sn * dx + c * dy) / s], axis=-1).astype(np.float32)
  cover = _coverage(local, _POLYGONS[shape]).astype(np.float32)
  cover = cover.reshape(-1, size, supersample, size, supersample).mean(axis=(2, 4))[..., None]
  frames = noise * (1 - cover) + cover * np.asarray(colour, np.float32)
  return np.clip(np.round(frames), 0, 255).astype(np.uint8)


def motion_path(motion: int, rng: np.random.Generator, num_frames: int, size: int):
  """(centres (T, 2), half-sizes (T,), angles (T,)) of one clip of class `motion`."""
  scale = size / 32
  t = np.arange(num_frames, dtype=np.float64)
  centre = rng.uniform(0, size, 2)
  half = rng.uniform(*SIZE_RANGE) * scale
  angle = rng.uniform(0, 2 * math.pi)
  centres, sizes, angles = np.tile(centre, (num_frames, 1)), np.full(num_frames, half), np.full(num_frames, angle)
  if motion in _DIRECTIONS:
    d = np.asarray(_DIRECTIONS[motion], np.float64)
    centres = (centre + t[:, None] * rng.uniform(*SPEED) * scale * d / np.linalg.norm(d)) % size
  elif motion in (8, 9):  # growing / shrinking about the middle frame's size
    exponent = (t - (num_frames - 1) / 2) / max(num_frames - 1, 1)
    sizes = half * rng.uniform(*GROWTH) ** (exponent if motion == 8 else -exponent)
  else:  # clockwise on screen (y down) is an increasing angle
    step = math.radians(rng.uniform(*SPIN))
    angles = angle + t * step * (1 if motion == 10 else -1)
  return centres, sizes, angles


def caption(colour: str, shape: str, motion: str, template: str = CAPTION_TEMPLATES[0]) -> str:
  return template.format(colour=colour, shape=shape, motion=motion)


def caption_id(colour: int, shape: int, motion: int) -> int:
  """One id per distinct (colour, shape, motion): the retrieval match of a caption."""
  return (motion * len(SHAPES) + shape) * len(COLOURS) + colour


class MovingShapesSource:
  """The clips of `split` (see the module docstring)."""

  def __init__(self, split: str, *, num_frames: int = 8, size: int = 32, classes=None, shots: int = 0,
               seed: int = SEED, labels: str = "motion"):
    if split not in SPLITS:
      raise DataError(f"moving_shapes has splits {tuple(SPLITS)}, not {split!r}")
    if num_frames < 2 or size < 16:
      raise DataError(f"moving_shapes needs at least 2 frames of at least 16×16 (got {num_frames} × {size})")
    if labels not in LABELS:
      raise DataError(f"moving_shapes labels must be one of {tuple(LABELS)}, got {labels!r}")
    self.split, self.num_frames, self.size, self.seed = split, int(num_frames), int(size), int(seed)
    self.class_names = LABELS[labels]
    self.name, self.num_classes, self.label_kind = "moving_shapes", len(self.class_names), labels
    n = SPLITS[split]
    rng = np.random.default_rng([self.seed, _SPLIT_SEED[split]])
    self._labels = np.arange(n) % len(MOTIONS)                            # balanced, then shuffled
    rng.shuffle(self._labels)
    self._colours = rng.integers(len(COLOURS), size=n)
    self._shapes = rng.integers(len(SHAPES), size=n)
    self._classes = self._labels if labels == "motion" else self._shapes * len(MOTIONS) + self._labels
    keep = np.arange(n)
    if classes is not None and len(classes):
      classes = [int(c) for c in classes]
      if any(c < 0 or c >= self.num_classes for c in classes):
        raise DataError(f"moving_shapes classes must lie in [0, {self.num_classes}), got {classes}")
      keep = keep[np.isin(self._classes, classes)]
    if shots:
      keep = np.concatenate([keep[self._classes[keep] == c][:shots] for c in np.unique(self._classes[keep])])
      keep.sort()
    self._keep = keep

  def __len__(self):
    return len(self._keep)

  @property
  def labels(self) -> np.ndarray:
    return self._classes[self._keep].astype(np.int32)

  def caption_ids(self) -> np.ndarray:
    i = self._keep
    return np.asarray([caption_id(c, s, m) for c, s, m in zip(self._colours[i], self._shapes[i], self._labels[i])])

  def __getitem__(self, i) -> dict:
    j = int(self._keep[i])
    rng = np.random.default_rng([self.seed, _SPLIT_SEED[self.split], j])
    motion, colour, shape = int(self._labels[j]), int(self._colours[j]), int(self._shapes[j])
    colour_name, shape_name = tuple(COLOURS)[colour], SHAPES[shape]
    centres, sizes, angles = motion_path(motion, rng, self.num_frames, self.size)
    background = rng.uniform(10, 40)
    noise = background + 8 * rng.standard_normal((self.num_frames, self.size, self.size, 1))
    frames = render(shape_name, COLOURS[colour_name], centres, sizes, angles, size=self.size, noise=noise)
    return {"frames": frames, "label": np.int32(self._classes[j]),
            "caption": caption(colour_name, shape_name, MOTIONS[motion]), "colour": np.int32(colour),
            "shape": np.int32(shape), "motion": np.int32(motion)}
