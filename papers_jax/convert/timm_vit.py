"""timm `VisionTransformer` state dicts → `papers_jax.models.vit.VisionTransformer`."""

import numpy as np

from papers_jax.convert.keymap import KeyMap, Rule, conv_kernel, linear, register_key_map, reshape
from papers_jax.nn.embed import resample_pos_embed


def _rules(model) -> list[Rule]:
  grid, prefix = model.patch_embed.grid_size, model.num_prefix_tokens

  def resample(x):
    return np.asarray(resample_pos_embed(x, grid, num_prefix_tokens=prefix))

  blk = r"blocks\.(\d+)\."
  return [
      Rule(r"patch_embed\.proj\.weight", "patch_embed/proj/kernel", conv_kernel),
      Rule(r"patch_embed\.proj\.bias", "patch_embed/proj/bias"),
      Rule(r"cls_token", "cls_token"),
      Rule(r"pos_embed", "pos_embed", resample=resample),
      Rule(blk + r"norm([12])\.weight", r"blocks/\1/norm\2/scale"),
      Rule(blk + r"norm([12])\.bias", r"blocks/\1/norm\2/bias"),
      Rule(blk + r"attn\.qkv\.weight", r"blocks/\1/attn/qkv/kernel", linear(1)),  # (3D, D) → (D, 3, H, hd)
      Rule(blk + r"attn\.qkv\.bias", r"blocks/\1/attn/qkv/bias", reshape),  # (3D,) → (3, H, hd)
      Rule(blk + r"attn\.proj\.weight", r"blocks/\1/attn/proj/kernel", linear(2)),  # (D, D) → (H, hd, D)
      Rule(blk + r"attn\.proj\.bias", r"blocks/\1/attn/proj/bias"),
      Rule(blk + r"mlp\.(fc[12])\.weight", r"blocks/\1/mlp/\2/kernel", linear(1)),
      Rule(blk + r"mlp\.(fc[12])\.bias", r"blocks/\1/mlp/\2/bias"),
      Rule(r"(norm|fc_norm)\.weight", r"\1/scale"),
      Rule(r"(norm|fc_norm)\.bias", r"\1/bias"),
      Rule(r"head\.weight", "head/kernel", linear(1)),
      Rule(r"head\.bias", "head/bias"),
  ]


register_key_map("timm", "VisionTransformer", KeyMap(_rules, classes_key="head.weight"))
