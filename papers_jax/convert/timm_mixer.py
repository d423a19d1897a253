"""timm `MlpMixer` state dicts → `papers_jax.models.mixer.MlpMixer`.

The token-mixing MLPs are sized by the number of patches, so a checkpoint only fits a model of
its own resolution (another one is reported as a shape mismatch).
"""

from papers_jax.convert.keymap import KeyMap, Rule, conv_kernel, linear, register_key_map


def _rules(model) -> list[Rule]:
  del model
  blk = r"blocks\.(\d+)\."
  return [
      Rule(r"stem\.proj\.weight", "stem/proj/kernel", conv_kernel),
      Rule(r"stem\.proj\.bias", "stem/proj/bias"),
      Rule(blk + r"norm([12])\.weight", r"blocks/\1/norm\2/scale"),
      Rule(blk + r"norm([12])\.bias", r"blocks/\1/norm\2/bias"),
      Rule(blk + r"(mlp_tokens|mlp_channels)\.(fc[12])\.weight", r"blocks/\1/\2/\3/kernel", linear(1)),
      Rule(blk + r"(mlp_tokens|mlp_channels)\.(fc[12])\.bias", r"blocks/\1/\2/\3/bias"),
      Rule(r"norm\.weight", "norm/scale"),
      Rule(r"norm\.bias", "norm/bias"),
      Rule(r"head\.weight", "head/kernel", linear(1)),
      Rule(r"head\.bias", "head/bias"),
  ]


register_key_map("timm", "MlpMixer", KeyMap(_rules, classes_key="head.weight"))
