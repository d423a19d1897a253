"""Name → constructor registry shared by all model families."""

import fnmatch
import inspect
from collections.abc import Callable

from flax import nnx

from papers_jax.errors import ConfigError

_REGISTRY: dict[str, tuple[Callable[..., nnx.Module], dict]] = {}


def register(name: str, constructor: Callable[..., nnx.Module], **defaults):
  """Registers `name` as `constructor(**defaults, **overrides)`."""
  if name in _REGISTRY:
    raise ValueError(f"model {name!r} is registered twice")
  _REGISTRY[name] = (constructor, defaults)


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
  parameters = inspect.signature(constructor.__init__ if isinstance(constructor, type) else constructor).parameters
  if not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values()):
    unknown = sorted(set(overrides) - set(parameters))
    if unknown:
      raise ConfigError(f"model {name!r} ({constructor.__name__}) takes no setting {', '.join(unknown)}; remove it "
                        f"from the config (model.<key>, or the task setting that sets it, e.g. ssl.bn_group_size "
                        "for BatchNorm backbones only).")
  if isinstance(rngs, int):
    rngs = nnx.Rngs(params=rngs)
  if pretrained is not None and pretrained is not False:
    from papers_jax.models import pretrained as weights
    return weights.build(name, constructor, {**defaults, **overrides}, rngs, pretrained, pretrained_source)
  return constructor(**{**defaults, **overrides}, rngs=rngs)
