"""The official TS2Vec code's `TSEncoder` state dicts (github.com/yuezhihan/ts2vec, also the `ts2vec`
wheel) → `papers_jax.models.ts2vec.TS2VecEncoder`. Its `feature_extractor.net.<i>` blocks are our
`blocks/<i>`; `conv1.conv` / `conv2.conv` (SamePadConv's inner Conv1d) our `conv1` / `conv2`. A checkpoint of
the averaged model (`TS2Vec.save`, torch's AveragedModel) has a `module.` prefix and an `n_averaged`
counter: both are taken off first.
"""

from papers_jax.convert.keymap import KeyMap, Rule, conv1d_kernel, linear, register_key_map


def _unwrap_averaged(state_dict: dict) -> dict:
  return {k.removeprefix("module."): v for k, v in state_dict.items() if k != "n_averaged"}


def _rules(model) -> list[Rule]:
  blk = r"feature_extractor\.net\.(\d+)\."
  return [
      Rule(r"input_fc\.weight", "input_fc/kernel", linear(1)), Rule(r"input_fc\.bias", "input_fc/bias"),
      Rule(blk + r"(conv1|conv2)\.conv\.weight", r"blocks/\1/\2/kernel", conv1d_kernel),
      Rule(blk + r"(conv1|conv2)\.conv\.bias", r"blocks/\1/\2/bias"),
      Rule(blk + r"projector\.weight", r"blocks/\1/projector/kernel", conv1d_kernel),
      Rule(blk + r"projector\.bias", r"blocks/\1/projector/bias"),
  ]


register_key_map("ts2vec", "TS2VecEncoder", KeyMap(_rules, prepare=_unwrap_averaged))
