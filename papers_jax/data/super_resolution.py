"""Data of single-image super-resolution: bicubic degradation as MATLAB's `imresize`, low/high-resolution
pairs, and the folders of DIV2K / Set5 / Set14-style datasets.

Bicubic degradation (`imresize`, numpy): MATLAB's `imresize(img, 1/scale, 'bicubic')`, the degradation every
classic SR benchmark is made with (DIV2K's LR_bicubic, Set5, Set14, ...): Keys' cubic kernel with a = −0.5,
antialiased when shrinking (the kernel stretched by 1/scale, 4·scale taps wide), output pixel x sampling
the input at x/scale + ½(1 − 1/scale) (1-based, MATLAB's), weights normalised to sum to one, and the border
handled by mirroring the indices (symmetric padding), the rows resized before the columns. The choice made
here: the whole resize runs in float64 and is rounded to uint8 once at the end (as BasicSR's numpy port, and
its scripts that make the LR images); MATLAB on uint8 input rounds after each dimension, which can move a
pixel by one grey level. tests/test_super_resolution.py checks the interior against torch's antialiased
bicubic (the same kernel; torch renormalises at the border instead of mirroring).

Pairs (`degrade`): an HR image is cut to a multiple of the scale ("modcrop") and shrunk; the example is
{"lr": uint8 (h, w, C), "hr": uint8 (h·scale, w·scale, C)}. `random_pair_crop` cuts aligned patches (a
random HR patch and the LR patch under it) and `flip_rotate` is the SR papers' augmentation: a horizontal
flip, a vertical flip and a transpose, each with probability ½ (BasicSR's `augment(hflip, rotation)`: the
eight symmetries of the square).

Folders (`SRFolderSource`, `data.name = "sr_folder"`): `<data_dir>/<split>/HR/*.png` (or the images directly
in `<data_dir>/<split>/`) are the HR images; when `<data_dir>/<split>/LR_bicubic/X<scale>/` exists its images
are the paired LR inputs, matched by name (`0001.png` ↔ `0001x2.png` or `0001.png`, DIV2K's naming), else
the LR image is made by `imresize`. Set5 / Set14 / BSD100 / Urban100 unpacked as `<root>/Set5/HR/*.png`
read with `data.eval_split = "Set5"`.
"""

import os

import numpy as np

from papers_jax.data.sources import IMAGE_EXTENSIONS, decode_image
from papers_jax.errors import DataError


def _cubic(x):
  """Keys' cubic convolution kernel with a = −0.5 (MATLAB's `cubic`)."""
  ax = np.abs(x)
  ax2, ax3 = ax ** 2, ax ** 3
  return ((1.5 * ax3 - 2.5 * ax2 + 1) * (ax <= 1)
          + (-0.5 * ax3 + 2.5 * ax2 - 4 * ax + 2) * ((ax > 1) & (ax <= 2)))


def resize_matrix(in_len: int, out_len: int, scale: float, antialias: bool = True) -> np.ndarray:
  """(out_len, in_len) float64 matrix of MATLAB's bicubic `imresize` along one axis (module docstring)."""
  width = 4.0
  kernel = _cubic
  if scale < 1 and antialias:
    width = 4.0 / scale
    kernel = lambda x: scale * _cubic(scale * x)  # noqa: E731
  x = np.arange(1, out_len + 1, dtype=np.float64)
  u = x / scale + 0.5 * (1 - 1 / scale)
  left = np.floor(u - width / 2)
  taps = int(np.ceil(width)) + 2
  indices = left[:, None] + np.arange(taps)[None, :]  # 1-based
  weights = kernel(u[:, None] - indices)
  weights /= weights.sum(1, keepdims=True)
  mirror = np.concatenate([np.arange(in_len), np.arange(in_len - 1, -1, -1)])  # symmetric padding
  columns = mirror[np.mod(indices.astype(np.int64) - 1, 2 * in_len)]
  matrix = np.zeros((out_len, in_len))
  np.add.at(matrix, (np.repeat(np.arange(out_len), taps), columns.ravel()), weights.ravel())
  return matrix


def imresize(image: np.ndarray, scale: float, *, round_to_uint8: bool = True) -> np.ndarray:
  """MATLAB's `imresize(image, scale, 'bicubic')` of an (H, W[, C]) image; uint8 out (rounded) by default,
  else float64 in the input's range."""
  h, w = image.shape[:2]
  out_h, out_w = int(np.ceil(h * scale)), int(np.ceil(w * scale))
  x = image.astype(np.float64)
  rows, cols = resize_matrix(h, out_h, scale), resize_matrix(w, out_w, scale)
  y = np.einsum("ah,hw...->aw...", rows, x)
  y = np.einsum("bw,aw...->ab...", cols, y)
  if not round_to_uint8:
    return y
  return np.clip(np.round(y), 0, 255).astype(np.uint8)


def modcrop(image: np.ndarray, scale: int) -> np.ndarray:
  h, w = image.shape[:2]
  return image[:h - h % scale, :w - w % scale]


def degrade(hr: np.ndarray, scale: int) -> dict:
  """{"lr", "hr"}: the HR image cut to a multiple of `scale` and its bicubic ×1/scale (uint8)."""
  hr = modcrop(np.asarray(hr), scale)
  return {"lr": imresize(hr, 1.0 / scale), "hr": hr}


MARGIN = 3  # LR pixels: the antialiased kernel reaches 2 + 2 / scale LR pixels, at most 3 for scale >= 2


def degrade_patch(hr: np.ndarray, scale: int, lr_size: int, rng=None) -> tuple:
  """(LR patch of lr_size, the HR patch above it) with LR = MATLAB-bicubic ×1/scale of the whole HR image,
  computed on the patch plus a MARGIN (the same numbers, far cheaper on a 2K image). The patch is random with
  `rng`, else central."""
  hr = modcrop(np.asarray(hr), scale)
  h, w = hr.shape[0] // scale, hr.shape[1] // scale
  if h < lr_size or w < lr_size:
    raise DataError(f"an HR image of {hr.shape[0]}×{hr.shape[1]} is smaller than the {lr_size * scale}-pixel "
                    "patch (super_resolution.hr_crop); lower hr_crop or remove the image")
  if rng is None:
    top, left = (h - lr_size) // 2, (w - lr_size) // 2
  else:
    top, left = int(rng.integers(0, h - lr_size + 1)), int(rng.integers(0, w - lr_size + 1))
  t0, l0 = max(top - MARGIN, 0), max(left - MARGIN, 0)
  t1, l1 = min(top + lr_size + MARGIN, h), min(left + lr_size + MARGIN, w)
  lr = imresize(hr[t0 * scale:t1 * scale, l0 * scale:l1 * scale], 1.0 / scale)
  return (lr[top - t0:top - t0 + lr_size, left - l0:left - l0 + lr_size],
          hr[top * scale:(top + lr_size) * scale, left * scale:(left + lr_size) * scale])


def random_pair_crop(lr: np.ndarray, hr: np.ndarray, lr_size: int, scale: int, rng) -> tuple:
  """A random lr_size patch of `lr` and the (lr_size·scale) patch of `hr` it was made from."""
  h, w = lr.shape[:2]
  if h < lr_size or w < lr_size:
    raise DataError(f"an LR image of {h}×{w} is smaller than the {lr_size}×{lr_size} patch "
                    "(super_resolution.hr_crop / scale); lower hr_crop or remove the image")
  top, left = int(rng.integers(0, h - lr_size + 1)), int(rng.integers(0, w - lr_size + 1))
  return (lr[top:top + lr_size, left:left + lr_size],
          hr[top * scale:(top + lr_size) * scale, left * scale:(left + lr_size) * scale])


def center_pair_crop(lr: np.ndarray, hr: np.ndarray, lr_size: int, scale: int) -> tuple:
  h, w = lr.shape[:2]
  if h < lr_size or w < lr_size:
    raise DataError(f"an LR image of {h}×{w} is smaller than the {lr_size}×{lr_size} evaluation patch "
                    "(super_resolution.hr_crop / scale); lower hr_crop or remove the image")
  top, left = (h - lr_size) // 2, (w - lr_size) // 2
  return (lr[top:top + lr_size, left:left + lr_size],
          hr[top * scale:(top + lr_size) * scale, left * scale:(left + lr_size) * scale])


def flip_rotate(lr: np.ndarray, hr: np.ndarray, rng) -> tuple:
  """The same random horizontal flip, vertical flip and transpose (each p = ½) of both images."""
  flips = rng.random(3) < 0.5
  if flips[0]:
    lr, hr = lr[:, ::-1], hr[:, ::-1]
  if flips[1]:
    lr, hr = lr[::-1], hr[::-1]
  if flips[2]:
    lr, hr = lr.transpose(1, 0, 2), hr.transpose(1, 0, 2)
  return np.ascontiguousarray(lr), np.ascontiguousarray(hr)


def _images(folder: str) -> list[str]:
  return sorted(os.path.join(folder, f) for f in os.listdir(folder) if f.lower().endswith(IMAGE_EXTENSIONS))


class SRFolderSource:
  """HR images of a folder, with their paired LR images when the folder has them (module docstring)."""

  def __init__(self, root: str, split: str, scale: int):
    split_dir = os.path.join(root, split)
    if not os.path.isdir(split_dir):
      raise DataError(f"{split_dir} does not exist: data.name='sr_folder' reads <data_dir>/<split>/HR/*.png (or "
                      "the images directly in <data_dir>/<split>/), e.g. DIV2K's DIV2K_train_HR as train/HR")
    hr_dir = os.path.join(split_dir, "HR")
    self.hr_paths = _images(hr_dir if os.path.isdir(hr_dir) else split_dir)
    if not self.hr_paths:
      raise DataError(f"no images ({', '.join(IMAGE_EXTENSIONS)}) in {hr_dir if os.path.isdir(hr_dir) else split_dir}")
    lr_dir = os.path.join(split_dir, "LR_bicubic", f"X{scale}")
    self.lr_paths = None
    if os.path.isdir(lr_dir):
      by_stem = {os.path.splitext(os.path.basename(p))[0]: p for p in _images(lr_dir)}
      self.lr_paths = []
      for path in self.hr_paths:
        stem = os.path.splitext(os.path.basename(path))[0]
        match = by_stem.get(f"{stem}x{scale}") or by_stem.get(stem)
        if match is None:
          raise DataError(f"{lr_dir} has no LR image for {path} (expected {stem}x{scale}.png or {stem}.png)")
        self.lr_paths.append(match)
    self.name, self.split, self.scale = "sr_folder", split, scale

  def __len__(self) -> int:
    return len(self.hr_paths)

  def __getitem__(self, i) -> dict:
    i = int(i)
    hr = decode_image(self.hr_paths[i])
    if self.lr_paths is None:
      return {"image": hr}
    lr = decode_image(self.lr_paths[i])
    h, w = lr.shape[:2]
    if hr.shape[0] < h * self.scale or hr.shape[1] < w * self.scale:
      raise DataError(f"{self.hr_paths[i]} ({hr.shape[0]}×{hr.shape[1]}) is smaller than {self.scale}× its LR "
                      f"image {self.lr_paths[i]} ({h}×{w})")
    return {"image": hr[:h * self.scale, :w * self.scale], "lr": lr}
