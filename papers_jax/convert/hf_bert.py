"""HF transformers BERT and FNet state dicts → `papers_jax.models.bert` / `papers_jax.models.fnet`.

Key layouts read (transformers 5 kept BERT's and FNet's names; older hub checkpoints differ only in):
  - the base-model prefix: `bert.` / `fnet.` in task models, none in a bare BertModel / FNetModel
    state dict (either loads into any of our classes; the heads the checkpoint lacks stay missing);
  - LayerNorm `gamma` / `beta` in the oldest checkpoints (e.g. bert-base-uncased's pytorch_model.bin)
    for today's `weight` / `bias`;
  - `embeddings.position_ids`, a persistent buffer before transformers 4.31: checked to be 0..n-1, not loaded.
The MLM decoder is tied: `cls.predictions.decoder.weight` is the word-embedding table and
`cls.predictions.decoder.bias` is `cls.predictions.bias`. A state dict may hold both copies or only
one of each; duplicates are checked equal and dropped, and an untied decoder is refused (our
decoder is the embedding table). HF's separate query / key / value projections are stacked into one
(3D, D) tensor first, in the order of our fused kernel (embed, 3, heads, head_dim).
Export writes today's names (`weight` / `bias`, the `bert.` / `fnet.` prefix except for a bare
BertModel / FNetModel, separate q/k/v, both copies of the tied decoder), as HF's `state_dict()` does.
"""

import re

import numpy as np

from papers_jax.convert.keymap import KeyMap, Rule, linear, one_layout, register_key_map, reshape, split_qkv
from papers_jax.errors import CheckpointError

_QKV = re.compile(r"(.*\.attention\.self)\.(query|key|value)\.(weight|bias)")
_W, _B = r"(?:weight|gamma)", r"(?:bias|beta)"  # LayerNorm params, today's and the oldest names


def _numpy(x) -> np.ndarray:
  if hasattr(x, "detach"):
    x = x.detach().cpu()
    return (x.float() if str(x.dtype) == "torch.bfloat16" else x).numpy()
  return np.asarray(x)


def _fuse_qkv(state_dict: dict) -> dict:
  """Replaces each layer's query, key, value by `<layer>.attention.self.qkv.{weight,bias}` (q; k; v)."""
  groups: dict[tuple[str, str], dict[str, str]] = {}
  for key in state_dict:
    if m := _QKV.fullmatch(key):
      groups.setdefault((m.group(1), m.group(3)), {})[m.group(2)] = key
  out = dict(state_dict)
  for (prefix, kind), keys in groups.items():
    if set(keys) != {"query", "key", "value"}:
      continue  # incomplete: the leftover keys are reported as unexpected
    out[f"{prefix}.qkv.{kind}"] = np.concatenate([_numpy(state_dict[keys[w]]) for w in ("query", "key", "value")])
    for key in keys.values():
      del out[key]
  return out


def _merge_tied(state_dict: dict, copy: str, original: str) -> dict:
  """Keeps one of two tied tensors under `original`; refuses them if they differ."""
  if copy not in state_dict:
    return state_dict
  out = dict(state_dict)
  value = out.pop(copy)
  if original not in out:
    out[original] = value
  elif not np.array_equal(_numpy(value), _numpy(out[original])):
    raise CheckpointError(f"{copy} differs from {original}: the checkpoint's MLM decoder is not tied to "
                          f"{original}, but ours is; convert a checkpoint trained with tied weights.")
  return out


def _prepare(base: str, fuse_qkv: bool):
  def prepare(state_dict: dict) -> dict:
    embeddings = next((k for k in (f"{base}.embeddings.word_embeddings.weight", "embeddings.word_embeddings.weight")
                       if k in state_dict), f"{base}.embeddings.word_embeddings.weight")
    state_dict = _merge_tied(state_dict, "cls.predictions.decoder.weight", embeddings)
    state_dict = _merge_tied(state_dict, "cls.predictions.decoder.bias", "cls.predictions.bias")
    return _fuse_qkv(state_dict) if fuse_qkv else state_dict
  return prepare


def _unprepare(base: str, split: bool):
  """The inverse of `_prepare`: separate q/k/v, and the decoder's tied copies beside the MLM head."""
  def unprepare(state_dict: dict, model) -> dict:
    del model
    out = split_qkv(state_dict, ("query", "key", "value")) if split else dict(state_dict)
    if "cls.predictions.bias" in out:
      out["cls.predictions.decoder.weight"] = out[f"{base}.embeddings.word_embeddings.weight"].copy()
      out["cls.predictions.decoder.bias"] = out["cls.predictions.bias"].copy()
    return out
  return unprepare


def _export_rules(rules, bare: str):
  """One layout: LayerNorm `weight` / `bias`, the base-model prefix unless the model is the bare `bare`."""
  return lambda model: one_layout(rules(model), optional=type(model).__name__ != bare)


def _check_position_ids(x, _):
  x = np.asarray(x)
  if x.ndim != 2 or x.shape[0] != 1 or not np.array_equal(x[0], np.arange(x.shape[1])):
    raise CheckpointError(f"embeddings.position_ids {tuple(x.shape)} is not 0..n-1, the positions our model uses.")
  return x


def _norm(src: str, dst: str) -> list[Rule]:
  return [Rule(src + r"\." + _W, dst + "/scale"), Rule(src + r"\." + _B, dst + "/bias")]


def _dense(src: str, dst: str) -> list[Rule]:
  """torch Linear (out, in) → our Dense kernel (in, out) and bias."""
  return [Rule(src + r"\.weight", dst + "/kernel", linear(1)), Rule(src + r"\.bias", dst + "/bias")]


def _embeddings(p: str, d: str) -> list[Rule]:
  e = p + r"embeddings\."
  return [
      Rule(e + r"word_embeddings\.weight", d + "embeddings/word_embeddings"),
      Rule(e + r"position_embeddings\.weight", d + "embeddings/position_embeddings"),
      Rule(e + r"token_type_embeddings\.weight", d + "embeddings/token_type_embeddings"),
      Rule(e + r"position_ids", "", _check_position_ids),
      *_norm(e + "LayerNorm", d + "embeddings/norm"),
  ]


def _heads(p: str, d: str) -> list[Rule]:
  """The pooler and every task head of either family (a head our model lacks is reported unexpected)."""
  return [
      *_dense(p + r"pooler\.dense", d + "pooler"),
      *_dense(r"cls\.predictions\.transform\.dense", "mlm_head/transform"),
      *_norm(r"cls\.predictions\.transform\.LayerNorm", "mlm_head/norm"),
      Rule(r"cls\.predictions\.bias", "mlm_head/bias"),
      *_dense(r"cls\.seq_relationship", "nsp_head"),
      *_dense(r"classifier", "classifier"),
      *_dense(r"qa_outputs", "qa_outputs"),
  ]


def _ffn(layer: str, d: str) -> list[Rule]:
  return [
      *_dense(layer + r"intermediate\.dense", d + r"layers/\1/mlp/fc1"),
      *_dense(layer + r"output\.dense", d + r"layers/\1/mlp/fc2"),
      *_norm(layer + r"output\.LayerNorm", d + r"layers/\1/mlp_norm"),
  ]


def _bert_rules(model) -> list[Rule]:
  p, d = r"(?:bert\.)?", ("" if type(model).__name__ == "BertModel" else "bert/")
  layer = p + r"encoder\.layer\.(\d+)\."
  return [
      *_embeddings(p, d),
      Rule(layer + r"attention\.self\.qkv\.weight", d + r"layers/\1/attn/qkv/kernel", linear(1)),  # → (D, 3, H, hd)
      Rule(layer + r"attention\.self\.qkv\.bias", d + r"layers/\1/attn/qkv/bias", reshape),
      Rule(layer + r"attention\.output\.dense\.weight", d + r"layers/\1/attn/proj/kernel", linear(2)),
      Rule(layer + r"attention\.output\.dense\.bias", d + r"layers/\1/attn/proj/bias"),
      *_norm(layer + r"attention\.output\.LayerNorm", d + r"layers/\1/attn_norm"),
      *_ffn(layer, d),
      *_heads(p, d),
  ]


def _fnet_rules(model) -> list[Rule]:
  p, d = r"(?:fnet\.)?", ("" if type(model).__name__ == "FNetModel" else "fnet/")
  layer = p + r"encoder\.layer\.(\d+)\."
  return [
      *_embeddings(p, d),
      *_dense(p + r"embeddings\.projection", d + "embeddings/projection"),
      *_norm(layer + r"fourier\.output\.LayerNorm", d + r"layers/\1/mix_norm"),
      *_ffn(layer, d),
      *_heads(p, d),
  ]


for _cls in ("BertModel", "BertForPreTraining", "BertForSequenceClassification", "BertForTokenClassification",
             "BertForQuestionAnswering"):
  register_key_map("hf", _cls, KeyMap(_bert_rules, classes_key="classifier.weight", prepare=_prepare("bert", True),
                                      export_rules=_export_rules(_bert_rules, "BertModel"),
                                      unprepare=_unprepare("bert", True)))
for _cls in ("FNetModel", "FNetForPreTraining", "FNetForSequenceClassification"):
  register_key_map("hf", _cls, KeyMap(_fnet_rules, classes_key="classifier.weight", prepare=_prepare("fnet", False),
                                      export_rules=_export_rules(_fnet_rules, "FNetModel"),
                                      unprepare=_unprepare("fnet", False)))
