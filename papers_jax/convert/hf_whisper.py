"""HF transformers `WhisperForConditionalGeneration` / `WhisperModel` state dicts → `papers_jax.models.whisper.Whisper`.

The 1-D convolutions (out, in, 3) become our (1, 3, in, out) kernels; the q / k / v / out projections
(out, in) become per-head kernels. The encoder's `embed_positions` is Whisper's fixed sinusoid table: it
is checked against ours, not loaded. `proj_out.weight` is the token embedding (tied): it must equal it and
is then dropped. Export writes `WhisperForConditionalGeneration`'s layout, with both tables put back.
"""

import numpy as np

from papers_jax.convert.keymap import KeyMap, Rule, linear, one_layout, register_key_map, reshape, with_inverse
from papers_jax.errors import CheckpointError

_P = r"(?:model\.)?"
_W, _B = r"weight", r"bias"


def _numpy(x) -> np.ndarray:
  if hasattr(x, "detach"):
    x = x.detach().cpu()
    return (x.float() if str(x.dtype) == "torch.bfloat16" else x).numpy()
  return np.asarray(x)


def _conv1d(w, shape):
  """torch Conv1d weight (out, in, k) → our (1, k, in, out)."""
  del shape
  return w.transpose(2, 1, 0)[None]


with_inverse(_conv1d, lambda x: x[0].transpose(2, 1, 0))


def _check_sinusoids(x, _):
  from papers_jax.models.whisper import sinusoids
  x = _numpy(x)
  if not np.allclose(x, sinusoids(x.shape[0], x.shape[1]), atol=1e-4):
    raise CheckpointError("model.encoder.embed_positions is not Whisper's sinusoid table, which our encoder "
                          "computes; this checkpoint's encoder positions cannot be loaded.")
  return x


def _prepare(state_dict: dict) -> dict:
  out = dict(state_dict)
  head = out.pop("proj_out.weight", None)
  table = out.get("model.decoder.embed_tokens.weight", out.get("decoder.embed_tokens.weight"))
  if head is not None and (table is None or not np.array_equal(_numpy(head), _numpy(table))):
    raise CheckpointError("proj_out.weight differs from the decoder's token embedding, which Whisper ties to it; "
                          "our model has no separate output projection.")
  return out


def _unprepare(state_dict: dict, model) -> dict:
  from papers_jax.models.whisper import sinusoids
  out = dict(state_dict)
  out["proj_out.weight"] = out["model.decoder.embed_tokens.weight"].copy()
  out["model.encoder.embed_positions.weight"] = sinusoids(model.max_source_positions, model.d_model)
  return out


def _norm(src: str, dst: str) -> list[Rule]:
  return [Rule(src + r"\." + _W, dst + "/scale"), Rule(src + r"\." + _B, dst + "/bias")]


def _dense(src: str, dst: str, num_in_axes: int = 1, bias: bool = True) -> list[Rule]:
  rules = [Rule(src + r"\.weight", dst + "/kernel", linear(num_in_axes))]
  return rules + ([Rule(src + r"\.bias", dst + "/bias", reshape)] if bias else [])


def _attention(src: str, dst: str) -> list[Rule]:
  return [*_dense(src + r"\.q_proj", dst + "/q"), *_dense(src + r"\.k_proj", dst + "/k", bias=False),
          *_dense(src + r"\.v_proj", dst + "/v"), *_dense(src + r"\.out_proj", dst + "/out", num_in_axes=2)]


def _mlp(layer: str, dst: str) -> list[Rule]:
  return [*_dense(layer + r"fc1", dst + "/mlp/fc1"), *_dense(layer + r"fc2", dst + "/mlp/fc2"),
          *_norm(layer + r"final_layer_norm", dst + "/mlp_norm")]


def _rules(model) -> list[Rule]:
  del model
  enc, dec = _P + r"encoder\.", _P + r"decoder\."
  enc_layer, dec_layer = enc + r"layers\.(\d+)\.", dec + r"layers\.(\d+)\."
  return [
      Rule(enc + r"conv1\.weight", "conv1/kernel", _conv1d), Rule(enc + r"conv1\.bias", "conv1/bias"),
      Rule(enc + r"conv2\.weight", "conv2/kernel", _conv1d), Rule(enc + r"conv2\.bias", "conv2/bias"),
      Rule(enc + r"embed_positions\.weight", "", _check_sinusoids),
      *_attention(enc_layer + r"self_attn", r"encoder/\1/attn"),
      *_norm(enc_layer + r"self_attn_layer_norm", r"encoder/\1/attn_norm"),
      *_mlp(enc_layer, r"encoder/\1"),
      *_norm(enc + r"layer_norm", "encoder_norm"),
      Rule(dec + r"embed_tokens\.weight", "token_embedding"),
      Rule(dec + r"embed_positions\.weight", "position_embedding"),
      *_attention(dec_layer + r"self_attn", r"decoder/\1/attn"),
      *_norm(dec_layer + r"self_attn_layer_norm", r"decoder/\1/attn_norm"),
      *_attention(dec_layer + r"encoder_attn", r"decoder/\1/cross_attn"),
      *_norm(dec_layer + r"encoder_attn_layer_norm", r"decoder/\1/cross_norm"),
      *_mlp(dec_layer, r"decoder/\1"),
      *_norm(dec + r"layer_norm", "decoder_norm"),
  ]


register_key_map("hf", "Whisper", KeyMap(_rules, prepare=_prepare, unprepare=_unprepare,
                                         export_rules=lambda model: one_layout(_rules(model))))
