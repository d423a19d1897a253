"""BLIP: ITC, ITM and captioning logits against HF transformers' BlipForImageTextRetrieval and
BlipForConditionalGeneration (random weights, every tensor perturbed, float32), the cached decode step
against the full decoder, the objectives against numpy references, the generation loops, the captioning
metrics (BLEU-4, CIDEr-D) on hand-worked cases, and the task."""

import importlib.util
import math
import os
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from papers_jax.convert import hf_blip
from papers_jax.models import blip
from timm_parity import FixedKeyRngs

if importlib.util.find_spec("torch") is None or importlib.util.find_spec("transformers") is None:
  torch = None
else:
  from papers_jax.convert.torch_compat import import_timm
  import_timm()  # the torchvision shim, before transformers
  import torch
  from transformers import BlipConfig, BlipForConditionalGeneration, BlipForImageTextRetrieval

needs_torch = pytest.mark.skipif(torch is None, reason="needs torch and transformers")
FULL = bool(os.environ.get("PAPERS_JAX_FULL_PARITY"))

# Tiny BLIP: a 48-wide ViT (2 layers, 32 px in 8 px patches) and 32-wide text layers, so the cross-attention's
# keys and values come from another width than the text's.
TINY = dict(img_size=32, patch_size=8, vision_width=48, vision_depth=2, vision_heads=4, vision_mlp_ratio=2.0,
            vocab_size=99, hidden_size=32, num_layers=2, num_heads=4, intermediate_size=64,
            max_position_embeddings=20, embed_dim=16, dropout_rate=0.0, attention_dropout_rate=0.0)


def perturb_(module, seed=0):
  """Every floating tensor random: LayerNorm scales 1 + N(0, 0.1²), everything else N(0, 0.1²)
  (tied tensors stay tied: they are one tensor)."""
  generator = torch.Generator().manual_seed(seed)
  with torch.no_grad():
    for key, p in module.named_parameters():
      is_norm = re.search(r"(LayerNorm|layer_norm|layernorm)", key) and key.endswith("weight")
      p.copy_((1.0 if is_norm else 0.0) + 0.1 * torch.randn(p.shape, generator=generator))
  return module


def _numpy_state_dict(model):
  return {k: v.detach().numpy().copy() for k, v in model.state_dict().items()}


@pytest.fixture(scope="module")
def hf_outputs():
  """HF's outputs and ours on the same random inputs, each HF model loaded into its own copy of ours."""
  config = BlipConfig(
      text_config=dict(vocab_size=99, hidden_size=32, encoder_hidden_size=48, intermediate_size=64,
                       num_hidden_layers=2, num_attention_heads=4, max_position_embeddings=20,
                       hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0, is_decoder=True),
      vision_config=dict(hidden_size=48, intermediate_size=96, num_hidden_layers=2, num_attention_heads=4,
                         image_size=32, patch_size=8, layer_norm_eps=1e-6, attention_dropout=0.0),
      image_text_hidden_size=16)
  torch.manual_seed(0)
  retrieval = perturb_(BlipForImageTextRetrieval(config).eval(), seed=0)
  captioning = perturb_(BlipForConditionalGeneration(config).eval(), seed=1)
  rng = np.random.default_rng(0)
  pixels = rng.normal(size=(3, 3, 32, 32)).astype(np.float32)
  ids = rng.integers(1, 99, (3, 9)).astype(np.int64)
  mask = np.ones((3, 9), np.int64)
  mask[1, 6:] = 0
  mask[2, 4:] = 0
  with torch.no_grad():
    t = dict(pixel_values=torch.tensor(pixels), input_ids=torch.tensor(ids), attention_mask=torch.tensor(mask))
    theirs = dict(itm=retrieval(**t, use_itm_head=True).itm_score.numpy(),
                  itc=retrieval(**t, use_itm_head=False).itm_score.numpy(),
                  lm=captioning(**t).logits.numpy())
  images = jnp.asarray(pixels.transpose(0, 2, 3, 1))
  ids, mask = jnp.asarray(ids, jnp.int32), jnp.asarray(mask, jnp.int32)
  reports, ours = {}, {}
  with jax.default_matmul_precision("highest"):
    for kind, hf in (("retrieval", retrieval), ("captioning", captioning)):
      model = blip.BLIP(**TINY, rngs=nnx.Rngs(0))
      reports[kind] = hf_blip.load_hf_blip(model, _numpy_state_dict(hf))
      image_embeds = model.encode_image(images)
      if kind == "retrieval":
        ours["itm"] = model.itm_logits(model.encode_multimodal(ids, mask, image_embeds))
        ours["itc"] = model.image_feature(image_embeds) @ model.text_feature(model.encode_text(ids, mask)).T
      else:
        ours["lm"] = model.decoder_logits(ids, mask, image_embeds)
        # The cached decode step: the first 4 tokens at once, then one at a time (row 0 has no padding).
        cache = model.init_decode_cache(image_embeds[:1], 9)
        steps, ours_lm0 = [(0, 4)] + [(i, i + 1) for i in range(4, 9)], []
        for a, b in steps:
          logits, cache = model.decode_step(ids[:1, a:b], cache)
          ours_lm0.append(logits[0])
        ours["lm_cached_row0"] = jnp.concatenate(ours_lm0)
  return theirs, {k: np.asarray(v) for k, v in ours.items()}, reports


@needs_torch
def test_matches_hf_blip(hf_outputs):
  theirs, ours, reports = hf_outputs
  np.testing.assert_allclose(ours["itm"], theirs["itm"], atol=1e-4, rtol=1e-4)
  np.testing.assert_allclose(ours["itc"], theirs["itc"], atol=1e-4, rtol=1e-4)
  real = np.array([[1] * 9, [1] * 6 + [0] * 3, [1] * 4 + [0] * 5], bool)
  np.testing.assert_allclose(ours["lm"][real], theirs["lm"][real], atol=1e-4, rtol=1e-4)
  np.testing.assert_allclose(ours["lm_cached_row0"], theirs["lm"][0], atol=1e-4, rtol=1e-4)
  # Strict: each HF model fills every param but the other one's, and uses every key it has.
  for kind, other in (("retrieval", hf_blip.CAPTIONING_ONLY), ("captioning", hf_blip.RETRIEVAL_ONLY)):
    report = reports[kind]
    assert not report.unexpected and not report.mismatched
    assert report.missing and all(any(re.search(p, k) for p in other) for k in report.missing), report.missing
  assert any("dec_self_attn" in k for k in reports["retrieval"].missing)
  assert any(k.startswith("itm_head") for k in reports["captioning"].missing)


def test_encoder_and_decoder_share_all_but_self_attention():
  """The decoder's own params are its self-attention (and norm) per layer and the LM head; the rest of the
  text stack (embeddings, cross-attention, FFN) is one set of arrays, used by all three text paths."""
  model = nnx.eval_shape(lambda: blip.BLIP(**TINY, rngs=FixedKeyRngs()))
  paths = ["/".join(map(str, p)) for p, _ in nnx.to_flat_state(nnx.state(model, nnx.Param))]
  text = [p for p in paths if p.startswith("text/")]
  decoder_only = [p for p in text if "/dec_self_attn" in p]
  encoder_only = [p for p in text if "/self_attn" in p and "/dec_self_attn" not in p]
  assert len(decoder_only) == len(encoder_only) == 2 * 6  # qkv, proj (kernel, bias), norm (scale, bias)
  shared = set(text) - set(decoder_only) - set(encoder_only)
  assert any("cross_attn" in p for p in shared) and any("/mlp/" in p for p in shared)
  assert any("embeddings" in p for p in shared)
