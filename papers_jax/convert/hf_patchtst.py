"""HF transformers `PatchTSTForPrediction` / `PatchTSTForPretraining` state dicts → models/patchtst.py.

HF's layout with one shared patch embedding and one shared head (`share_embedding`, `share_projection`,
its defaults, and the paper's channel independence). Its `norm_sublayer1` / `norm_sublayer3` are our
`norm1` / `norm2` (BatchNorm with running statistics, or LayerNorm); `ff.0` / `ff.3` our `fc1` / `fc2`.
HF's position table (`position_enc`, sin-cos or random) loads into our learned `pos_embed`.
HF has no residual attention and no end padding: build the model with `residual_attention=False,
padding_patch=None` (and `pre_norm` as HF's config) to use its weights as they were trained.
"""

from papers_jax.convert.keymap import KeyMap, Rule, linear, register_key_map


def _drop_counters(state_dict: dict) -> dict:
  return {k: v for k, v in state_dict.items() if not k.endswith("num_batches_tracked")}


def _norm_rules(blk: str, theirs: str, ours: str) -> list[Rule]:
  return [
      Rule(blk + theirs + r"\.(?:batchnorm\.)?weight", r"encoder/layers/\1/" + ours + "/scale"),
      Rule(blk + theirs + r"\.(?:batchnorm\.)?bias", r"encoder/layers/\1/" + ours + "/bias"),
      Rule(blk + theirs + r"\.batchnorm\.running_mean", r"encoder/layers/\1/" + ours + "/mean"),
      Rule(blk + theirs + r"\.batchnorm\.running_var", r"encoder/layers/\1/" + ours + "/var"),
  ]


def _encoder_rules() -> list[Rule]:
  blk = r"model\.encoder\.layers\.(\d+)\."
  rules = [
      Rule(r"model\.encoder\.embedder\.input_embedding\.weight", "encoder/embed/kernel", linear(1)),
      Rule(r"model\.encoder\.embedder\.input_embedding\.bias", "encoder/embed/bias"),
      Rule(r"model\.encoder\.positional_encoder\.position_enc", "encoder/pos_embed"),
      Rule(blk + r"ff\.0\.weight", r"encoder/layers/\1/fc1/kernel", linear(1)),
      Rule(blk + r"ff\.0\.bias", r"encoder/layers/\1/fc1/bias"),
      Rule(blk + r"ff\.3\.weight", r"encoder/layers/\1/fc2/kernel", linear(1)),
      Rule(blk + r"ff\.3\.bias", r"encoder/layers/\1/fc2/bias"),
      Rule(blk + r"self_attn\.out_proj\.weight", r"encoder/layers/\1/attn/proj/kernel", linear(2)),
      Rule(blk + r"self_attn\.out_proj\.bias", r"encoder/layers/\1/attn/proj/bias"),
  ]
  for name in "qkv":
    rules += [Rule(blk + rf"self_attn\.{name}_proj\.weight", rf"encoder/layers/\1/attn/{name}/kernel", linear(1)),
              Rule(blk + rf"self_attn\.{name}_proj\.bias", rf"encoder/layers/\1/attn/{name}/bias",
                   lambda x, shape: x.reshape(shape))]
  return rules + _norm_rules(blk, "norm_sublayer1", "norm1") + _norm_rules(blk, "norm_sublayer3", "norm2")


def _prediction_rules(model) -> list[Rule]:
  return _encoder_rules() + [Rule(r"head\.projection\.weight", "head/kernel", linear(1)),
                             Rule(r"head\.projection\.bias", "head/bias")]


def _pretraining_rules(model) -> list[Rule]:
  return _encoder_rules() + [Rule(r"head\.linear\.weight", "head/kernel", linear(1)),
                             Rule(r"head\.linear\.bias", "head/bias")]


register_key_map("hf", "PatchTST", KeyMap(_prediction_rules, prepare=_drop_counters))
register_key_map("hf", "PatchTSTForPretraining", KeyMap(_pretraining_rules, prepare=_drop_counters))
