"""HF transformers `SamModel` state dicts → `papers_jax.models.sam.SAM`.

  sd = convert.load_state_dict("sam-vit-base/model.safetensors")   # facebook/sam-vit-base, on disk
  model = models.create("sam_vit_b")
  convert.load_torch_weights(model, sd, "hf")

HF keeps the Fourier Gaussian twice (`shared_image_embedding` and the prompt encoder's tied copy, the
second skipped) and each of the four point / corner embeddings as its own (1, C) table; `prepare` stacks
those into our (4, C) `point_embeddings` (0 background, 1 foreground, 2 top-left, 3 bottom-right).
Transposed convs are spatially flipped (nn/conv.py: ConvTranspose). Loading only: no export.
"""

import re

import numpy as np

from papers_jax.convert.keymap import KeyMap, Rule, conv_kernel, linear, register_key_map, reshape


def _ignore(x, shape):
  del x, shape  # the tied copy of shared_image_embedding.positional_embedding


def _flat(x, shape):
  return x.reshape(shape) if x.size == int(np.prod(shape)) else x


def _conv_transpose(w, shape):
  """torch ConvTranspose2d weight (in, out, kh, kw) → ours (kh, kw, in, out), spatially flipped."""
  del shape
  return np.ascontiguousarray(w.transpose(2, 3, 0, 1)[::-1, ::-1])


def _norm(src: str, dst: str) -> list[Rule]:
  return [Rule(src + r"\.weight", dst + "/scale"), Rule(src + r"\.bias", dst + "/bias")]


def _linear(src: str, dst: str, num_in_axes: int = 1) -> list[Rule]:
  return [Rule(src + r"\.weight", dst + "/kernel", linear(num_in_axes)), Rule(src + r"\.bias", dst + "/bias", reshape)]


def _conv(src: str, dst: str, hook=conv_kernel) -> list[Rule]:
  return [Rule(src + r"\.weight", dst + "/kernel", hook), Rule(src + r"\.bias", dst + "/bias")]


def _attention(src: str, dst: str) -> list[Rule]:
  return [*_linear(src + r"\.q_proj", dst + "/q"), *_linear(src + r"\.k_proj", dst + "/k"),
          *_linear(src + r"\.v_proj", dst + "/v"), *_linear(src + r"\.out_proj", dst + "/out", 2)]


def _head(src: str, dst: str, depth: int) -> list[Rule]:
  return [*_linear(src + r"\.proj_in", dst + "/layers/0"),
          *[r for j in range(depth - 2) for r in _linear(src + rf"\.layers\.{j}", f"{dst}/layers/{j + 1}")],
          *_linear(src + r"\.proj_out", f"{dst}/layers/{depth - 1}")]


def _rules(model) -> list[Rule]:
  venc, blk = r"vision_encoder", r"vision_encoder\.layers\.(\d+)"
  dec, two = r"mask_decoder", r"mask_decoder\.transformer\.layers\.(\d+)"
  md = model.mask_decoder
  rules = [
      Rule(r"shared_image_embedding\.positional_embedding", "prompt_encoder/gaussian"),
      Rule(r"prompt_encoder\.shared_embedding\.positional_embedding", "", _ignore),
      *_conv(venc + r"\.patch_embed\.projection", "image_encoder/patch_embed"),
      Rule(venc + r"\.pos_embed", "image_encoder/pos_embed"),
      *_norm(blk + r"\.layer_norm1", r"image_encoder/blocks/\1/norm1"),
      *_linear(blk + r"\.attn\.qkv", r"image_encoder/blocks/\1/attn/qkv"),
      *_linear(blk + r"\.attn\.proj", r"image_encoder/blocks/\1/attn/proj", 2),
      Rule(blk + r"\.attn\.rel_pos_h", r"image_encoder/blocks/\1/attn/rel_pos_h"),
      Rule(blk + r"\.attn\.rel_pos_w", r"image_encoder/blocks/\1/attn/rel_pos_w"),
      *_norm(blk + r"\.layer_norm2", r"image_encoder/blocks/\1/norm2"),
      *_linear(blk + r"\.mlp\.lin1", r"image_encoder/blocks/\1/mlp/fc1"),
      *_linear(blk + r"\.mlp\.lin2", r"image_encoder/blocks/\1/mlp/fc2"),
      Rule(venc + r"\.neck\.conv1\.weight", "image_encoder/neck_conv1/kernel", conv_kernel),
      *_norm(venc + r"\.neck\.layer_norm1", "image_encoder/neck_norm1"),
      Rule(venc + r"\.neck\.conv2\.weight", "image_encoder/neck_conv2/kernel", conv_kernel),
      *_norm(venc + r"\.neck\.layer_norm2", "image_encoder/neck_norm2"),
      Rule(r"prompt_encoder\.point_embed\.weight", "prompt_encoder/point_embeddings"),
      Rule(r"prompt_encoder\.not_a_point_embed\.weight", "prompt_encoder/not_a_point", _flat),
      Rule(r"prompt_encoder\.no_mask_embed\.weight", "prompt_encoder/no_mask", _flat),
      *[r for i in (1, 2, 3) for r in _conv(rf"prompt_encoder\.mask_embed\.conv{i}", f"prompt_encoder/mask_conv{i}")],
      *[r for i in (1, 2) for r in _norm(rf"prompt_encoder\.mask_embed\.layer_norm{i}", f"prompt_encoder/mask_norm{i}")],
      Rule(dec + r"\.iou_token\.weight", "mask_decoder/iou_token"),
      Rule(dec + r"\.mask_tokens\.weight", "mask_decoder/mask_tokens"),
      *_attention(two + r"\.self_attn", r"mask_decoder/layers/\1/self_attn"),
      *_attention(two + r"\.cross_attn_token_to_image", r"mask_decoder/layers/\1/token_to_image"),
      *_attention(two + r"\.cross_attn_image_to_token", r"mask_decoder/layers/\1/image_to_token"),
      *[r for i in (1, 2, 3, 4) for r in _norm(two + rf"\.layer_norm{i}", rf"mask_decoder/layers/\1/norm{i}")],
      *_linear(two + r"\.mlp\.lin1", r"mask_decoder/layers/\1/mlp/fc1"),
      *_linear(two + r"\.mlp\.lin2", r"mask_decoder/layers/\1/mlp/fc2"),
      *_attention(dec + r"\.transformer\.final_attn_token_to_image", "mask_decoder/final_attn"),
      *_norm(dec + r"\.transformer\.layer_norm_final_attn", "mask_decoder/final_norm"),
      *_conv(dec + r"\.upscale_conv1", "mask_decoder/upscale1", _conv_transpose),
      *_norm(dec + r"\.upscale_layer_norm", "mask_decoder/upscale_norm"),
      *_conv(dec + r"\.upscale_conv2", "mask_decoder/upscale2", _conv_transpose),
      *_head(dec + r"\.iou_prediction_head", "mask_decoder/iou_head", len(md.iou_head.layers)),
  ]
  for i, mlp in enumerate(md.hypernetworks):
    rules += _head(dec + rf"\.output_hypernetworks_mlps\.{i}", f"mask_decoder/hypernetworks/{i}", len(mlp.layers))
  return rules


def _prepare(state_dict: dict) -> dict:
  """HF's four (1, C) point embeddings → one (4, C) table."""
  found = {int(m.group(1)): k for k in state_dict if (m := re.fullmatch(r"prompt_encoder\.point_embed\.(\d+)\.weight", k))}
  if not found:
    return state_dict
  out = {k: v for k, v in state_dict.items() if k not in found.values()}
  out["prompt_encoder.point_embed.weight"] = np.concatenate(
      [np.asarray(state_dict[found[i]]).reshape(1, -1) for i in sorted(found)], axis=0)
  return out


register_key_map("hf", "SAM", KeyMap(_rules, prepare=_prepare))
