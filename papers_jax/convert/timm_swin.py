"""timm `SwinTransformer` state dicts → `papers_jax.models.swin.SwinTransformer`.

Relative-position bias tables of another window size (e.g. 224/W7 weights for a 384/W12 model)
are resampled the way timm's checkpoint filter does (`models.swin.resize_relative_position_bias`).
Checkpoints of the original repository (patch merging at the end of a stage, `head.*`, and the
relative_position_index / attn_mask buffers that are numpy constants here) should first go
through timm's `swin_transformer.checkpoint_filter_fn`.
"""

import functools

from papers_jax.convert.keymap import KeyMap, Rule, conv_kernel, linear, register_key_map, reshape
from papers_jax.models.swin import resize_relative_position_bias

def _rules(model) -> list[Rule]:
  blk = r"layers\.(\d+)\.blocks\.(\d+)\."
  dst = r"layers/\1/blocks/\2/"
  tables = [Rule(rf"layers\.({i})\.blocks\.(\d+)\.attn\.relative_position_bias_table",
                 dst + "attn/relative_position_bias_table",
                 resample=functools.partial(resize_relative_position_bias, new_window=stage.blocks[0].window))
            for i, stage in enumerate(model.layers)]
  return tables + [
      Rule(r"patch_embed\.proj\.weight", "patch_embed/proj/kernel", conv_kernel),
      Rule(r"patch_embed\.proj\.bias", "patch_embed/proj/bias"),
      Rule(r"patch_embed\.norm\.weight", "patch_norm/scale"),
      Rule(r"patch_embed\.norm\.bias", "patch_norm/bias"),
      Rule(r"layers\.(\d+)\.downsample\.norm\.weight", r"layers/\1/downsample/norm/scale"),
      Rule(r"layers\.(\d+)\.downsample\.norm\.bias", r"layers/\1/downsample/norm/bias"),
      Rule(r"layers\.(\d+)\.downsample\.reduction\.weight", r"layers/\1/downsample/reduction/kernel", linear(1)),
      Rule(blk + r"norm([12])\.weight", dst + r"norm\3/scale"),
      Rule(blk + r"norm([12])\.bias", dst + r"norm\3/bias"),
      Rule(blk + r"attn\.qkv\.weight", dst + "attn/qkv/kernel", linear(1)),  # (3D, D) → (D, 3, H, hd)
      Rule(blk + r"attn\.qkv\.bias", dst + "attn/qkv/bias", reshape),  # (3D,) → (3, H, hd)
      Rule(blk + r"attn\.proj\.weight", dst + "attn/proj/kernel", linear(2)),  # (D, D) → (H, hd, D)
      Rule(blk + r"attn\.proj\.bias", dst + "attn/proj/bias"),
      Rule(blk + r"mlp\.(fc[12])\.weight", dst + r"mlp/\3/kernel", linear(1)),
      Rule(blk + r"mlp\.(fc[12])\.bias", dst + r"mlp/\3/bias"),
      Rule(r"norm\.weight", "norm/scale"),
      Rule(r"norm\.bias", "norm/bias"),
      Rule(r"head\.fc\.weight", "head/kernel", linear(1)),
      Rule(r"head\.fc\.bias", "head/bias"),
  ]


register_key_map("timm", "SwinTransformer", KeyMap(_rules, classes_key="head.fc.weight"))
