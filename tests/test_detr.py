"""DETR: parity with HF transformers' `DetrForObjectDetection` (built offline with a small HF ResNet
backbone, every tensor perturbed, padded images), the parameter count of DETR-R50, the converter's
export, and the position encoding. PAPERS_JAX_FULL_PARITY=1 adds the full-size DETR-R50 forward."""

import functools
import math
import os
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from flax import nnx

from papers_jax import convert, models
from papers_jax.convert.torch_compat import _define_torchvision_ops
from papers_jax.models import detr as detr_lib

_define_torchvision_ops()
import transformers  # noqa: E402  (after the torchvision shim)

TOL = 1e-4
FULL = os.environ.get("PAPERS_JAX_FULL_PARITY") == "1"
SMALL = dict(num_classes=3, backbone_width=8, backbone_layers=(1, 1, 1, 1), d_model=32, num_heads=4,
             encoder_layers=2, decoder_layers=2, ffn_dim=64, num_queries=5)


class FixedKeyRngs:
  """Stands in for nnx.Rngs in shape-only builds (see tests/timm_parity.py)."""

  def params(self):
    return jax.random.key(0)


def abstract(name, **overrides):
  return nnx.eval_shape(lambda: models.create(name, rngs=FixedKeyRngs(), **overrides))


def num_params(model) -> int:
  return sum(math.prod(v.shape) for v in jax.tree.leaves(nnx.state(model, nnx.Param)))


def hf_config(width=8, depths=(1, 1, 1, 1), layer_type="bottleneck", **kw):
  expansion = 4 if layer_type == "bottleneck" else 1
  backbone = transformers.ResNetConfig(embedding_size=width, hidden_sizes=[width * expansion * 2 ** i for i in range(4)],
                                       depths=list(depths), layer_type=layer_type, out_features=["stage4"])
  return transformers.DetrConfig(use_timm_backbone=False, use_pretrained_backbone=False, backbone_config=backbone,
                                 **kw)


def perturbed(model, seed=0):
  """Every tensor of `model` random, buffers included: matrices and kernels N(0, 0.1²)·(their init's scale),
  norm weights 1 + N(0, 0.1²), running variances U(0.5, 1.5), every other vector N(0, 0.1²)."""
  g = torch.Generator().manual_seed(seed)
  with torch.no_grad():
    for key, t in model.state_dict().items():
      if not t.is_floating_point():
        continue
      if key.endswith("running_var"):
        t.copy_(0.5 + torch.rand(t.shape, generator=g))
      elif t.ndim == 1:
        base = 1.0 if key.endswith(".weight") and ("norm" in key or "layernorm" in key) else 0.0
        t.copy_(base + 0.1 * torch.randn(t.shape, generator=g))
      else:
        fan_in = math.prod(t.shape[1:])
        t.copy_(torch.randn(t.shape, generator=g) / math.sqrt(fan_in))
  return model.eval()


def hf_per_layer(hf, pixels, pixel_mask):
  """HF's logits and boxes of every decoder layer (HF returns only the last without labels): each layer's
  output (caught by a forward hook) through HF's own decoder LayerNorm and heads. The last layer is checked
  against HF's outputs."""
  layer_outputs = []
  hooks = [layer.register_forward_hook(lambda _m, _i, out: layer_outputs.append(out)) for layer in hf.model.decoder.layers]
  with torch.no_grad():
    out = hf(pixel_values=torch.from_numpy(pixels.transpose(0, 3, 1, 2).copy()),
             pixel_mask=torch.from_numpy(pixel_mask.astype(np.int64)))
    for hook in hooks:
      hook.remove()
    normed = torch.stack([hf.model.decoder.layernorm(h) for h in layer_outputs])
    logits = hf.class_labels_classifier(normed).numpy()
    boxes = hf.bbox_predictor(normed).sigmoid().numpy()
  np.testing.assert_allclose(logits[-1], out.logits.numpy(), atol=1e-6)
  np.testing.assert_allclose(boxes[-1], out.pred_boxes.numpy(), atol=1e-6)
  return logits, boxes


@functools.partial(jax.jit, static_argnums=0, compiler_options={"xla_backend_optimization_level": 0})
def _forward(graphdef, state, x, mask):
  return nnx.merge(graphdef, state)(x, pixel_mask=mask)


def ours(model, pixels, pixel_mask):
  graphdef, state = nnx.split(model)
  with jax.default_matmul_precision("highest"):
    out = _forward(graphdef, state, jnp.asarray(pixels), None if pixel_mask is None else jnp.asarray(pixel_mask))
  return np.asarray(out["logits"]), np.asarray(out["boxes"])


def padded_batch(h, w, seed=0):
  """Two images; the second is real only in its top-left (h - 28) × (w - 36) corner (the rest padding)."""
  pixels = np.random.RandomState(seed).randn(2, h, w, 3).astype(np.float32)
  mask = np.ones((2, h, w), bool)
  mask[1, h - 28:], mask[1, :, w - 36:] = False, False
  pixels[1][~mask[1]] = 0.0
  return pixels, mask


def converted(hf, name="detr_resnet50", **overrides):
  model = abstract(name, **overrides)
  convert.load_torch_weights(model, {k: v.numpy() for k, v in hf.state_dict().items()}, "hf")
  model.eval()
  return model


@pytest.fixture(scope="module")
def small_pair():
  torch.manual_seed(0)
  hf = perturbed(transformers.DetrForObjectDetection(hf_config(
      d_model=32, encoder_layers=2, decoder_layers=2, encoder_attention_heads=4, decoder_attention_heads=4,
      encoder_ffn_dim=64, decoder_ffn_dim=64, num_queries=5, num_labels=3)))
  return hf, converted(hf, **SMALL)


def test_small_detr_matches_hf_every_decoder_layer_with_padding(small_pair):
  hf, model = small_pair
  pixels, mask = padded_batch(160, 128)
  want_logits, want_boxes = hf_per_layer(hf, pixels, mask)
  logits, boxes = ours(model, pixels, mask)
  assert logits.shape == (2, 2, 5, 4) and boxes.shape == (2, 2, 5, 4)
  np.testing.assert_allclose(logits, want_logits, atol=TOL, rtol=0)
  np.testing.assert_allclose(boxes, want_boxes, atol=TOL, rtol=0)
  # No pixel mask (the detection task's call) is HF with an all-ones mask; the padding above mattered.
  want_unpadded, _ = hf_per_layer(hf, pixels, np.ones_like(mask))
  unpadded, _ = ours(model, pixels, None)
  np.testing.assert_allclose(unpadded, want_unpadded, atol=TOL, rtol=0)
  assert np.abs(unpadded[:, 1] - logits[:, 1]).max() > 1e-2


def test_timm_backbone_layout_and_basic_blocks_match_hf():
  """The layout of the hub checkpoints: a timm ResNet-18 backbone (basic blocks), with the hub's old key names."""
  torch.manual_seed(0)
  hf = perturbed(transformers.DetrForObjectDetection(transformers.DetrConfig(
      use_timm_backbone=True, backbone="resnet18", use_pretrained_backbone=False, d_model=32, encoder_layers=1,
      decoder_layers=1, encoder_attention_heads=4, decoder_attention_heads=4, encoder_ffn_dim=64,
      decoder_ffn_dim=64, num_queries=5, num_labels=3)))
  hub = {k.replace("model.backbone.model.", "model.backbone.conv_encoder.model.").replace(".o_proj.", ".out_proj.")
         .replace(".mlp.fc", ".fc"): v.numpy() for k, v in hf.state_dict().items()}
  model = abstract("detr_resnet50", **{**SMALL, "backbone": "resnet18", "backbone_width": 64, "backbone_layers": None,
                                       "encoder_layers": 1, "decoder_layers": 1})
  convert.load_torch_weights(model, hub, "hf")
  model.eval()
  pixels, mask = padded_batch(96, 96)
  want_logits, want_boxes = hf_per_layer(hf, pixels, mask)
  logits, boxes = ours(model, pixels, mask)
  np.testing.assert_allclose(logits, want_logits, atol=TOL, rtol=0)
  np.testing.assert_allclose(boxes, want_boxes, atol=TOL, rtol=0)


def test_export_gives_back_the_hf_state_dict(small_pair):
  hf, model = small_pair
  theirs = {k: v.numpy() for k, v in hf.state_dict().items() if not k.endswith("num_batches_tracked")}
  exported = convert.export_state_dict(model, "hf")
  assert sorted(exported) == sorted(theirs)
  for key, value in theirs.items():
    np.testing.assert_allclose(exported[key], value, atol=1e-6, err_msg=key)


def test_detr_r50_parameter_count_matches_hf():
  """DETR-R50 with COCO's 91 classes: HF's `facebook/detr-resnet-50` architecture, 41.5M parameters (the
  paper's 41M counts the trainable ones; the frozen BatchNorms are buffers in both)."""
  model = abstract("detr_resnet50")
  with torch.device("meta"):
    hf = transformers.DetrForObjectDetection(hf_config(width=64, depths=(3, 4, 6, 3), num_labels=91))
  assert num_params(model) == sum(p.numel() for p in hf.parameters()) == 41_524_768
  # The backbone's BatchNorms are frozen: statistics and affine live outside nnx.Param.
  assert not any("bn" in "/".join(map(str, p)) for p, _ in nnx.to_flat_state(nnx.state(model.backbone, nnx.Param)))


def test_sine_position_embedding_normalises_over_the_real_extent():
  mask = np.zeros((1, 4, 6), bool)
  mask[0, :3, :4] = True
  pos = np.asarray(detr_lib.sine_position_embedding(jnp.asarray(mask), 8))
  assert pos.shape == (1, 4, 6, 16)
  # y features: row r of the real region sits at (r + 1) / 3 · 2π; the first feature is sin of it.
  np.testing.assert_allclose(pos[0, :3, 0, 0], np.sin(np.arange(1, 4) / (3 + 1e-6) * 2 * np.pi), atol=1e-6)
  # x features start at channel 8: column c at (c + 1) / 4 · 2π; channel 9 is its cosine.
  np.testing.assert_allclose(pos[0, 0, :4, 9], np.cos(np.arange(1, 5) / (4 + 1e-6) * 2 * np.pi), atol=1e-6)


def train_gradients(model, pixels, mask):
  """Gradients of every output's sum in training mode (dropout on), and the two outputs with other dropout keys."""
  model = nnx.clone(model)
  model.train()
  graphdef, state = nnx.split(model)
  return _train_gradients(graphdef, state, jnp.asarray(pixels), jnp.asarray(mask))


@functools.partial(jax.jit, static_argnums=0, compiler_options={"xla_backend_optimization_level": 0})
def _train_gradients(graphdef, state, pixels, mask):
  def total(m, key):
    out = m(pixels, pixel_mask=mask, train=True, rngs=nnx.Rngs(dropout=key))
    return sum(jnp.sum(v) for v in out.values()), out["logits"]

  model = nnx.merge(graphdef, state)
  (_, logits), grads = nnx.value_and_grad(total, has_aux=True)(model, 0)
  _, other = total(model, 1)
  return nnx.state(grads), logits, other


def check_gradients(grads, logits, other):
  flat = {"/".join(map(str, p)): np.asarray(v[...] if hasattr(v, "get_value") else v)
          for p, v in nnx.to_flat_state(grads)}
  assert all(np.isfinite(g).all() for g in flat.values())
  assert not any("bn" in p or "downsample_bn" in p for p in flat)  # frozen: not parameters, no gradient
  assert np.abs(flat["backbone/layer4/0/conv3/kernel"]).max() > 0  # the backbone trains (at its own lr)
  assert np.abs(np.asarray(logits) - np.asarray(other)).max() > 1e-3  # dropout is on in training


@pytest.mark.skipif(not FULL, reason="a DETR backward compile (~10 s); Deformable DETR's runs in the default suite")
def test_train_mode_gradients_are_finite_with_padding(small_pair):
  check_gradients(*train_gradients(small_pair[1], *padded_batch(64, 64)))


@pytest.mark.skipif(not FULL, reason="full-size DETR-R50 forward; set PAPERS_JAX_FULL_PARITY=1")
def test_full_detr_r50_matches_hf():
  torch.manual_seed(0)
  hf = perturbed(transformers.DetrForObjectDetection(hf_config(width=64, depths=(3, 4, 6, 3), num_labels=91)))
  model = converted(hf)
  pixels, mask = padded_batch(256, 224)
  want_logits, want_boxes = hf_per_layer(hf, pixels, mask)
  logits, boxes = ours(model, pixels, mask)
  np.testing.assert_allclose(logits, want_logits, atol=TOL, rtol=0)
  np.testing.assert_allclose(boxes, want_boxes, atol=TOL, rtol=0)


@pytest.mark.parametrize("config", ["detr/coco.py", "detr/coco.py:smoke", "deformable_detr/coco.py:variant=two_stage",
                                    "deformable_detr/coco.py:variant=box_refine,smoke"])
def test_detection_configs_build_their_models(config):
  """The model section of each shipped detection config (abstract). The end-to-end smoke runs are
  tests/test_configs.py's, with the detection task."""
  from conftest import load_config
  path, _, arg = config.partition(":")
  c = load_config(path, arg or None)
  assert c.task == "detection"
  model = abstract(**c.model)
  paths = ["/".join(map(str, p)) for p, _ in nnx.to_flat_state(nnx.state(model, nnx.Param))]
  # The recipe's parameter groups match what they name: the frozen stem and layer1, the 0.1× backbone.
  assert any(re.search(c.optimizer.freeze[0], p) for p in paths)
  for pattern, _ in c.optimizer.lr_multipliers:
    assert any(re.search(pattern, p) for p in paths), pattern
