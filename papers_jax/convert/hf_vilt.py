"""HF transformers ViLT state dicts (`ViltModel`, `ViltForMaskedLM`, `ViltForQuestionAnswering`) →
`papers_jax.models.vilt.ViLT`.

Keys read: `vilt.` (or no prefix, a bare ViltModel) `embeddings.text_embeddings.*` (BERT's names) →
text_embeddings; `embeddings.patch_embeddings.projection`, `cls_token`, `position_embeddings` →
ViT's patch_embed, cls_token, pos_embed; `embeddings.token_type_embeddings` (the modality types) →
modality_type_embeddings; `encoder.layer.N.*` (layernorm_before / layernorm_after, separate
query / key / value fused into our qkv) → blocks.N; `layernorm` → norm; `pooler.dense` → pooler;
`mlm_score.transform.*` and `mlm_score.decoder.bias` → mlm_head (the decoder's weight is the tied word
embedding table: checked equal and dropped); `classifier.{0,1,3}` → vqa_head.{fc1,norm,fc2}.
HF's ITM-style retrieval head (`rank_output`, one logit) has no counterpart: our itm_head is the
paper's 2-way classifier.
"""

from papers_jax.convert.hf_bert import _dense, _merge_tied, _norm
from papers_jax.convert.hf_mae import _fuse_qkv, _layer_rules
from papers_jax.convert.keymap import KeyMap, Rule, conv_kernel, register_key_map

_P = r"(?:vilt\.)?"


def _prepare(state_dict: dict) -> dict:
  words = next((k for k in ("vilt.embeddings.text_embeddings.word_embeddings.weight",
                            "embeddings.text_embeddings.word_embeddings.weight") if k in state_dict),
               "vilt.embeddings.text_embeddings.word_embeddings.weight")
  state_dict = _merge_tied(state_dict, "mlm_score.decoder.weight", words)
  return _fuse_qkv(state_dict)


def _rules(model) -> list[Rule]:
  del model
  e, t = _P + r"embeddings\.", _P + r"embeddings\.text_embeddings\."
  return [
      Rule(t + r"word_embeddings\.weight", "text_embeddings/word_embeddings"),
      Rule(t + r"position_embeddings\.weight", "text_embeddings/position_embeddings"),
      Rule(t + r"token_type_embeddings\.weight", "text_embeddings/token_type_embeddings"),
      *_norm(t + "LayerNorm", "text_embeddings/norm"),
      Rule(e + r"patch_embeddings\.projection\.weight", "patch_embed/proj/kernel", conv_kernel),
      Rule(e + r"patch_embeddings\.projection\.bias", "patch_embed/proj/bias"),
      Rule(e + r"cls_token", "cls_token"),
      Rule(e + r"position_embeddings", "pos_embed"),
      Rule(e + r"token_type_embeddings\.weight", "modality_type_embeddings"),
      *_layer_rules(_P + r"encoder\.layer", "blocks"),
      *_norm(_P + "layernorm", "norm"),
      *_dense(_P + r"pooler\.dense", "pooler"),
      *_dense(r"mlm_score\.transform\.dense", "mlm_head/transform"),
      *_norm(r"mlm_score\.transform\.LayerNorm", "mlm_head/norm"),
      Rule(r"mlm_score\.decoder\.bias", "mlm_head/bias"),
      *_dense(r"classifier\.0", "vqa_head/fc1"),
      *_norm(r"classifier\.1", "vqa_head/norm"),
      *_dense(r"classifier\.3", "vqa_head/fc2"),
  ]


register_key_map("hf", "ViLT", KeyMap(_rules, classes_key="classifier.3.weight", prepare=_prepare))
