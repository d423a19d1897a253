"""The one precision setting of every run: `config.dtype`, the compute dtype.

"float32" or "bfloat16". Parameters and optimizer state are always float32; the model's matmuls
and activations run in `config.dtype`, while softmax, norm statistics, losses and metrics stay in
float32 (the layers in nn/ and the objectives cast for that). Every task builds its model through
`model_kwargs`, so the setting means the same thing for every model family.
"""

import jax.numpy as jnp

from papers_jax.errors import ConfigError

DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}


def compute_dtype(config):
  """`config.dtype` as a jnp dtype; a ConfigError names the choices."""
  name = config.get("dtype", "float32") or "float32"
  if name not in DTYPES:
    raise ConfigError(f"dtype={name!r}; choose one of {sorted(DTYPES)} (float16 is not supported)")
  return DTYPES[name]


def model_kwargs(config) -> tuple[str, dict]:
  """(name, keyword arguments) of `config.model` for `models.create`, with the run's precision."""
  kwargs = dict(config.model)
  name = kwargs.pop("name")
  for key in ("dtype", "param_dtype"):
    if key in kwargs:
      raise ConfigError(
          f"model.{key} is not a setting: precision is the top-level config.dtype for every model "
          f"(--config.dtype=bfloat16 for bfloat16 compute; parameters stay float32). Remove model.{key}.")
  return name, kwargs | {"dtype": compute_dtype(config), "param_dtype": jnp.float32}
