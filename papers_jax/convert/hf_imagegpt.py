"""HF transformers `ImageGPTForCausalImageModeling` state dicts → `papers_jax.models.igpt.ImageGPT`.

The transformer's keys are GPT-2's (convert/hf_gpt2.py: `Conv1D` weights stored (in, out), fused `c_attn`,
old checkpoints' causal-mask buffers checked and skipped) without the norms' biases (iGPT's norms have
none); `lm_head.weight` (clusters, D) is a separate, untied head without bias. The config's
`activation_function` must be iGPT's quick_gelu and `scale_attn_by_inverse_layer_idx` /
`reorder_and_upcast_attn` off, HF's defaults, which the state dict cannot show.
"""

from papers_jax.convert import hf_gpt2
from papers_jax.convert.keymap import KeyMap, Rule, linear, one_layout, register_key_map


def _rules(model) -> list[Rule]:
  return [rule for rule in hf_gpt2._rules(model) if not rule.src.endswith(r"\.bias") or "attn" in rule.src
          or "mlp" in rule.src] + [Rule(r"lm_head\.weight", "head/kernel", linear(1))]


register_key_map("hf", "ImageGPT", KeyMap(_rules, export_rules=lambda m: one_layout(_rules(m))))
