"""HF transformers `GPT2LMHeadModel` / `GPT2Model` state dicts → `papers_jax.models.gpt.GPT`.

HF's GPT-2 keeps OpenAI's `Conv1D` layers, whose weights are stored (in, out), the layout of our
kernels, so nothing is transposed, only split into our axes: the fused `c_attn` (D, 3D), in q, k, v
order, becomes the qkv kernel (embed, 3, heads, head_dim) and `attn.c_proj` (D, D) the projection
(heads, head_dim, embed). Keys are read with or without the `transformer.` prefix (the hub's
checkpoints were saved from `GPT2Model`, without it).

`lm_head.weight` is the token embedding (tied): when present it must equal `wte.weight`, and is
then dropped. Older checkpoints carry each layer's causal-mask buffer `attn.bias` (checked to be
lower-triangular, not loaded) and `attn.masked_bias` (a constant, ignored). What the config alone
decides is not visible here: the converted model assumes GPT-2's defaults (gelu_new, attention
scaled by 1/sqrt(head_dim), no per-layer attention scaling).
Export writes `GPT2LMHeadModel`'s state dict: the `transformer.` prefix and `lm_head.weight`, a copy
of the token embedding.
"""

import math

import numpy as np

from papers_jax.convert.keymap import KeyMap, Rule, one_layout, register_key_map, reshape, with_inverse
from papers_jax.errors import CheckpointError

_PREFIX = r"(?:transformer\.)?"


def _numpy(x) -> np.ndarray:
  if hasattr(x, "detach"):
    x = x.detach().cpu()
    return (x.float() if str(x.dtype) == "torch.bfloat16" else x).numpy()
  return np.asarray(x)


def _untie_check(state_dict: dict) -> dict:
  """Drops `lm_head.weight` after checking that it is the token embedding."""
  out = dict(state_dict)
  head = out.pop("lm_head.weight", None)
  wte = out.get("transformer.wte.weight", out.get("wte.weight"))
  if head is None:
    return out
  if wte is None:
    out["lm_head.weight"] = head  # reported as unexpected, beside the missing token embedding
    return out
  head, wte = _numpy(head), _numpy(wte)
  if head.shape != wte.shape or not np.array_equal(head, wte):
    raise CheckpointError("lm_head.weight differs from the token embedding wte.weight, but GPT-2 ties them and "
                          "our model has no separate head; this checkpoint is not a (tied) GPT-2.")
  return out


def conv1d(num_in_axes: int = 1):
  """A `Conv1D` weight (in, out) → our kernel (*in_axes, *out_axes), splitting each side into our axes."""
  def hook(w, shape):
    ins, outs = shape[:num_in_axes], shape[num_in_axes:]
    if w.shape == (math.prod(ins), math.prod(outs)):
      w = w.reshape(shape)
    return w
  return with_inverse(hook, lambda x: x.reshape(math.prod(x.shape[:num_in_axes]), math.prod(x.shape[num_in_axes:])))


def _tie_head(state_dict: dict, model) -> dict:
  """The inverse of `_untie_check`: GPT2LMHeadModel's state dict holds the tied head as well."""
  del model
  return {**state_dict, "lm_head.weight": state_dict["transformer.wte.weight"].copy()}


def _causal_buffer(x, _):
  """The `attn.bias` buffer of old checkpoints: (1, 1, n, n), lower-triangular ones."""
  x = np.asarray(x)
  n = x.shape[-1] if x.ndim >= 2 and x.shape[-1] == x.shape[-2] and x.size == x.shape[-1] ** 2 else 0
  if not n or not np.array_equal(x.reshape(n, n) != 0, np.tri(n, dtype=bool)):
    raise CheckpointError(f"attn.bias {tuple(x.shape)} is not GPT-2's causal mask (lower-triangular ones); "
                          "this checkpoint does not come from a causal GPT-2.")
  return x


def _ignore(x, _):
  return x


def _rules(model) -> list[Rule]:
  del model
  blk = _PREFIX + r"h\.(\d+)\."
  dst = r"blocks/\1/"
  return [
      Rule(_PREFIX + r"wte\.weight", "token_embed"),
      Rule(_PREFIX + r"wpe\.weight", "pos_embed"),
      Rule(blk + r"ln_1\.weight", dst + "norm1/scale"),
      Rule(blk + r"ln_1\.bias", dst + "norm1/bias"),
      Rule(blk + r"attn\.c_attn\.weight", dst + "attn/qkv/kernel", conv1d(1)),  # (D, 3D) → (D, 3, H, hd)
      Rule(blk + r"attn\.c_attn\.bias", dst + "attn/qkv/bias", reshape),  # (3D,) → (3, H, hd)
      Rule(blk + r"attn\.c_proj\.weight", dst + "attn/proj/kernel", conv1d(2)),  # (D, D) → (H, hd, D)
      Rule(blk + r"attn\.c_proj\.bias", dst + "attn/proj/bias"),
      Rule(blk + r"attn\.bias", "", _causal_buffer),
      Rule(blk + r"attn\.masked_bias", "", _ignore),
      Rule(blk + r"ln_2\.weight", dst + "norm2/scale"),
      Rule(blk + r"ln_2\.bias", dst + "norm2/bias"),
      Rule(blk + r"mlp\.c_fc\.weight", dst + "mlp/fc1/kernel", conv1d(1)),
      Rule(blk + r"mlp\.c_fc\.bias", dst + "mlp/fc1/bias"),
      Rule(blk + r"mlp\.c_proj\.weight", dst + "mlp/fc2/kernel", conv1d(1)),
      Rule(blk + r"mlp\.c_proj\.bias", dst + "mlp/fc2/bias"),
      Rule(_PREFIX + r"ln_f\.weight", "norm/scale"),
      Rule(_PREFIX + r"ln_f\.bias", "norm/bias"),
  ]


register_key_map("hf", "GPT", KeyMap(_rules, prepare=_untie_check, export_rules=lambda m: one_layout(_rules(m)),
                                    unprepare=_tie_head))
