"""HF transformers `DetrForObjectDetection` state dicts → `papers_jax.models.detr.DETR`, and
`DeformableDetrForObjectDetection` → `papers_jax.models.deformable_detr.DeformableDETR`.

Two layouts are read: transformers ≥ 5 (an HF `ResNetBackbone` under `model.backbone.model.embedder` /
`encoder.stages.I.layers.J`, attention `o_proj`, `mlp.fc1`) and the one the hub checkpoints
(`facebook/detr-resnet-50`) were saved in (a timm ResNet under `model.backbone.conv_encoder.model`,
`out_proj`, layer-level `fc1`); a timm backbone built by transformers ≥ 5 (`use_timm_backbone=True`) sits
under `model.backbone.model`. The frozen BatchNorms' weight, bias and running statistics all land in
our `FrozenBatchNorm`'s four statistics. Export writes the transformers ≥ 5 layout.

Deformable DETR: HF keeps one class and box head per prediction (decoder layers, + 1 for two-stage
proposals) and, where the model shares them (no box refinement), ties them all to head 0; the tied
copies (and the decoder's own references to the heads, `model.decoder.{class,bbox}_embed`) are skipped.
"""

from papers_jax.convert.keymap import KeyMap, Rule, conv_kernel, linear, one_layout, register_key_map, reshape

_BN = {"weight": "scale", "bias": "bias", "running_mean": "mean", "running_var": "var"}


def _ignore(x, shape):
  del x, shape  # BatchNorm's num_batches_tracked: a counter our FrozenBatchNorm does not keep


def _backbone_rules(model) -> list[Rule]:
  hf = r"model\.backbone\.model\."
  timm = r"model\.backbone\.(?:conv_encoder\.)?model\."
  rules = [
      Rule(r"model\.backbone\..*num_batches_tracked", "", _ignore),
      Rule(hf + r"embedder\.embedder\.convolution\.weight", "backbone/conv1/kernel", conv_kernel),
      Rule(timm + r"conv1\.weight", "backbone/conv1/kernel", conv_kernel),
  ]
  for theirs, ours in _BN.items():
    rules += [Rule(hf + rf"embedder\.embedder\.normalization\.{theirs}", f"backbone/bn1/{ours}"),
              Rule(timm + rf"bn1\.{theirs}", f"backbone/bn1/{ours}")]
  for i in range(model.backbone.num_stages):  # their stage i is our layer{i+1}
    blk = hf + rf"encoder\.stages\.{i}\.layers\.(\d+)\."
    tblk = timm + rf"layer{i + 1}\.(\d+)\."
    dst = rf"backbone/layer{i + 1}/\1/"
    rules += [Rule(blk + r"shortcut\.convolution\.weight", dst + "downsample_conv/kernel", conv_kernel),
              Rule(tblk + r"downsample\.0\.weight", dst + "downsample_conv/kernel", conv_kernel)]
    for k in range(3):
      rules += [Rule(blk + rf"layer\.{k}\.convolution\.weight", dst + f"conv{k + 1}/kernel", conv_kernel),
                Rule(tblk + rf"conv{k + 1}\.weight", dst + f"conv{k + 1}/kernel", conv_kernel)]
    for theirs, ours in _BN.items():
      rules += [Rule(blk + rf"shortcut\.normalization\.{theirs}", dst + f"downsample_bn/{ours}"),
                Rule(tblk + rf"downsample\.1\.{theirs}", dst + f"downsample_bn/{ours}")]
      for k in range(3):
        rules += [Rule(blk + rf"layer\.{k}\.normalization\.{theirs}", dst + f"bn{k + 1}/{ours}"),
                  Rule(tblk + rf"bn{k + 1}\.{theirs}", dst + f"bn{k + 1}/{ours}")]
  return rules


def _attention_rules(src: str, dst: str) -> list[Rule]:
  rules = []
  for theirs, ours in (("q_proj", "q"), ("k_proj", "k"), ("v_proj", "v")):
    rules += [Rule(src + rf"\.{theirs}\.weight", f"{dst}/{ours}/kernel", linear(1)),  # (D, D) → (D, heads, hd)
              Rule(src + rf"\.{theirs}\.bias", f"{dst}/{ours}/bias", reshape)]
  rules += [Rule(src + r"\.(?:o_proj|out_proj)\.weight", f"{dst}/proj/kernel", linear(2)),
            Rule(src + r"\.(?:o_proj|out_proj)\.bias", f"{dst}/proj/bias")]
  return rules


def _norm(src: str, dst: str) -> list[Rule]:
  return [Rule(src + r"\.weight", dst + "/scale"), Rule(src + r"\.bias", dst + "/bias")]


def _mlp(src: str, dst: str) -> list[Rule]:
  return [Rule(src + rf"\.(?:mlp\.)?{fc}\.{kind}", f"{dst}/mlp/{fc}/{ours}", linear(1) if kind == "weight" else None)
          for fc in ("fc1", "fc2") for kind, ours in (("weight", "kernel"), ("bias", "bias"))]


def _rules(model) -> list[Rule]:
  enc, dec = r"model\.encoder\.layers\.(\d+)", r"model\.decoder\.layers\.(\d+)"
  return [
      *_backbone_rules(model),
      Rule(r"model\.input_projection\.weight", "input_proj/kernel", conv_kernel),
      Rule(r"model\.input_projection\.bias", "input_proj/bias"),
      Rule(r"model\.query_position_embeddings\.weight", "query_embed"),
      *_attention_rules(enc + r"\.self_attn", r"encoder/\1/self_attn"),
      *_norm(enc + r"\.self_attn_layer_norm", r"encoder/\1/norm1"),
      *_mlp(enc, r"encoder/\1"),
      *_norm(enc + r"\.final_layer_norm", r"encoder/\1/norm2"),
      *_attention_rules(dec + r"\.self_attn", r"decoder/\1/self_attn"),
      *_norm(dec + r"\.self_attn_layer_norm", r"decoder/\1/norm1"),
      *_attention_rules(dec + r"\.encoder_attn", r"decoder/\1/cross_attn"),
      *_norm(dec + r"\.encoder_attn_layer_norm", r"decoder/\1/norm2"),
      *_mlp(dec, r"decoder/\1"),
      *_norm(dec + r"\.final_layer_norm", r"decoder/\1/norm3"),
      *_norm(r"model\.decoder\.layernorm", "decoder_norm"),
      Rule(r"class_labels_classifier\.weight", "class_embed/kernel", linear(1)),
      Rule(r"class_labels_classifier\.bias", "class_embed/bias"),
      Rule(r"bbox_predictor\.layers\.(\d+)\.weight", r"bbox_embed/layers/\1/kernel", linear(1)),
      Rule(r"bbox_predictor\.layers\.(\d+)\.bias", r"bbox_embed/layers/\1/bias"),
  ]


def _export_rules(model) -> list[Rule]:
  # The timm-backbone alternatives follow each HF one; keep only the first rule per parameter.
  seen, out = set(), []
  for rule in one_layout(_rules(model)):
    if rule.dst and rule.dst not in seen and "conv_encoder" not in rule.src:
      seen.add(rule.dst)
      out.append(rule)
  return out


def _deform_attention_rules(src: str, dst: str) -> list[Rule]:
  rules = []
  for name in ("sampling_offsets", "attention_weights", "value_proj", "output_proj"):
    rules += [Rule(src + rf"\.{name}\.weight", f"{dst}/{name}/kernel", linear(1)),
              Rule(src + rf"\.{name}\.bias", f"{dst}/{name}/bias", reshape)]
  return rules


def _linear(src: str, dst: str) -> list[Rule]:
  return [Rule(src + r"\.weight", dst + "/kernel", linear(1)), Rule(src + r"\.bias", dst + "/bias")]


def _deformable_rules(model) -> list[Rule]:
  enc, dec = r"model\.encoder\.layers\.(\d+)", r"model\.decoder\.layers\.(\d+)"
  heads = len(model.class_embed)
  rules = [
      *_backbone_rules(model),
      Rule(r"model\.level_embed", "level_embed"),
      Rule(r"model\.input_proj\.(\d+)\.0\.weight", r"input_proj/\1/0/kernel", conv_kernel),
      Rule(r"model\.input_proj\.(\d+)\.0\.bias", r"input_proj/\1/0/bias"),
      Rule(r"model\.input_proj\.(\d+)\.1\.weight", r"input_proj/\1/1/scale"),
      Rule(r"model\.input_proj\.(\d+)\.1\.bias", r"input_proj/\1/1/bias"),
      Rule(r"model\.query_position_embeddings\.weight", "query_embed"),
      *_linear(r"model\.reference_points", "reference_points"),
      *_linear(r"model\.enc_output", "enc_output"),
      *_norm(r"model\.enc_output_norm", "enc_output_norm"),
      *_linear(r"model\.pos_trans", "pos_trans"),
      *_norm(r"model\.pos_trans_norm", "pos_trans_norm"),
      *_deform_attention_rules(enc + r"\.self_attn", r"encoder/\1/self_attn"),
      *_norm(enc + r"\.self_attn_layer_norm", r"encoder/\1/norm1"),
      *_mlp(enc, r"encoder/\1"),
      *_norm(enc + r"\.final_layer_norm", r"encoder/\1/norm2"),
      *_attention_rules(dec + r"\.self_attn", r"decoder/\1/self_attn"),
      *_norm(dec + r"\.self_attn_layer_norm", r"decoder/\1/norm1"),
      *_deform_attention_rules(dec + r"\.encoder_attn", r"decoder/\1/cross_attn"),
      *_norm(dec + r"\.encoder_attn_layer_norm", r"decoder/\1/norm2"),
      *_mlp(dec, r"decoder/\1"),
      *_norm(dec + r"\.final_layer_norm", r"decoder/\1/norm3"),
      Rule(r"model\.decoder\.(?:class|bbox)_embed\..*", "", _ignore),  # references to the heads below
  ]
  for i in range(heads):
    rules += [*_linear(rf"class_embed\.{i}", f"class_embed/{i}"),
              Rule(rf"bbox_embed\.{i}\.layers\.(\d+)\.weight", rf"bbox_embed/{i}/layers/\1/kernel", linear(1)),
              Rule(rf"bbox_embed\.{i}\.layers\.(\d+)\.bias", rf"bbox_embed/{i}/layers/\1/bias")]
  rules.append(Rule(r"(?:class|bbox)_embed\.\d+\..*", "", _ignore))  # HF's tied copies of a shared head
  return rules


register_key_map("hf", "DeformableDETR", KeyMap(_deformable_rules))
register_key_map("hf", "DETR", KeyMap(_rules, export_rules=_export_rules))
