"""timm `ResNet` state dicts → `papers_jax.models.resnet.ResNet` (BatchNorm running statistics included)."""

from papers_jax.convert.keymap import KeyMap, Rule, conv_kernel, linear, register_key_map


def _ignore(x, shape):
  del x, shape  # BatchNorm's num_batches_tracked: a counter our BatchNorm does not keep


def _rules(model) -> list[Rule]:
  del model
  bn = {"weight": "scale", "bias": "bias", "running_mean": "mean", "running_var": "var"}
  blk = r"(layer[1-4])\.(\d+)\."
  rules = [
      Rule(r".*num_batches_tracked", "", _ignore),
      Rule(r"conv1\.weight", "conv1/kernel", conv_kernel),
      Rule(blk + r"(conv[123])\.weight", r"\1/\2/\3/kernel", conv_kernel),
      Rule(blk + r"downsample\.0\.weight", r"\1/\2/downsample_conv/kernel", conv_kernel),
      Rule(r"fc\.weight", "fc/kernel", linear(1)),
      Rule(r"fc\.bias", "fc/bias"),
  ]
  for theirs, ours in bn.items():
    rules += [
        Rule(rf"bn1\.{theirs}", f"bn1/{ours}"),
        Rule(blk + rf"(bn[123])\.{theirs}", rf"\1/\2/\3/{ours}"),
        Rule(blk + rf"downsample\.1\.{theirs}", rf"\1/\2/downsample_bn/{ours}"),
    ]
  return rules


register_key_map("timm", "ResNet", KeyMap(_rules, classes_key="fc.weight"))
