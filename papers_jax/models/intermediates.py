"""Named intermediate features, the one contract of every backbone (timm's `forward_intermediates`,
big_vision's names).

`model.forward_intermediates(x, indices=None, stop_early=False, ...)` returns a dict:
  - "stem": the first embedding (ViT / Mixer: patch tokens before position embeddings; ResNet /
    Swin: the stem's feature map);
  - token models, per block i: ViT (and the CLIP text tower) "block{i:02d}/+sa" (after the attention
    residual), "block{i:02d}/+mlp" (the block's output) and, with `return_attention=True`,
    "block{i:02d}/attn" (probabilities (batch, heads, queries, keys) from nn/attention.py's op);
    Mixer "block{i:02d}/+token", "block{i:02d}/+channel";
  - hierarchical models, per stage i: "stage{i}", NHWC;
  - unless `stop_early`: "encoded" (the final, normalised features, what `forward_features`
    returns), "pre_logits" (`forward_head(..., pre_logits=True)`: what a probe reads) and, with a
    head, "logits" (equal to the model's forward).
`indices` picks the blocks or stages reported: None = all, an int n = the last n, a sequence = those
(negative counts from the end). `stop_early` ends the forward after the last one picked.

Every named feature is also a tap: under `perturbed({name: delta})` the forward adds `delta` to that
feature where it is computed, so the rest of the network sees `feature + delta`, and the gradient of
any output with respect to `delta` (at zero) is its gradient with respect to the feature. This is
how evaluators/interpret.py takes Grad-CAM's gradients on any backbone. A model marks a point with
`x = tap(name, x)`; block-local names ("+sa") are prefixed through `scope("block03/")`.
"""

import contextlib
import contextvars
from collections.abc import Sequence


def select(indices: int | Sequence[int] | None, n: int) -> list[int]:
  """The sorted block / stage indices in [0, n) that `indices` picks."""
  if indices is None:
    return list(range(n))
  if isinstance(indices, int):
    if not 0 <= indices <= n:
      raise ValueError(f"indices={indices}: there are {n} blocks to take the last of")
    return list(range(n - indices, n))
  picked = sorted({i % n if -n <= i < n else _out_of_range(i, n) for i in indices})
  return picked


def _out_of_range(i: int, n: int):
  raise ValueError(f"index {i} is out of range for {n} blocks")


def block_key(i: int, name: str) -> str:
  return f"block{i:02d}/{name}"


def add_head_outputs(out: dict, model, features, **head_kwargs) -> dict:
  """Adds "encoded", "pre_logits" and (with a head) "logits" through `model.forward_head`."""
  out["encoded"] = features = tap("encoded", features)
  out["pre_logits"] = model.forward_head(features, pre_logits=True, **head_kwargs)
  if any(getattr(model, name, None) is not None for name in ("head", "fc", "classifier")):
    out["logits"] = model.forward_head(features, **head_kwargs)
  return out


# (perturbations by full name, names used so far) of the innermost `perturbed`, and the name prefix.
_PERTURBATIONS = contextvars.ContextVar("intermediates_perturbations", default=None)
_PREFIX = contextvars.ContextVar("intermediates_prefix", default="")


def tap(name: str, x):
  """`x`, plus the perturbation of this named point (the current scope's prefix + `name`) when one
  is active; a no-op outside `perturbed`."""
  active = _PERTURBATIONS.get()
  if active is None:
    return x
  deltas, used = active
  full = _PREFIX.get() + name
  if full not in deltas:
    return x
  used.add(full)
  return x + deltas[full].astype(x.dtype)


@contextlib.contextmanager
def scope(prefix: str):
  """Names tapped inside get `prefix` in front (a block's "+sa" becomes "block03/+sa")."""
  token = _PREFIX.set(_PREFIX.get() + prefix)
  try:
    yield
  finally:
    _PREFIX.reset(token)


@contextlib.contextmanager
def perturbed(deltas: dict):
  """Adds `deltas[name]` to the named features of forwards run inside (trace time: enter it inside
  the function that jit / grad transforms). Raises ValueError on leaving when a name was never
  reached, so that a misspelt layer fails instead of giving zero gradients."""
  used = set()
  token = _PERTURBATIONS.set((dict(deltas), used))
  try:
    yield
  finally:
    _PERTURBATIONS.reset(token)
  missing = sorted(set(deltas) - used)
  if missing:
    raise ValueError(f"no named feature {missing} was reached in the forward; the model's names are the keys "
                     "of its forward_intermediates (models/intermediates.py)")
