"""A generated multi-camera driving scene (bundled, offline): BEVFormer's data.

World: a flat ground (z = 0) with a checkerboard of 2 m squares in two greys, fixed in the world so that it
moves in the images with the ego vehicle, under a dark sky. On it stand 2-6 boxes of three classes
(`CLASSES`, each with its size and colour, both jittered), centres uniform in the BEV range less the ego's
own square, yaw uniform, not overlapping. Objects are static in the world.

Ego frame: x forward, y left, z up, origin on the ground under the ego. `NUM_CAMS` pinhole cameras
(`IMAGE` × `IMAGE` pixels, horizontal field of view `FOV_DEG`, so neighbours overlap) sit `CAMERA_HEIGHT`
above the origin looking horizontally at yaws 0°, 90°, 180°, 270° (front, left, back, right). Camera
frame: x right, y down, z forward; pixel (col, row) covers [col, col + 1) × [row, row + 1). `lidar2img`
(4 × 4) maps homogeneous ego points to (u·d, v·d, d, 1) with d the depth, as the official code's matrices.

Rendering: one ray per pixel centre, the nearest hit among the boxes (slab test in each box's frame)
and the ground (a z-buffer by construction); box faces are shaded by their normal (top brightest), plus
Gaussian pixel noise.

Sequence: each example holds two frames, the previous and the current, `FRAMES` = 2. Between them the
ego drives forward `speed` ∈ [0, 2.5] m and turns `dyaw` ∈ [-0.25, 0.25] rad. `ego_motion` = (dx, dy,
dyaw): the previous ego pose in the current ego frame, so that a point p_prev of the previous frame is at
R(dyaw)·p_prev + (dx, dy) in the current one. The boxes are the current frame's, (x, y, z, w, l, h, yaw) in
the current ego frame: z the centre height, l along the heading yaw, w across it.

Splits (fixed seeds, each example rendered on demand from (seed, index)): "train" 6,000, "test" 300.
"""

import math

import numpy as np

from papers_jax.errors import DataError

CLASSES = ("car", "truck", "pedestrian")
# (length, width, height) in metres and RGB colour of each class.
SIZES = np.array([(4.0, 1.8, 1.5), (6.5, 2.5, 2.8), (0.8, 0.8, 1.8)], np.float64)
COLOURS = np.array([(220, 60, 50), (60, 110, 230), (240, 210, 40)], np.float64)
BEV_RANGE = 16.0  # the BEV grid covers [-16, 16]² metres
PC_RANGE = (-BEV_RANGE, -BEV_RANGE, -1.0, BEV_RANGE, BEV_RANGE, 3.0)  # x, y, z min then max (official order)
IMAGE, NUM_CAMS, FOV_DEG, CAMERA_HEIGHT = 32, 4, 100.0, 1.6
CAMERA_YAWS = (0.0, 0.5 * math.pi, math.pi, 1.5 * math.pi)
FRAMES = 2
MAX_OBJECTS = 6
SPLITS = {"train": (6000, 21), "test": (300, 22)}  # examples, seed
EGO_CLEAR = 4.5  # no object centre within this square around the ego
# Per-channel mean and std of the first 200 training scenes' pixels in [0, 1].
MEAN, STD = (0.233, 0.236, 0.263), (0.144, 0.133, 0.118)


def focal() -> float:
  return (IMAGE / 2) / math.tan(math.radians(FOV_DEG) / 2)


def intrinsics() -> np.ndarray:
  f = focal()
  return np.array([[f, 0, IMAGE / 2], [0, f, IMAGE / 2], [0, 0, 1]], np.float64)


def cam_to_ego(yaw: float) -> tuple[np.ndarray, np.ndarray]:
  """Rotation (columns: the camera's x right, y down, z forward in the ego frame) and position."""
  forward = np.array([math.cos(yaw), math.sin(yaw), 0.0])
  right = np.array([math.sin(yaw), -math.cos(yaw), 0.0])
  down = np.array([0.0, 0.0, -1.0])
  return np.stack([right, down, forward], 1), np.array([0.0, 0.0, CAMERA_HEIGHT])


def lidar2img() -> np.ndarray:
  """(NUM_CAMS, 4, 4): ego point → (u·d, v·d, d, 1); the same every frame (the rig is rigid)."""
  out = []
  k = np.eye(4)
  k[:3, :3] = intrinsics()
  for yaw in CAMERA_YAWS:
    rot, pos = cam_to_ego(yaw)
    ego2cam = np.eye(4)
    ego2cam[:3, :3], ego2cam[:3, 3] = rot.T, -rot.T @ pos
    out.append(k @ ego2cam)
  return np.stack(out).astype(np.float32)


def _rays():
  """Ray directions (NUM_CAMS, IMAGE, IMAGE, 3) through the pixel centres, in the ego frame, and the origins."""
  f = focal()
  rows, cols = np.mgrid[0:IMAGE, 0:IMAGE] + 0.5
  d_cam = np.stack([(cols - IMAGE / 2) / f, (rows - IMAGE / 2) / f, np.ones_like(cols)], -1)
  dirs, origins = [], []
  for yaw in CAMERA_YAWS:
    rot, pos = cam_to_ego(yaw)
    dirs.append(d_cam @ rot.T)
    origins.append(pos)
  return np.stack(dirs), np.stack(origins)


RAYS, ORIGINS = _rays()


def to_frame(points: np.ndarray, motion) -> np.ndarray:
  """Points (…, 2) of the current ego frame → the previous ego frame, for `motion` = (dx, dy, dyaw)."""
  dx, dy, dyaw = motion
  c, s = math.cos(dyaw), math.sin(dyaw)
  p = points - np.array([dx, dy])
  return np.stack([c * p[..., 0] + s * p[..., 1], -s * p[..., 0] + c * p[..., 1]], -1)


def render(boxes: np.ndarray, labels: np.ndarray, colours: np.ndarray, world_offset, rng) -> np.ndarray:
  """(NUM_CAMS, IMAGE, IMAGE, 3) uint8 of boxes (n, 7) in this frame's ego coordinates. `world_offset`
  (dx, dy, dyaw): this ego frame's pose in the world (for the ground's checkerboard)."""
  dirs = RAYS.reshape(NUM_CAMS, -1, 3)
  origin = np.broadcast_to(ORIGINS[:, None, :], dirs.shape)
  depth = np.full(dirs.shape[:2], np.inf)
  colour = np.zeros(dirs.shape[:2] + (3,))
  colour[:] = (25, 28, 40)  # sky
  # The ground: z = 0 where the ray goes down.
  down = dirs[..., 2] < -1e-6
  t_ground = np.where(down, -origin[..., 2] / np.where(down, dirs[..., 2], -1.0), np.inf)
  hit = origin + dirs * np.where(np.isfinite(t_ground), t_ground, 0.0)[..., None]
  ox, oy, oyaw = world_offset
  c, s = math.cos(oyaw), math.sin(oyaw)
  wx, wy = c * hit[..., 0] - s * hit[..., 1] + ox, s * hit[..., 0] + c * hit[..., 1] + oy
  checker = (np.floor(wx / 2.0) + np.floor(wy / 2.0)) % 2
  ground = np.where(checker[..., None] > 0, 105.0, 80.0) * np.ones(3)
  depth = np.where(np.isfinite(t_ground), t_ground, depth)
  colour = np.where(np.isfinite(t_ground)[..., None], ground, colour)
  for box, label, rgb in zip(boxes, labels, colours):
    x, y, z, w, l, h, yaw = box
    c, s = math.cos(yaw), math.sin(yaw)
    rot = np.array([[c, -s, 0], [s, c, 0], [0, 0, 1.0]])  # box frame → ego
    o = (origin - np.array([x, y, z])) @ rot
    d = dirs @ rot
    half = np.array([l / 2, w / 2, h / 2])
    safe = np.where(np.abs(d) < 1e-9, 1e-9, d)
    t0, t1 = (-half - o) / safe, (half - o) / safe
    near, far = np.minimum(t0, t1), np.maximum(t0, t1)
    t_near, t_far = near.max(-1), far.min(-1)
    axis = near.argmax(-1)
    inside = (t_near < t_far) & (t_near > 0) & (t_near < depth)
    shade = np.array([0.8, 0.6, 1.0])[axis]
    depth = np.where(inside, t_near, depth)
    colour = np.where(inside[..., None], rgb * shade[..., None], colour)
  colour = colour + rng.normal(0, 6.0, colour.shape)
  return np.clip(colour, 0, 255).round().astype(np.uint8).reshape(NUM_CAMS, IMAGE, IMAGE, 3)


def layout(rng: np.random.Generator):
  """Boxes (n, 7), labels (n,), colours (n, 3) of a scene in the current ego frame."""
  boxes, labels, colours = [], [], []
  for _ in range(int(rng.integers(2, MAX_OBJECTS + 1))):
    for _try in range(50):
      label = int(rng.choice(3, p=(0.5, 0.2, 0.3)))
      l, w, h = SIZES[label] * rng.uniform(0.9, 1.1, 3)
      x, y = rng.uniform(-BEV_RANGE + 1.5, BEV_RANGE - 1.5, 2)
      if max(abs(x), abs(y)) < EGO_CLEAR:
        continue
      radius = 0.5 * math.hypot(l, w)
      if all(math.hypot(x - b[0], y - b[1]) > radius + 0.5 * math.hypot(b[3], b[4]) + 0.3 for b in boxes):
        boxes.append((x, y, h / 2, w, l, h, rng.uniform(-math.pi, math.pi)))
        labels.append(label)
        colours.append(np.clip(COLOURS[label] + rng.uniform(-25, 25, 3), 0, 255))
        break
  return np.array(boxes, np.float64).reshape(-1, 7), np.array(labels, np.int32), np.array(colours).reshape(-1, 3)


def scene(seed: int, index: int) -> dict:
  """One example: both frames' images (FRAMES, NUM_CAMS, IMAGE, IMAGE, 3), lidar2img (FRAMES, NUM_CAMS, 4, 4),
  ego_motion (3,), and the current frame's boxes (n, 7) and labels (n,)."""
  rng = np.random.default_rng([seed, index])
  boxes, labels, colours = layout(rng)
  speed, dyaw = rng.uniform(0.0, 2.5), rng.uniform(-0.25, 0.25)
  # The previous pose in the current frame: it was `speed` behind along its own heading, turned by -dyaw.
  motion = (-speed * math.cos(dyaw), speed * math.sin(dyaw), -dyaw)
  world = rng.uniform(-50, 50, 2).tolist() + [rng.uniform(-math.pi, math.pi)]  # current pose in the world
  prev_boxes = boxes.copy()
  if len(boxes):
    prev_boxes[:, :2] = to_frame(boxes[:, :2], motion)
    prev_boxes[:, 6] = boxes[:, 6] - motion[2]
  c, s = math.cos(world[2]), math.sin(world[2])
  prev_world = (world[0] + c * motion[0] - s * motion[1], world[1] + s * motion[0] + c * motion[1],
                world[2] + motion[2])
  images = np.stack([render(prev_boxes, labels, colours, prev_world, rng), render(boxes, labels, colours, world, rng)])
  return {"images": images, "lidar2img": np.broadcast_to(lidar2img(), (FRAMES, NUM_CAMS, 4, 4)).copy(),
          "ego_motion": np.asarray(motion, np.float32), "boxes": boxes.astype(np.float32), "labels": labels}


class BEVScenes:
  """The indexable source of a split."""

  class_names = CLASSES
  num_classes = len(CLASSES)

  def __init__(self, split: str):
    if split not in SPLITS:
      raise DataError(f"bev_scenes has splits {tuple(SPLITS)}, not {split!r}")
    self.size, self.seed = SPLITS[split]

  def __len__(self):
    return self.size

  def __getitem__(self, index: int) -> dict:
    if not 0 <= index < self.size:
      raise IndexError(index)
    return scene(self.seed, int(index))

  def targets(self, index: int) -> tuple[np.ndarray, np.ndarray]:
    """The example's boxes and labels without rendering (its layout is the first draw of its generator)."""
    boxes, labels, _ = layout(np.random.default_rng([self.seed, int(index)]))
    return boxes.astype(np.float32), labels
