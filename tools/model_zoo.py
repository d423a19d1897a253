"""Writes docs/models.md: every registered model name, its size, its preprocessing, where its weights
come from, the conversion command and the test that proves the conversion.

  python tools/model_zoo.py [--out docs/models.md]
"""

import argparse
import math
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

# model class -> the tests that compare our forward pass with the reference on random weights.
PARITY_TESTS = {
    "VisionTransformer": "tests/test_vit_timm.py::test_logits_match_timm",
    "SwinTransformer": "tests/test_swin_timm.py::test_tiny_full_size_logits, ::test_full_size_logits_every_name",
    "MlpMixer": "tests/test_mixer_timm.py::test_logits",
    "ResNet": "tests/test_resnet.py::test_bottleneck_eval_logits_match_timm",
    "HybridVisionTransformer": "tests/test_vit_hybrid_timm.py::test_reduced_hybrid_logits_match_timm, ::test_full_size_logits",
    "MaskedAutoencoderViT": "tests/test_mae.py::test_small_matches_hf, ::test_base_matches_hf",
    "GPT": "tests/test_gpt.py::test_logits_match_hf",
    "BertForPreTraining": "tests/test_bert_fnet.py::test_tiny_bert_matches_hf",
    "FNetForPreTraining": "tests/test_bert_fnet.py::test_tiny_fnet_matches_hf",
    "CLIP": "tests/test_clip.py::test_matches_hf_clip_model, ::test_resnet_tower_matches_timm_clip_resnet",
    "AlexNet": "tests/test_cnn_classics.py::test_alexnet_matches_torchvision, "
               "::test_paper_alexnet_matches_a_torch_reference_with_lrn_and_groups",
    "GoogLeNet": "tests/test_cnn_classics.py::test_googlenet_matches_torchvision_and_its_flops_match_xla",
    "InceptionV3": "tests/test_cnn_classics.py::test_inception_v3_matches_torchvision_and_timm",
    "MixNet": "tests/test_cnn_classics.py::test_mixnet_matches_timm_and_its_flops_match_xla",
}


class _FixedKeyRngs:
  """nnx.Rngs stand-in for shape-only builds (a drawn key per parameter makes eval_shape quadratic)."""

  def params(self):
    import jax
    return jax.random.key(0)


def _numbers(values) -> str:
  return "(" + ", ".join(str(v) for v in values) + ")"


def _preprocessing(p) -> str:
  """The name's preprocessing columns: input size, crop_pct, interpolation, mean, std (– for text)."""
  if p is None:
    return " | ".join(["–"] * 5)
  return f"{p.img_size} | {p.crop_pct:g} | {p.interpolation} | {_numbers(p.mean)} | {_numbers(p.std)}"


def rows():
  import jax
  from flax import nnx

  from papers_jax import models
  from papers_jax.models import pretrained
  out = []
  for name in models.list_models():
    cls = models.registry.model_class(name).__name__
    model = nnx.eval_shape(lambda: models.create(name, rngs=_FixedKeyRngs()))
    params = sum(math.prod(v.shape) for v in jax.tree.leaves(nnx.state(model, nnx.Param)))
    if name in pretrained.CHECKPOINTS:
      source, repo, filename = pretrained.CHECKPOINTS[name]
      origin = f"[`{repo}`]({pretrained.hub_url(name)}) ({source})"
      command = (f"`python tools/convert_weights.py --source {source} --model {name} "
                 f"--checkpoint {filename} --out ckpt/{name}`")
    else:
      origin, command = "none published; train it", "–"
    out.append(f"| `{name}` | {cls} | {params / 1e6:.2f}M | {_preprocessing(models.preprocessing(name))} | {origin} | "
               f"{command} | `{PARITY_TESTS.get(cls, '–')}` |")
  return out


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--out", default=os.path.join(ROOT, "docs", "models.md"))
  args = parser.parse_args(argv)
  text = [
      "# Model zoo", "",
      "Written by `python tools/model_zoo.py`. Every registered name, its parameter count (with the",
      "registered default head), the checkpoint its pretrained weights come from, the command that",
      "converts that checkpoint into a params checkpoint, and the test that proves the conversion on",
      "random weights (every non-matrix tensor perturbed, logits within 1e-4).", "",
      "The preprocessing columns are those of the source checkpoint (`models.preprocessing(name)`, timm's",
      "`pretrained_cfg` for timm's names, OpenAI's for CLIP; tests/test_preprocessing.py checks them against",
      "the installed timm and transformers): resize the shorter side to input / crop_pct with the",
      "interpolation, centre-crop the input size, then (x / 255 - mean) / std. A run's `data.mean`,",
      "`data.std` and `data.crop_pct` default to them; `papers-jax predict --model` uses them.", "",
      "Nothing is downloaded. `models.create(name, pretrained=True)` reads the file from",
      "`$PAPERS_JAX_CACHE/<repository>/<file>` (default `~/.cache/papers_jax`) and converts it on the",
      "fly; when it is missing, the error gives the address to fetch it from and where to put it.",
      "`pretrained=` also takes any timm / HF / OpenAI state-dict file or a papers_jax params",
      "checkpoint directory. The timm families (ViT, Swin, Mixer, ResNet) also export back to timm's",
      "layout (`papers-jax export --format timm`, tests/test_pretrained.py), and BERT, FNet, GPT-2, CLIP and",
      "MAE to HF transformers' (`--format hf`; `test_hf_export_is_the_state_dict_hf_loads` in their test files).", "",
      "| name | class | params | input | crop_pct | interpolation | mean | std | pretrained weights (converter) "
      "| conversion | parity test |",
      "|---|---|---|---|---|---|---|---|---|---|---|",
      *rows(), ""]
  with open(args.out, "w") as f:
    f.write("\n".join(text))
  print(f"wrote {args.out}")
  return 0


if __name__ == "__main__":
  sys.exit(main())
