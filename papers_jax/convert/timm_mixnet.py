"""timm `mixnet_s` / `mixnet_m` / `mixnet_l` state dicts (timm's EfficientNet class) →
papers_jax.models.mixnet.MixNet, BatchNorm statistics included. A MixConv's sub-convolution `i` (timm's
`conv_dw.i`) is our `conv_dw/convs/i`."""

from papers_jax.convert.keymap import KeyMap, Rule, conv_kernel, linear, register_key_map

BN = {"weight": "scale", "bias": "bias", "running_mean": "mean", "running_var": "var"}


def _ignore(x, shape):
  del x, shape  # BatchNorm's num_batches_tracked


def _rules(model) -> list[Rule]:
  del model
  blk = r"blocks\.(\d+)\.(\d+)\."
  rules = [
      Rule(r".*num_batches_tracked", "", _ignore),
      Rule(r"(conv_stem|conv_head)\.weight", r"\1/kernel", conv_kernel),
      Rule(blk + r"(conv_\w+)\.weight", r"blocks/\1/\2/\3/kernel", conv_kernel),
      Rule(blk + r"(conv_\w+)\.(\d+)\.weight", r"blocks/\1/\2/\3/convs/\4/kernel", conv_kernel),
      Rule(blk + r"se\.(conv_\w+)\.weight", r"blocks/\1/\2/se/\3/kernel", conv_kernel),
      Rule(blk + r"se\.(conv_\w+)\.bias", r"blocks/\1/\2/se/\3/bias"),
      Rule(r"classifier\.weight", "classifier/kernel", linear(1)),
      Rule(r"classifier\.bias", "classifier/bias"),
  ]
  for theirs, ours in BN.items():
    rules += [Rule(rf"(bn[12])\.{theirs}", rf"\1/{ours}"),
              Rule(blk + rf"(bn[123])\.{theirs}", rf"blocks/\1/\2/\3/{ours}")]
  return rules


register_key_map("timm", "MixNet", KeyMap(_rules, classes_key="classifier.weight"))
