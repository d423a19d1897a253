"""Name → constructor registry shared by all model families.

A registered name takes flat keyword arguments, the `model.<key>` settings of a config. A constructor
may gather some of its settings in option groups: a keyword parameter whose default is a dataclass
instance (vit.py's `BlockOptions`, `FineTuneOptions`). `create` puts each flat key that names a
field of such a group into it, so `create("vit_base_patch16_224", mlp_ratio=2.0)` builds
`VisionTransformer(block=BlockOptions(mlp_ratio=2.0))`.

An image model's name also carries its preprocessing (timm's `pretrained_cfg`): the input size, mean,
std, crop_pct and interpolation its source checkpoint was trained and evaluated with.
`preprocessing(name)` returns them; a run's `data.mean`, `data.std` and `data.crop_pct` default to
them (core/config.py), and `papers-jax predict --model` uses them.
"""

import dataclasses
import fnmatch
import inspect
from collections.abc import Callable

from flax import nnx

from papers_jax.errors import ConfigError

_REGISTRY: dict[str, tuple[Callable[..., nnx.Module], dict]] = {}
_PREPROCESSING: dict[str, "Preprocessing"] = {}


@dataclasses.dataclass(frozen=True)
class Preprocessing:
  """How a model's source checkpoint expects its images: resize the shorter side to
  img_size / crop_pct with `interpolation`, centre-crop img_size, scale to [0, 1], then
  (x - mean) / std per channel (timm's pretrained_cfg: input_size, crop_pct, mean, std)."""
  img_size: int
  mean: tuple[float, ...]
  std: tuple[float, ...]
  crop_pct: float
  interpolation: str = "bicubic"


# The normalisations the published checkpoints use (timm.data.constants' names).
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
INCEPTION_MEAN, INCEPTION_STD = (0.5, 0.5, 0.5), (0.5, 0.5, 0.5)  # inputs in [-1, 1]: Google's ViT, Mixer
OPENAI_CLIP_MEAN, OPENAI_CLIP_STD = (0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711)


def register(name: str, constructor: Callable[..., nnx.Module], *, preprocessing: Preprocessing | None = None,
             **defaults):
  """Registers `name` as `constructor(**defaults, **overrides)`; an image model gives its `preprocessing`."""
  if name in _REGISTRY:
    raise ValueError(f"model {name!r} is registered twice")
  _REGISTRY[name] = (constructor, defaults)
  if preprocessing is not None:
    _PREPROCESSING[name] = preprocessing


def preprocessing(name: str) -> Preprocessing | None:
  """The image preprocessing of a registered name (see the module docstring); None for a text model."""
  if name not in _REGISTRY:
    raise ConfigError(f"unknown model name {name!r}; known models: {', '.join(list_models())}")
  return _PREPROCESSING.get(name)


def list_models(pattern: str = "*") -> list[str]:
  return sorted(n for n in _REGISTRY if fnmatch.fnmatch(n, pattern))


def model_config(name: str) -> dict:
  """The registered keyword arguments of a model (its row of the paper's table)."""
  if name not in _REGISTRY:
    raise ConfigError(f"unknown model name {name!r}; known models: {', '.join(list_models())}")
  return dict(_REGISTRY[name][1])


def model_class(name: str) -> type:
  """The class a registered name builds (e.g. to pick a converter's key map without building it)."""
  if name not in _REGISTRY:
    raise ConfigError(f"unknown model name {name!r}; known models: {', '.join(list_models())}")
  return _REGISTRY[name][0]


def create(name: str, *, rngs: nnx.Rngs | int = 0, pretrained=None, pretrained_source: str | None = None,
           **overrides) -> nnx.Module:
  """Builds a registered model; keyword overrides (num_classes, img_size, dtype, ...) win.

  `pretrained`: a timm / HF / OpenAI checkpoint file, a papers_jax params checkpoint directory, or
  True for the published checkpoint in the cache (models/pretrained.py); nothing is downloaded.
  `pretrained_source` names the file's layout when the model class has several converters.
  """
  if name not in _REGISTRY:
    raise ConfigError(f"unknown model name {name!r}; known models: {', '.join(list_models())}")
  constructor, defaults = _REGISTRY[name]
  parameters, open_ended = _parameters(constructor)
  if not open_ended:
    known = set(parameters) | {f for group in _groups(parameters).values() for f in group}
    unknown = sorted(set(overrides) - known)
    if unknown:
      raise ConfigError(f"model {name!r} ({constructor.__name__}) takes no setting {', '.join(unknown)}; remove it "
                        f"from the config (model.<key>, or the task setting that sets it, e.g. ssl.bn_group_size "
                        "for BatchNorm backbones only).")
  kwargs = sort_options(constructor, {**defaults, **overrides})
  if isinstance(rngs, int):
    rngs = nnx.Rngs(params=rngs)
  if pretrained is not None and pretrained is not False:
    from papers_jax.models import pretrained as weights
    return weights.build(name, constructor, kwargs, rngs, pretrained, pretrained_source)
  return constructor(**kwargs, rngs=rngs)


def _parameters(constructor) -> tuple[dict[str, inspect.Parameter], bool]:
  """(the constructor's keyword parameters, whether it takes any keyword): a class whose `__init__`
  passes **kwargs on to its base's (vit_hybrid.py's) has the base's parameters too."""
  inits = ([c.__init__ for c in constructor.__mro__ if "__init__" in vars(c)] if isinstance(constructor, type)
           else [constructor])
  parameters = {}
  for init in inits:
    own = inspect.signature(init).parameters
    parameters.update({k: p for k, p in own.items() if k not in parameters and p.kind is not p.VAR_KEYWORD})
    if not any(p.kind is p.VAR_KEYWORD for p in own.values()):
      return parameters, False
  return parameters, True


def _groups(parameters: dict[str, inspect.Parameter]) -> dict[str, set[str]]:
  """Option groups: parameter name → the field names of its dataclass default."""
  return {k: {f.name for f in dataclasses.fields(p.default)} for k, p in parameters.items()
          if dataclasses.is_dataclass(p.default) and not isinstance(p.default, type)}


def sort_options(constructor, kwargs: dict) -> dict:
  """Flat keyword arguments → the constructor's: the keys that name a field of an option group go into
  that group (see the module docstring); a group given whole is the starting point."""
  parameters, _ = _parameters(constructor)
  out = dict(kwargs)
  for group, fields in _groups(parameters).items():
    picked = {k: out.pop(k) for k in list(out) if k in fields}
    if picked:
      out[group] = dataclasses.replace(out.get(group, parameters[group].default), **picked)
  return out
