"""timm `MetaFormer` state dicts of the PoolFormer (v1) names → `papers_jax.models.poolformer.PoolFormer`.

timm keeps the MLP's 1×1 convolutions as Conv2d weights (out, in, 1, 1); ours are Dense kernels (in, out).
timm's head normalises after the spatial mean (LayerNorm): load its checkpoints into a model built with
`head_norm="post_pool"` (see models/poolformer.py).
"""

from papers_jax.convert.keymap import KeyMap, Rule, conv_kernel, linear, register_key_map, with_inverse


def _pointwise(w, shape):
  """A 1×1 Conv2d weight (out, in, 1, 1) → a Dense kernel (in, out)."""
  del shape
  return w.reshape(w.shape[:2]).T if w.ndim == 4 and w.shape[2:] == (1, 1) else w


with_inverse(_pointwise, lambda x: x.T[:, :, None, None])


def _rules(model) -> list[Rule]:
  del model
  blk = r"stages\.(\d+)\.blocks\.(\d+)\."
  ours = r"stages/\1/blocks/\2/"
  return [
      Rule(r"stem\.conv\.weight", "stem/conv/kernel", conv_kernel),
      Rule(r"stem\.conv\.bias", "stem/conv/bias"),
      Rule(r"stages\.(\d+)\.downsample\.conv\.weight", r"stages/\1/downsample/conv/kernel", conv_kernel),
      Rule(r"stages\.(\d+)\.downsample\.conv\.bias", r"stages/\1/downsample/conv/bias"),
      Rule(blk + r"(norm[12])\.weight", ours + r"\3/scale"),
      Rule(blk + r"(norm[12])\.bias", ours + r"\3/bias"),
      Rule(blk + r"(layer_scale[12])\.scale", ours + r"\3/scale"),
      Rule(blk + r"mlp\.(fc[12])\.weight", ours + r"mlp/\3/kernel", _pointwise),
      Rule(blk + r"mlp\.(fc[12])\.bias", ours + r"mlp/\3/bias"),
      Rule(r"head\.norm\.weight", "head/norm/scale"),
      Rule(r"head\.norm\.bias", "head/norm/bias"),
      Rule(r"head\.fc\.weight", "head/fc/kernel", linear(1)),
      Rule(r"head\.fc\.bias", "head/fc/bias"),
  ]


register_key_map("timm", "PoolFormer", KeyMap(_rules, classes_key="head.fc.weight"))
