"""Two-stream inputs from the moving-shapes clips (data/clips.py): RGB frames for the spatial stream and
stacked TV-L1 optical flow for the temporal stream (Simonyan & Zisserman 2014, §3).

Flow is computed offline once with `skimage.registration.optical_flow_tvl1` between consecutive grey
frames, its mean displacement subtracted per field (the paper's camera-motion compensation, §3.1), and
stored as uint8 as the paper stored its flow (rescaled to [0, 255]; here 128 + 16·d, i.e. ±7.9 px in steps
of 1/16 px) under `$PAPERS_JAX_CACHE/two_stream/` (default `~/.cache/papers_jax`), keyed by the data
settings, so training never recomputes it. Precompute (prints its progress; about 15 ms a frame pair idle):

  python -m papers_jax.data.flow_clips --split train --shots 40
  python -m papers_jax.data.flow_clips --split test --shots 20

The temporal input at frame τ is plain stacking (the paper's best, §3.1; trajectory stacking is not built):
channels (d^x_τ, d^y_τ, d^x_τ+1, d^y_τ+1, ..., d^y_τ+L−1), 2L of them.

Horizontal flips change the class of a motion clip (moving left ↔ right, the diagonals, clockwise ↔
anticlockwise), so a flipped training input takes the mirrored label (FLIP_LABEL) and a flipped test
crop's scores are mapped back before averaging; a flipped flow field also negates its d^x channels.
"""

import argparse
import functools
import os
import time

import numpy as np

from papers_jax.data.clips import MOTIONS, MovingShapesSource
from papers_jax.errors import DataError
from papers_jax.models.pretrained import cache_dir

STREAMS = ("spatial", "temporal")
FLOW_SCALE, FLOW_OFFSET = 16.0, 128.0   # uint8 = 128 + 16·d, clipped to [1, 255] (symmetric under d → −d)
# The label of a horizontally mirrored clip: left ↔ right, up-left ↔ up-right, down-left ↔ down-right,
# clockwise ↔ anticlockwise; up, down, growing and shrinking stay.
FLIP_LABEL = np.array([1, 0, 2, 3, 5, 4, 7, 6, 8, 9, 11, 10], np.int32)
assert len(FLIP_LABEL) == len(MOTIONS)


def tvl1_flow(frames: np.ndarray) -> np.ndarray:
  """uint8 frames (T, H, W, 3) → flow (T−1, H, W, 2) float32 in pixels, (d^x, d^y) from frame t to t+1."""
  from skimage.registration import optical_flow_tvl1  # heavy import, only when flow is computed
  grey = frames.astype(np.float32).mean(-1) / 255.0
  out = np.empty((len(frames) - 1,) + grey.shape[1:] + (2,), np.float32)
  for t in range(len(frames) - 1):
    v, u = optical_flow_tvl1(grey[t], grey[t + 1])  # skimage returns (row, column) displacements
    out[t, ..., 0], out[t, ..., 1] = u, v
  return out


def subtract_mean_flow(flow: np.ndarray) -> np.ndarray:
  """The paper's camera-motion compensation: each field's mean displacement vector subtracted from it."""
  return flow - flow.mean(axis=(-3, -2), keepdims=True)


def quantize_flow(flow: np.ndarray) -> np.ndarray:
  return np.clip(np.round(FLOW_OFFSET + FLOW_SCALE * flow), 1, 255).astype(np.uint8)


def dequantize_flow(q: np.ndarray) -> np.ndarray:
  return (q.astype(np.float32) - FLOW_OFFSET) / FLOW_SCALE


def stack_flow(flow: np.ndarray, start: int, length: int) -> np.ndarray:
  """Fields (T−1, H, W, 2) → the input at `start`: (H, W, 2L), channels d^x_τ, d^y_τ, d^x_τ+1, ..."""
  if not 0 <= start <= len(flow) - length:
    raise DataError(f"a stack of {length} fields at {start} does not fit in {len(flow)} fields")
  window = flow[start:start + length]                      # (L, H, W, 2)
  return np.moveaxis(window, 0, 2).reshape(window.shape[1], window.shape[2], 2 * length)


def num_positions(stream: str, num_frames: int, length: int) -> int:
  """How many frames (spatial) or flow-stack starts (temporal) a clip has."""
  return num_frames if stream == "spatial" else num_frames - length


def input_at(clip: np.ndarray, stream: str, position: int, length: int) -> np.ndarray:
  """One network input (H, W, C) from a clip's frames (T, H, W, 3) or uint8 flow (T−1, H, W, 2)."""
  return clip[position] if stream == "spatial" else stack_flow(clip, position, length)


def evenly_spaced(count: int, positions: int) -> np.ndarray:
  """The paper's test-time sampling: `count` (25) positions evenly spaced over a clip's `positions`
  (repeats where the clip has fewer)."""
  return np.round(np.linspace(0, positions - 1, count)).astype(np.int64)


def hflip(image: np.ndarray, stream: str) -> np.ndarray:
  """Mirror left-right; a flow stack's d^x channels (even channels) change sign (uint8: q → 256 − q)."""
  out = image[:, ::-1]
  if stream == "temporal":
    out = out.copy()
    out[..., 0::2] = (256 - out[..., 0::2].astype(np.int32)).astype(np.uint8)
  return out


def ten_crops(image: np.ndarray, crop: int, stream: str) -> np.ndarray:
  """(H, W, C) → (10, crop, crop, C): the four corners and the centre, then the same five mirrored."""
  h, w = image.shape[:2]
  corners = [(0, 0), (0, w - crop), (h - crop, 0), (h - crop, w - crop), ((h - crop) // 2, (w - crop) // 2)]
  five = [image[y:y + crop, x:x + crop] for y, x in corners]
  return np.stack(five + [hflip(c, stream) for c in five])


def flow_cache_path(split: str, num_frames: int, size: int, shots: int, seed: int) -> str:
  return os.path.join(cache_dir(), "two_stream", f"tvl1_{split}_f{num_frames}_s{size}_n{shots}_seed{seed}.npz")


@functools.cache
def load_flow(split: str, num_frames: int, size: int, shots: int, seed: int, verbose: bool = False) -> np.ndarray:
  """uint8 mean-subtracted flow (N, T−1, H, W, 2) of the clips of MovingShapesSource(split, shots=...),
  computed and written on first use (atomically: a crash leaves no partial file)."""
  path = flow_cache_path(split, num_frames, size, shots, seed)
  if not os.path.exists(path):
    clips = MovingShapesSource(split, num_frames=num_frames, size=size, shots=shots, seed=seed)
    flows, t0 = [], time.time()
    for i in range(len(clips)):
      flows.append(quantize_flow(subtract_mean_flow(tvl1_flow(clips[i]["frames"]))))
      if verbose and (i + 1) % 20 == 0:
        print(f"{split}: {i + 1}/{len(clips)} clips, {time.time() - t0:.0f} s", flush=True)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    partial = f"{path}.{os.getpid()}.partial.npz"
    np.savez(partial, flow=np.stack(flows), labels=clips.labels)
    os.replace(partial, path)
  with np.load(path) as f:
    return f["flow"]


class TwoStreamSource:
  """Clips of the moving shapes: source[i] → {"image": frames uint8 (T, H, W, 3) (spatial) or flow uint8
  (T−1, H, W, 2) (temporal), "label": motion}. `shots` clips of each class (0: the whole split)."""

  def __init__(self, split: str, *, stream: str, num_frames: int = 16, size: int = 32, shots: int = 0,
               seed: int = 3232):
    if stream not in STREAMS:
      raise DataError(f"two_stream.stream must be one of {STREAMS}, got {stream!r}")
    self.stream, self.split = stream, split
    self.name, self.num_classes, self.class_names = "moving_shapes", len(MOTIONS), MOTIONS
    self.clips = MovingShapesSource(split, num_frames=num_frames, size=size, shots=shots, seed=seed)
    self._flow = load_flow(split, num_frames, size, shots, seed) if stream == "temporal" else None
    # The frames drawn once (a few ms a clip): drawing 16 frames for each sampled one starved training.
    self._frames = (np.stack([self.clips[i]["frames"] for i in range(len(self.clips))])
                    if stream == "spatial" else None)

  def __len__(self):
    return len(self.clips)

  @property
  def labels(self) -> np.ndarray:
    return self.clips.labels

  def __getitem__(self, i) -> dict:
    if self.stream == "temporal":
      return {"image": self._flow[i], "label": self.clips.labels[i]}
    return {"image": self._frames[i], "label": self.clips.labels[i]}


def main(argv=None):
  p = argparse.ArgumentParser(description="Precompute the TV-L1 flow of the moving-shapes clips.")
  p.add_argument("--split", default="train")
  p.add_argument("--num_frames", type=int, default=16)
  p.add_argument("--size", type=int, default=32)
  p.add_argument("--shots", type=int, default=40)
  p.add_argument("--seed", type=int, default=3232)
  a = p.parse_args(argv)
  flow = load_flow(a.split, a.num_frames, a.size, a.shots, a.seed, verbose=True)
  print(flow_cache_path(a.split, a.num_frames, a.size, a.shots, a.seed), flow.shape)


if __name__ == "__main__":
  main()
