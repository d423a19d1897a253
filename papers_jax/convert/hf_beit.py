"""HF transformers `BeitForMaskedImageModeling` (MIM head) and `BeitForImageClassification` state dicts →
`papers_jax.models.beit.BEiT`.

Both of HF's layouts are read: transformers ≥ 5 (`beit.layers.N.attention.q_proj`, `mlp.fc1`, the tables
under `beit.layers.N.relative_position_bias` / `beit.shared_position_bias`) and the one the hub checkpoints
were saved in (`beit.encoder.layer.N.attention.attention.query`, `intermediate.dense`, `output.dense`,
`beit.encoder.relative_position_bias`). HF's k projection has no bias; `_fuse_qkv` stacks q, k, v into our
fused qkv with a zero k bias (which cannot change the attention: models/beit.py). HF's `layernorm` before
`lm_head` is our `norm`; the MIM model is built with `use_mean_pooling=True`, so `beit.layernorm` is an
identity and absent. A classifier's mean-pooling `beit.pooler.layernorm` is our `fc_norm`, its `classifier`
our `head`. Export writes the transformers ≥ 5 layout and drops the k bias.
"""

import re

import numpy as np

from papers_jax.convert.hf_mae import _numpy
from papers_jax.convert.keymap import (KeyMap, Rule, conv_kernel, linear, one_layout, register_key_map, reshape,
                                      split_qkv)

_QKV = re.compile(r"(.*\.attention)\.(?:(q|k|v)_proj|attention\.(query|key|value))\.(weight|bias)")


def _fuse_qkv(state_dict: dict) -> dict:
  """Each layer's q, k, v → `<layer>.attention.qkv.{weight,bias}` (the k bias 0); old-layout tables renamed."""
  groups: dict[str, dict[str, str]] = {}
  for key in state_dict:
    if m := _QKV.fullmatch(key):
      groups.setdefault(m.group(1), {})[(m.group(2) or m.group(3))[0] + m.group(4)[0]] = key
  out = dict(state_dict)
  for prefix, keys in groups.items():
    if set(keys) != {"qw", "kw", "vw", "qb", "vb"}:
      continue  # incomplete (or a k bias): the leftover keys are reported as unexpected
    out[f"{prefix}.qkv.weight"] = np.concatenate([_numpy(state_dict[keys[w + "w"]]) for w in "qkv"], axis=0)
    q_bias = _numpy(state_dict[keys["qb"]])
    out[f"{prefix}.qkv.bias"] = np.concatenate([q_bias, np.zeros_like(q_bias), _numpy(state_dict[keys["vb"]])])
    for key in keys.values():
      del out[key]
  return out


def _rules(model) -> list[Rule]:
  blk = r"beit\.(?:layers|encoder\.layer)\.(\d+)\."
  return [
      Rule(r"beit\.embeddings\.patch_embeddings\.projection\.weight", "patch_embed/proj/kernel", conv_kernel),
      Rule(r"beit\.embeddings\.patch_embeddings\.projection\.bias", "patch_embed/proj/bias"),
      Rule(r"beit\.embeddings\.cls_token", "cls_token"),
      Rule(r"beit\.embeddings\.mask_token", "mask_token"),
      Rule(r"beit\.embeddings\.position_embeddings", "pos_embed"),
      Rule(r"beit\.(?:shared_position_bias|encoder\.relative_position_bias)\.relative_position_bias_table",
           "rel_pos_bias_table"),
      Rule(blk + r"(?:attention\.attention\.)?relative_position_bias\.relative_position_bias_table",
           r"blocks/\1/attn/relative_position_bias_table"),
      Rule(blk + r"lambda_1", r"blocks/\1/gamma_1"),
      Rule(blk + r"lambda_2", r"blocks/\1/gamma_2"),
      Rule(blk + r"layernorm_before\.weight", r"blocks/\1/norm1/scale"),
      Rule(blk + r"layernorm_before\.bias", r"blocks/\1/norm1/bias"),
      Rule(blk + r"layernorm_after\.weight", r"blocks/\1/norm2/scale"),
      Rule(blk + r"layernorm_after\.bias", r"blocks/\1/norm2/bias"),
      Rule(blk + r"attention\.qkv\.weight", r"blocks/\1/attn/qkv/kernel", linear(1)),  # (3D, D) → (D, 3, H, hd)
      Rule(blk + r"attention\.qkv\.bias", r"blocks/\1/attn/qkv/bias", reshape),
      Rule(blk + r"attention\.(?:o_proj|output\.dense)\.weight", r"blocks/\1/attn/proj/kernel", linear(2)),
      Rule(blk + r"attention\.(?:o_proj|output\.dense)\.bias", r"blocks/\1/attn/proj/bias"),
      Rule(blk + r"(?:mlp\.fc1|intermediate\.dense)\.weight", r"blocks/\1/mlp/fc1/kernel", linear(1)),
      Rule(blk + r"(?:mlp\.fc1|intermediate\.dense)\.bias", r"blocks/\1/mlp/fc1/bias"),
      Rule(blk + r"(?:mlp\.fc2|output\.dense)\.weight", r"blocks/\1/mlp/fc2/kernel", linear(1)),
      Rule(blk + r"(?:mlp\.fc2|output\.dense)\.bias", r"blocks/\1/mlp/fc2/bias"),
      Rule(r"layernorm\.weight", "norm/scale"),
      Rule(r"layernorm\.bias", "norm/bias"),
      Rule(r"lm_head\.weight", "lm_head/kernel", linear(1)),
      Rule(r"lm_head\.bias", "lm_head/bias"),
      Rule(r"beit\.layernorm\.weight", "norm/scale"),  # BeitForImageClassification without mean pooling
      Rule(r"beit\.layernorm\.bias", "norm/bias"),
      Rule(r"beit\.pooler\.layernorm\.weight", "fc_norm/scale"),  # ... with mean pooling
      Rule(r"beit\.pooler\.layernorm\.bias", "fc_norm/bias"),
      Rule(r"classifier\.weight", "head/kernel", linear(1)),
      Rule(r"classifier\.bias", "head/bias"),
  ]


def _unprepare(state_dict: dict, model) -> dict:
  """The inverse of `_fuse_qkv`: separate q, k, v (k without its bias, which is inert)."""
  out = split_qkv(state_dict, ("q_proj", "k_proj", "v_proj"))
  return {k: v for k, v in out.items() if not k.endswith("k_proj.bias")}


def _export_rules(model) -> list[Rule]:
  """One layout; `norm` is the MIM head's `layernorm` or a [CLS]-pooling classifier's `beit.layernorm`."""
  drop = r"beit\.layernorm" if model.lm_head is not None else r"layernorm"
  return [r for r in one_layout(_rules(model), optional=False) if not r.src.startswith(drop + r"\.")]


register_key_map("hf", "BEiT", KeyMap(_rules, prepare=_fuse_qkv, unprepare=_unprepare, export_rules=_export_rules))
