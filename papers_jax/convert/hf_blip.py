"""HF transformers BLIP state dicts (`BlipForImageTextRetrieval`, `BlipForConditionalGeneration`) →
`papers_jax.models.blip.BLIP`.

Keys read:
  vision_model.embeddings.{class_embedding, patch_embedding, position_embedding} → visual.{cls_token,
      patch_embed.proj, pos_embed}; vision_model.encoder.layers.N.{layer_norm1, self_attn.qkv,
      self_attn.projection, layer_norm2, mlp.fc1, mlp.fc2} → visual.blocks.N.{norm1, attn.qkv, attn.proj,
      norm2, mlp.fc1, mlp.fc2}; vision_model.post_layernorm → visual.norm;
  text_encoder.* (retrieval) or text_decoder.bert.* (captioning): embeddings.{word_embeddings,
      position_embeddings, LayerNorm} → text.embeddings; encoder.layer.N.attention.{self.{query,key,value}
      (fused), output.dense, output.LayerNorm} → text.layers.N.self_attn / self_attn_norm for the encoder and
      dec_self_attn / dec_self_attn_norm for the decoder; crossattention.self.query → cross_attn.q,
      crossattention.self.{key,value} (fused) → cross_attn.kv, crossattention.output.{dense, LayerNorm} →
      cross_attn.proj, cross_norm; intermediate.dense, output.dense, output.LayerNorm → mlp.fc1, mlp.fc2,
      mlp_norm;
  vision_proj, text_proj, itm_head (retrieval); text_decoder.cls.predictions.{transform.dense,
      transform.LayerNorm, bias} → lm_head.{transform, norm, bias} (captioning; the decoder's weight and bias
      are tied to the word embeddings and the bias: checked equal and dropped).
Our model shares the embeddings, cross-attention and FFN between the encoder and the decoder (as the
paper), HF's models keep them apart. So `load_hf_blip` loads one HF model into the parts it covers and
requires every other param to be one the other model covers (RETRIEVAL_ONLY / CAPTIONING_ONLY); the
learned temperature `temp` is in neither (HF's BlipModel has a logit scale instead).
"""

import re

import numpy as np

from papers_jax.convert.hf_bert import _dense, _merge_tied, _norm
from papers_jax.convert.keymap import KeyMap, Rule, conv_kernel, linear, register_key_map, reshape
from papers_jax.errors import CheckpointError

# Our params that only the other HF model provides.
RETRIEVAL_ONLY = (r"^text/layers/\d+/self_attn/", r"^text/layers/\d+/self_attn_norm/", r"^vision_proj/",
                  r"^text_proj/", r"^itm_head/", r"^temp$")
CAPTIONING_ONLY = (r"^text/layers/\d+/dec_self_attn/", r"^text/layers/\d+/dec_self_attn_norm/", r"^lm_head/",
                   r"^temp$")

_TEXT = r"(text_encoder|text_decoder\.bert)\."
_QKV = re.compile(r"(.*\.(?:attention|crossattention)\.self)\.(query|key|value)\.(weight|bias)")


def _numpy(x):
  return x.detach().cpu().numpy() if hasattr(x, "detach") else np.asarray(x)


def _prepare(state_dict: dict) -> dict:
  """Fuses self-attention q, k, v into `.qkv` and cross-attention k, v into `.kv`; drops the tied LM decoder."""
  sd = _merge_tied(state_dict, "text_decoder.cls.predictions.decoder.weight",
                   "text_decoder.bert.embeddings.word_embeddings.weight")
  sd = _merge_tied(sd, "text_decoder.cls.predictions.decoder.bias", "text_decoder.cls.predictions.bias")
  groups: dict[tuple[str, str], dict[str, str]] = {}
  for key in sd:
    if m := _QKV.fullmatch(key):
      groups.setdefault((m.group(1), m.group(3)), {})[m.group(2)] = key
  out = dict(sd)
  for (prefix, kind), keys in groups.items():
    if set(keys) != {"query", "key", "value"}:
      continue  # incomplete: reported as unexpected
    if prefix.endswith("crossattention.self"):
      out[f"{prefix}.kv.{kind}"] = np.concatenate([_numpy(sd[keys[w]]) for w in ("key", "value")])
      del out[keys["key"]], out[keys["value"]]
    else:
      out[f"{prefix}.qkv.{kind}"] = np.concatenate([_numpy(sd[keys[w]]) for w in ("query", "key", "value")])
      for key in keys.values():
        del out[key]
  return out


def _self_attention(layer: str, enc: str) -> list[Rule]:
  """The self-attention of our layer `enc` (self_attn or dec_self_attn)."""
  a = layer + r"attention\."
  return [
      Rule(a + r"self\.qkv\.weight", rf"text/layers/\2/{enc}/qkv/kernel", linear(1)),
      Rule(a + r"self\.qkv\.bias", rf"text/layers/\2/{enc}/qkv/bias", reshape),
      Rule(a + r"output\.dense\.weight", rf"text/layers/\2/{enc}/proj/kernel", linear(2)),
      Rule(a + r"output\.dense\.bias", rf"text/layers/\2/{enc}/proj/bias"),
      *_norm(a + r"output\.LayerNorm", rf"text/layers/\2/{enc}_norm"),
  ]


def _text_rules(prefix: str, enc: str) -> list[Rule]:
  layer = prefix + r"encoder\.layer\.(\d+)\."
  c = layer + r"crossattention\."
  # The prefix is group 1 of every pattern, the layer index group 2.
  return [
      Rule(prefix + r"embeddings\.word_embeddings\.weight", "text/embeddings/word_embeddings"),
      Rule(prefix + r"embeddings\.position_embeddings\.weight", "text/embeddings/position_embeddings"),
      *_norm(prefix + r"embeddings\.LayerNorm", "text/embeddings/norm"),
      *_self_attention(layer, enc),
      Rule(c + r"self\.query\.weight", r"text/layers/\2/cross_attn/q/kernel", linear(1)),
      Rule(c + r"self\.query\.bias", r"text/layers/\2/cross_attn/q/bias", reshape),
      Rule(c + r"self\.kv\.weight", r"text/layers/\2/cross_attn/kv/kernel", linear(1)),
      Rule(c + r"self\.kv\.bias", r"text/layers/\2/cross_attn/kv/bias", reshape),
      Rule(c + r"output\.dense\.weight", r"text/layers/\2/cross_attn/proj/kernel", linear(2)),
      Rule(c + r"output\.dense\.bias", r"text/layers/\2/cross_attn/proj/bias"),
      *_norm(c + r"output\.LayerNorm", r"text/layers/\2/cross_norm"),
      Rule(layer + r"intermediate\.dense\.weight", r"text/layers/\2/mlp/fc1/kernel", linear(1)),
      Rule(layer + r"intermediate\.dense\.bias", r"text/layers/\2/mlp/fc1/bias"),
      Rule(layer + r"output\.dense\.weight", r"text/layers/\2/mlp/fc2/kernel", linear(1)),
      Rule(layer + r"output\.dense\.bias", r"text/layers/\2/mlp/fc2/bias"),
      *_norm(layer + r"output\.LayerNorm", r"text/layers/\2/mlp_norm"),
  ]


def _vision_rules() -> list[Rule]:
  v, blk = r"vision_model\.", r"vision_model\.encoder\.layers\.(\d+)\."
  return [
      Rule(v + r"embeddings\.class_embedding", "visual/cls_token"),
      Rule(v + r"embeddings\.patch_embedding\.weight", "visual/patch_embed/proj/kernel", conv_kernel),
      Rule(v + r"embeddings\.patch_embedding\.bias", "visual/patch_embed/proj/bias"),
      Rule(v + r"embeddings\.position_embedding", "visual/pos_embed"),
      *_norm(blk + "layer_norm1", r"visual/blocks/\1/norm1"),
      *_norm(blk + "layer_norm2", r"visual/blocks/\1/norm2"),
      Rule(blk + r"self_attn\.qkv\.weight", r"visual/blocks/\1/attn/qkv/kernel", linear(1)),
      Rule(blk + r"self_attn\.qkv\.bias", r"visual/blocks/\1/attn/qkv/bias", reshape),
      Rule(blk + r"self_attn\.projection\.weight", r"visual/blocks/\1/attn/proj/kernel", linear(2)),
      Rule(blk + r"self_attn\.projection\.bias", r"visual/blocks/\1/attn/proj/bias"),
      *_dense(blk + r"mlp\.fc1", r"visual/blocks/\1/mlp/fc1"),
      *_dense(blk + r"mlp\.fc2", r"visual/blocks/\1/mlp/fc2"),
      *_norm(v + "post_layernorm", "visual/norm"),
  ]


def _rules(model) -> list[Rule]:
  del model
  p = r"text_decoder\.cls\.predictions\."
  return [
      *_vision_rules(),
      *_text_rules(r"(text_encoder)\.", "self_attn"),
      *_text_rules(r"(text_decoder\.bert)\.", "dec_self_attn"),
      *_dense(r"vision_proj", "vision_proj"),
      *_dense(r"text_proj", "text_proj"),
      *_dense(r"itm_head", "itm_head"),
      *_dense(p + r"transform\.dense", "lm_head/transform"),
      *_norm(p + r"transform\.LayerNorm", "lm_head/norm"),
      Rule(p + r"bias", "lm_head/bias"),
  ]


register_key_map("hf", "BLIP", KeyMap(_rules, prepare=_prepare))


def load_hf_blip(model, state_dict):
  """Loads a `BlipForImageTextRetrieval` or `BlipForConditionalGeneration` state dict into `model` (strict:
  every key is used, and the only params left at init are those the other HF model covers). Returns the
  ConversionReport."""
  from papers_jax.convert import load_torch_weights
  keys = set(state_dict)
  retrieval = any(k.startswith("text_encoder.") for k in keys)
  captioning = any(k.startswith("text_decoder.") for k in keys)
  if retrieval == captioning:
    raise CheckpointError("a BLIP state dict must be HF's BlipForImageTextRetrieval (text_encoder.*) or "
                          "BlipForConditionalGeneration (text_decoder.*): convert one at a time")
  return load_torch_weights(model, state_dict, "hf", allow_missing=CAPTIONING_ONLY if retrieval else RETRIEVAL_ONLY)
