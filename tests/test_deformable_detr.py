"""Deformable DETR: the sampling core against torch's `grid_sample` and HF's PyTorch deformable attention,
and parity with HF transformers' `DeformableDetrForObjectDetection` (small HF ResNet backbone, every tensor
perturbed, padded images) for the plain, box-refinement and two-stage variants; the parameter count."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from flax import nnx

from papers_jax import convert
from papers_jax.models import deformable_detr as ddetr
from test_detr import FULL, TOL, abstract, check_gradients, num_params, padded_batch, perturbed, train_gradients, transformers

SMALL = dict(num_classes=3, backbone_width=8, backbone_layers=(1, 1, 1, 1), d_model=32, num_heads=4,
             encoder_layers=1, decoder_layers=2, ffn_dim=64, num_queries=6, two_stage_num_proposals=6)


def hf_config(width=8, depths=(1, 1, 1, 1), **kw):
  backbone = transformers.ResNetConfig(embedding_size=width, hidden_sizes=[width * 4 * 2 ** i for i in range(4)],
                                       depths=list(depths), layer_type="bottleneck",
                                       out_features=["stage2", "stage3", "stage4"])
  return transformers.DeformableDetrConfig(use_timm_backbone=False, use_pretrained_backbone=False,
                                           backbone_config=backbone, **kw)


def test_bilinear_sample_matches_torch_grid_sample():
  rng = np.random.RandomState(0)
  value = rng.randn(3, 5, 7, 4).astype(np.float32)  # (N, H, W, C)
  locations = rng.uniform(-0.3, 1.3, (3, 50, 2)).astype(np.float32)  # many taps outside the map: zero padding
  locations[0, :4] = [[0, 0], [1, 1], [0.5 / 7, 0.5 / 5], [1 - 0.5 / 7, 1 - 0.5 / 5]]  # edges, pixel centres
  want = torch.nn.functional.grid_sample(torch.from_numpy(value.transpose(0, 3, 1, 2)),
                                         torch.from_numpy(2 * locations[:, None] - 1), mode="bilinear",
                                         padding_mode="zeros", align_corners=False)
  got = ddetr.bilinear_sample(jnp.asarray(value), jnp.asarray(locations))
  np.testing.assert_allclose(np.asarray(got), want.numpy()[:, :, 0].transpose(0, 2, 1), atol=1e-5)
  np.testing.assert_allclose(np.asarray(got)[0, 2], value[0, 0, 0], atol=1e-6)  # a pixel centre reads the pixel


def test_ms_deform_attn_matches_hf_pytorch_core():
  from transformers.models.deformable_detr.modeling_deformable_detr import MultiScaleDeformableAttention
  rng = np.random.RandomState(1)
  shapes = [(6, 5), (3, 3), (2, 1)]
  b, q, heads, head_dim, points = 2, 7, 4, 3, 2
  value = rng.randn(b, sum(h * w for h, w in shapes), heads, head_dim).astype(np.float32)
  locations = rng.uniform(-0.2, 1.2, (b, q, heads, len(shapes), points, 2)).astype(np.float32)
  logits = rng.randn(b, q, heads, len(shapes) * points).astype(np.float32)
  weights = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
  weights = weights.reshape(b, q, heads, len(shapes), points)
  starts = np.concatenate([[0], np.cumsum([h * w for h, w in shapes])[:-1]])
  want = MultiScaleDeformableAttention()(torch.from_numpy(value), torch.tensor(shapes), shapes,
                                         torch.from_numpy(starts), torch.from_numpy(locations),
                                         torch.from_numpy(weights), 64)
  got = ddetr.ms_deform_attn(jnp.asarray(value), shapes, jnp.asarray(locations), jnp.asarray(weights))
  np.testing.assert_allclose(np.asarray(got), want.numpy(), atol=1e-5)


@functools.partial(jax.jit, static_argnums=0, compiler_options={"xla_backend_optimization_level": 0})
def _forward(graphdef, state, x, mask):
  return nnx.merge(graphdef, state)(x, pixel_mask=mask)


def ours(model, pixels, mask):
  graphdef, state = nnx.split(model)
  with jax.default_matmul_precision("highest"):
    return jax.tree.map(np.asarray, _forward(graphdef, state, jnp.asarray(pixels),
                                             None if mask is None else jnp.asarray(mask)))


def hf_outputs(hf, pixels, mask):
  """HF's logits and boxes of every decoder layer (recomputed from its intermediate states as its forward
  does; the last layer checked against HF's own outputs)."""
  with torch.no_grad():
    out = hf(pixel_values=torch.from_numpy(pixels.transpose(0, 3, 1, 2).copy()),
             pixel_mask=torch.from_numpy(mask.astype(np.int64)))
    hs, refs = out.intermediate_hidden_states, out.intermediate_reference_points
    logits, boxes = [], []
    for i in range(hs.shape[1]):
      ref = out.init_reference_points if i == 0 else refs[:, i - 1]
      ref = _inverse_sigmoid(ref)
      delta = hf.bbox_embed[i](hs[:, i])
      delta = delta + ref if ref.shape[-1] == 4 else torch.cat([delta[..., :2] + ref, delta[..., 2:]], -1)
      logits.append(hf.class_embed[i](hs[:, i]).numpy())
      boxes.append(delta.sigmoid().numpy())
  np.testing.assert_allclose(logits[-1], out.logits.numpy(), atol=1e-6)
  np.testing.assert_allclose(boxes[-1], out.pred_boxes.numpy(), atol=1e-6)
  return np.stack(logits), np.stack(boxes), out


def _inverse_sigmoid(x, eps=1e-5):
  x = x.clamp(0, 1)
  return torch.log(x.clamp(min=eps) / (1 - x).clamp(min=eps))


def small_pair(**variant):
  torch.manual_seed(0)
  hf = perturbed(transformers.DeformableDetrForObjectDetection(hf_config(
      d_model=32, encoder_layers=1, decoder_layers=2, encoder_attention_heads=4, decoder_attention_heads=4,
      encoder_ffn_dim=64, decoder_ffn_dim=64, num_queries=6, two_stage_num_proposals=6, num_labels=3, **variant)))
  model = abstract("deformable_detr_resnet50", **SMALL, **variant)
  convert.load_torch_weights(model, {k: v.numpy() for k, v in hf.state_dict().items()}, "hf")
  model.eval()
  return hf, model


@pytest.mark.parametrize("variant", ["plain", "box_refine", "two_stage"])
def test_small_deformable_detr_matches_hf(variant):
  kw = {"plain": {}, "box_refine": dict(with_box_refine=True),
        "two_stage": dict(with_box_refine=True, two_stage=True)}[variant]
  hf, model = small_pair(**kw)
  pixels, mask = padded_batch(160, 128)
  if variant == "two_stage":  # padded pixels all propose the same box: their tied scores make top-k's order arbitrary
    mask = np.ones_like(mask)
  want_logits, want_boxes, out = hf_outputs(hf, pixels, mask)
  # Two-stage runs without a pixel mask (the detection task's call): HF's all-ones mask.
  got = ours(model, pixels, None if variant == "two_stage" else mask)
  assert got["logits"].shape == (2, 2, 6, 3)
  np.testing.assert_allclose(got["logits"], want_logits, atol=TOL, rtol=0)
  np.testing.assert_allclose(got["boxes"], want_boxes, atol=TOL, rtol=0)
  if variant == "two_stage":
    np.testing.assert_allclose(got["enc_logits"], out.enc_outputs_class.numpy(), atol=TOL, rtol=0)
    np.testing.assert_allclose(got["enc_boxes"], out.enc_outputs_coord_logits.sigmoid().numpy(), atol=TOL, rtol=0)


def test_deformable_detr_r50_parameter_count_matches_hf():
  """HF's default Deformable DETR (R50, 4 levels, 300 queries) with COCO's 91 classes: 40.1M."""
  with torch.device("meta"):
    hf = transformers.DeformableDetrForObjectDetection(hf_config(width=64, depths=(3, 4, 6, 3), num_labels=91))
  want = sum(p.numel() for p in hf.parameters())
  assert num_params(abstract("deformable_detr_resnet50")) == want
  assert 39.5e6 < want < 40.5e6
  # Box refinement: a box head per decoder layer as HF, and (as the official code) a class head per layer
  # too, where HF ties them to one.
  with torch.device("meta"):
    hf = transformers.DeformableDetrForObjectDetection(hf_config(width=64, depths=(3, 4, 6, 3), num_labels=91,
                                                                 with_box_refine=True))
  class_head = 256 * 91 + 91
  assert num_params(abstract("deformable_detr_resnet50_box_refine")) == sum(p.numel() for p in hf.parameters()) + \
      5 * class_head


@pytest.mark.skipif(not FULL, reason="a train-mode gradient compile (15 s); set PAPERS_JAX_FULL_PARITY=1")
def test_two_stage_train_mode_gradients_are_finite_with_padding():
  """Box refinement and two-stage proposals, padded: the +inf proposals of padded pixels and the detached
  references leave every gradient finite."""
  _, model = small_pair(with_box_refine=True, two_stage=True)
  check_gradients(*train_gradients(model, *padded_batch(64, 64)))


@pytest.mark.skipif(not FULL, reason="full-size Deformable DETR forwards; set PAPERS_JAX_FULL_PARITY=1")
@pytest.mark.parametrize("two_stage", [False, True])
def test_full_deformable_detr_r50_matches_hf(two_stage):
  kw = dict(with_box_refine=True, two_stage=True) if two_stage else {}
  torch.manual_seed(0)
  hf = perturbed(transformers.DeformableDetrForObjectDetection(hf_config(width=64, depths=(3, 4, 6, 3),
                                                                         num_labels=91, **kw)))
  model = abstract("deformable_detr_resnet50", **kw)
  convert.load_torch_weights(model, {k: v.numpy() for k, v in hf.state_dict().items()}, "hf")
  model.eval()
  pixels, mask = padded_batch(256, 224)
  if two_stage:
    mask = np.ones_like(mask)
  want_logits, want_boxes, out = hf_outputs(hf, pixels, mask)
  got = ours(model, pixels, mask)
  if not two_stage:
    np.testing.assert_allclose(got["logits"], want_logits, atol=TOL, rtol=0)
    np.testing.assert_allclose(got["boxes"], want_boxes, atol=TOL, rtol=0)
    return
  np.testing.assert_allclose(got["enc_logits"], out.enc_outputs_class.numpy(), atol=TOL, rtol=0)
  # Among 300 of 1192 proposals, scores a few 1e-6 apart swap places in top-k between the two float32
  # computations; the decoder is permutation-equivariant in its queries, so the outputs are HF's up to that order.
  ours_rows = np.concatenate([got["logits"], got["boxes"]], -1).transpose(1, 2, 0, 3).reshape(2, 300, -1)
  hf_rows = np.concatenate([want_logits, want_boxes], -1).transpose(1, 2, 0, 3).reshape(2, 300, -1)
  for b in range(2):
    diff = np.abs(ours_rows[b][:, None] - hf_rows[b][None]).max(-1)  # (ours, theirs)
    partner = diff.argmin(1)
    assert (diff.min(1) <= TOL).all() and len(set(partner)) == 300
    assert (partner != np.arange(300)).sum() <= 6, partner
