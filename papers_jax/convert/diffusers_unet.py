"""diffusers `UNet2DModel` state dicts → `papers_jax.models.ddpm_unet.DDPMUNet`, and `UNet2DConditionModel` ones
configured as ADM / GLIDE's UNet → `papers_jax.models.glide.ADMUNet`.

The UNet2DModel must be configured as the DDPM paper's network (google/ddpm-cifar10-32's config):
`flip_sin_to_cos=False, freq_shift=1, downsample_padding=0, attention_head_dim=None, act_fn="silu"`,
block types `DownBlock2D` / `AttnDownBlock2D` and `UpBlock2D` / `AttnUpBlock2D`, `norm_eps=1e-6`.
Our parameter names are theirs with '/' for '.', except where diffusers wraps a single layer in a list:
`to_out.0` → `to_out`, `downsamplers.0.conv` → `downsampler`, `upsamplers.0.conv` → `upsampler`,
`mid_block.attentions.0` → `mid_block/attention`. The rules are one exact key per parameter, built from
the model's own parameter paths.

The ADM UNet (tests/test_glide.py) takes `UNet2DConditionModel` with `ResnetDownsampleBlock2D` /
`SimpleCrossAttnDownBlock2D`, `UNetMidBlock2DSimpleCrossAttn`, `SimpleCrossAttnUpBlock2D` / `ResnetUpsampleBlock2D`,
`resnet_time_scale_shift="scale_shift"`, `flip_sin_to_cos=True, freq_shift=0` (Karlo's unCLIP decoder layout): its
resampling blocks are residual blocks, `downsamplers.0` / `upsamplers.0` → `downsampler` / `upsampler`.
"""

import re

from flax import nnx

from papers_jax.convert.keymap import KeyMap, Rule, conv_kernel, linear, register_key_map

_RENAMES = ((r"/to_out/", "/to_out/0/"), (r"/downsampler/", "/downsamplers/0/conv/"),
            (r"/upsampler/", "/upsamplers/0/conv/"), (r"^mid_block/attention/", "mid_block/attentions/0/"))
_ADM_RENAMES = ((r"/to_out/", "/to_out/0/"), (r"/downsampler/", "/downsamplers/0/"),
                (r"/upsampler/", "/upsamplers/0/"))


def _flat_paths(tree, prefix=()):
  for k, v in tree.items():
    if isinstance(v, dict):
      yield from _flat_paths(v, prefix + (str(k),))
    else:
      yield "/".join(prefix + (str(k),)), v


def their_key(path: str, ndim: int, renames=_RENAMES) -> tuple[str, object]:
  """(diffusers key, layout hook) of our '/'-joined param path."""
  *module, leaf = path.split("/")
  module = "/".join(module) + "/"
  for pattern, replacement in renames:
    module = re.sub(pattern, replacement, module)
  hook = None
  if leaf == "kernel":
    hook = conv_kernel if ndim == 4 else linear(1)
  name = {"kernel": "weight", "scale": "weight", "bias": "bias"}[leaf]
  return module.rstrip("/").replace("/", ".") + "." + name, hook


def _rules(model, renames=_RENAMES) -> list[Rule]:
  params = nnx.to_pure_dict(nnx.state(model, nnx.Param))
  rules = []
  for path, value in _flat_paths(params):
    key, hook = their_key(path, len(value.shape), renames)
    rules.append(Rule(re.escape(key), path, hook))
  return rules


register_key_map("diffusers", "DDPMUNet", KeyMap(_rules))
register_key_map("diffusers", "ADMUNet", KeyMap(lambda model: _rules(model, _ADM_RENAMES)))
