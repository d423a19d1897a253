"""BEiT v1 (models/beit.py, convert/hf_beit.py): parity with HF transformers' `BeitForMaskedImageModeling` on
random weights with every tensor perturbed (float32, 1e-4), per-layer and shared relative position tables;
the relative position index against HF's; parameter counts of the registered names against HF's."""

import os

import jax
import numpy as np
import pytest
from flax import nnx

from papers_jax import convert, models
from papers_jax.models import beit

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.torch

TINY = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64, image_size=16,
            patch_size=4, num_channels=3, vocab_size=11, layer_norm_eps=1e-6, use_mask_token=True,
            use_mean_pooling=True, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0, drop_path_rate=0.0)
OURS = dict(img_size=16, patch_size=4, in_chans=3, embed_dim=32, depth=2, num_heads=2, mlp_ratio=2.0,
            num_visual_tokens=11)
# HF config, our rel_pos / abs_pos_embed
CASES = {
    "layer": (dict(use_relative_position_bias=True, use_absolute_position_embeddings=True),
              dict(rel_pos="layer", abs_pos_embed=True)),
    "shared": (dict(use_shared_relative_position_bias=True), dict(rel_pos="shared")),
}


def _hf():
  from papers_jax.convert.torch_compat import import_timm
  import_timm()
  import transformers
  return transformers


def random_hf(case: str, seed: int = 0):
  """A tiny HF BEiT with random values in every tensor: matrices N(0, 0.02), vectors (biases, LayerNorm,
  layer-scale, tokens) around their init with spread 0.1-1, relative position tables N(0, 1)."""
  t = _hf()
  model = t.BeitForMaskedImageModeling(t.BeitConfig(**TINY, **CASES[case][0])).eval()
  g = torch.Generator().manual_seed(seed)
  with torch.no_grad():
    for key, p in model.named_parameters():
      if key.endswith("relative_position_bias_table"):
        base, std = 0.0, 1.0
      elif p.ndim == 1:
        base, std = (1.0 if "norm" in key and key.endswith(".weight") else 0.0), 0.3
      elif p.ndim == 3:  # cls / mask tokens, position embeddings
        base, std = 0.0, 0.5
      else:
        base, std = 0.0, 0.1
      p.copy_(base + std * torch.randn(p.shape, generator=g))
  return model


@pytest.fixture(scope="module")
def pairs():
  """case → (HF model, our converted model, images NHWC, mask)."""
  rng = np.random.RandomState(0)
  x = rng.randn(2, 16, 16, 3).astype(np.float32)
  mask = rng.rand(2, 16) < 0.4
  out = {}
  for case in CASES:
    ref = random_hf(case)
    ours = models.create("beit_mim_base_patch16_224", rngs=nnx.Rngs(0), **OURS, **CASES[case][1])
    convert.load_torch_weights(ours, {k: v.numpy() for k, v in ref.state_dict().items()}, "hf")
    out[case] = ref, ours, x, mask
  return out


@pytest.mark.parametrize("case", sorted(CASES))
def test_mim_logits_match_hf(pairs, case):
  ref, ours, x, mask = pairs[case]
  with torch.no_grad():
    want = ref(torch.from_numpy(x.transpose(0, 3, 1, 2).copy()),
               bool_masked_pos=torch.from_numpy(mask)).logits.numpy()
  with jax.default_matmul_precision("highest"):
    got = np.asarray(jax.jit(lambda m, a, b: m(a, b))(ours, x, mask))
  assert got.shape == want.shape == (2, 16, 11)
  np.testing.assert_allclose(got, want, atol=1e-4, rtol=0)
  # The mask is used: unmasked logits differ.
  with jax.default_matmul_precision("highest"):
    assert np.abs(np.asarray(ours(x, None)) - want).max() > 1e-2


def test_classifier_logits_match_hf():
  """BeitForImageClassification with mean pooling (the paper's fine-tuning head): fc_norm and head."""
  t = _hf()
  ref = t.BeitForImageClassification(t.BeitConfig(**TINY, num_labels=5, use_relative_position_bias=True)).eval()
  g = torch.Generator().manual_seed(1)
  with torch.no_grad():
    for key, p in ref.named_parameters():
      base = 1.0 if p.ndim == 1 and "norm" in key and key.endswith(".weight") else 0.0
      p.copy_(base + (0.3 if p.ndim == 1 else 0.1) * torch.randn(p.shape, generator=g))
  kw = {k: v for k, v in OURS.items() if k != "num_visual_tokens"}
  ours = models.create("beit_mim_base_patch16_224", rngs=nnx.Rngs(0), **kw, num_visual_tokens=0, num_classes=5,
                       rel_pos="layer")
  convert.load_torch_weights(ours, {k: v.numpy() for k, v in ref.state_dict().items()}, "hf")
  x = np.random.RandomState(2).randn(2, 16, 16, 3).astype(np.float32)
  with torch.no_grad():
    want = ref(torch.from_numpy(x.transpose(0, 3, 1, 2).copy())).logits.numpy()
  with jax.default_matmul_precision("highest"):
    np.testing.assert_allclose(np.asarray(ours(x)), want, atol=1e-4, rtol=0)
  assert sorted(convert.export_state_dict(ours, "hf")) == sorted(ref.state_dict())


def test_export_round_trips_to_hf_keys(pairs):
  ref, ours, _, _ = pairs["layer"]
  exported = convert.export_state_dict(ours, "hf")
  want = {k: v.numpy() for k, v in ref.state_dict().items()}
  assert sorted(exported) == sorted(want)
  for k in want:
    np.testing.assert_allclose(exported[k], want[k], atol=1e-6, err_msg=k)


def test_relative_position_index_matches_hf():
  t = _hf()
  from transformers.models.beit.modeling_beit import BeitRelativePositionBias
  for grid in ((4, 4), (3, 5)):
    want = BeitRelativePositionBias.generate_relative_position_index.__wrapped__(grid).numpy()
    np.testing.assert_array_equal(beit.relative_position_index(grid), want)
  del t


def test_registered_parameter_counts_match_hf():
  """beit_mim_{base,large}: HF's pt22k configs, plus the inert k bias per block (models/beit.py)."""
  t = _hf()
  from timm_parity import FixedKeyRngs
  sizes = {"beit_mim_base_patch16_224": (12, 768, 12, 0.1), "beit_mim_large_patch16_224": (24, 1024, 16, 1e-5)}
  if not os.environ.get("PAPERS_JAX_FULL_PARITY"):  # the large shape-only build: make test-full
    sizes.pop("beit_mim_large_patch16_224")
  for name, (layers, width, heads, layer_scale) in sizes.items():
    config = t.BeitConfig(hidden_size=width, num_hidden_layers=layers, num_attention_heads=heads,
                          intermediate_size=4 * width, use_mask_token=True, use_shared_relative_position_bias=True,
                          layer_scale_init_value=layer_scale)
    with torch.device("meta"):
      want = sum(p.numel() for p in t.BeitForMaskedImageModeling(config).parameters())
    model = nnx.eval_shape(lambda n=name: models.create(n, rngs=FixedKeyRngs()))
    got = sum(int(np.prod(v.shape)) for v in jax.tree.leaves(nnx.state(model, nnx.Param)))
    assert got == want + layers * width, name


def test_forward_flops_match_xla():
  """The analytic count (matmuls) against XLA's cost analysis of the lowered forward (elementwise included),
  wide and shallow so that matmuls dominate: within 5%."""
  from papers_jax.models import conv_flops
  from timm_parity import FixedKeyRngs
  model = nnx.eval_shape(lambda: models.create("beit_mim_base_patch16_224", rngs=FixedKeyRngs(), img_size=32,
                                               patch_size=8, embed_dim=384, depth=2, num_heads=6,
                                               num_visual_tokens=512))
  graphdef, state = nnx.split(model)
  x = jax.ShapeDtypeStruct((2, 32, 32, 3), np.float32)
  mask = jax.ShapeDtypeStruct((2, 16), bool)
  xla = conv_flops.xla_flops(lambda s, a, b: nnx.merge(graphdef, s)(a, b), state, x, mask) / 2
  assert 1.0 <= xla / models.forward_flops(model) < 1.05
