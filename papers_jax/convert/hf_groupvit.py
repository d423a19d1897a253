"""HF transformers `GroupViTModel` state dicts → `papers_jax.models.groupvit.GroupViT`.

HF's layout: `vision_model.embeddings.{patch_embeddings.projection, layernorm, position_embeddings}`,
`vision_model.encoder.stages.S.{group_token, layers.N (CLIP's encoder layer), downsample (the
grouping block: norm_tokens, mlp_inter, norm_post_tokens, norm_x, pre_assign_attn.{attn, norm2, mlp,
norm_post}, assign.{q,k,v}_proj + proj, norm_new_x, mlp_channels), group_projector.{0 (LayerNorm),
1 (token MLP)}}`, `vision_model.layernorm`, `text_model` (CLIP's), `{visual,text}_projection.{0, 1
(BatchNorm1d), 3}`, `logit_scale`. The encoder layers' q/k/v are fused into our qkv as in
convert/hf_clip.py; the grouping blocks' cross-attention k/v into our fused kv. BatchNorm's
num_batches_tracked is not kept. HF picks the text [EOS] as CLIP does (hf_clip.hf_eos_token_id).
"""

import re

import numpy as np

from papers_jax.convert.hf_clip import _fuse_qkv, _layer_rules, _numpy, _position_ids
from papers_jax.convert.keymap import KeyMap, Rule, conv_kernel, linear, register_key_map, reshape, with_inverse

_KV = re.compile(r"(.*\.pre_assign_attn\.attn)\.(k|v)_proj\.(weight|bias)")


def _prepare(state_dict: dict) -> dict:
  """CLIP's q/k/v fusion for the encoder layers, then each cross-attention's k and v into `kv`."""
  out = _fuse_qkv(state_dict)
  groups: dict[tuple[str, str], dict[str, str]] = {}
  for key in out:
    if m := _KV.fullmatch(key):
      groups.setdefault((m.group(1), m.group(3)), {})[m.group(2)] = key
  for (prefix, kind), keys in groups.items():
    if set(keys) == {"k", "v"}:
      out[f"{prefix}.kv_proj.{kind}"] = np.concatenate([_numpy(out[keys[w]]) for w in "kv"], axis=0)
      for key in keys.values():
        del out[key]
  return out


def _skip(x, shape):
  del x, shape  # BatchNorm's num_batches_tracked: a counter our BatchNorm does not keep


def _norm(src: str, dst: str) -> list[Rule]:
  return [Rule(src + r"\.weight", dst + "/scale"), Rule(src + r"\.bias", dst + "/bias")]


def _dense(src: str, dst: str, hook=None) -> list[Rule]:
  return [Rule(src + r"\.weight", dst + "/kernel", hook or linear(1)), Rule(src + r"\.bias", dst + "/bias",
                                                                            reshape)]


def _rules(model) -> list[Rule]:
  del model

  def as_scalar(x, shape):
    return np.asarray(x).reshape(shape)

  with_inverse(as_scalar, lambda x: x.reshape(()))
  stage = r"vision_model\.encoder\.stages\.(\d+)\."
  ds, dst_ds = stage + r"downsample\.", r"stages/\1/downsample/"
  rules = [
      Rule(r"vision_model\.embeddings\.patch_embeddings\.projection\.weight", "patch_embed/proj/kernel", conv_kernel),
      Rule(r"vision_model\.embeddings\.patch_embeddings\.projection\.bias", "patch_embed/proj/bias"),
      Rule(r"vision_model\.embeddings\.position_embeddings", "pos_embed"),
      *_norm(r"vision_model\.embeddings\.layernorm", "norm_embed"),
      Rule(stage + r"group_token", r"stages/\1/group_token"),
      *_norm(stage + r"layers\.(\d+)\.layer_norm([12])", r"stages/\1/blocks/\2/norm\3"),
      *_dense(stage + r"layers\.(\d+)\.self_attn\.qkv", r"stages/\1/blocks/\2/attn/qkv"),
      *_dense(stage + r"layers\.(\d+)\.self_attn\.out_proj", r"stages/\1/blocks/\2/attn/proj", linear(2)),
      *_dense(stage + r"layers\.(\d+)\.mlp\.(fc[12])", r"stages/\1/blocks/\2/mlp/\3"),
      *_norm(ds + r"norm_(tokens|post_tokens|x|new_x)", dst_ds + r"norm_\2"),
      *_dense(ds + r"mlp_inter\.(fc[12])", dst_ds + r"mlp_inter/\2"),
      *_dense(ds + r"mlp_channels\.(fc[12])", dst_ds + r"mlp_channels/\2"),
      *_dense(ds + r"pre_assign_attn\.attn\.q_proj", dst_ds + "pre_assign_attn/attn/q"),
      *_dense(ds + r"pre_assign_attn\.attn\.kv_proj", dst_ds + "pre_assign_attn/attn/kv"),
      *_dense(ds + r"pre_assign_attn\.attn\.out_proj", dst_ds + "pre_assign_attn/attn/proj", linear(2)),
      *_norm(ds + r"pre_assign_attn\.(norm2|norm_post)", dst_ds + r"pre_assign_attn/\2"),
      *_dense(ds + r"pre_assign_attn\.mlp\.(fc[12])", dst_ds + r"pre_assign_attn/mlp/\2"),
      *_dense(ds + r"assign\.(q_proj|k_proj|v_proj|proj)", dst_ds + r"assign/\2"),
      *_norm(stage + r"group_projector\.0", r"stages/\1/group_projector_norm"),
      *_dense(stage + r"group_projector\.1\.(fc[12])", r"stages/\1/group_projector/\2"),
      *_norm(r"vision_model\.layernorm", "norm"),
      Rule(r"text_model\.embeddings\.token_embedding\.weight", "text/token_embed"),
      Rule(r"text_model\.embeddings\.position_embedding\.weight", "text/pos_embed"),
      Rule(r"text_model\.embeddings\.position_ids", "", _position_ids),
      *_layer_rules(r"text_model", "text"),
      *_norm(r"text_model\.final_layer_norm", "text/norm"),
      Rule(r"logit_scale", "logit_scale", as_scalar),
  ]
  for tower in ("visual", "text"):
    rules += [
        *_dense(tower + r"_projection\.0", tower + "_projection/fc1"),
        *_dense(tower + r"_projection\.3", tower + "_projection/fc2"),
        *_norm(tower + r"_projection\.1", tower + "_projection/bn"),
        Rule(tower + r"_projection\.1\.running_mean", tower + "_projection/bn/mean"),
        Rule(tower + r"_projection\.1\.running_var", tower + "_projection/bn/var"),
        Rule(tower + r"_projection\.1\.num_batches_tracked", "", _skip),
    ]
  return rules


register_key_map("hf", "GroupViT", KeyMap(_rules, prepare=_prepare))
