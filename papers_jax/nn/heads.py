"""Token pooling for classification heads."""

import jax

POOLS = ("token", "avg", "max", "")


def pool_tokens(x: jax.Array, kind: str, num_prefix_tokens: int = 1) -> jax.Array:
  """(batch, length, dim) → (batch, dim): class token, mean or max of the patch tokens; '' keeps all."""
  if kind == "token":
    return x[:, 0]
  if kind == "avg":
    return x[:, num_prefix_tokens:].mean(axis=1)
  if kind == "max":
    return x[:, num_prefix_tokens:].max(axis=1)
  if kind == "":
    return x
  raise ValueError(f"unknown pooling {kind!r}; choose from {POOLS}")
