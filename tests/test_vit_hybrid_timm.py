"""The hybrid ResNet+ViT and the pre-logits (representation) head against timm.

The paper's two named hybrids (R50+ViT-B/16 at 384, R26+ViT-S/32): parameter count and a strict
conversion of timm's full-size state dict (shapes, no forward); every registered name's parameter
count is checked in test_vit_timm.py. Logits: a reduced R26+ViT-S/32 (one transformer block, 64×64 images, the
full ResNet-26 backbone) in the suite; the full-size names with PAPERS_JAX_FULL_PARITY=1 (minutes).
timm 1.x no longer builds the pre-logits layer, so its reference is timm's ViT features followed by
an explicit torch Linear → Tanh → Linear, loaded under timm's old key names (pre_logits.fc).
"""

import importlib.util
import os

import numpy as np
import pytest

torch = pytest.importorskip("torch")
if importlib.util.find_spec("timm") is None:
  pytest.skip("timm is not installed", allow_module_level=True)

from papers_jax import convert, models  # noqa: E402
from papers_jax.models.vit_hybrid import HybridVisionTransformer  # noqa: E402
from timm_parity import (TOL, abstract, images, load_ours, modified, num_params, numpy_state_dict,  # noqa: E402
                         our_logits, random_timm, timm, timm_logits)

pytestmark = pytest.mark.torch
NAMES = models.list_models("vit_*_r*_s*")


def test_registered_names():
  assert NAMES == sorted(["vit_small_r26_s32_224", "vit_small_r26_s32_384", "vit_base_r26_s32_224",
                          "vit_base_r50_s16_224", "vit_base_r50_s16_384", "vit_large_r50_s32_224",
                          "vit_large_r50_s32_384"])
  assert set(NAMES) <= set(timm.list_models("vit_*"))


@pytest.mark.parametrize("name", ["vit_base_r50_s16_384", "vit_small_r26_s32_224"])
def test_architecture_and_full_size_conversion(name):
  ours = abstract(name)
  with torch.device("meta"):
    ref = timm.create_model(name, pretrained=False)
  assert isinstance(ours, HybridVisionTransformer)
  assert num_params(ours) == sum(p.numel() for p in ref.parameters())
  assert ours.patch_embed.grid_size == tuple(ref.patch_embed.grid_size)
  # Every tensor of timm's full-size state dict lands on a param of the same shape (values: below).
  sd = {k: np.zeros(v.shape, np.float32) for k, v in ref.state_dict().items()}
  report = convert.load_torch_weights(ours, sd, "timm")
  assert not (report.missing or report.unexpected or report.mismatched or report.resized)
  assert len(report.loaded) == len(report.ours)


def test_reduced_hybrid_logits_match_timm():
  """R26 backbone in full (8 bottlenecks, StdConv, GroupNorm, SAME padding), one ViT-S block, 64×64 input."""
  kwargs = dict(depth=1, img_size=64, num_classes=10)
  ref = random_timm("vit_small_r26_s32_224", seed=3, **kwargs)
  ours, report = load_ours("vit_small_r26_s32_224", numpy_state_dict(ref), **kwargs)
  assert not (report.missing or report.unexpected or report.mismatched or report.resized)
  assert ours.patch_embed.grid_size == (2, 2)
  x = images(64, seed=3, batch=2)
  want = timm_logits(ref, x)
  diff = np.abs(our_logits(ours, x) - want).max()
  print(f"reduced vit_small_r26_s32 max-abs {diff:.2e} (logits up to {np.abs(want).max():.2f})")
  assert diff < TOL
  # The test sees the backbone's tensors: resetting one to its init moves the logits well beyond TOL.
  for path in ("patch_embed/backbone/stem/norm/bias", "patch_embed/backbone/stages/1/blocks/0/downsample/norm/scale",
               "patch_embed/backbone/stages/3/blocks/1/norm3/bias", "patch_embed/proj/bias"):
    reset = np.ones_like if path.endswith("scale") else np.zeros_like
    moved = np.abs(our_logits(modified(ours, path, reset), x) - want).max()
    print(f"  {path} reset: logits move {moved:.2e}")
    assert moved > 10 * TOL, path


@pytest.mark.skipif(not os.environ.get("PAPERS_JAX_FULL_PARITY"), reason="set PAPERS_JAX_FULL_PARITY=1 (minutes)")
@pytest.mark.parametrize("name", ["vit_base_r50_s16_384", "vit_small_r26_s32_224"])
def test_full_size_logits(name):
  ref = random_timm(name, seed=1)
  ours, report = load_ours(name, numpy_state_dict(ref))
  assert not (report.missing or report.unexpected or report.mismatched or report.resized)
  x = images(models.model_config(name)["img_size"], seed=1)
  want = timm_logits(ref, x)
  diff = np.abs(our_logits(ours, x) - want).max()
  print(f"{name} max-abs {diff:.2e} (logits up to {np.abs(want).max():.2f})")
  assert diff < TOL


# ------------------------------------------------------------------------- pre-logits head


def test_representation_size_matches_linear_tanh_reference():
  """timm's ViT features → Linear(embed, r) → tanh → Linear(r, classes), as the paper pre-trains."""
  name, rep, classes = "vit_tiny_patch16_224", 48, 7
  trunk = random_timm(name, seed=4, depth=2, img_size=32, num_classes=0)
  generator = torch.Generator().manual_seed(5)
  fc, head = torch.nn.Linear(192, rep), torch.nn.Linear(rep, classes)
  with torch.no_grad():
    for p in (*fc.parameters(), *head.parameters()):
      p.copy_(0.1 * torch.randn(p.shape, generator=generator))
  sd = dict(numpy_state_dict(trunk), **{f"pre_logits.fc.{k}": v.numpy() for k, v in fc.state_dict().items()},
            **{f"head.{k}": v.numpy() for k, v in head.state_dict().items()})
  ours, report = load_ours(name, sd, depth=2, img_size=32, num_classes=classes, representation_size=rep)
  assert not (report.missing or report.unexpected or report.mismatched)
  assert "pre_logits/fc/kernel" in report.loaded
  x = images(32, seed=4, batch=2)
  with torch.no_grad():
    features = torch.tanh(fc(torch.from_numpy(timm_logits(trunk, x))))
    want = head(features).numpy()
  diff = np.abs(our_logits(ours, x) - want).max()
  print(f"representation_size={rep} max-abs {diff:.2e}")
  assert diff < TOL
  # forward_head(pre_logits=True) is the tanh output, the features a probe or fine-tune starts from.
  got = np.asarray(ours.forward_head(ours.forward_features(x), pre_logits=True))
  np.testing.assert_allclose(got, features.numpy(), atol=TOL)
  # Without the tanh layer the logits differ: the test sees it.
  assert np.abs(our_logits(modified(ours, "pre_logits/fc/bias", np.zeros_like), x) - want).max() > 10 * TOL
