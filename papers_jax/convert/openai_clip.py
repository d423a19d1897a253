"""OpenAI's CLIP state dicts (the released RN50 ... ViT-L/14 files of github.com/openai/CLIP, as
`model.state_dict()`) → `papers_jax.models.clip.CLIP`, ResNet and ViT image towers alike.

Their layout: `visual.{conv1, class_embedding, positional_embedding, ln_pre, transformer.resblocks.N.
{ln_1, attn.in_proj_weight / in_proj_bias (q; k; v stacked), attn.out_proj, ln_2, mlp.c_fc, mlp.c_proj},
ln_post, proj}` for a ViT; `visual.{conv1-3, bn1-3, layerK.J.{conv1-3, bn1-3, downsample.0 (conv),
downsample.1 (BN)}, attnpool.{positional_embedding, q_proj, k_proj, v_proj, c_proj}}` for a ResNet;
`token_embedding, positional_embedding, transformer.resblocks.N..., ln_final, text_projection,
logit_scale`. `proj` and `text_projection` are (in, out) matrices applied as x @ W, i.e. already our
kernel layout. The scalars `input_resolution`, `context_length` and `vocab_size` that the JIT archives
carry, and BatchNorm's `num_batches_tracked`, are not parameters and are skipped. OpenAI's models
take the [EOS] feature at the largest token id: create ours with eos_token_id=None (the default).
The released .pt files are TorchScript archives, which `torch.load(weights_only=True)` refuses: save
their state dict once with `torch.save(torch.jit.load(path, map_location="cpu").state_dict(), out)`
(or to .safetensors) and convert that, e.g. `tools/convert_weights.py --source openai --model clip_rn50`.
"""

import numpy as np

from papers_jax.convert.keymap import KeyMap, Rule, conv_kernel, linear, register_key_map, reshape
from papers_jax.nn.embed import resample_pos_embed

_BN = {"weight": "scale", "bias": "bias", "running_mean": "mean", "running_var": "var"}


def _skip(x, shape):
  del x, shape  # not a parameter of ours (a counter or a config scalar)


def _blocks(prefix: str, dst: str) -> list[Rule]:
  blk = prefix + r"transformer\.resblocks\.(\d+)\."
  return [
      Rule(blk + r"ln_([12])\.weight", dst + r"blocks/\1/norm\2/scale"),
      Rule(blk + r"ln_([12])\.bias", dst + r"blocks/\1/norm\2/bias"),
      Rule(blk + r"attn\.in_proj_weight", dst + r"blocks/\1/attn/qkv/kernel", linear(1)),  # (3D, D) → (D, 3, H, hd)
      Rule(blk + r"attn\.in_proj_bias", dst + r"blocks/\1/attn/qkv/bias", reshape),
      Rule(blk + r"attn\.out_proj\.weight", dst + r"blocks/\1/attn/proj/kernel", linear(2)),
      Rule(blk + r"attn\.out_proj\.bias", dst + r"blocks/\1/attn/proj/bias"),
      Rule(blk + r"mlp\.c_fc\.weight", dst + r"blocks/\1/mlp/fc1/kernel", linear(1)),
      Rule(blk + r"mlp\.c_fc\.bias", dst + r"blocks/\1/mlp/fc1/bias"),
      Rule(blk + r"mlp\.c_proj\.weight", dst + r"blocks/\1/mlp/fc2/kernel", linear(1)),
      Rule(blk + r"mlp\.c_proj\.bias", dst + r"blocks/\1/mlp/fc2/bias"),
  ]


def _vit_rules(model) -> list[Rule]:
  grid = model.visual.patch_embed.grid_size

  def as_cls_token(x, shape):  # (D,) → (1, 1, D)
    return x.reshape(shape) if x.size == np.prod(shape) else x

  def as_pos_embed(x, shape):  # (1 + N, D) → (1, 1 + N, D)
    return x[None] if x.ndim == 2 else x

  return [
      Rule(r"visual\.conv1\.weight", "visual/patch_embed/proj/kernel", conv_kernel),
      Rule(r"visual\.class_embedding", "visual/cls_token", as_cls_token),
      Rule(r"visual\.positional_embedding", "visual/pos_embed", as_pos_embed,
           resample=lambda x: np.asarray(resample_pos_embed(x, grid, num_prefix_tokens=1))),
      Rule(r"visual\.ln_pre\.weight", "visual/norm_pre/scale"),
      Rule(r"visual\.ln_pre\.bias", "visual/norm_pre/bias"),
      *_blocks(r"visual\.", "visual/"),
      Rule(r"visual\.ln_post\.weight", "visual/norm/scale"),
      Rule(r"visual\.ln_post\.bias", "visual/norm/bias"),
      Rule(r"visual\.proj", "visual_projection/kernel"),
  ]


def _resnet_rules(model) -> list[Rule]:
  del model
  blk = r"visual\.(layer[1-4])\.(\d+)\."
  rules = [
      Rule(r"visual\.(conv[123])\.weight", r"visual/\1/kernel", conv_kernel),
      Rule(blk + r"(conv[123])\.weight", r"visual/\1/\2/\3/kernel", conv_kernel),
      Rule(blk + r"downsample\.0\.weight", r"visual/\1/\2/downsample_conv/kernel", conv_kernel),
      Rule(r"visual\.attnpool\.positional_embedding", "visual/attnpool/pos_embed"),
      Rule(r"visual\.attnpool\.([qkv]_proj)\.weight", r"visual/attnpool/\1/kernel", linear(1)),  # → (C, H, hd)
      Rule(r"visual\.attnpool\.([qkv]_proj)\.bias", r"visual/attnpool/\1/bias", reshape),
      Rule(r"visual\.attnpool\.c_proj\.weight", "visual/attnpool/c_proj/kernel", linear(2)),  # → (H, hd, out)
      Rule(r"visual\.attnpool\.c_proj\.bias", "visual/attnpool/c_proj/bias"),
  ]
  for theirs, ours in _BN.items():
    rules += [
        Rule(rf"visual\.(bn[123])\.{theirs}", rf"visual/\1/{ours}"),
        Rule(blk + rf"(bn[123])\.{theirs}", rf"visual/\1/\2/\3/{ours}"),
        Rule(blk + rf"downsample\.1\.{theirs}", rf"visual/\1/\2/downsample_bn/{ours}"),
    ]
  return rules


def _rules(model) -> list[Rule]:
  return [
      Rule(r"input_resolution|context_length|vocab_size|.*num_batches_tracked", "", _skip),
      *(_vit_rules(model) if model.vision == "vit" else _resnet_rules(model)),
      Rule(r"token_embedding\.weight", "text/token_embed"),
      Rule(r"positional_embedding", "text/pos_embed"),
      *_blocks("", "text/"),
      Rule(r"ln_final\.weight", "text/norm/scale"),
      Rule(r"ln_final\.bias", "text/norm/bias"),
      Rule(r"text_projection", "text_projection/kernel"),
      Rule(r"logit_scale", "logit_scale", lambda x, shape: x.reshape(shape)),
  ]


register_key_map("openai", "CLIP", KeyMap(_rules))
