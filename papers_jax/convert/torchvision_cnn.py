"""torchvision's `alexnet`, `googlenet` and `inception_v3` (and timm's `inception_v3`, which has the same keys)
→ papers_jax.models.alexnet.AlexNet / inception.GoogLeNet / inception.InceptionV3, BatchNorm statistics included.

torch flattens a (C, H, W) map before the first fully connected layer, NHWC models flatten (H, W, C): the
rows of AlexNet's FC1 and GoogLeNet's auxiliary FC1 are permuted accordingly (`chw_linear`).
"""

from papers_jax.convert.keymap import KeyMap, Rule, conv_kernel, linear, register_key_map, with_inverse

BN = {"weight": "scale", "bias": "bias", "running_mean": "mean", "running_var": "var"}


def _ignore(x, shape):
  del x, shape  # BatchNorm's num_batches_tracked: a counter our BatchNorm does not keep


def chw_linear(height: int, width: int):
  """torch Linear weight (out, C·H·W) over a torch-flattened map → our kernel (H·W·C, out)."""
  def hook(w, shape):
    out, flat = w.shape
    c = flat // (height * width)
    return w.reshape(out, c, height, width).transpose(2, 3, 1, 0).reshape(flat, out)

  def inverse(x):
    flat, out = x.shape
    c = flat // (height * width)
    return x.reshape(height, width, c, out).transpose(3, 2, 0, 1).reshape(out, flat)
  return with_inverse(hook, inverse)


def _basic_conv(src: str, dst: str) -> list[Rule]:
  """torchvision's BasicConv2d (conv + BatchNorm) at `src` → our BasicConv at `dst`."""
  rules = [Rule(src + r"\.conv\.weight", dst + "/conv/kernel", conv_kernel),
           Rule(src + r"\.conv\.bias", dst + "/conv/bias")]
  return rules + [Rule(src + rf"\.bn\.{theirs}", dst + f"/bn/{ours}") for theirs, ours in BN.items()]


def _alexnet_rules(model) -> list[Rule]:
  del model
  rules = []
  for i, index in enumerate((0, 3, 6, 8, 10)):
    rules += [Rule(rf"features\.{index}\.weight", f"conv{i + 1}/kernel", conv_kernel),
              Rule(rf"features\.{index}\.bias", f"conv{i + 1}/bias")]
  for index, ours in ((1, "fc1"), (4, "fc2"), (6, "head")):
    rules += [Rule(rf"classifier\.{index}\.weight", f"{ours}/kernel", chw_linear(6, 6) if ours == "fc1" else linear(1)),
              Rule(rf"classifier\.{index}\.bias", f"{ours}/bias")]
  return rules


def _aux_rules(name: str) -> list[Rule]:
  return _basic_conv(rf"({name})\.conv", r"\1/conv") + [
      Rule(rf"({name})\.fc1\.weight", r"\1/fc1/kernel", chw_linear(4, 4)),
      Rule(rf"({name})\.fc1\.bias", r"\1/fc1/bias"),
      Rule(rf"({name})\.fc2\.weight", r"\1/fc2/kernel", linear(1)),
      Rule(rf"({name})\.fc2\.bias", r"\1/fc2/bias")]


def _googlenet_rules(model) -> list[Rule]:
  del model
  module = r"(inception[345][a-e])"
  rules = [Rule(r".*num_batches_tracked", "", _ignore)]
  rules += _basic_conv(r"(conv[123])", r"\1")
  rules += _basic_conv(module + r"\.branch1", r"\1/branch1")
  rules += _basic_conv(module + r"\.(branch[23])\.(\d)", r"\1/\2/\3")
  rules += _basic_conv(module + r"\.branch4\.1", r"\1/branch4")
  rules += _aux_rules("aux[12]")
  rules += [Rule(r"fc\.weight", "fc/kernel", linear(1)), Rule(r"fc\.bias", "fc/bias")]
  return rules


def _inception_v3_rules(model) -> list[Rule]:
  del model
  rules = [Rule(r".*num_batches_tracked", "", _ignore)]
  rules += _basic_conv(r"(Conv2d_\w+)", r"\1")
  rules += _basic_conv(r"(Mixed_\w+)\.(branch\w+)", r"\1/\2")
  rules += _basic_conv(r"AuxLogits\.(conv[01])", r"AuxLogits/\1")
  rules += [Rule(r"AuxLogits\.fc\.weight", "AuxLogits/fc/kernel", linear(1)),
            Rule(r"AuxLogits\.fc\.bias", "AuxLogits/fc/bias"),
            Rule(r"fc\.weight", "fc/kernel", linear(1)), Rule(r"fc\.bias", "fc/bias")]
  return rules


register_key_map("torchvision", "AlexNet", KeyMap(_alexnet_rules, classes_key="classifier.6.weight"))
register_key_map("torchvision", "GoogLeNet", KeyMap(_googlenet_rules, classes_key="fc.weight"))
register_key_map("torchvision", "InceptionV3", KeyMap(_inception_v3_rules, classes_key="fc.weight"))
register_key_map("timm", "InceptionV3", KeyMap(_inception_v3_rules, classes_key="fc.weight"))
