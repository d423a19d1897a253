"""HF transformers `Wav2Vec2ForPreTraining` / `Wav2Vec2ForCTC` / `Wav2Vec2Model` state dicts →
`papers_jax.models.wav2vec2.Wav2Vec2`.

HF keeps separate q/k/v projections; hf_mae's `_fuse_qkv` stacks them into our fused kernel first. The
position convolution's weight norm is read in both of torch's layouts (`parametrizations.weight.original0/1`
and the older `weight_g` / `weight_v`); its g (1, 1, K) becomes our (K,), v (D, D / groups, K) our (K, D / groups, D).
A bare `Wav2Vec2Model` state dict (no `wav2vec2.` prefix) is read too. Export writes the pre-training /
CTC layout with `parametrizations`.
"""

from papers_jax.convert.hf_mae import _fuse_qkv
from papers_jax.convert.keymap import (KeyMap, Rule, conv1d_kernel, linear, one_layout, register_key_map, reshape,
                                       split_qkv, with_inverse)

_weight_g = with_inverse(lambda g, shape: g.reshape(shape) if g.size == shape[0] else g,
                         lambda x: x.reshape(1, 1, -1))


def _norm(src: str, dst: str) -> list[Rule]:
  return [Rule(src + r"\.weight", dst + "/scale"), Rule(src + r"\.bias", dst + "/bias")]


def _dense(src: str, dst: str, num_in_axes: int = 1) -> list[Rule]:
  return [Rule(src + r"\.weight", dst + "/kernel", linear(num_in_axes)), Rule(src + r"\.bias", dst + "/bias", reshape)]


def _rules(model) -> list[Rule]:
  del model
  p = r"(?:wav2vec2\.)?"
  layer = p + r"encoder\.layers\.(\d+)\."
  conv = p + r"feature_extractor\.conv_layers\.(\d+)\."
  pos = p + r"encoder\.pos_conv_embed\.conv\."
  return [
      Rule(conv + r"conv\.weight", r"feature_extractor/conv_layers/\1/conv/kernel", conv1d_kernel),
      Rule(conv + r"conv\.bias", r"feature_extractor/conv_layers/\1/conv/bias"),
      *_norm(conv + r"layer_norm", r"feature_extractor/conv_layers/\1/layer_norm"),
      *_norm(p + r"feature_projection\.layer_norm", "feature_layer_norm"),
      *_dense(p + r"feature_projection\.projection", "feature_projection"),
      Rule(p + r"masked_spec_embed", "masked_spec_embed"),
      Rule(pos + r"(?:parametrizations\.weight\.original0|weight_g)", "pos_conv_embed/weight_g", _weight_g),
      Rule(pos + r"(?:parametrizations\.weight\.original1|weight_v)", "pos_conv_embed/weight_v", conv1d_kernel),
      Rule(pos + r"bias", "pos_conv_embed/bias"),
      *_norm(p + r"encoder\.layer_norm", "encoder_layer_norm"),
      Rule(layer + r"attention\.qkv\.weight", r"layers/\1/attention/qkv/kernel", linear(1)),
      Rule(layer + r"attention\.qkv\.bias", r"layers/\1/attention/qkv/bias", reshape),
      Rule(layer + r"attention\.out_proj\.weight", r"layers/\1/attention/proj/kernel", linear(2)),
      Rule(layer + r"attention\.out_proj\.bias", r"layers/\1/attention/proj/bias"),
      *_norm(layer + r"layer_norm", r"layers/\1/layer_norm"),
      *_norm(layer + r"final_layer_norm", r"layers/\1/final_layer_norm"),
      *_dense(layer + r"feed_forward\.intermediate_dense", r"layers/\1/feed_forward/intermediate_dense"),
      *_dense(layer + r"feed_forward\.output_dense", r"layers/\1/feed_forward/output_dense"),
      Rule(r"quantizer\.codevectors", "quantizer/codevectors"),
      *_dense(r"quantizer\.weight_proj", "quantizer/weight_proj"),
      *_dense(r"project_hid", "project_hid"),
      *_dense(r"project_q", "project_q"),
      *_dense(r"lm_head", "lm_head"),
  ]


register_key_map("hf", "Wav2Vec2", KeyMap(
    _rules, classes_key="lm_head.weight", prepare=_fuse_qkv, export_rules=lambda m: one_layout(_rules(m)),
    unprepare=lambda sd, m: split_qkv(sd, ("q_proj", "k_proj", "v_proj"))))
