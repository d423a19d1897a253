"""HF transformers `ViTMAEForPreTraining` state dicts → `papers_jax.models.mae.MaskedAutoencoderViT`.

Both of HF's layouts are read: transformers ≥ 5 (`vit.layers.N.attention.q_proj`, `mlp.fc1`) and
the one the hub checkpoints were saved in (`vit.encoder.layer.N.attention.attention.query`,
`intermediate.dense`, `output.dense`). HF keeps separate q/k/v projections; `_fuse_qkv` stacks
them into one (3D, D) tensor first, in the order of our fused kernel (embed, 3, heads, head_dim).
HF stores the fixed sin-cos position tables as tensors. Our model computes them, so they are
compared with ours instead of loaded, and a checkpoint with other tables is refused.
Export writes the transformers ≥ 5 layout, with separate q/k/v and both sin-cos tables.
"""

import re

import numpy as np

from papers_jax.convert.keymap import (KeyMap, Rule, conv_kernel, linear, one_layout, register_key_map, reshape,
                                      split_qkv)
from papers_jax.errors import CheckpointError

_QKV = re.compile(r"(.*\.attention)\.(?:(q|k|v)_proj|attention\.(query|key|value))\.(weight|bias)")


def _numpy(x) -> np.ndarray:
  if hasattr(x, "detach"):
    x = x.detach().cpu()
    return (x.float() if str(x.dtype) == "torch.bfloat16" else x).numpy()
  return np.asarray(x)


def _fuse_qkv(state_dict: dict) -> dict:
  """Replaces each layer's q, k, v projections by `<layer>.attention.qkv.{weight,bias}` (q; k; v)."""
  groups: dict[tuple[str, str], dict[str, str]] = {}
  for key in state_dict:
    if m := _QKV.fullmatch(key):
      which = (m.group(2) or m.group(3))[0]
      groups.setdefault((m.group(1), m.group(4)), {})[which] = key
  out = dict(state_dict)
  for (prefix, kind), keys in groups.items():
    if set(keys) != {"q", "k", "v"}:
      continue  # incomplete: the leftover keys are reported as unexpected
    out[f"{prefix}.qkv.{kind}"] = np.concatenate([_numpy(state_dict[keys[w]]) for w in "qkv"], axis=0)
    for key in keys.values():
      del out[key]
  return out


def _fixed_table(name: str, want: np.ndarray):
  """A hook that refuses a position table different from the one our model computes."""
  def hook(x, _):
    x = np.asarray(x, np.float32)
    diff = np.abs(x - want).max() if x.shape == want.shape else np.inf
    if not diff <= 1e-5:
      raise CheckpointError(
          f"{name} {tuple(x.shape)} is not the fixed 2-D sin-cos table {tuple(want.shape)} that "
          f"MaskedAutoencoderViT computes (max abs difference {diff:.3g}); this checkpoint used other "
          "position embeddings. (A ViTMAEForPreTraining built with random init in transformers 5 leaves "
          "them at zero: fill them with the sin-cos tables before converting.)")
    return x
  return hook


def _layer_rules(prefix: str, dst: str) -> list[Rule]:
  """One transformer layer; HF's layernorm_before / layernorm_after are our norm1 / norm2."""
  blk = prefix + r"\.(\d+)\."
  return [
      Rule(blk + r"layernorm_before\.weight", dst + r"/\1/norm1/scale"),
      Rule(blk + r"layernorm_before\.bias", dst + r"/\1/norm1/bias"),
      Rule(blk + r"layernorm_after\.weight", dst + r"/\1/norm2/scale"),
      Rule(blk + r"layernorm_after\.bias", dst + r"/\1/norm2/bias"),
      Rule(blk + r"attention\.qkv\.weight", dst + r"/\1/attn/qkv/kernel", linear(1)),  # (3D, D) → (D, 3, H, hd)
      Rule(blk + r"attention\.qkv\.bias", dst + r"/\1/attn/qkv/bias", reshape),
      Rule(blk + r"attention\.(?:o_proj|output\.dense)\.weight", dst + r"/\1/attn/proj/kernel", linear(2)),
      Rule(blk + r"attention\.(?:o_proj|output\.dense)\.bias", dst + r"/\1/attn/proj/bias"),
      Rule(blk + r"(?:mlp\.fc1|intermediate\.dense)\.weight", dst + r"/\1/mlp/fc1/kernel", linear(1)),
      Rule(blk + r"(?:mlp\.fc1|intermediate\.dense)\.bias", dst + r"/\1/mlp/fc1/bias"),
      Rule(blk + r"(?:mlp\.fc2|output\.dense)\.weight", dst + r"/\1/mlp/fc2/kernel", linear(1)),
      Rule(blk + r"(?:mlp\.fc2|output\.dense)\.bias", dst + r"/\1/mlp/fc2/bias"),
  ]


def _rules(model) -> list[Rule]:
  return [
      Rule(r"vit\.embeddings\.patch_embeddings\.projection\.weight", "patch_embed/proj/kernel", conv_kernel),
      Rule(r"vit\.embeddings\.patch_embeddings\.projection\.bias", "patch_embed/proj/bias"),
      Rule(r"vit\.embeddings\.cls_token", "cls_token"),
      Rule(r"vit\.embeddings\.position_embeddings", "",
           _fixed_table("vit.embeddings.position_embeddings", model.pos_embed())),
      *_layer_rules(r"vit\.(?:layers|encoder\.layer)", "blocks"),
      Rule(r"vit\.layernorm\.weight", "norm/scale"),
      Rule(r"vit\.layernorm\.bias", "norm/bias"),
      Rule(r"decoder\.decoder_embed\.weight", "decoder_embed/kernel", linear(1)),
      Rule(r"decoder\.decoder_embed\.bias", "decoder_embed/bias"),
      Rule(r"decoder\.mask_token", "mask_token"),
      Rule(r"decoder\.decoder_pos_embed", "", _fixed_table("decoder.decoder_pos_embed", model.decoder_pos_embed())),
      *_layer_rules(r"decoder\.decoder_layers", "decoder_blocks"),
      Rule(r"decoder\.decoder_norm\.weight", "decoder_norm/scale"),
      Rule(r"decoder\.decoder_norm\.bias", "decoder_norm/bias"),
      Rule(r"decoder\.decoder_pred\.weight", "decoder_pred/kernel", linear(1)),
      Rule(r"decoder\.decoder_pred\.bias", "decoder_pred/bias"),
  ]


def _unprepare(state_dict: dict, model) -> dict:
  """The inverse of `_fuse_qkv`, plus the fixed tables HF stores and our model computes."""
  out = split_qkv(state_dict, ("q_proj", "k_proj", "v_proj"))
  out["vit.embeddings.position_embeddings"] = np.asarray(model.pos_embed(), np.float32)
  out["decoder.decoder_pos_embed"] = np.asarray(model.decoder_pos_embed(), np.float32)
  return out


register_key_map("hf", "MaskedAutoencoderViT", KeyMap(_rules, prepare=_fuse_qkv,
                                                     export_rules=lambda m: one_layout(_rules(m)),
                                                     unprepare=_unprepare))
