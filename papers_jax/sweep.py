"""Sweeps: a base config and a list of override points, and the ViT size names.

A sweep file `configs/sweeps/<name>.py` defines `get_sweep()` returning a `Sweep`:

  from papers_jax.sweep import Sweep, product
  def get_sweep():
    return Sweep(config="configs/vit/digits.py", points=product(size=["Ti/4", "S/4"], num_steps=[200, 400]))

`product(**axes)` crosses value lists, `zip_(**axes)` pairs them, and plain lists of dicts (or `+`
of several grids) are explicit points. A point's keys are config keys (`optimizer.lr`) plus `config`,
a config file[:args] of its own in place of the sweep's (to compare families, e.g. ViT and ResNet), and `size`,
which names a ViT width and patch the way big_vision and "Scaling Vision Transformers" do
(`mu, Ti, S, M, B, L, H, g, G` + `/patch`) and sets `model.embed_dim/depth/num_heads/mlp_ratio/patch_size`
(for ViT and MAE encoders). `tools/sweep.py` runs, collects and launches sweeps.
"""

import dataclasses
import itertools
import re

from papers_jax.errors import ConfigError

# name -> (width, depth, MLP width, heads): big_vision's `decode_variant` table.
VIT_SIZES = {
    "mu": (32, 1, 128, 2), "Ti": (192, 12, 768, 3), "S": (384, 12, 1536, 6), "M": (512, 12, 2048, 8),
    "B": (768, 12, 3072, 12), "L": (1024, 24, 4096, 16), "H": (1280, 32, 5120, 16), "g": (1408, 40, 6144, 16),
    "G": (1664, 48, 8192, 16),
}


def vit_size(name: str) -> dict:
  """'S/16' → the model overrides of that ViT width and patch size."""
  m = re.fullmatch(r"([A-Za-z]+)/(\d+)", name)
  if not m or m.group(1) not in VIT_SIZES:
    raise ConfigError(f"size {name!r}: give <width>/<patch> with width one of {list(VIT_SIZES)}, e.g. 'S/16'")
  width, depth, mlp, heads = VIT_SIZES[m.group(1)]
  return {"model.embed_dim": width, "model.depth": depth, "model.num_heads": heads, "model.mlp_ratio": mlp / width,
          "model.patch_size": int(m.group(2))}


def product(**axes) -> list[dict]:
  """Every combination of the axes' values: product(a=[1, 2], b=[3]) → [{a: 1, b: 3}, {a: 2, b: 3}]."""
  names = list(axes)
  return [dict(zip(names, values)) for values in itertools.product(*(axes[n] for n in names))]


def zip_(**axes) -> list[dict]:
  """The axes' values side by side: zip_(a=[1, 2], b=[3, 4]) → [{a: 1, b: 3}, {a: 2, b: 4}]."""
  lengths = {len(v) for v in axes.values()}
  if len(lengths) != 1:
    raise ConfigError(f"zip_ needs axes of one length, got {({k: len(v) for k, v in axes.items()})}")
  return [dict(zip(axes, values)) for values in zip(*axes.values())]


@dataclasses.dataclass
class Sweep:
  config: str                 # the base config file[:args], as --config takes it
  points: list[dict]          # overrides per point
  fixed: dict = dataclasses.field(default_factory=dict)  # overrides every point shares

  def config_of(self, point: dict) -> str:
    """The config file[:args] a point trains: its own `config`, else the sweep's."""
    return point.get("config", self.fixed.get("config", self.config))

  def overrides(self, point: dict) -> dict:
    """The config overrides of a point: fixed ones, then its own, with `size` expanded."""
    out = {}
    for key, value in {**self.fixed, **point}.items():
      if key != "config":
        out.update(vit_size(value) if key == "size" else {key: value})
    return out


def point_name(point: dict) -> str:
  """A directory name for a point: 'size=S-16,num_steps=200'."""
  text = ",".join(f"{k}={v}" for k, v in point.items())
  return re.sub(r"[^A-Za-z0-9_.,=+-]", "-", text) or "base"


def point_values(name: str) -> dict:
  """A point's values back from its directory name, numbers as numbers: 'a=1,b=S-16' → {a: 1, b: 'S-16'}
  (values that held characters other than letters, digits and _.+- come back with '-' in their place)."""
  out = {}
  for part in name.split(","):
    key, sep, value = part.partition("=")
    if not sep:  # a value with a comma in it: part of the previous one
      if out:
        last = next(reversed(out))
        out[last] = f"{out[last]},{part}"
      continue
    try:
      out[key] = int(value)
    except ValueError:
      try:
        out[key] = float(value)
      except ValueError:
        out[key] = value
  return out
