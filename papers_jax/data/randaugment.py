"""RandAugment (Cubuk et al. 2020) as timm implements it, with its config strings (`rand-m9-mstd0.5-inc1`).

Host-side, per example, on uint8 (H, W, C) images with PIL. Each image gets `n` ops drawn uniformly
with replacement; each op runs with probability `p` at magnitude ~ N(m, mstd) clipped to [0, 10],
mapped to the op's argument as timm's `LEVEL_TO_ARG` does. Geometric ops fill with the dataset mean
and resample bicubically, as timm's `create_transform(interpolation="bicubic")` sets them.
"""

import dataclasses
import re

import numpy as np
from PIL import Image, ImageEnhance, ImageOps

from papers_jax.errors import ConfigError

MAX_LEVEL = 10.0


# The ops: (PIL image, argument, fill) -> PIL image.
def _affine(img, matrix, fill):
  return img.transform(img.size, Image.Transform.AFFINE, matrix, resample=Image.Resampling.BICUBIC, fillcolor=fill)


def _solarize_add(img, add, fill, threshold=128):
  lut = [min(255, i + add) if i < threshold else i for i in range(256)]
  return img.point(lut * len(img.getbands())) if img.mode in ("L", "RGB") else img


def _posterize(img, bits, fill):
  # Keeps the `bits` high bits. Recent Pillow (13 here) refuses bits = 0, which "PosterizeIncreasing" reaches at
  # level 10 (m9 + mstd0.5 gives that about 2% of the time; timm then raises): zero bits is black.
  mask = ~(2 ** (8 - min(max(bits, 0), 8)) - 1) & 0xFF
  return img.point([i & mask for i in range(256)] * len(img.getbands()))


OPS = {
    "AutoContrast": lambda img, _, fill: ImageOps.autocontrast(img),
    "Equalize": lambda img, _, fill: ImageOps.equalize(img),
    "Invert": lambda img, _, fill: ImageOps.invert(img),
    "Rotate": lambda img, deg, fill: img.rotate(deg, resample=Image.Resampling.BICUBIC, fillcolor=fill),
    "Posterize": _posterize,
    "Solarize": lambda img, thresh, fill: ImageOps.solarize(img, thresh),
    "SolarizeAdd": _solarize_add,
    "Color": lambda img, f, fill: ImageEnhance.Color(img).enhance(f),
    "Contrast": lambda img, f, fill: ImageEnhance.Contrast(img).enhance(f),
    "Brightness": lambda img, f, fill: ImageEnhance.Brightness(img).enhance(f),
    "Sharpness": lambda img, f, fill: ImageEnhance.Sharpness(img).enhance(f),
    "ShearX": lambda img, f, fill: _affine(img, (1, f, 0, 0, 1, 0), fill),
    "ShearY": lambda img, f, fill: _affine(img, (1, 0, 0, f, 1, 0), fill),
    "TranslateXRel": lambda img, pct, fill: _affine(img, (1, 0, pct * img.size[0], 0, 1, 0), fill),
    "TranslateYRel": lambda img, pct, fill: _affine(img, (1, 0, 0, 0, 1, pct * img.size[1]), fill),
}


def _signed(x, negate):
  return -x if negate else x


# level in [0, 10] (and, for the ops with a random sign, whether to negate) -> the op's argument.
LEVEL_TO_ARG = {
    "AutoContrast": lambda level, negate: None,
    "Equalize": lambda level, negate: None,
    "Invert": lambda level, negate: None,
    "Rotate": lambda level, negate: _signed(level / MAX_LEVEL * 30.0, negate),
    "Posterize": lambda level, negate: int(level / MAX_LEVEL * 4),
    "PosterizeIncreasing": lambda level, negate: 4 - int(level / MAX_LEVEL * 4),
    "Solarize": lambda level, negate: min(256, int(level / MAX_LEVEL * 256)),
    "SolarizeIncreasing": lambda level, negate: 256 - min(256, int(level / MAX_LEVEL * 256)),
    "SolarizeAdd": lambda level, negate: min(128, int(level / MAX_LEVEL * 110)),
    "Color": lambda level, negate: level / MAX_LEVEL * 1.8 + 0.1,
    "ColorIncreasing": lambda level, negate: max(0.1, 1.0 + _signed(level / MAX_LEVEL * 0.9, negate)),
    "ShearX": lambda level, negate: _signed(level / MAX_LEVEL * 0.3, negate),
    "TranslateXRel": lambda level, negate: _signed(level / MAX_LEVEL * 0.45, negate),
}
for _name in ("Contrast", "Brightness", "Sharpness"):
  LEVEL_TO_ARG[_name] = LEVEL_TO_ARG["Color"]
  LEVEL_TO_ARG[_name + "Increasing"] = LEVEL_TO_ARG["ColorIncreasing"]
LEVEL_TO_ARG["ShearY"] = LEVEL_TO_ARG["ShearX"]
LEVEL_TO_ARG["TranslateYRel"] = LEVEL_TO_ARG["TranslateXRel"]

# timm's `_RAND_TRANSFORMS` and `_RAND_INCREASING_TRANSFORMS` (Cutout is random erasing, separately).
_COMMON = ("AutoContrast", "Equalize", "Invert", "Rotate")
_ENHANCE = ("Color", "Contrast", "Brightness", "Sharpness")
_GEOMETRIC = ("ShearX", "ShearY", "TranslateXRel", "TranslateYRel")
TRANSFORMS = _COMMON + ("Posterize", "Solarize", "SolarizeAdd") + _ENHANCE + _GEOMETRIC
INCREASING_TRANSFORMS = (_COMMON + ("PosterizeIncreasing", "SolarizeIncreasing", "SolarizeAdd")
                         + tuple(n + "Increasing" for n in _ENHANCE) + _GEOMETRIC)


def op_fn(name):
  """The PIL op behind a transform name ("ColorIncreasing" is "Color" with another level mapping)."""
  return OPS[name.removesuffix("Increasing")]


@dataclasses.dataclass(frozen=True)
class RandAugment:
  magnitude: float = MAX_LEVEL
  num_ops: int = 2
  prob: float = 0.5
  magnitude_std: float = 0.0
  increasing: bool = False
  exclude: tuple[str, ...] = ()  # op names left out (ViLT: "Invert", as captions name colours)

  @classmethod
  def parse(cls, spec: str) -> "RandAugment":
    """timm's config string: "rand" then any of -m<int> -n<int> -p<float> -mstd<float> -inc<0|1>."""
    parts = spec.split("-")
    if parts[0] != "rand":
      raise ConfigError(f"data.randaugment={spec!r}: expected a timm RandAugment string such as 'rand-m9-mstd0.5-inc1'")
    kwargs = {}
    for part in parts[1:]:
      match = re.fullmatch(r"(mstd|inc|m|n|p)(\d+(?:\.\d*)?)", part)
      if not match:
        raise ConfigError(f"data.randaugment={spec!r}: unknown section {part!r}; use m<int>, n<int>, p<float>, "
                          "mstd<float> or inc<0|1>")
      key, value = match.groups()
      if key == "m":
        kwargs["magnitude"] = float(int(value))
      elif key == "n":
        kwargs["num_ops"] = int(value)
      elif key == "p":
        kwargs["prob"] = float(value)
      elif key == "mstd":
        if float(value) > 100:  # timm reads this as "uniform in [0, m]"; not supported here
          raise ConfigError(f"data.randaugment={spec!r}: mstd > 100 (uniform magnitudes) is not supported")
        kwargs["magnitude_std"] = float(value)
      else:
        kwargs["increasing"] = bool(int(value))
    return cls(**kwargs)

  @property
  def transforms(self):
    names = INCREASING_TRANSFORMS if self.increasing else TRANSFORMS
    return tuple(n for n in names if n not in self.exclude)

  def __call__(self, image: np.ndarray, rng: np.random.Generator, fill) -> np.ndarray:
    """`fill`: uint8 colour per channel for the pixels that geometric ops uncover."""
    single = image.shape[-1] == 1
    img = Image.fromarray(image[:, :, 0] if single else image)
    fill = int(fill[0]) if single else tuple(int(v) for v in fill)
    names = self.transforms
    for index in rng.integers(0, len(names), size=self.num_ops):
      if rng.random() >= self.prob:
        continue
      level = self.magnitude
      if self.magnitude_std > 0:
        level = rng.normal(level, self.magnitude_std)
      level = min(max(float(level), 0.0), MAX_LEVEL)
      name = names[index]
      img = op_fn(name)(img, LEVEL_TO_ARG[name](level, rng.random() < 0.5), fill)
    out = np.asarray(img)
    return out[:, :, None] if single else out
