"""MLP-Mixer against timm: parameter counts and logits parity for every registered name, non-square
inputs, and clear errors for resolutions a Mixer cannot serve.

Logits are compared at 224 for S/32, S/16, B/32 and B/16. The L models (200M+ parameters: 15-20 s
each on a 2-core CPU even at 64×64, over the test-time budget) run the same code with other widths
and depths, which their parameter counts check; their logits are compared at 224 with
PAPERS_JAX_FULL_PARITY=1.
"""

import importlib.util
import os

import numpy as np
import pytest

torch = pytest.importorskip("torch")
if importlib.util.find_spec("timm") is None:
  pytest.skip("timm is not installed", allow_module_level=True)

from papers_jax import convert, models  # noqa: E402
from papers_jax.errors import CheckpointError, ConfigError  # noqa: E402
from timm_parity import (TOL, abstract, images, load_ours, modified, num_params, numpy_state_dict,  # noqa: E402
                         our_logits, random_timm, timm, timm_logits, timm_param_count)

pytestmark = pytest.mark.torch
NAMES = models.list_models("mixer_*")


def test_registered_names():
  assert NAMES == sorted(timm.list_models("mixer*"))


@pytest.mark.parametrize("name", NAMES)
def test_param_count_matches_timm(name):
  assert num_params(abstract(name)) == timm_param_count(name)


FULL = bool(os.environ.get("PAPERS_JAX_FULL_PARITY"))


@pytest.mark.parametrize("name", NAMES)
def test_logits(name):
  if name.startswith("mixer_l") and not FULL:
    pytest.skip("set PAPERS_JAX_FULL_PARITY=1 for the L models (200M+ parameters)")
  ref = random_timm(name)
  ours, report = load_ours(name, numpy_state_dict(ref))
  assert not (report.missing or report.unexpected or report.mismatched or report.resized)
  assert len(report.loaded) == len(report.ours)
  x = images(224)
  want = timm_logits(ref, x)
  got = our_logits(ours, x)
  assert got.shape == (1, 1000)
  diff = np.abs(got - want).max()
  print(f"{name} max-abs {diff:.2e} (logits up to {np.abs(want).max():.2f})")
  assert diff < TOL
  if name == "mixer_s32_224":
    # The test sees dropped tensors: resetting any one of these to timm's init moves the logits beyond TOL.
    for path in ("stem/proj/bias", "blocks/6/norm2/bias", "blocks/3/mlp_tokens/fc1/bias",
                 "blocks/7/mlp_channels/fc1/bias", "norm/scale", "head/bias"):
      reset = np.ones_like if path.endswith("scale") else np.zeros_like
      moved = np.abs(our_logits(modified(ours, path, reset), x) - want).max()
      print(f"  {path} reset: logits move {moved:.2e}")
      assert moved > 3 * TOL, path
    # The token-mixing fc2 bias adds one constant per token to all channels, which every following
    # LayerNorm removes: logits cannot see it (timm's either), so its value is checked directly.
    moved = np.abs(our_logits(modified(ours, "blocks/3/mlp_tokens/fc2/bias", np.zeros_like), x) - want).max()
    assert moved < TOL
    np.testing.assert_array_equal(ours.blocks[3].mlp_tokens.fc2.bias[...],
                                  ref.blocks[3].mlp_tokens.fc2.bias.detach().numpy())


def test_non_square_input():
  kwargs = dict(img_size=(160, 224), num_classes=10)
  ref = random_timm("mixer_s32_224", seed=1, **kwargs)
  ours, _ = load_ours("mixer_s32_224", numpy_state_dict(ref), **kwargs)
  assert ours.blocks[0].mlp_tokens.fc1.kernel.shape == (5 * 7, 256)
  x = images(160, 224, seed=1)
  diff = np.abs(our_logits(ours, x) - timm_logits(ref, x)).max()
  print(f"mixer_s32_224 @ 160x224 max-abs {diff:.2e}")
  assert diff < TOL


def test_resolutions_it_cannot_serve():
  with pytest.raises(ConfigError, match="divisible by the patch size"):
    abstract("mixer_s32_224", img_size=200)
  model = abstract("mixer_s32_224")
  with pytest.raises(ConfigError, match="serves 224x224 images only"):
    model(np.zeros((1, 256, 256, 3), np.float32))
  # A 224 checkpoint does not fit a 256 Mixer: the token-mixing MLPs have another size.
  with torch.device("meta"):
    ref = timm.create_model("mixer_s32_224", pretrained=False)
  sd = {k: np.zeros(v.shape, np.float32) for k, v in ref.state_dict().items()}
  message = r"shape  blocks/0/mlp_tokens/fc1/kernel ours \(64, 256\) theirs \(49, 256\)"
  with pytest.raises(CheckpointError, match=message):
    convert.load_torch_weights(abstract("mixer_s32_224", img_size=256), sd, "timm")
