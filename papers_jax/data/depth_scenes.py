"""Rendered scenes with known depth (bundled, generated, offline): DepthCLIP's data.

A pinhole camera (focal length `FOCAL` pixels, horizon at row `HORIZON`) `CAMERA_HEIGHT` above a flat
ground looks at one or two flat shapes (circle, square, triangle in the scenes' four colours) standing on
the ground facing it, at depths Z uniform in [1, 3] (the range of DepthCLIP's bins). Under the pinhole
model an object of world size S at depth Z is f·S/Z pixels tall and its base is f·h/Z pixels below the
horizon, so apparent size and height in the image both encode depth; S varies by ±10% around
`OBJECT_SIZE` so that size alone is not exact. The background is the scenes' dark noise, the ground a
little lighter than the sky. Depth is known at every object pixel (the metrics' pixels); objects do not
overlap.

Captions name each object's depth bin by the word of the nearest of DepthCLIP's bin depths (`BINS`):
"the red circle is close.", and for a one-object scene also "this object is close." (the paper's prompt);
for two objects also "the red circle is close and the blue square is far.". The words are image-level:
nothing tells the model which pixels are at which depth.

Splits (fixed seeds): "train" 6,000 scenes, "test" 500.
"""

import numpy as np

from papers_jax.data.vqa_scenes import COLOURS, SHAPES
from papers_jax.errors import DataError

# DepthCLIP's depth words and their bin depths (metres on NYU Depth v2).
DEPTH_WORDS = ("giant", "extremely close", "close", "not in distance", "a little remote", "far", "unseen")
BINS = (1.00, 1.50, 2.00, 2.25, 2.50, 2.75, 3.00)
SIZE, FOCAL, HORIZON, CAMERA_HEIGHT, OBJECT_SIZE = 64, 40.0, 12.0, 1.0, 0.5
DEPTH_RANGE = (1.0, 3.0)
SPLITS = {"train": (6000, 11), "test": (500, 12)}  # scenes, seed
# Per-channel mean and std of the first 600 training scenes' pixels in [0, 1]: the scenes are dark (configs normalise
# with these, as the image-text scenes' configs with theirs).
MEAN, STD = (0.131, 0.131, 0.126), (0.118, 0.110, 0.099)


def depth_word(z: float) -> str:
  return DEPTH_WORDS[int(np.argmin(np.abs(np.asarray(BINS) - z)))]


def _mask(kind: str, left: float, top: float, size: float) -> np.ndarray:
  """(SIZE, SIZE) bool: the shape in the box [left, left + size) × [top, top + size), at pixel centres."""
  rows, cols = np.mgrid[0:SIZE, 0:SIZE] + 0.5
  u, v = (cols - left) / size, (rows - top) / size  # in [0, 1) inside the box
  inside = (u >= 0) & (u < 1) & (v >= 0) & (v < 1)
  if kind == "circle":
    return (u - 0.5) ** 2 + (v - 0.5) ** 2 <= 0.25
  if kind == "square":
    return inside
  return inside & (np.abs(u - 0.5) <= v / 2)  # an upward triangle


def layout(rng: np.random.Generator) -> list[dict]:
  """One or two objects: colour, kind, depth z, box (left, top, size) in pixels; boxes do not overlap."""
  objects = []
  for _ in range(int(rng.integers(1, 3))):
    for _try in range(50):
      z = float(rng.uniform(*DEPTH_RANGE))
      size = FOCAL * OBJECT_SIZE * rng.uniform(0.9, 1.1) / z
      bottom = HORIZON + FOCAL * CAMERA_HEIGHT / z
      left = float(rng.uniform(0, SIZE - size))
      box = (left, bottom - size, size)
      if all(left + size <= o["box"][0] or o["box"][0] + o["box"][2] <= left for o in objects):
        objects.append({"colour": str(rng.choice(list(COLOURS))), "kind": str(rng.choice(SHAPES)), "z": z,
                        "box": box})
        break
  return objects


def render(objects, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
  """(uint8 image (SIZE, SIZE, 3), float32 depth (SIZE, SIZE), 0 where no object), farthest drawn first."""
  image = rng.integers(0, 40, (SIZE, SIZE, 3)).astype(np.int32)
  image[int(HORIZON):] += 12  # the ground, a little lighter than the sky
  depth = np.zeros((SIZE, SIZE), np.float32)
  for obj in sorted(objects, key=lambda o: -o["z"]):
    mask = _mask(obj["kind"], *obj["box"])
    image[mask] = COLOURS[obj["colour"]]
    depth[mask] = obj["z"]
  return np.clip(image, 0, 255).astype(np.uint8), depth


def captions(objects) -> list[str]:
  names = [f"the {o['colour']} {o['kind']} is {depth_word(o['z'])}." for o in objects]
  if len(objects) == 1:
    return names + [f"this object is {depth_word(objects[0]['z'])}."]
  return names + [names[0][:-1] + " and " + names[1]]


def training_texts() -> list[str]:
  """Every caption the scenes can have, and the depth prompts (the tokenizer's vocabulary)."""
  words = [f"the {c} {k} is {w} and the {c} {k} is {w}." for c in COLOURS for k in SHAPES for w in DEPTH_WORDS]
  return words + [f"this object is {w}." for w in DEPTH_WORDS]


class DepthScenesSource:
  """{"image", "texts" (the captions), "depth" (SIZE, SIZE) float32, 0 off the objects, "label": the index}."""

  def __init__(self, split: str, *, limit: int = 0):
    if split not in SPLITS:
      raise DataError(f"depth_scenes has the splits {tuple(SPLITS)}, got {split!r}")
    n, seed = SPLITS[split]
    n = min(n, limit) if limit else n
    self.name, self.split, self.num_classes = "depth_scenes", split, 0
    self.seeds = [(seed, i) for i in range(n)]
    self.layouts = [layout(np.random.default_rng(s)) for s in self.seeds]

  def __len__(self):
    return len(self.layouts)

  def __getitem__(self, i) -> dict:
    i = int(i)
    image, depth = render(self.layouts[i], np.random.default_rng(self.seeds[i] + (1,)))
    return {"image": image, "texts": captions(self.layouts[i]), "depth": depth, "label": np.int32(i)}
