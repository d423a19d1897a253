"""Saliency maps (evaluators/interpret.py): the named-feature taps, CAM against its closed form,
Grad-CAM and guided backprop against a PyTorch implementation on timm's ResNet with the same
weights, guided ReLU's VJP and attention rollout against numpy, and the localisation boxes."""

import importlib.util

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from papers_jax import models
from papers_jax.errors import UserError
from papers_jax.evaluators import interpret
from papers_jax.models import intermediates
from papers_jax.nn import activations


def _random_params(model, seed=0):
  """Every parameter N(0, 0.2) around its init (heads start at zero, which would hide a broken path)."""
  key = jax.random.key(seed)
  for i, (_, var) in enumerate(nnx.iter_graph(model)):
    if isinstance(var, nnx.Param):
      var[...] = var[...] + 0.2 * jax.random.normal(jax.random.fold_in(key, i), var.shape)
  model.eval()
  return model


def test_guided_relu_vjp_matches_numpy_and_relu_is_unchanged_outside_the_switch():
  rng = np.random.RandomState(0)
  x, g = rng.randn(64).astype(np.float32), rng.randn(64).astype(np.float32)
  _, vjp = jax.vjp(activations.guided_relu, x)
  np.testing.assert_array_equal(vjp(g)[0], g * (x > 0) * (g > 0))
  _, plain = jax.vjp(activations.relu, x)
  np.testing.assert_array_equal(plain(g)[0], g * (x > 0))
  with activations.guided_relu_backward():
    y, guided = jax.vjp(activations.relu, x)
  np.testing.assert_array_equal(y, np.maximum(x, 0))
  np.testing.assert_array_equal(guided(g)[0], g * (x > 0) * (g > 0))


TINY = {
    "vit": ("vit_tiny_patch16_224", dict(img_size=16, patch_size=4, embed_dim=32, depth=2, num_heads=2,
                                         num_classes=5), "block01/+sa"),
    "mixer": ("mixer_s16_224", dict(img_size=16, patch_size=4, embed_dim=32, num_blocks=2, num_classes=5,
                                    head_zero_init=False), "block00/+token"),
    "swin": ("swin_tiny_patch4_window7_224", dict(img_size=16, patch_size=2, window_size=4, embed_dim=16,
                                                  depths=(1, 1), num_heads=(1, 2), num_classes=5), "stage0"),
    "resnet": ("resnet20_cifar", dict(layers=(1, 1, 1), num_classes=5, img_size=16), "stage1"),
}


@pytest.mark.parametrize("family", sorted(TINY))
def test_a_perturbation_at_a_named_feature_is_added_there_and_flows_on(family):
  name, kwargs, layer = TINY[family]
  model = _random_params(models.create(name, rngs=nnx.Rngs(0), **kwargs))
  x = jnp.asarray(np.random.RandomState(0).randn(2, 16, 16, 3), jnp.float32)
  clean = model.forward_intermediates(x, train=False)
  delta = jnp.asarray(np.random.RandomState(1).randn(*clean[layer].shape), jnp.float32)
  with intermediates.perturbed({layer: delta}):
    shifted = model.forward_intermediates(x, train=False)
  np.testing.assert_allclose(shifted[layer], clean[layer] + delta, rtol=1e-5, atol=1e-5)
  assert not np.allclose(shifted["logits"], clean["logits"], atol=1e-3)  # the rest of the network saw it
  np.testing.assert_array_equal(shifted["stem"], clean["stem"])  # and nothing before it did
  with pytest.raises(ValueError, match="stage9"):
    with intermediates.perturbed({"stage9": delta}):
      model.forward_intermediates(x, train=False)
  if family in ("swin", "mixer"):  # the gradient path below does not depend on the family (suite time)
    return
  feature, grad, logits, target = interpret.score_gradient(model, x, layer)
  np.testing.assert_allclose(feature, clean[layer], rtol=1e-6, atol=1e-6)
  np.testing.assert_array_equal(target, np.argmax(clean["logits"], -1))
  # The tap's gradient is the feature's: a central difference along it changes the score as predicted.
  eps = 1e-2 / float(jnp.linalg.norm(grad))
  score = []
  for sign in (1, -1):
    with intermediates.perturbed({layer: sign * eps * grad}):
      score.append(model.forward_intermediates(x, train=False)["logits"][jnp.arange(2), target].sum())
  np.testing.assert_allclose(float(score[0] - score[1]) / 2, eps * float(jnp.vdot(grad, grad)), rtol=0.05)


def test_cam_equals_its_closed_form_and_is_refused_for_a_token_pooled_head():
  model = models.create("resnet20_cifar", rngs=nnx.Rngs(0), layers=(1, 1, 1), num_classes=7, img_size=16)
  model.eval()
  x = jnp.asarray(np.random.RandomState(0).randn(3, 16, 16, 3), jnp.float32)
  maps, target, _ = interpret.class_activation_map(model, x, target=jnp.array([0, 3, 6]))
  feats = np.asarray(model.forward_intermediates(x, train=False)["encoded"], np.float64)  # (3, 4, 4, 64)
  w = np.asarray(model.fc.kernel[...], np.float64)  # (64, 7)
  closed_form = np.stack([feats[b] @ w[:, c] for b, c in enumerate([0, 3, 6])])  # Σ_k w_k^c f_k(x, y)
  np.testing.assert_allclose(maps, closed_form, rtol=1e-4, atol=1e-5 * np.abs(closed_form).max())
  # Its spatial mean plus the bias is the class's logit (the CAM paper's Eq. 1 to 2).
  logits = np.asarray(model(x))
  np.testing.assert_allclose(closed_form.mean(axis=(1, 2)) + np.asarray(model.fc.bias[...])[[0, 3, 6]],
                             logits[np.arange(3), [0, 3, 6]], rtol=1e-4, atol=1e-5)
  vit_name, vit_kwargs, _ = TINY["vit"]
  vit = _random_params(models.create(vit_name, rngs=nnx.Rngs(0), **vit_kwargs))
  with pytest.raises(UserError, match="Grad-CAM"):
    interpret.class_activation_map(vit, x)


def _rollout_numpy(attentions):
  out = None
  for attn in attentions:
    a = np.asarray(attn, np.float64).mean(axis=1)
    a = a + np.eye(a.shape[-1])
    a = a / a.sum(axis=-1, keepdims=True)
    out = a if out is None else np.einsum("bij,bjk->bik", a, out)
  return out


def test_attention_rollout_and_cls_attention_match_numpy():
  name, kwargs, _ = TINY["vit"]
  model = _random_params(models.create(name, rngs=nnx.Rngs(0), **{**kwargs, "depth": 3}))
  x = jnp.asarray(np.random.RandomState(0).randn(2, 16, 16, 3), jnp.float32)
  attentions = interpret.attention_maps(model, x)
  assert len(attentions) == 3 and attentions[0].shape == (2, 2, 17, 17)
  rollout = interpret.attention_rollout(attentions)
  reference = _rollout_numpy(attentions)
  np.testing.assert_allclose(rollout, reference, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(rollout.sum(-1), 1.0, rtol=1e-5)
  np.testing.assert_allclose(interpret.cls_maps(model, rollout), reference[:, 0, 1:].reshape(2, 4, 4), rtol=1e-5)
  last = interpret.last_layer_cls_attention(model, x)
  np.testing.assert_allclose(last, np.asarray(attentions[-1])[:, :, 0, 1:].reshape(2, 2, 4, 4), rtol=1e-6)
  # Grad-CAM on tokens takes the patch grid.
  maps, _ = interpret.grad_cam(model, x, "block02/+mlp")
  assert maps.shape == (2, 4, 4) and np.all(np.asarray(maps) >= 0)


def test_box_from_map_takes_the_largest_component_above_20_percent():
  heat = np.zeros((10, 12))
  heat[1:3, 1:3] = 1.0     # the peak, 4 pixels
  heat[5:9, 4:10] = 0.5    # the larger region, 24 pixels
  heat[0, 11] = 0.1        # below 20% of the maximum
  assert interpret.box_from_map(heat) == (5, 4, 9, 10)
  assert interpret.box_iou((0, 0, 4, 4), (2, 2, 6, 6)) == pytest.approx(4 / 28)
  assert interpret.box_iou((0, 0, 4, 4), (0, 0, 4, 4)) == 1.0


# --- Against a PyTorch Grad-CAM / guided backprop on timm's ResNet-18 with the same weights ---

needs_timm = pytest.mark.skipif(importlib.util.find_spec("timm") is None or importlib.util.find_spec("torch") is None,
                                reason="torch and timm are needed for the reference")


def _torch_grad_cam(ref, x, module, target):
  """Grad-CAM with forward/backward hooks, as the pytorch-grad-cam package computes it."""
  import torch
  store = {}

  def keep(module, inputs, output):
    store["act"] = output
    output.register_hook(lambda g: store.update(grad=g))

  handle = module.register_forward_hook(keep)
  xt = torch.from_numpy(x.transpose(0, 3, 1, 2).copy())
  logits = ref(xt)
  logits[torch.arange(len(target)), torch.as_tensor(target)].sum().backward()
  handle.remove()
  weights = store["grad"].mean(dim=(2, 3), keepdim=True)
  return torch.relu((weights * store["act"]).sum(dim=1)).detach().numpy()


def _torch_guided_backprop(ref, x, target):
  """Guided backprop with backward hooks on every ReLU module: keep only positive gradients."""
  import torch
  handles = []
  for m in ref.modules():
    if isinstance(m, torch.nn.ReLU):
      m.inplace = False
      handles.append(m.register_full_backward_hook(lambda m, gin, gout: (gin[0].clamp(min=0),)))
  xt = torch.from_numpy(x.transpose(0, 3, 1, 2).copy()).requires_grad_(True)
  ref(xt)[torch.arange(len(target)), torch.as_tensor(target)].sum().backward()
  for h in handles:
    h.remove()
  return xt.grad.numpy().transpose(0, 2, 3, 1)


@needs_timm
def test_grad_cam_and_guided_backprop_equal_a_pytorch_reference_on_timm_resnet18():
  from test_resnet import convert_from, random_timm
  ref = random_timm("resnet18", num_classes=10)
  ours = convert_from(ref, "resnet18", num_classes=10)
  ours.eval()
  x = np.random.RandomState(0).randn(2, 64, 64, 3).astype(np.float32)
  target = np.array([2, 7])
  # One compilation for all three maps, at XLA's lowest optimisation level (as tests/timm_parity.py).
  explain = jax.jit(lambda m, x: (interpret.grad_cam(m, x, "stage3", target)[0],
                                  interpret.grad_cam(m, x, "stage2", target)[0],
                                  interpret.guided_backprop(m, x, target)[0]),
                    compiler_options={"xla_backend_optimization_level": 0})
  with jax.default_matmul_precision("highest"):
    stage3, stage2, saliency = explain(ours, x)
  for maps, module in ((stage3, ref.layer4), (stage2, ref.layer3)):
    expected = _torch_grad_cam(ref, x, module, target)
    assert maps.shape == expected.shape and expected.max() > 0
    np.testing.assert_allclose(maps, expected, rtol=1e-4, atol=1e-4 * expected.max())
  expected = _torch_guided_backprop(ref, x, target)
  plain = np.asarray(jax.jit(jax.grad(lambda x, m: m(x)[jnp.arange(2), target].sum()),  # eagerly: every op compiles
                             compiler_options={"xla_backend_optimization_level": 0})(x, ours))
  assert not np.allclose(plain, expected, atol=1e-3 * np.abs(expected).max())  # the guided rule matters here
  np.testing.assert_allclose(saliency, expected, rtol=1e-4, atol=1e-4 * np.abs(expected).max())


def test_digits_canvas_places_each_digit_inside_its_box_and_nowhere_else():
  from papers_jax.data.sources import DigitsCanvasSource, DigitsSource
  source, digits = DigitsCanvasSource("test", canvas=32, scale=2), DigitsSource("test")
  assert len(source) == len(digits) == 360
  corners = set()
  for i in (0, 1, 123, 359):
    image, (top, left, bottom, right) = source[i]["image"][..., 0], source.box(i)
    assert image.shape == (32, 32) and source[i]["label"] == digits[i]["label"]
    rows, cols = np.nonzero(image)
    assert (rows.min(), cols.min(), rows.max() + 1, cols.max() + 1) == (top, left, bottom, right)
    assert image.sum() == 4 * int(digits[i]["image"].sum())  # the whole digit, upsampled 2×
    np.testing.assert_array_equal(source[i]["image"], image[..., None])  # the same on every read
    corners.add((top, left))
  assert len(corners) > 1


def test_visualize_draws_cam_and_attention_overlays(tmp_path, monkeypatch, capsys):
  import importlib.util as util

  from conftest import ROOT, load_config
  from papers_jax import convert
  from papers_jax.tasks.classification import ClassificationTask
  spec = util.spec_from_file_location("tools_visualize", f"{ROOT}/tools/visualize.py")
  tools_visualize = util.module_from_spec(spec)
  spec.loader.exec_module(tools_visualize)
  monkeypatch.chdir(ROOT)
  for kind, config in (("cam", "resnet/digits_cam.py"), ("attention", "vit/digits.py")):
    model = ClassificationTask(load_config(config, "smoke")).build_model(nnx.Rngs(params=0))
    convert.save_params(nnx.to_pure_dict(nnx.state(model, nnx.Param)), str(tmp_path / kind))
    out = tmp_path / f"{kind}.png"
    assert tools_visualize.main([kind, "--config", f"configs/{config}:smoke", "--checkpoint", str(tmp_path / kind),
                                 "--out", str(out), "--examples", "2"]) == 0
    assert out.stat().st_size > 1000
  assert "layer 2:" in capsys.readouterr().out  # the attention command's mean attention distances
  # CAM on a ViT with a class-token head is a user error (exit code 2), before anything is written.
  assert tools_visualize.main(["cam", "--config", "configs/vit/digits.py:smoke", "--checkpoint",
                               str(tmp_path / "attention"), "--out", str(tmp_path / "no.png")]) == 2
  assert not (tmp_path / "no.png").exists()
