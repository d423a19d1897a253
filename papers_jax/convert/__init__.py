"""Weight conversion: PyTorch state dicts → our models, and the params checkpoints of `init_from`.

  sd = load_state_dict("vit_base_patch16_224.safetensors")
  model = models.create("vit_base_patch16_224", img_size=384)
  print(load_torch_weights(model, sd, "timm"))   # raises CheckpointError with a diff if keys disagree
  save_params(nnx.to_pure_dict(nnx.state(model, nnx.Param)), "ckpt/vit_b16_384")

Parameter paths are '/'-joined keys of the params pure dict ('blocks/0/attn/qkv/kernel').
torch is imported only to read .pth files; .safetensors files and numpy state dicts need none.
"""

import dataclasses
import math
import os
import re

import jax
import numpy as np
from flax import nnx

from papers_jax.convert import hf_mae, timm_vit  # noqa: F401  (register their key maps)
from papers_jax.convert import timm_mixer, timm_swin  # noqa: F401  (register their key maps)
from papers_jax.convert import timm_resnet  # noqa: F401  (registers its key map)
from papers_jax.convert import timm_mixnet, torchvision_cnn  # noqa: F401  (register their key maps)
from papers_jax.convert import hf_gpt2  # noqa: F401  (registers its key map)
from papers_jax.convert import hf_bert  # noqa: F401  (registers the BERT and FNet key maps)
from papers_jax.convert import hf_clip, openai_clip  # noqa: F401  (register their key maps)
from papers_jax.convert import hf_whisper  # noqa: F401  (registers its key map)
from papers_jax.convert import hf_detr  # noqa: F401  (registers its key map)
from papers_jax.convert import hf_sam  # noqa: F401  (registers its key map)
from papers_jax.convert import hf_patchtst  # noqa: F401  (registers the PatchTST key maps)
from papers_jax.convert import hf_wav2vec2  # noqa: F401  (registers its key map)
from papers_jax.convert import diffusers_unet  # noqa: F401  (registers its key map)
from papers_jax.convert import ts2vec  # noqa: F401  (registers its key map)
from papers_jax.convert import hf_vilt  # noqa: F401  (registers its key map)
from papers_jax.convert import timm_poolformer  # noqa: F401  (registers its key map)
from papers_jax.convert import hf_blip  # noqa: F401  (registers its key map)
from papers_jax.convert import hf_beit, hf_imagegpt  # noqa: F401  (register their key maps)
from papers_jax.convert import hf_groupvit  # noqa: F401  (registers its key map)
from papers_jax.convert import hf_dpt  # noqa: F401  (registers its key map)
from papers_jax.convert.keymap import (KeyMap, Rule, get_key_map, match, register_key_map, source_key,  # noqa: F401
                                      sources)
from papers_jax.errors import CheckpointError
from papers_jax.nn.embed import resample_pos_embed

_TORCH_SUFFIXES = (".pth", ".pt", ".bin", ".ckpt")


# ----------------------------------------------------------------------------------- report


def _shape(shape) -> str:
  return str(tuple(int(d) for d in shape))


@dataclasses.dataclass
class ConversionReport:
  """What a conversion did. Lists hold our '/'-joined paths, except `unexpected` (their keys).

  `missing` and `mismatched` params kept their initial values.
  """
  source: str = ""
  loaded: list[str] = dataclasses.field(default_factory=list)
  missing: list[str] = dataclasses.field(default_factory=list)
  unexpected: list[str] = dataclasses.field(default_factory=list)
  mismatched: list[str] = dataclasses.field(default_factory=list)
  resized: list[str] = dataclasses.field(default_factory=list)
  ours: dict[str, tuple] = dataclasses.field(default_factory=dict)  # shapes, by our path
  theirs: dict[str, tuple] = dataclasses.field(default_factory=dict)  # shapes, by their key or our path

  def line(self, kind: str, key: str) -> str:
    if kind == "missing":
      return f"missing  {key} {_shape(self.ours[key])}"
    if kind == "unexpected":
      return f"unexpected  {key} {_shape(self.theirs[key])}"
    if kind == "mismatched":
      return f"shape  {key} ours {_shape(self.ours[key])} theirs {_shape(self.theirs[key])}"
    return f"resized  {key} {_shape(self.theirs[key])} -> {_shape(self.ours[key])}"

  def diff(self, keys: dict[str, list[str]] | None = None) -> str:
    """One line per key; `keys` (kind → keys) selects which, by default all but `loaded`."""
    if keys is None:
      keys = dict(resized=self.resized, missing=self.missing, unexpected=self.unexpected,
                  mismatched=self.mismatched)
    return "\n".join(self.line(kind, k) for kind, ks in keys.items() for k in ks)

  def __str__(self):
    total = len(self.ours)
    head = f"loaded {len(self.loaded)}/{total} params" + (f" from {self.source}" if self.source else "")
    counts = [f"{len(v)} {k}" for k, v in (("resized", self.resized), ("missing", self.missing),
                                          ("unexpected", self.unexpected), ("shape mismatches", self.mismatched))
              if v]
    diff = self.diff()
    return head + (f" ({', '.join(counts)})" if counts else "") + (f"\n{diff}" if diff else "")


def _matches(key: str, patterns) -> bool:
  return any(re.search(p, key) for p in patterns)


def _raise_if_any(report: ConversionReport, bad: dict[str, list[str]], what: str, fix: str):
  """CheckpointError listing the `bad` keys (kind → keys), if there are any."""
  if any(bad.values()):
    raise CheckpointError(f"{what} does not match the model:\n{report.diff(bad)}\n{fix}")


# ------------------------------------------------------------------------ pure-dict paths


def _flatten(tree, prefix=()) -> dict[str, object]:
  """Nested dict → {'a/0/b': leaf}; int keys print as numbers."""
  flat = {}
  for k, v in tree.items():
    path = prefix + (str(k),)
    if isinstance(v, dict):
      flat.update(_flatten(v, path))
    else:
      flat["/".join(path)] = v
  return flat


def _map_with_path(fn, tree, prefix=()):
  """Rebuilds `tree` (same keys, int keys kept) with leaves `fn(path, leaf)`."""
  out = {}
  for k, v in tree.items():
    path = prefix + (str(k),)
    out[k] = _map_with_path(fn, v, path) if isinstance(v, dict) else fn("/".join(path), v)
  return out


def _to_numpy(x) -> np.ndarray:
  if hasattr(x, "detach"):  # a torch tensor; numpy has no bfloat16, so widen it first
    x = x.detach().cpu()
    if str(x.dtype) == "torch.bfloat16":
      x = x.float()
    # A copy: jax may alias a numpy buffer on CPU, and torch updates some tensors in place
    # (BatchNorm running statistics), which would silently change the converted arrays.
    return np.array(x.numpy(), copy=True)
  return np.asarray(x)


def _place(value: np.ndarray, current):
  """`value` as an array like `current` (a jax.Array, ShapeDtypeStruct or numpy array): dtype and sharding."""
  value = np.asarray(value, dtype=current.dtype)
  if isinstance(current, (jax.Array, jax.ShapeDtypeStruct)):
    sharding = getattr(current, "sharding", None)
    return jax.device_put(value, sharding) if sharding is not None else jax.device_put(value)
  return value


# ------------------------------------------------------------------------- state dicts


def load_state_dict(path: str) -> dict[str, object]:
  """Reads a state dict from .safetensors (numpy arrays) or .pth/.pt/.bin (torch tensors).

  .pth files are read with `weights_only=True`; a top-level "model" / "state_dict" entry is unwrapped.
  """
  if not os.path.isfile(path):
    raise CheckpointError(f"checkpoint file {path} does not exist; pass the path of a .safetensors or .pth file.")
  if path.endswith(".safetensors"):
    import safetensors.numpy
    try:
      sd = safetensors.numpy.load_file(path)
    except Exception as e:  # safetensors raises several types for a damaged header.
      raise CheckpointError(f"cannot read {path} as safetensors ({type(e).__name__}: {e}); "
                            "download it again or check that it is a .safetensors file.") from e
  elif path.endswith(_TORCH_SUFFIXES):
    try:
      import torch
    except ImportError as e:
      raise CheckpointError(f"reading {path} needs torch: pip install -c constraints.txt -e '.[torch]', "
                            "or use the .safetensors version of the checkpoint.") from e
    try:
      sd = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
      raise CheckpointError(f"cannot read {path} with torch.load(weights_only=True) ({type(e).__name__}: {e}); "
                            "if it pickles more than tensors, re-save its state dict with "
                            "torch.save(model.state_dict(), ...) or use the .safetensors version.") from e
  else:
    raise CheckpointError(f"unknown checkpoint format {path}; expected one of .safetensors, "
                          f"{', '.join(_TORCH_SUFFIXES)}.")
  for wrapper in ("model", "state_dict"):
    if isinstance(sd, dict) and isinstance(sd.get(wrapper), dict):
      sd = sd[wrapper]
  if not isinstance(sd, dict) or not all(hasattr(v, "shape") for v in sd.values()):
    raise CheckpointError(f"{path} does not hold a state dict of tensors (name → tensor); "
                          "save one with torch.save(model.state_dict(), ...).")
  return sd


def checkpoint_num_classes(state_dict, source: str, model_class: str = "VisionTransformer") -> int:
  """The number of classes of the checkpoint's classifier (0 when it has none)."""
  key = get_key_map(source, model_class).classes_key
  return int(state_dict[key].shape[0]) if key and key in state_dict else 0


def load_torch_weights(model: nnx.Module, state_dict, source: str = "timm", *, strict: bool = True,
                       allow_missing=(), allow_unexpected=(), resize_pos_embed: bool = True) -> ConversionReport:
  """Copies a PyTorch state dict into `model` (in place) through the key map of (source, model class).

  Strict: a missing, unexpected or shape-mismatched key raises CheckpointError listing them all,
  and nothing is changed. `allow_missing` / `allow_unexpected` are regexes (re.search) over our
  paths / their keys; allowed missing or mismatched params keep their init. Position embeddings
  of another grid are resampled when `resize_pos_embed`. A model made with `nnx.eval_shape` (no
  memory for an init that would be overwritten) works when the checkpoint provides every param.
  """
  key_map = get_key_map(source, type(model).__name__)
  rules = key_map.rules(model)
  if key_map.prepare is not None:
    state_dict = key_map.prepare(dict(state_dict))
  state = nnx.state(model, (nnx.Param, nnx.BatchStat))  # BatchNorm running statistics are loaded too
  ours = nnx.to_pure_dict(state)
  flat = _flatten(ours)
  report = ConversionReport(source=source, ours={k: tuple(v.shape) for k, v in flat.items()})
  new = {}
  for key, value in state_dict.items():
    rule, dst = match(rules, key)
    if rule is not None and not rule.dst:  # a table our model computes: checked, not loaded
      rule.hook(_to_numpy(value), None)
      continue
    if rule is None or dst not in flat:
      report.unexpected.append(key)
      report.theirs[key] = tuple(value.shape)
      continue
    if dst in new or dst in report.mismatched:
      raise ValueError(f"key map bug: two checkpoint keys map to {dst} (the second is {key})")
    want = report.ours[dst]
    x = _to_numpy(value)
    if rule.hook is not None:
      x = rule.hook(x, want)
    if x.shape != want and rule.resample is not None and resize_pos_embed:
      try:
        resampled = rule.resample(x)
      except ValueError:  # e.g. a non-square grid; reported as a shape mismatch below
        resampled = x
      if resampled.shape == want:
        report.resized.append(dst)
        report.theirs[dst] = x.shape
        x = resampled
    if x.shape != want:
      report.mismatched.append(dst)
      report.theirs[dst] = x.shape
      continue
    new[dst] = x
    report.loaded.append(dst)
  report.missing = [k for k in flat if k not in new and k not in report.mismatched]
  if strict:
    bad = dict(missing=[k for k in report.missing if not _matches(k, allow_missing)],
               unexpected=[k for k in report.unexpected if not _matches(k, allow_unexpected)],
               mismatched=[k for k in report.mismatched if not _matches(k, allow_missing)])
    _raise_if_any(report, bad, f"the {source} state dict",
                  "Create the model that matches the checkpoint (name, num_classes, global_pool, class_token), "
                  "or pass allow_missing= / allow_unexpected= regexes for params to leave at init.")
  abstract = [k for k, v in flat.items() if k not in new and isinstance(v, jax.ShapeDtypeStruct)]
  if abstract:
    raise CheckpointError(f"the model was created abstractly (nnx.eval_shape) but the {source} state dict does not "
                          f"provide {', '.join(abstract)}; create the model with models.create(...) so that "
                          "they keep their init.")
  nnx.replace_by_pure_dict(state, _map_with_path(lambda p, v: _place(new[p], v) if p in new else v, ours))
  nnx.update(model, state)
  return report


def export_state_dict(model: nnx.Module, source: str = "timm") -> dict[str, np.ndarray]:
  """The model's params and BatchNorm statistics in `source`'s layout: its key map read backwards.

  `load_torch_weights(model, export_state_dict(model, s), s)` restores the model exactly, and the
  reference implementation loads the result with `load_state_dict(strict=True)` (tested for the
  timm families and HF's BERT, FNet, GPT-2, CLIP and ViTMAE). Key maps that rewrite the checkpoint's
  keys before mapping them (`prepare`, as HF's separate q/k/v) export through their `unprepare`.
  HF layouts are written as the installed transformers (5) names them.
  """
  cls = type(model).__name__
  key_map = get_key_map(source, cls)
  if key_map.prepare is not None and key_map.unprepare is None:
    raise CheckpointError(f"exporting a {cls} to the {source} layout is not supported: its converter rewrites "
                          "the checkpoint's keys before mapping them, and has no inverse of that.")
  rules = (key_map.export_rules or key_map.rules)(model)
  out, unmapped = {}, []
  for path, value in _flatten(nnx.to_pure_dict(nnx.state(model, (nnx.Param, nnx.BatchStat)))).items():
    found = next(((rule, key) for rule in rules if (key := source_key(rule, path)) is not None), None)
    if found is None:
      unmapped.append(path)
      continue
    rule, key = found
    x = np.asarray(value)
    if rule.hook is not None:
      if not hasattr(rule.hook, "inverse"):
        raise CheckpointError(f"cannot export {path}: the {source} key map converts it with "
                              f"{getattr(rule.hook, '__name__', rule.hook)}, which has no inverse.")
      x = rule.hook.inverse(x)
    out[key] = np.ascontiguousarray(x)
  if unmapped:
    raise CheckpointError(f"the {source} key map for {cls} has no rule for {', '.join(unmapped)}")
  return key_map.unprepare(out, model) if key_map.unprepare is not None else out


def save_state_dict(state_dict: dict[str, np.ndarray], path: str):
  """Writes a name → array state dict as .safetensors (readable by timm / HF without papers_jax)."""
  import safetensors.numpy
  if not path.endswith(".safetensors"):
    raise CheckpointError(f"{path}: exported state dicts are written as .safetensors")
  safetensors.numpy.save_file(state_dict, path)


# ------------------------------------------------------------------- params checkpoints


def save_params(params, out_dir: str, *, overwrite: bool = False, model_state=None):
  """Writes `{"params": params}` (a pure dict; with `model_state`, BatchNorm statistics and the like, too) as
  an orbax checkpoint directory for `config.init_from` or a frozen teacher."""
  import orbax.checkpoint as ocp
  out_dir = os.path.abspath(out_dir)
  if os.path.exists(out_dir) and not overwrite:
    raise CheckpointError(f"{out_dir} already exists; remove it or choose another output directory.")
  checkpointer = ocp.StandardCheckpointer()
  item = {"params": params} | ({"model_state": model_state} if model_state else {})
  checkpointer.save(out_dir, item, force=overwrite)
  checkpointer.wait_until_finished()
  checkpointer.close()


def _restore_params_numpy(path: str, entry: str = "params", required: bool = True) -> dict | None:
  """The checkpoint's `entry` ("params", or "model_state": BatchNorm statistics, ...) as numpy;
  None when it lacks an entry that is not `required`."""
  import orbax.checkpoint as ocp
  how = "create one with tools/convert_weights.py or point at a run's checkpoints/<step>/state directory"
  if not os.path.isdir(path):
    raise CheckpointError(f"params checkpoint {path} does not exist; {how}.")
  try:
    metadata = ocp.StandardCheckpointer().metadata(path)
    tree = metadata.item_metadata.tree if hasattr(metadata, "item_metadata") else metadata
  except Exception as e:  # orbax raises many types for a foreign or damaged directory.
    raise CheckpointError(f"{path} is not a readable orbax checkpoint ({type(e).__name__}: {e}); {how}.") from e
  if not isinstance(tree, dict) or entry not in tree:
    if not required:
      return None
    keys = sorted(tree) if isinstance(tree, dict) else type(tree).__name__
    raise CheckpointError(f"checkpoint {path} has no {entry!r} entry (it has {keys}); {how}.")
  item = {entry: tree[entry]}
  # Restoring as numpy is independent of the mesh it was written on; only params are read.
  restore_args = jax.tree.map(lambda _: ocp.RestoreArgs(restore_type=np.ndarray), item)
  try:
    restored = ocp.PyTreeCheckpointer().restore(
        path, args=ocp.args.PyTreeRestore(item=item, restore_args=restore_args, partial_restore=True))
  except Exception as e:
    raise CheckpointError(f"cannot restore the {entry} of {path} ({type(e).__name__}: {e}); {how}.") from e
  return restored[entry]


def _under_prefix(flat: dict, prefix: str, path: str, entry: str) -> dict:
  """The entries of `flat` under `prefix` ('backbone/': an SSL run's encoder), prefix removed."""
  if not prefix:
    return flat
  inner = {k[len(prefix):]: v for k, v in flat.items() if k.startswith(prefix)}
  if not inner and entry == "params":
    tops = sorted({k.split("/")[0] + "/" for k in flat})
    raise CheckpointError(f"params checkpoint {path} has no params under {prefix!r} (its top level: {tops}); "
                          "set config.init_prefix to one of those, or to '' for the whole checkpoint.")
  return inner


def _square_side(n: int) -> int | None:
  side = math.isqrt(n)
  return side if side * side == n else None


def init_params_from_checkpoint(path: str, params, *, skip=("^head/",), prefix: str = ""):
  """Returns `params` (a pure dict of jax.Arrays) with values read from a params checkpoint.

  Same shape → loaded (onto the current sharding); `pos_embed` of another square grid →
  resampled; a param matching a `skip` regex keeps its init when the checkpoint has it with
  another shape or lacks it, and checkpoint entries matching `skip` that the model lacks are
  ignored (e.g. an MAE decoder when fine-tuning its encoder as a ViT). Anything else missing,
  unexpected or mismatched raises CheckpointError. `prefix` reads only the checkpoint's params under
  it ('backbone/': the encoder of an SSL run, whose state also holds heads and a momentum encoder).
  Returns (params, report string).
  """
  path = os.path.abspath(path)
  theirs = _under_prefix(_flatten(_restore_params_numpy(path)), prefix, path, "params")
  flat = _flatten(params)
  report = ConversionReport(source=path, ours={k: tuple(v.shape) for k, v in flat.items()},
                            theirs={k: tuple(v.shape) for k, v in theirs.items()})
  prefix = ("cls_token" in flat) + ("dist_token" in flat)
  new = {}
  for key, current in flat.items():
    if key not in theirs:
      report.missing.append(key)
      continue
    value, want = theirs[key], tuple(current.shape)
    if value.shape != want and key.split("/")[-1] == "pos_embed" and value.ndim == 3 and value.shape[2] == want[2]:
      old_side, new_side = _square_side(value.shape[1] - prefix), _square_side(want[1] - prefix)
      if old_side and new_side:
        value = np.asarray(resample_pos_embed(value, (new_side, new_side), (old_side, old_side), prefix))
        report.resized.append(key)
    if value.shape != want:
      report.mismatched.append(key)
      continue
    new[key] = _place(value, current)
    report.loaded.append(key)
  report.unexpected = [k for k in theirs if k not in flat]
  bad = dict(missing=[k for k in report.missing if not _matches(k, skip)],
             unexpected=[k for k in report.unexpected if not _matches(k, skip)],
             mismatched=[k for k in report.mismatched if not _matches(k, skip)])
  _raise_if_any(report, bad, f"params checkpoint {path}",
                "Create the model the checkpoint was written for (name, num_classes, global_pool, class_token), "
                "or add regexes to config.init_skip for params whose shape changed (they keep their init).")
  return _map_with_path(lambda p, v: new.get(p, v), params), str(report)


def init_frozen_from_checkpoint(path: str, model_state, prefix: str):
  """`model_state` with every entry under `prefix` (a frozen module: DeiT's teacher) read from the params and
  model state of the checkpoint at `path`, at the same path without the prefix. Strict: an entry under the
  prefix that the checkpoint lacks, or has with another shape, raises CheckpointError."""
  path = os.path.abspath(path)
  theirs = _flatten(_restore_params_numpy(path))
  theirs |= _flatten(_restore_params_numpy(path, "model_state", required=False) or {})
  bad = []

  def load(key, current):
    if not key.startswith(prefix):
      return current
    value = theirs.get(key[len(prefix):])
    if value is None or tuple(np.shape(value)) != tuple(current.shape):
      bad.append(f"{key} {tuple(current.shape)}: " + ("missing" if value is None else f"{np.shape(value)} there"))
      return current
    return _place(value, current)
  out = _map_with_path(load, model_state)
  if bad:
    raise CheckpointError(f"checkpoint {path} does not fit the frozen module under {prefix!r}:\n  "
                          + "\n  ".join(bad[:10]) + ("\n  ..." if len(bad) > 10 else "")
                          + "\nBuild that module as the checkpoint's run did (name and settings).")
  return out


def init_model_state_from_checkpoint(path: str, model_state, *, prefix: str = ""):
  """`model_state` (a pure dict: BatchNorm running statistics, ...) with the entries that the
  checkpoint's model state has at the same path (under `prefix`) and shape. Returns
  (model_state, loaded paths); a checkpoint without model state loads nothing."""
  path = os.path.abspath(path)
  restored = _restore_params_numpy(path, "model_state", required=False)
  theirs = _under_prefix(_flatten(restored), prefix, path, "model_state") if restored else {}
  loaded = []

  def load(key, current):
    value = theirs.get(key)
    if value is None or tuple(np.shape(value)) != tuple(current.shape):
      return current
    loaded.append(key)
    return _place(value, current)
  return _map_with_path(load, model_state), loaded
