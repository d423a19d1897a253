"""Image GPT (models/igpt.py, convert/hf_imagegpt.py): parity with HF transformers'
`ImageGPTForCausalImageModeling` on random weights with every tensor perturbed (float32, 1e-4), the export
round trip, and the registered sizes' parameter counts against HF's."""

import os

import jax
import numpy as np
import pytest
from flax import nnx

from papers_jax import convert, models

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.torch

TINY = dict(vocab_size=9 + 1, n_positions=16, n_embd=32, n_layer=2, n_head=2, resid_pdrop=0.0, embd_pdrop=0.0,
            attn_pdrop=0.0)


def _hf():
  from papers_jax.convert.torch_compat import import_timm
  import_timm()
  import transformers
  return transformers


@pytest.fixture(scope="module")
def pair():
  """(HF model with every tensor perturbed, our converted model, tokens starting with SOS)."""
  t = _hf()
  ref = t.ImageGPTForCausalImageModeling(t.ImageGPTConfig(**TINY)).eval()
  g = torch.Generator().manual_seed(0)
  with torch.no_grad():
    for key, p in ref.named_parameters():
      base = 1.0 if p.ndim == 1 and key.split(".")[-2].startswith("ln") else 0.0
      p.copy_(base + (0.3 if p.ndim == 1 else 0.1) * torch.randn(p.shape, generator=g))
  ours = models.create("igpt_small", rngs=nnx.Rngs(0), num_clusters=9, n_positions=16, embed_dim=32, depth=2,
                       num_heads=2)
  convert.load_torch_weights(ours, {k: v.numpy() for k, v in ref.state_dict().items()}, "hf")
  tokens = np.random.RandomState(0).randint(0, 9, (2, 16)).astype(np.int32)
  tokens[:, 0] = 9  # SOS
  return ref, ours, tokens


def test_causal_logits_match_hf(pair):
  ref, ours, tokens = pair
  with torch.no_grad():
    want = ref(torch.from_numpy(tokens).long()).logits.numpy()
  with jax.default_matmul_precision("highest"):
    got = np.asarray(jax.jit(lambda m, x: m(x))(ours, tokens))
  assert got.shape == want.shape == (2, 16, 9)
  np.testing.assert_allclose(got, want, atol=1e-4, rtol=0)
  # Causal: the first positions do not see a change at the end; bidirectional attention does.
  changed = tokens.copy()
  changed[:, -1] = (changed[:, -1] + 1) % 9
  with jax.default_matmul_precision("highest"):
    np.testing.assert_allclose(np.asarray(ours(changed))[:, :-1], want[:, :-1], atol=1e-4, rtol=0)
    assert np.abs(np.asarray(ours(changed, causal=False))[:, 0] - want[:, 0]).max() > 1e-3


def test_export_round_trips_to_hf_keys(pair):
  ref, ours, _ = pair
  exported = convert.export_state_dict(ours, "hf")
  want = {k: v.numpy() for k, v in ref.state_dict().items()}
  assert sorted(exported) == sorted(want)
  for k in want:
    np.testing.assert_allclose(exported[k], want[k], atol=1e-6, err_msg=k)


def test_registered_parameter_counts_match_hf():
  t = _hf()
  from timm_parity import FixedKeyRngs
  sizes = {"igpt_small": (512, 24, 8), "igpt_medium": (1024, 36, 8), "igpt_large": (1536, 48, 16)}
  if not os.environ.get("PAPERS_JAX_FULL_PARITY"):  # the larger shape-only builds: make test-full
    sizes = {"igpt_small": sizes["igpt_small"]}
  for name, (d, layers, heads) in sizes.items():
    with torch.device("meta"):
      ref = t.ImageGPTForCausalImageModeling(t.ImageGPTConfig(n_embd=d, n_layer=layers, n_head=heads))
    want = sum(p.numel() for p in ref.parameters())
    model = nnx.eval_shape(lambda n=name: models.create(n, rngs=FixedKeyRngs()))
    got = sum(int(np.prod(v.shape)) for v in jax.tree.leaves(nnx.state(model, nnx.Param)))
    assert got == want, name


def test_forward_flops_match_xla():
  """The analytic count (matmuls) against XLA's cost analysis of the lowered forward, within 5%."""
  from papers_jax.models import conv_flops
  from timm_parity import FixedKeyRngs
  model = nnx.eval_shape(lambda: models.create("igpt_small", rngs=FixedKeyRngs(), num_clusters=512, n_positions=64,
                                               embed_dim=384, depth=2, num_heads=6))
  graphdef, state = nnx.split(model)
  tokens = jax.ShapeDtypeStruct((2, 64), np.int32)
  xla = conv_flops.xla_flops(lambda s, t: nnx.merge(graphdef, s)(t), state, tokens) / 2
  assert 1.0 <= xla / models.forward_flops(model) < 1.05
