"""Declarative key maps from foreign (PyTorch) state dicts to our parameter paths.

A key map is a list of `Rule`s: a regex over the checkpoint's key, the '/'-joined path of our
parameter (a `re` template, so `\\1` copies a captured block index) and an optional hook that
turns their tensor into our layout. Each model family registers one key map per source, keyed
by (source, model class name), e.g. ("timm", "VisionTransformer") or ("hf", "VisionTransformer").
"""

import dataclasses
import math
import re
from collections.abc import Callable

import numpy as np

# hook(their array, our shape) -> array in our layout. Returning another shape reports a mismatch.
Hook = Callable[[np.ndarray, tuple[int, ...]], np.ndarray]


@dataclasses.dataclass(frozen=True)
class Rule:
  """`src` (regex, full match) → `dst` (template); `hook` converts the layout.

  `resample(array) -> array` resizes a tensor whose shape depends on the input size (position
  embeddings) to the model's shape; the loader applies it only when the shapes differ.
  An empty `dst` marks a tensor that our model computes instead of storing (fixed sin-cos tables):
  it is not loaded, and `hook(their array, None)` must raise CheckpointError if it disagrees.
  """
  src: str
  dst: str
  hook: Hook | None = None
  resample: Callable[[np.ndarray], np.ndarray] | None = None


@dataclasses.dataclass(frozen=True)
class KeyMap:
  """`rules(model)` builds the rules for one model (hooks may need its geometry).

  `classes_key` names the checkpoint's classifier weight, whose first dim is the number of classes.
  `prepare(state_dict) -> state_dict`, if given, rewrites their keys first (e.g. fuses HF's separate
  q/k/v projections into one qkv tensor, which the rules then map like timm's).

  Export (`convert.export_state_dict`) reads the rules backwards. `export_rules(model)`, if given,
  replaces `rules` there: the same rules narrowed to the one key layout that export writes (see
  `one_layout`), where `rules` read several. `unprepare(state_dict, model) -> state_dict` is the
  inverse of `prepare` (splits what it fused, puts back tied copies and fixed tables); a key map
  with a `prepare` and no `unprepare` cannot export.
  """
  rules: Callable[[object], list[Rule]]
  classes_key: str | None = None
  prepare: Callable[[dict], dict] | None = None
  export_rules: Callable[[object], list[Rule]] | None = None
  unprepare: Callable[[dict, object], dict] | None = None


_KEY_MAPS: dict[tuple[str, str], KeyMap] = {}


def register_key_map(source: str, model_class: str, key_map: KeyMap):
  if (source, model_class) in _KEY_MAPS:
    raise ValueError(f"key map ({source!r}, {model_class!r}) is registered twice")
  _KEY_MAPS[(source, model_class)] = key_map


def get_key_map(source: str, model_class: str) -> KeyMap:
  if (source, model_class) not in _KEY_MAPS:
    known = ", ".join(f"{s}/{m}" for s, m in sorted(_KEY_MAPS))
    raise ValueError(f"no key map for source {source!r} and model {model_class!r}; known: {known}")
  return _KEY_MAPS[(source, model_class)]


def sources() -> list[str]:
  return sorted({s for s, _ in _KEY_MAPS})


def sources_for(model_class: str) -> list[str]:
  """The sources with a key map for `model_class` (e.g. ["hf", "openai"] for "CLIP")."""
  return sorted(s for s, c in _KEY_MAPS if c == model_class)


def match(rules: list[Rule], key: str) -> tuple[Rule, str] | tuple[None, None]:
  """The first rule whose `src` matches `key` and the path it maps to."""
  for rule in rules:
    m = re.fullmatch(rule.src, key)
    if m:
      return rule, m.expand(rule.dst)
  return None, None


def one_layout(rules: list[Rule], *, optional: bool = True) -> list[Rule]:
  """`rules` with every `src` narrowed to one key layout, for export: each `(?:a|b|...)` becomes its
  first alternative `a`, and each optional `(?:x)?` becomes `x` (`optional`) or nothing."""
  def narrow(src: str) -> str:
    src = re.sub(r"\(\?:([^()]*)\)\?", lambda m: m.group(1) if optional else "", src)
    return re.sub(r"\(\?:([^()|]*)(?:\|[^()]*)?\)", lambda m: m.group(1), src)
  return [dataclasses.replace(rule, src=narrow(rule.src)) for rule in rules]


def split_qkv(state_dict: dict, names: tuple[str, str, str]) -> dict:
  """The inverse of fusing separate q, k, v projections: each `<prefix>.qkv.<weight|bias>` becomes
  `<prefix>.<name>.<weight|bias>` for the three `names`, split in thirds along dim 0."""
  out = {}
  for key, value in state_dict.items():
    m = re.fullmatch(r"(.*)\.qkv\.(weight|bias)", key)
    if m is None:
      out[key] = value
      continue
    for name, part in zip(names, np.split(np.asarray(value), 3, axis=0)):
      out[f"{m.group(1)}.{name}.{m.group(2)}"] = np.ascontiguousarray(part)
  return out


# ------------------------------------------------------------------------------------ hooks


def with_inverse(hook: Hook, inverse: Callable[[np.ndarray], np.ndarray]) -> Hook:
  """Marks `hook` as invertible: `inverse(our array) -> their array` (used by export)."""
  hook.inverse = inverse
  return hook


def linear(num_in_axes: int = 1) -> Hook:
  """torch Linear weight (out, in) → our kernel (*in_axes, *out_axes).

  The flat in / out dims are split into our axes only when their sizes agree, e.g. a fused QKV
  (3*D, D) → (D, 3, heads, head_dim) (timm's reshape order) or an output projection
  (D, D) → (heads, head_dim, D).
  """
  def hook(w, shape):
    w = w.T
    ins, outs = shape[:num_in_axes], shape[num_in_axes:]
    if w.shape == (math.prod(ins), math.prod(outs)):
      w = w.reshape(shape)
    return w

  def inverse(x):
    return x.reshape(math.prod(x.shape[:num_in_axes]), math.prod(x.shape[num_in_axes:])).T
  return with_inverse(hook, inverse)


def reshape(x, shape):
  """A bias (or any vector) split into our axes, e.g. qkv bias (3*D,) → (3, heads, head_dim)."""
  return x.reshape(shape) if x.size == math.prod(shape) and x.ndim == 1 else x


def conv_kernel(w, shape):
  """torch Conv2d weight (out, in, kh, kw) → ours (kh, kw, in, out)."""
  del shape
  return w.transpose(2, 3, 1, 0)


def conv1d_kernel(w, shape):
  """torch Conv1d weight (out, in, k) → ours (k, in, out)."""
  del shape
  return w.transpose(2, 1, 0)


with_inverse(reshape, lambda x: x.reshape(-1))
with_inverse(conv_kernel, lambda x: x.transpose(3, 2, 0, 1))
with_inverse(conv1d_kernel, lambda x: x.transpose(2, 1, 0))


def source_key(rule: Rule, path: str) -> str | None:
  """Their key for our `path` under `rule` (the rule read backwards), or None if it does not map there.

  `rule.src` must be a plain key with escaped dots and capture groups that `rule.dst` refers to
  (as every key map here is written); each group's text is recovered from our path.
  """
  if not rule.dst:
    return None
  pattern, seen = "", set()
  for part in re.split(r"(\\\d)", rule.dst):
    if re.fullmatch(r"\\\d", part):
      n = int(part[1])
      pattern += f"(?P=g{n})" if n in seen else f"(?P<g{n}>[^/]+?)"
      seen.add(n)
    else:
      pattern += re.escape(part)
  m = re.fullmatch(pattern, path)
  if m is None:
    return None
  captured, groups = m.groupdict(), iter(range(1, 100))
  if any(f"g{n}" not in captured for n in range(1, re.compile(rule.src).groups + 1)):
    return None  # a group that our path does not record
  key = re.sub(r"\((?!\?)(?:[^()]|\([^()]*\))*\)", lambda _: captured[f"g{next(groups)}"], rule.src)
  key = key.replace("\\.", ".")
  return key if re.fullmatch(rule.src, key) and match([rule], key)[1] == path else None
