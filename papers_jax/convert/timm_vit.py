"""timm `VisionTransformer` state dicts → `papers_jax.models.vit.VisionTransformer`, and timm's hybrids
(`vision_transformer_hybrid.py`, a ResNetV2 under `patch_embed.backbone`) → `HybridVisionTransformer`.

The pre-logits layer (`pre_logits.fc`, Linear + tanh) of older timm versions and of the paper's
pre-training checkpoints maps to `pre_logits/fc` (`representation_size`)."""

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
      Rule(r"pre_logits\.fc\.weight", "pre_logits/fc/kernel", linear(1)),
      Rule(r"pre_logits\.fc\.bias", "pre_logits/fc/bias"),
      Rule(r"head\.weight", "head/kernel", linear(1)),
      Rule(r"head\.bias", "head/bias"),
  ]


def _hybrid_rules(model) -> list[Rule]:
  bb, ours = r"patch_embed\.backbone\.", "patch_embed/backbone/"
  blk = bb + r"stages\.(\d+)\.blocks\.(\d+)\."
  blk_ours = ours + r"stages/\1/blocks/\2/"
  return [
      Rule(bb + r"stem\.conv\.weight", ours + "stem/conv/kernel", conv_kernel),
      Rule(bb + r"stem\.norm\.weight", ours + "stem/norm/scale"),
      Rule(bb + r"stem\.norm\.bias", ours + "stem/norm/bias"),
      Rule(blk + r"(conv[123])\.weight", blk_ours + r"\3/kernel", conv_kernel),
      Rule(blk + r"(norm[123])\.weight", blk_ours + r"\3/scale"),
      Rule(blk + r"(norm[123])\.bias", blk_ours + r"\3/bias"),
      Rule(blk + r"downsample\.conv\.weight", blk_ours + "downsample/conv/kernel", conv_kernel),
      Rule(blk + r"downsample\.norm\.weight", blk_ours + "downsample/norm/scale"),
      Rule(blk + r"downsample\.norm\.bias", blk_ours + "downsample/norm/bias"),
  ] + _rules(model)


def _distilled_rules(model) -> list[Rule]:
  return [Rule(r"dist_token", "dist_token"), Rule(r"head_dist\.weight", "head_dist/kernel", linear(1)),
          Rule(r"head_dist\.bias", "head_dist/bias")] + _rules(model)


register_key_map("timm", "VisionTransformer", KeyMap(_rules, classes_key="head.weight"))
register_key_map("timm", "DistilledVisionTransformer", KeyMap(_distilled_rules, classes_key="head.weight"))
register_key_map("timm", "HybridVisionTransformer", KeyMap(_hybrid_rules, classes_key="head.weight"))
