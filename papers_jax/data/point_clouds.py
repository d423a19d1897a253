"""Point clouds sampled from parametric 3-D shapes (bundled, generated, offline): PointCLIP's data.

Six classes, the y axis up: cube, sphere, cylinder, cone, pyramid (square base) and torus (ring in the
x-z plane). Each cloud is `num_points` points drawn uniformly over the shape's surface (each face or
part chosen with probability proportional to its area), then a random anisotropic size (the horizontal
axes by one factor, the vertical by another, each in [0.7, 1]), a random turn about the vertical axis,
Gaussian jitter (σ 0.01), and, as ModelNet's clouds are, centred and scaled into the unit sphere.

Splits (fixed seeds): "train" 100 clouds per class, "test" 50 per class, from disjoint seeds;
`shots=k` keeps the first k training clouds of each class (PointCLIP's k-shot sets).

`VIEW_WORDS` names each class in words the scenes CLIP (configs/clip/scenes.py) has read: the 2-D
outlines its views show ("square" for the cube; "triangle and a circle" for the cone, a triangle from
the side and a circle from above; "0" for the ring of the torus). The classes' own names ("cube",
"sphere", ...) never occur in that CLIP's captions: its tokenizer maps them to [UNK].
`SIDE_WORDS` and `TOP_WORDS` split those outlines by view: what each shape's depth map shows from the side
(front, right, back, left) and from above or below (top, bottom); the torus's flat band seen from the side is
the nearest outline the scenes name, a "square" (a wide rectangle). Each class is a different (side, top) pair.
"""

import numpy as np

from papers_jax.errors import DataError

CLASSES = ("cube", "sphere", "cylinder", "cone", "pyramid", "torus")
VIEW_WORDS = {"cube": "square", "sphere": "circle", "cylinder": "square and a circle",
              "cone": "triangle and a circle", "pyramid": "triangle and a square", "torus": "0"}
SIDE_WORDS = {"cube": "square", "sphere": "circle", "cylinder": "square", "cone": "triangle", "pyramid": "triangle",
              "torus": "square"}
TOP_WORDS = {"cube": "square", "sphere": "circle", "cylinder": "circle", "cone": "circle", "pyramid": "square",
             "torus": "0"}
SPLITS = {"train": (100, 1000), "test": (50, 2000)}  # clouds per class, seed
TORUS_RADII = (1.0, 0.35)


def _triangles(rng, vertices, n) -> np.ndarray:
  """n points uniform over triangles (T, 3, 3), each picked in proportion to its area."""
  a, b, c = vertices[:, 0], vertices[:, 1], vertices[:, 2]
  areas = 0.5 * np.linalg.norm(np.cross(b - a, c - a), axis=1)
  which = rng.choice(len(vertices), size=n, p=areas / areas.sum())
  r1, r2 = np.sqrt(rng.random(n))[:, None], rng.random(n)[:, None]
  return (1 - r1) * a[which] + r1 * (1 - r2) * b[which] + r1 * r2 * c[which]


def _disc(rng, n, y):
  r, t = np.sqrt(rng.random(n)), rng.random(n) * 2 * np.pi
  return np.stack([r * np.cos(t), np.full(n, y), r * np.sin(t)], 1)


def sample_surface(kind: str, n: int, rng: np.random.Generator) -> np.ndarray:
  """(n, 3) float points uniform over the surface of a unit shape of class `kind`."""
  if kind == "sphere":
    p = rng.normal(size=(n, 3))
    return p / np.linalg.norm(p, axis=1, keepdims=True)
  if kind == "cube":
    face = rng.integers(6, size=n)
    p = rng.uniform(-1, 1, size=(n, 3))
    p[np.arange(n), face // 2] = np.where(face % 2, 1.0, -1.0)
    return p
  if kind == "cylinder":  # radius 1, y in [-1, 1]: side area 4π, each cap π
    part = rng.choice(3, size=n, p=[4 / 6, 1 / 6, 1 / 6])
    t = rng.random(n) * 2 * np.pi
    side = np.stack([np.cos(t), rng.uniform(-1, 1, n), np.sin(t)], 1)
    return np.where((part == 0)[:, None], side,
                    np.where((part == 1)[:, None], _disc(rng, n, 1.0), _disc(rng, n, -1.0)))
  if kind == "cone":  # apex (0, 1, 0), base radius 1 at y = -1: side area π√5, base π
    on_side = rng.random(n) < np.sqrt(5) / (np.sqrt(5) + 1)
    s, t = np.sqrt(rng.random(n)), rng.random(n) * 2 * np.pi  # s: the fraction of the way from the apex
    side = np.stack([s * np.cos(t), 1 - 2 * s, s * np.sin(t)], 1)
    return np.where(on_side[:, None], side, _disc(rng, n, -1.0))
  if kind == "pyramid":  # apex (0, 1, 0), square base [-1, 1]² at y = -1
    apex = np.array([0.0, 1.0, 0.0])
    c = np.array([[-1, -1, -1], [1, -1, -1], [1, -1, 1], [-1, -1, 1]], float)
    faces = [(apex, c[i], c[(i + 1) % 4]) for i in range(4)] + [(c[0], c[1], c[2]), (c[0], c[2], c[3])]
    return _triangles(rng, np.asarray(faces, float), n)
  if kind == "torus":  # ring radius R in the x-z plane, tube radius r; area density ∝ R + r·cos φ
    big, small = TORUS_RADII
    u, phi = np.empty(0), np.empty(0)
    while len(u) < n:
      cand = rng.random(2 * n) * 2 * np.pi
      keep = rng.random(2 * n) < (big + small * np.cos(cand)) / (big + small)
      phi = np.concatenate([phi, cand[keep]])
      u = np.concatenate([u, rng.random(int(keep.sum())) * 2 * np.pi])
    u, phi = u[:n], phi[:n]
    ring = big + small * np.cos(phi)
    return np.stack([ring * np.cos(u), small * np.sin(phi), ring * np.sin(u)], 1)
  raise DataError(f"unknown shape {kind!r}; choose from {CLASSES}")


def point_cloud(kind: str, n: int, rng: np.random.Generator) -> np.ndarray:
  """(n, 3) float32: a sampled surface, resized, turned about y, jittered, centred and scaled into the unit sphere."""
  p = sample_surface(kind, n, rng)
  horizontal, vertical = rng.uniform(0.7, 1.0, size=2)
  p = p * np.array([horizontal, vertical, horizontal])
  a = rng.uniform(0, 2 * np.pi)
  turn = np.array([[np.cos(a), 0, np.sin(a)], [0, 1, 0], [-np.sin(a), 0, np.cos(a)]])
  p = p @ turn.T + rng.normal(scale=0.01, size=p.shape)
  p = p - p.mean(axis=0)
  return (p / np.linalg.norm(p, axis=1).max()).astype(np.float32)


class PointCloudSource:
  """The split's clouds: {"points": (num_points, 3) float32, "label": int32}, classes interleaved."""

  def __init__(self, split: str, *, num_points: int = 1024, shots: int = 0, per_class: int = 0):
    if split not in SPLITS:
      raise DataError(f"point_clouds has the splits {tuple(SPLITS)}, got {split!r}")
    full, seed = SPLITS[split]
    per_class = per_class or full  # fewer: the split's first clouds (smoke runs)
    if shots and (split != "train" or shots > per_class):
      raise DataError(f"shots={shots}: the k-shot sets are drawn from the train split's {per_class} clouds per class")
    per_class = shots or per_class
    rng = np.random.default_rng(seed)
    self.name, self.num_classes, self.class_names = "point_clouds", len(CLASSES), CLASSES
    self.labels = np.tile(np.arange(len(CLASSES), dtype=np.int32), per_class)
    self.points = np.stack([point_cloud(CLASSES[k], num_points, rng) for k in self.labels])

  def __len__(self):
    return len(self.labels)

  def __getitem__(self, i) -> dict:
    return {"points": self.points[i], "label": self.labels[i]}
