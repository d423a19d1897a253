"""HF transformers DPT state dicts (`DPTForSemanticSegmentation`, ViT backbone, `readout_type="project"`) →
`papers_jax.models.dpt.DPT`.

Keys read: `dpt.embeddings.*` (patch projection, cls_token, position_embeddings) and `dpt.encoder.layer.N.*`
(separate query / key / value fused into our qkv) → backbone; `dpt.layernorm` → backbone/norm;
`neck.reassemble_stage.readout_projects.i.0` → decoder/reassemble/i/readout, `.layers.i.projection` →
project, `.layers.i.resize` (a transposed conv for i = 0, 1: spatially flipped; a strided conv for i = 3)
→ resample; `neck.convs.i` → decoder/reassemble/i/to_features; `neck.fusion_stage.layers.i.{residual_layer1,
residual_layer2, projection}` → decoder/fusion/i/{skip_unit, unit, out_conv} (layer 0's residual_layer1,
which HF builds but never calls, is dropped); `head.head.{0,1,4}` and `auxiliary_head.head.{0,1,4}` → head /
aux_head {conv, bn, classifier}, BatchNorm running statistics included (num_batches_tracked is not kept).
HF's DPT-Hybrid (a BiT stem) and the BEiT / Swin backbones are not mapped. Loading only: no export.
"""

import numpy as np

from papers_jax.convert.hf_mae import _fuse_qkv, _layer_rules
from papers_jax.convert.keymap import KeyMap, Rule, conv_kernel, linear, register_key_map

_BN = {"weight": "scale", "bias": "bias", "running_mean": "mean", "running_var": "var"}


def _conv_transpose(w, shape):
  """torch ConvTranspose2d weight (in, out, kh, kw) → ours (kh, kw, in, out), spatially flipped."""
  del shape
  return np.ascontiguousarray(np.asarray(w).transpose(2, 3, 0, 1)[::-1, ::-1])


def _prepare(state_dict: dict) -> dict:
  unused = "neck.fusion_stage.layers.0.residual_layer1."
  return _fuse_qkv({k: v for k, v in state_dict.items() if not k.startswith(unused)
                    and not k.endswith("num_batches_tracked")})


def _conv(src: str, dst: str, hook=conv_kernel) -> list[Rule]:
  return [Rule(src + r"\.weight", dst + "/kernel", hook), Rule(src + r"\.bias", dst + "/bias")]


def _head(src: str, dst: str) -> list[Rule]:
  return [Rule(src + r"\.0\.weight", dst + "/conv/kernel", conv_kernel),
          *[Rule(src + rf"\.1\.{theirs}", f"{dst}/bn/{ours}") for theirs, ours in _BN.items()],
          *_conv(src + r"\.4", dst + "/classifier")]


def _rules(model) -> list[Rule]:
  del model
  e, r, f = r"dpt\.embeddings\.", r"neck\.reassemble_stage\.", r"neck\.fusion_stage\.layers\.(\d)\."
  unit = {"residual_layer1": "skip_unit", "residual_layer2": "unit"}
  return [
      Rule(e + r"patch_embeddings\.projection\.weight", "backbone/patch_embed/proj/kernel", conv_kernel),
      Rule(e + r"patch_embeddings\.projection\.bias", "backbone/patch_embed/proj/bias"),
      Rule(e + r"cls_token", "backbone/cls_token"),
      Rule(e + r"position_embeddings", "backbone/pos_embed"),
      *_layer_rules(r"dpt\.encoder\.layer", "backbone/blocks"),
      Rule(r"dpt\.layernorm\.weight", "backbone/norm/scale"), Rule(r"dpt\.layernorm\.bias", "backbone/norm/bias"),
      Rule(r + r"readout_projects\.(\d)\.0\.weight", r"decoder/reassemble/\1/readout/kernel", linear(1)),
      Rule(r + r"readout_projects\.(\d)\.0\.bias", r"decoder/reassemble/\1/readout/bias"),
      *_conv(r + r"layers\.(\d)\.projection", r"decoder/reassemble/\1/project"),
      *_conv(r + r"layers\.([01])\.resize", r"decoder/reassemble/\1/resample", _conv_transpose),
      *_conv(r + r"layers\.([3])\.resize", r"decoder/reassemble/\1/resample"),
      Rule(r"neck\.convs\.(\d)\.weight", r"decoder/reassemble/\1/to_features/kernel", conv_kernel),
      *[rule for theirs, ours in unit.items() for conv in ("1", "2")
        for rule in _conv(f + theirs + rf"\.convolution{conv}", rf"decoder/fusion/\1/{ours}/conv{conv}")],
      *_conv(f + r"projection", r"decoder/fusion/\1/out_conv"),
      *_head(r"head\.head", "head"),
      *_head(r"auxiliary_head\.head", "aux_head"),
  ]


register_key_map("hf", "DPT", KeyMap(_rules, classes_key="head.head.4.weight", prepare=_prepare))
