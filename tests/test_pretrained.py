"""Pretrained weights through `models.create(name, pretrained=...)`, and exports: back to the timm
layout (the key maps read backwards) and to a serialised StableHLO program."""

import os

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import safetensors.numpy  # noqa: E402
from flax import nnx  # noqa: E402

from papers_jax import convert, export, models  # noqa: E402
from papers_jax.errors import CheckpointError  # noqa: E402
from papers_jax.models import pretrained  # noqa: E402
from timm_parity import TOL, images, load_ours, numpy_state_dict, our_logits, random_timm, timm_logits  # noqa: E402


@pytest.fixture(scope="module")
def vit_file(tmp_path_factory):
  ref = random_timm("vit_tiny_patch16_224", num_classes=7)
  path = str(tmp_path_factory.mktemp("weights") / "vit_tiny.safetensors")
  safetensors.numpy.save_file(numpy_state_dict(ref), path)
  return ref, path


def test_create_with_a_timm_file_gives_timm_logits(vit_file):
  ref, path = vit_file
  model = models.create("vit_tiny_patch16_224", pretrained=path)  # 7 classes, from the checkpoint
  model.eval()
  x = images(224, batch=2)
  np.testing.assert_allclose(our_logits(model, x), timm_logits(ref, x), rtol=TOL, atol=TOL)
  # Another head size keeps a fresh head and loads everything else.
  other = models.create("vit_tiny_patch16_224", pretrained=path, num_classes=3)
  assert other.head.kernel.get_value().shape == (192, 3)
  np.testing.assert_array_equal(np.asarray(other.pos_embed.get_value()), np.asarray(model.pos_embed.get_value()))


def test_create_from_the_cache_or_says_what_to_fetch(vit_file, tmp_path, monkeypatch):
  _, path = vit_file
  monkeypatch.setenv("PAPERS_JAX_CACHE", str(tmp_path))
  with pytest.raises(CheckpointError) as e:
    models.create("vit_tiny_patch16_224", pretrained=True)
  _, repo, filename = pretrained.CHECKPOINTS["vit_tiny_patch16_224"]
  want = os.path.join(str(tmp_path), repo, filename)
  assert pretrained.hub_url("vit_tiny_patch16_224") in str(e.value) and want in str(e.value)
  os.makedirs(os.path.dirname(want))
  os.symlink(path, want)
  model = models.create("vit_tiny_patch16_224", pretrained=True)
  np.testing.assert_array_equal(np.asarray(model.head.bias.get_value()),
                                safetensors.numpy.load_file(path)["head.bias"])
  with pytest.raises(CheckpointError, match="no published checkpoint"):
    models.create("transformer_base", pretrained=True)
  with pytest.raises(CheckpointError, match="neither a checkpoint file"):
    models.create("vit_tiny_patch16_224", pretrained=str(tmp_path / "missing.safetensors"))


def test_create_from_a_params_checkpoint_directory(vit_file, tmp_path):
  _, path = vit_file
  model = models.create("vit_tiny_patch16_224", pretrained=path)
  convert.save_params(nnx.to_pure_dict(nnx.state(model, nnx.Param)), str(tmp_path / "ckpt"))
  again = models.create("vit_tiny_patch16_224", pretrained=str(tmp_path / "ckpt"), num_classes=7)
  for a, b in zip(nnx.state(model, nnx.Param).flat_state(), nnx.state(again, nnx.Param).flat_state()):
    np.testing.assert_array_equal(np.asarray(a[1].get_value()), np.asarray(b[1].get_value()))


@pytest.mark.parametrize("name", ["vit_tiny_patch16_224", "swin_tiny_patch4_window7_224", "mixer_s16_224",
                                  "resnet18"])
def test_export_to_the_timm_layout_round_trips_exactly(name):
  ref = random_timm(name)
  state_dict = numpy_state_dict(ref)
  model, _ = load_ours(name, state_dict)
  exported = convert.export_state_dict(model, "timm")
  # Everything but BatchNorm's num_batches_tracked counters, which our BatchNorm does not keep.
  assert set(exported) == {k for k in state_dict if not k.endswith("num_batches_tracked")}
  for key, value in exported.items():
    np.testing.assert_array_equal(value, state_dict[key], err_msg=key)
  # timm itself takes the export, strictly (torch's BatchNorm fills in a missing counter).
  ref.load_state_dict({k: torch.from_numpy(v) for k, v in exported.items()}, strict=True)


def test_export_refuses_a_layout_it_cannot_invert():
  # The OpenAI CLIP layout's hooks have no inverses (its HF layout exports: tests/test_clip.py).
  model = nnx.eval_shape(lambda: models.create(
      "clip_vit_base_patch32", embed_dim=24, img_size=32, patch_size=8, vision_width=48, vision_layers=1,
      vision_heads=4, context_length=16, vocab_size=99, text_width=32, text_layers=1, text_heads=4))
  with pytest.raises(CheckpointError, match="has no inverse"):
    convert.export_state_dict(model, "openai")


def test_stablehlo_export_reloads_with_the_same_logits(vit_file):
  _, path = vit_file
  model = models.create("vit_tiny_patch16_224", pretrained=path)
  model.eval()
  blob = export.stablehlo(model, (None, 224, 224, 3))
  x = images(224, batch=3)
  got = np.asarray(export.load_stablehlo(blob)(x))
  np.testing.assert_allclose(got, np.asarray(model(x, train=False)), rtol=1e-5, atol=1e-5)


def test_the_zoo_page_lists_every_registered_name():
  from conftest import ROOT
  page = open(os.path.join(ROOT, "docs", "models.md")).read()
  missing = [n for n in models.list_models() if f"| `{n}` |" not in page]
  assert not missing, f"run `python tools/model_zoo.py`: docs/models.md lacks {missing}"
  for name, (source, _, _) in pretrained.CHECKPOINTS.items():
    assert source in convert.sources() and name in models.list_models()
