"""Pretrained weights for registered names: where each checkpoint comes from, and loading it.

Nothing is downloaded. `models.create(name, pretrained=...)` takes
  - a checkpoint file: `.safetensors`, or `.pth/.pt/.bin` read with `torch.load(weights_only=True)`,
    in the layout of timm, HF transformers or OpenAI CLIP, converted on the fly;
  - a papers_jax params checkpoint: a directory written by `tools/convert_weights.py`, or a run's
    `checkpoints/<step>/state`;
  - `True` (or the name itself): the file this table names, read from the cache directory
    (`$PAPERS_JAX_CACHE`, default `~/.cache/papers_jax`) at `<cache>/<hub repository>/<file>`.
    When it is not there, the error gives the address to fetch it from and the path to put it at.
"""

import os

from papers_jax.errors import CheckpointError

# registered name -> (converter source, hub repository, file). timm's repositories are the tags its
# `pretrained=True` uses; HF's are the models' own repositories.
CHECKPOINTS = {
    **{n: ("timm", f"timm/{n}.{tag}", "model.safetensors") for n, tag in {
        "vit_tiny_patch16_224": "augreg_in21k_ft_in1k", "vit_tiny_patch16_384": "augreg_in21k_ft_in1k",
        "vit_small_patch16_224": "augreg_in21k_ft_in1k", "vit_small_patch16_384": "augreg_in21k_ft_in1k",
        "vit_small_patch32_224": "augreg_in21k_ft_in1k", "vit_small_patch32_384": "augreg_in21k_ft_in1k",
        "vit_small_patch8_224": "dino",
        "vit_base_patch16_224": "augreg2_in21k_ft_in1k", "vit_base_patch16_384": "augreg_in21k_ft_in1k",
        "vit_base_patch32_224": "augreg_in21k_ft_in1k", "vit_base_patch32_384": "augreg_in21k_ft_in1k",
        "vit_base_patch8_224": "augreg2_in21k_ft_in1k",
        "vit_large_patch16_224": "augreg_in21k_ft_in1k", "vit_large_patch16_384": "augreg_in21k_ft_in1k",
        "vit_large_patch32_224": "orig_in21k", "vit_large_patch32_384": "orig_in21k_ft_in1k",
        "vit_huge_patch14_224": "orig_in21k",
        "swin_tiny_patch4_window7_224": "ms_in1k", "swin_small_patch4_window7_224": "ms_in22k_ft_in1k",
        "swin_base_patch4_window7_224": "ms_in22k_ft_in1k", "swin_base_patch4_window12_384": "ms_in22k_ft_in1k",
        "swin_large_patch4_window7_224": "ms_in22k_ft_in1k", "swin_large_patch4_window12_384": "ms_in22k_ft_in1k",
        "mixer_b16_224": "goog_in21k_ft_in1k", "mixer_l16_224": "goog_in21k_ft_in1k",
        "resnet18": "a1_in1k", "resnet34": "a1_in1k", "resnet50": "a1_in1k", "resnet101": "a1h_in1k",
        "resnet152": "a1h_in1k",
        "vit_base_r50_s16_224": "orig_in21k", "vit_base_r50_s16_384": "orig_in21k_ft_in1k",
        "vit_large_r50_s32_224": "augreg_in21k_ft_in1k", "vit_large_r50_s32_384": "augreg_in21k_ft_in1k",
        "vit_small_r26_s32_224": "augreg_in21k_ft_in1k", "vit_small_r26_s32_384": "augreg_in21k_ft_in1k",
        "mixnet_s": "ft_in1k", "mixnet_m": "ft_in1k", "mixnet_l": "ft_in1k"}.items()},
    "mae_vit_base_patch16": ("hf", "facebook/vit-mae-base", "model.safetensors"),
    "mae_vit_large_patch16": ("hf", "facebook/vit-mae-large", "model.safetensors"),
    "mae_vit_huge_patch14": ("hf", "facebook/vit-mae-huge", "model.safetensors"),
    "gpt2": ("hf", "openai-community/gpt2", "model.safetensors"),
    "gpt2-medium": ("hf", "openai-community/gpt2-medium", "model.safetensors"),
    "gpt2-large": ("hf", "openai-community/gpt2-large", "model.safetensors"),
    "gpt2-xl": ("hf", "openai-community/gpt2-xl", "model.safetensors"),
    "bert-base-uncased": ("hf", "google-bert/bert-base-uncased", "model.safetensors"),
    "bert-base-cased": ("hf", "google-bert/bert-base-cased", "model.safetensors"),
    "bert-large-uncased": ("hf", "google-bert/bert-large-uncased", "model.safetensors"),
    "bert-large-cased": ("hf", "google-bert/bert-large-cased", "model.safetensors"),
    "fnet-base": ("hf", "google/fnet-base", "pytorch_model.bin"),
    "fnet-large": ("hf", "google/fnet-large", "pytorch_model.bin"),
    "clip_vit_base_patch32": ("hf", "openai/clip-vit-base-patch32", "model.safetensors"),
    "clip_vit_base_patch16": ("hf", "openai/clip-vit-base-patch16", "model.safetensors"),
    "clip_vit_large_patch14": ("hf", "openai/clip-vit-large-patch14", "model.safetensors"),
}


def cache_dir() -> str:
  return os.path.expanduser(os.environ.get("PAPERS_JAX_CACHE", "~/.cache/papers_jax"))


def hub_url(name: str) -> str:
  _, repo, filename = CHECKPOINTS[name]
  return f"https://huggingface.co/{repo}/resolve/main/{filename}"


def resolve(name: str, pretrained) -> tuple[str, str | None]:
  """(path, source) of what `pretrained` points at; source None for a papers_jax params checkpoint."""
  if pretrained is True or pretrained == name:
    if name not in CHECKPOINTS:
      raise CheckpointError(f"no published checkpoint is known for {name!r}; pass pretrained=<file or directory> "
                            "(a timm/HF state dict, or a papers_jax params checkpoint).")
    source, repo, filename = CHECKPOINTS[name]
    path = os.path.join(cache_dir(), repo, filename)
    if not os.path.isfile(path):
      raise CheckpointError(
          f"pretrained weights for {name!r} are not on this machine, and papers_jax downloads nothing. Fetch\n"
          f"  {hub_url(name)}\nand put it at\n  {path}\n(e.g. `mkdir -p {os.path.dirname(path)} && "
          f"curl -L -o {path} {hub_url(name)}`; set PAPERS_JAX_CACHE to use another directory).")
    return path, source
  path = os.path.expanduser(str(pretrained))
  if os.path.isdir(path):
    return path, None
  if not os.path.isfile(path):
    raise CheckpointError(f"pretrained={pretrained!r} is neither a checkpoint file nor a params checkpoint "
                          f"directory, nor True / {name!r} (the published checkpoint in {cache_dir()}).")
  return path, CHECKPOINTS.get(name, (None,))[0]


def build(name: str, constructor, kwargs: dict, rngs, pretrained, source: str | None = None):
  """`constructor(**kwargs)` with the weights `pretrained` points at; see the module docstring.

  From a state dict, the classifier size follows the checkpoint unless `num_classes` is given
  (then the head keeps its init when the sizes differ).
  """
  import inspect
  import logging

  from flax import nnx

  from papers_jax import convert
  path, known_source = resolve(name, pretrained)
  if os.path.isdir(path):
    model = constructor(**kwargs, rngs=rngs)
    params = nnx.state(model, nnx.Param)
    loaded, report = convert.init_params_from_checkpoint(path, nnx.to_pure_dict(params), skip=())
    nnx.replace_by_pure_dict(params, loaded)
    nnx.update(model, params)
  else:
    state_dict = convert.load_state_dict(path)
    source = source or known_source or _only_source(constructor.__name__, path)
    allow_missing = ()
    if "num_classes" in inspect.signature(constructor.__init__).parameters:
      ckpt_classes = convert.checkpoint_num_classes(state_dict, source, constructor.__name__)
      if "num_classes" not in kwargs or kwargs["num_classes"] == ckpt_classes:
        kwargs = kwargs | {"num_classes": ckpt_classes}
      else:
        allow_missing = ("^head/",)
    model = constructor(**kwargs, rngs=rngs)
    report = convert.load_torch_weights(model, state_dict, source, allow_missing=allow_missing)
  logging.getLogger(__name__).info("%s: weights from %s\n%s", name, path, report)
  return model


def _only_source(cls: str, path: str) -> str:
  from papers_jax.convert import keymap
  found = keymap.sources_for(cls)
  if len(found) != 1:
    raise CheckpointError(f"cannot tell which layout {path} is in for a {cls} (converters: {found or 'none'}); "
                          "pass pretrained_source= one of them.")
  return found[0]
