"""HF transformers `CLIPModel` state dicts → `papers_jax.models.clip.CLIP` (the ViT variants).

HF's layout (unchanged from transformers 4 to 5): `vision_model.embeddings.{class_embedding,
patch_embedding, position_embedding}`, `vision_model.pre_layrnorm` (sic), `vision_model.encoder.layers.N.
{layer_norm1, self_attn.{q,k,v,out}_proj, layer_norm2, mlp.fc1, mlp.fc2}`, `vision_model.post_layernorm`,
`text_model.embeddings.{token_embedding, position_embedding}`, `text_model.encoder.layers.N...`,
`text_model.final_layer_norm`, `visual_projection`, `text_projection`, `logit_scale`. The separate
q/k/v projections are stacked into our fused qkv (embed, 3, heads, head_dim) first (`_fuse_qkv`).
Position embeddings of another image size are resampled. HF has no CLIP ResNet: `clip_rn50` cannot
come from here.

HF picks the [EOS] position by the config's `eos_token_id`: 2 (the value of the released configs)
means "the largest token id", as our `eos_token_id=None`; any other value means its first occurrence,
so create our model with the same `eos_token_id` (`hf_eos_token_id` below translates).
Export writes this layout back, q/k/v split again (`split_qkv`).
"""

import re

import numpy as np

from papers_jax.convert.keymap import (KeyMap, Rule, conv_kernel, linear, register_key_map, reshape, split_qkv,
                                      with_inverse)
from papers_jax.errors import CheckpointError
from papers_jax.nn.embed import resample_pos_embed

_QKV = re.compile(r"(.*\.self_attn)\.(q|k|v)_proj\.(weight|bias)")


def hf_eos_token_id(eos_token_id: int | None) -> int | None:
  """Our `eos_token_id` for an HF CLIPTextConfig's: None for HF's legacy value 2 (argmax rule)."""
  return None if eos_token_id == 2 else eos_token_id


def _numpy(x) -> np.ndarray:
  if hasattr(x, "detach"):
    x = x.detach().cpu()
    return (x.float() if str(x.dtype) == "torch.bfloat16" else x).numpy()
  return np.asarray(x)


def _fuse_qkv(state_dict: dict) -> dict:
  """Replaces each layer's q, k, v projections by `<layer>.self_attn.qkv.{weight,bias}` (q; k; v)."""
  groups: dict[tuple[str, str], dict[str, str]] = {}
  for key in state_dict:
    if m := _QKV.fullmatch(key):
      groups.setdefault((m.group(1), m.group(3)), {})[m.group(2)] = key
  out = dict(state_dict)
  for (prefix, kind), keys in groups.items():
    if set(keys) != {"q", "k", "v"}:
      continue  # incomplete: the leftover keys are reported as unexpected
    out[f"{prefix}.qkv.{kind}"] = np.concatenate([_numpy(state_dict[keys[w]]) for w in "qkv"], axis=0)
    for key in keys.values():
      del out[key]
  return out


def _position_ids(x, _):
  """Old checkpoints saved the position-id buffers; they must be 0..n-1 (our models compute them)."""
  x = np.asarray(x).reshape(-1)
  if not np.array_equal(x, np.arange(x.size)):
    raise CheckpointError("position_ids in the checkpoint are not 0..n-1; this CLIP checkpoint is not supported")
  return x


def _layer_rules(prefix: str, dst: str) -> list[Rule]:
  blk = prefix + r"\.encoder\.layers\.(\d+)\."
  return [
      Rule(blk + r"layer_norm([12])\.weight", dst + r"/blocks/\1/norm\2/scale"),
      Rule(blk + r"layer_norm([12])\.bias", dst + r"/blocks/\1/norm\2/bias"),
      Rule(blk + r"self_attn\.qkv\.weight", dst + r"/blocks/\1/attn/qkv/kernel", linear(1)),  # → (D, 3, H, hd)
      Rule(blk + r"self_attn\.qkv\.bias", dst + r"/blocks/\1/attn/qkv/bias", reshape),
      Rule(blk + r"self_attn\.out_proj\.weight", dst + r"/blocks/\1/attn/proj/kernel", linear(2)),
      Rule(blk + r"self_attn\.out_proj\.bias", dst + r"/blocks/\1/attn/proj/bias"),
      Rule(blk + r"mlp\.(fc[12])\.weight", dst + r"/blocks/\1/mlp/\2/kernel", linear(1)),
      Rule(blk + r"mlp\.(fc[12])\.bias", dst + r"/blocks/\1/mlp/\2/bias"),
  ]


def _rules(model) -> list[Rule]:
  if model.vision != "vit":
    raise CheckpointError("HF transformers' CLIPModel has only ViT image towers; a CLIP ResNet (clip_rn50) "
                          "cannot be loaded from it.")
  grid = model.visual.patch_embed.grid_size

  def resample(x):  # (1, 1 + old grid, D) → (1, 1 + grid, D), the class position untouched
    return np.asarray(resample_pos_embed(x, grid, num_prefix_tokens=1))

  def as_cls_token(x, shape):  # (D,) → (1, 1, D)
    return x.reshape(shape) if x.size == np.prod(shape) else x

  def as_pos_embed(x, shape):  # (1 + N, D) → (1, 1 + N, D)
    return x[None] if x.ndim == 2 else x

  def as_scalar(x, shape):  # HF's logit_scale is 0-d
    return np.asarray(x).reshape(shape)

  with_inverse(as_cls_token, lambda x: x.reshape(-1))
  with_inverse(as_pos_embed, lambda x: x[0])
  with_inverse(as_scalar, lambda x: x.reshape(()))

  return [
      Rule(r"vision_model\.embeddings\.class_embedding", "visual/cls_token", as_cls_token),
      Rule(r"vision_model\.embeddings\.patch_embedding\.weight", "visual/patch_embed/proj/kernel", conv_kernel),
      Rule(r"vision_model\.embeddings\.position_embedding\.weight", "visual/pos_embed", as_pos_embed,
           resample=resample),
      Rule(r"(?:vision|text)_model\.embeddings\.position_ids", "", _position_ids),
      Rule(r"vision_model\.pre_layrnorm\.weight", "visual/norm_pre/scale"),
      Rule(r"vision_model\.pre_layrnorm\.bias", "visual/norm_pre/bias"),
      *_layer_rules(r"vision_model", "visual"),
      Rule(r"vision_model\.post_layernorm\.weight", "visual/norm/scale"),
      Rule(r"vision_model\.post_layernorm\.bias", "visual/norm/bias"),
      Rule(r"visual_projection\.weight", "visual_projection/kernel", linear(1)),
      Rule(r"text_model\.embeddings\.token_embedding\.weight", "text/token_embed"),
      Rule(r"text_model\.embeddings\.position_embedding\.weight", "text/pos_embed"),
      *_layer_rules(r"text_model", "text"),
      Rule(r"text_model\.final_layer_norm\.weight", "text/norm/scale"),
      Rule(r"text_model\.final_layer_norm\.bias", "text/norm/bias"),
      Rule(r"text_projection\.weight", "text_projection/kernel", linear(1)),
      Rule(r"logit_scale", "logit_scale", as_scalar),
  ]


register_key_map("hf", "CLIP", KeyMap(_rules, prepare=_fuse_qkv,
                                     unprepare=lambda sd, model: split_qkv(sd, ("q_proj", "k_proj", "v_proj"))))
