"""Per-example preprocessing on the host: numpy/PIL ops on uint8 (H, W, C) images.

Random ops take an explicit `np.random.Generator`, so a (seed, index) pair fixes the output.
Every op returns uint8 (H, W, C); single-channel images keep their channel axis.
"""

import math

import numpy as np
from PIL import Image


def _to_pil(image: np.ndarray) -> Image.Image:
  if image.dtype != np.uint8 or image.ndim != 3 or image.shape[-1] not in (1, 3, 4):
    raise ValueError(f"Expected a uint8 (H, W, C) image with C in (1, 3, 4), got "
                     f"{image.dtype} {image.shape}.")
  if image.shape[-1] == 1:
    return Image.fromarray(image[:, :, 0])  # Mode 'L'.
  return Image.fromarray(image)  # Mode 'RGB' or 'RGBA'.


def _from_pil(image: Image.Image) -> np.ndarray:
  array = np.asarray(image)
  return array[:, :, None] if array.ndim == 2 else array


def _resize(image: np.ndarray, width: int, height: int, resample) -> np.ndarray:
  # PIL's resize filters are antialiased when downscaling (the support grows with the scale).
  return _from_pil(_to_pil(image).resize((width, height), resample))


def inception_crop(image: np.ndarray, rng: np.random.Generator, size: int,
                   scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3)) -> np.ndarray:
  """Random-resized crop (Inception; timm/torchvision RandomResizedCrop), bilinear to (size, size).

  Picks a crop covering `scale` of the area with log-uniform aspect ratio in `ratio`; after 10
  failed attempts falls back to a central crop with the aspect ratio clamped to `ratio`.
  """
  height, width = image.shape[:2]
  area = height * width
  log_ratio = (math.log(ratio[0]), math.log(ratio[1]))
  for _ in range(10):
    target_area = area * rng.uniform(scale[0], scale[1])
    aspect_ratio = math.exp(rng.uniform(log_ratio[0], log_ratio[1]))
    w = int(round(math.sqrt(target_area * aspect_ratio)))
    h = int(round(math.sqrt(target_area / aspect_ratio)))
    if 0 < w <= width and 0 < h <= height:
      top = int(rng.integers(0, height - h + 1))
      left = int(rng.integers(0, width - w + 1))
      break
  else:
    in_ratio = width / height
    if in_ratio < min(ratio):
      w, h = width, int(round(width / min(ratio)))
    elif in_ratio > max(ratio):
      w, h = int(round(height * max(ratio))), height
    else:
      w, h = width, height
    top, left = (height - h) // 2, (width - w) // 2
  # Crop before resizing (not `resize(box=...)`), so no pixels outside the crop leak in.
  return _resize(image[top:top + h, left:left + w], size, size, Image.BILINEAR)


INTERPOLATIONS = {"bicubic": Image.BICUBIC, "bilinear": Image.BILINEAR}


def resize_shorter_then_center_crop(image: np.ndarray, size: int, crop_pct: float = 0.875,
                                    interpolation: str = "bicubic") -> np.ndarray:
  """Standard ImageNet eval: resize of the shorter side to size / crop_pct (bicubic by default), center crop."""
  if not 0 < crop_pct <= 1:
    raise ValueError(f"crop_pct must be in (0, 1], got {crop_pct}.")
  if interpolation not in INTERPOLATIONS:
    raise ValueError(f"interpolation must be one of {sorted(INTERPOLATIONS)}, got {interpolation!r}")
  short = int(size / crop_pct)
  height, width = image.shape[:2]
  if min(height, width) != short:
    # As torchvision's Resize(int): the longer side is truncated, not rounded.
    if height <= width:
      new_height, new_width = short, int(short * width / height)
    else:
      new_height, new_width = int(short * height / width), short
    image = _resize(image, new_width, new_height, INTERPOLATIONS[interpolation])
    height, width = new_height, new_width
  top = int(round((height - size) / 2))
  left = int(round((width - size) / 2))
  return image[top:top + size, left:left + size]


def resize(image: np.ndarray, size: int) -> np.ndarray:
  """Bilinear resize to (size, size); returns the image unchanged if it already has that size."""
  if image.shape[:2] == (size, size):
    return image
  return _resize(image, size, size, Image.BILINEAR)


def _pad_and_crop(image: np.ndarray, padding: int, top: int, left: int) -> np.ndarray:
  """Zero-pads by `padding` on each side and crops the original size at (top, left)."""
  height, width = image.shape[:2]
  padded = np.pad(image, ((padding, padding), (padding, padding), (0, 0)))
  return padded[top:top + height, left:left + width]


def random_crop_with_padding(image: np.ndarray, rng: np.random.Generator,
                             padding: int) -> np.ndarray:
  """CIFAR-style: zero-pad by `padding` on each side, then a random crop of the original size."""
  top, left = rng.integers(0, 2 * padding + 1, size=2)
  return _pad_and_crop(image, padding, int(top), int(left))


def random_flip(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
  """Horizontal flip with probability 0.5."""
  if rng.random() < 0.5:
    return np.ascontiguousarray(image[:, ::-1])
  return image


def random_translate(image: np.ndarray, rng: np.random.Generator, max_shift: int) -> np.ndarray:
  """Shifts by integers (dy, dx) in [-max_shift, max_shift], filling with zeros."""
  dy, dx = rng.integers(-max_shift, max_shift + 1, size=2)
  # Content moves by (dy, dx): out[y, x] = image[y - dy, x - dx].
  return _pad_and_crop(image, max_shift, max_shift - int(dy), max_shift - int(dx))


def random_affine(image: np.ndarray, rng: np.random.Generator, *, degrees: float = 10.0,
                  scale=(0.9, 1.1), translate: float = 0.1) -> np.ndarray:
  """Random rotation, scaling and sub-pixel translation about the centre (bilinear, zero fill).

  `translate` is a fraction of the image size. Useful for tiny images (digits), where integer
  shifts alone give little variety.
  """
  height, width = image.shape[:2]
  angle = math.radians(rng.uniform(-degrees, degrees))
  s = rng.uniform(*scale)
  tx, ty = rng.uniform(-translate, translate, 2) * (width, height)
  # PIL maps each output pixel (x, y) to the input pixel (a x + b y + c, d x + e y + f).
  cos, sin = math.cos(angle) / s, math.sin(angle) / s
  cx, cy = (width - 1) / 2, (height - 1) / 2
  a, b, d, e = cos, sin, -sin, cos
  c = cx - a * (cx + tx) - b * (cy + ty)
  f = cy - d * (cx + tx) - e * (cy + ty)
  out = _to_pil(image).transform((width, height), Image.Transform.AFFINE, (a, b, c, d, e, f),
                                 resample=Image.Resampling.BILINEAR, fillcolor=0)
  return _from_pil(out)


def erasing_box(rng: np.random.Generator, height: int, width: int, *, min_area: float = 0.02,
                max_area: float = 1 / 3, min_aspect: float = 0.3):
  """timm's RandomErasing box (one per image): area uniform in [min_area, max_area] of the image,
  aspect ratio h / w log-uniform in [min_aspect, 1 / min_aspect]; 10 attempts, then no box.
  Returns (top, left, h, w) or None."""
  log_aspect = (math.log(min_aspect), math.log(1 / min_aspect))
  for _ in range(10):
    target_area = rng.uniform(min_area, max_area) * height * width
    aspect = math.exp(rng.uniform(*log_aspect))
    h = int(round(math.sqrt(target_area * aspect)))
    w = int(round(math.sqrt(target_area / aspect)))
    if w < width and h < height:
      return int(rng.integers(0, height - h + 1)), int(rng.integers(0, width - w + 1)), h, w
  return None


def random_erasing(image: np.ndarray, rng: np.random.Generator, probability: float, mean, std) -> np.ndarray:
  """timm's RandomErasing(probability, mode="pixel", max_count=1) on a uint8 image.

  timm erases after normalisation, with N(0, 1) noise per pixel and channel. The noise is drawn in
  that normalised space and mapped back through `mean` and `std` (in [0, 1] units, as data.mean),
  so after the device's normalisation it is the same noise, up to rounding to uint8 and clipping to
  [0, 255] (|z| beyond about 2 standard deviations).
  """
  if rng.random() >= probability:
    return image
  box = erasing_box(rng, *image.shape[:2])
  if box is None:
    return image
  top, left, h, w = box
  channels = image.shape[-1]
  z = rng.standard_normal((h, w, channels))
  mean = np.broadcast_to(np.asarray(mean, np.float64), (channels,))
  std = np.broadcast_to(np.asarray(std, np.float64), (channels,))
  image = image.copy()
  image[top:top + h, left:left + w] = np.clip(np.round((z * std + mean) * 255), 0, 255).astype(np.uint8)
  return image


# The principal components of ImageNet's RGB pixel covariance (pixels in [0, 1]), as fb.resnet.torch and
# timm's references use them for AlexNet's lighting noise: eigenvalues and unit eigenvectors (columns).
IMAGENET_PCA_EIGVAL = np.array([0.2175, 0.0188, 0.0045])
IMAGENET_PCA_EIGVEC = np.array([[-0.5675, 0.7192, 0.4009],
                                [-0.5808, -0.0045, -0.8140],
                                [-0.5836, -0.6948, 0.4203]])


def pca_lighting(image: np.ndarray, rng: np.random.Generator, alpha_std: float = 0.1,
                 eigval=IMAGENET_PCA_EIGVAL, eigvec=IMAGENET_PCA_EIGVEC) -> np.ndarray:
  """AlexNet's colour augmentation (§4.1): every pixel of an RGB image gets the same offset
  Σ_i α_i λ_i p_i over the principal components (p_i, λ_i) of the data's RGB covariance, with
  α_i ~ N(0, alpha_std) drawn once per image. uint8 in and out (offsets scaled by 255, then rounded and clipped)."""
  if image.shape[-1] != 3:
    raise ValueError(f"PCA lighting needs RGB images, not {image.shape[-1]} channel(s); set data.pca_lighting=0")
  alpha = rng.normal(0.0, alpha_std, 3)
  offset = 255.0 * (np.asarray(eigvec) @ (alpha * np.asarray(eigval)))
  return np.clip(np.rint(image.astype(np.float64) + offset), 0, 255).astype(np.uint8)
