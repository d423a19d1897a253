"""SAM: parity with HF transformers' `SamModel` (a tiny config built offline, every tensor perturbed) with
point, box and mask prompts; the box's two corners; the image encoder's parameter count against HF's
full-size configs; the training loss against numpy; the interactive prompt sampling; the FLOP counter
against XLA; the task's config. PAPERS_JAX_FULL_PARITY=1 adds ViT-L/H counts and a smoke training run."""

import math
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from flax import nnx

from papers_jax import convert, models
from papers_jax.convert.torch_compat import import_timm
from papers_jax.objectives import promptable_segmentation as objective
from papers_jax.tasks import promptable_segmentation as task_lib

import_timm()
import transformers  # noqa: E402  (after the torchvision shim)

TOL = 1e-4
FULL = os.environ.get("PAPERS_JAX_FULL_PARITY") == "1"
# Image 64, 8×8 patches: an 8×8 grid in 3×3 windows (padded to 9×9), block 1 global; 16-d prompts.
TINY = dict(img_size=64, patch_size=8, embed_dim=32, depth=2, num_heads=2, global_attn_indexes=(1,), window_size=3,
            mlp_ratio=1.5, prompt_dim=16, mask_in_chans=8, decoder_heads=2, decoder_mlp_dim=32, iou_head_hidden_dim=24,
            decoder_norm_eps=1e-6)


class FixedKeyRngs:
  """Stands in for nnx.Rngs in shape-only builds (see tests/timm_parity.py)."""

  def params(self):
    return jax.random.key(0)


def abstract(name, **overrides):
  return nnx.eval_shape(lambda: models.create(name, rngs=FixedKeyRngs(), **overrides))


def num_params(tree) -> int:
  return sum(math.prod(v.shape) for v in jax.tree.leaves(nnx.state(tree, nnx.Param)))


def perturbed(model, seed=0):
  """Every tensor random: matrices N(0, 1/fan-in), norm weights 1 + N(0, 0.1²), other vectors N(0, 0.1²)."""
  g = torch.Generator().manual_seed(seed)
  with torch.no_grad():
    for key, t in model.state_dict().items():
      if t.ndim == 1:
        t.copy_((1.0 if "norm" in key and key.endswith(".weight") else 0.0) + 0.1 * torch.randn(t.shape, generator=g))
      else:
        t.copy_(torch.randn(t.shape, generator=g) / math.sqrt(math.prod(t.shape[1:])))
  return model.eval()


@pytest.fixture(scope="module")
def pair():
  vision = transformers.SamVisionConfig(hidden_size=32, output_channels=16, num_hidden_layers=2, num_attention_heads=2,
                                        image_size=64, patch_size=8, window_size=3, global_attn_indexes=[1],
                                        num_pos_feats=8, mlp_dim=48)
  prompt = transformers.SamPromptEncoderConfig(hidden_size=16, image_size=64, patch_size=8, mask_input_channels=8)
  decoder = transformers.SamMaskDecoderConfig(hidden_size=16, mlp_dim=32, num_attention_heads=2, iou_head_hidden_dim=24)
  torch.manual_seed(0)
  hf = perturbed(transformers.SamModel(transformers.SamConfig(vision_config=vision, prompt_encoder_config=prompt,
                                                              mask_decoder_config=decoder)))
  model = abstract("sam_vit_b", **TINY)
  report = convert.load_torch_weights(model, {k: v.numpy() for k, v in hf.state_dict().items()}, "hf")
  assert not report.missing and not report.unexpected
  return hf, model


def _prompts(seed=0):
  rng = np.random.RandomState(seed)
  points = rng.uniform(0, 64, (2, 3, 2, 2)).astype(np.float32)
  labels = rng.randint(0, 2, (2, 3, 2))
  labels[0, 0, 1] = -1  # a padding point
  boxes = np.sort(rng.uniform(0, 64, (2, 3, 2, 2)), axis=2).reshape(2, 3, 4).astype(np.float32)
  masks = (3 * rng.randn(2, 1, 32, 32)).astype(np.float32)
  return rng.randn(2, 64, 64, 3).astype(np.float32), points, labels, boxes, masks


@pytest.mark.parametrize("prompt", [pytest.param(p, marks=pytest.mark.skipif(not FULL, reason="make test-full"))
                                    for p in ("points", "boxes")] + ["points_box_mask"])
def test_matches_hf_sam(pair, prompt):
  hf, model = pair
  images, points, labels, boxes, masks = _prompts()
  ours_kw = {"points": dict(points=points, point_labels=labels), "boxes": dict(boxes=boxes),
             "points_box_mask": dict(points=points, point_labels=labels, boxes=boxes, mask_inputs=masks)}[prompt]
  hf_names = dict(points="input_points", point_labels="input_labels", boxes="input_boxes", mask_inputs="input_masks")
  multimask = prompt != "points_box_mask"  # both heads: the 3 ambiguity masks and the single mask
  with torch.no_grad():
    want = hf(pixel_values=torch.from_numpy(images.transpose(0, 3, 1, 2).copy()), multimask_output=multimask,
              **{hf_names[k]: torch.from_numpy(v) for k, v in ours_kw.items()})
  with jax.default_matmul_precision("highest"):  # eager: a one-off forward of a tiny model compiles nothing
    got = model(jnp.asarray(images), multimask_output=multimask, **{k: jnp.asarray(v) for k, v in ours_kw.items()})
  assert got["masks"].shape == tuple(want.pred_masks.shape) == (2, 3, 3 if multimask else 1, 32, 32)
  np.testing.assert_allclose(np.asarray(got["masks"]), want.pred_masks.numpy(), atol=TOL, rtol=0)
  np.testing.assert_allclose(np.asarray(got["iou_scores"]), want.iou_scores.numpy(), atol=TOL, rtol=0)
  assert np.abs(want.pred_masks.numpy()).max() > 0.3  # the masks are not all near zero


def test_box_is_its_two_corners(pair):
  """A box is the top-left corner's encoding + the "top-left" embedding and the BOTTOM-RIGHT corner's encoding +
  the "bottom-right" embedding (the notes write "top-left" for both encodings: PAPERS.md mistake #23); the
  same two tokens as two points labelled 2 and 3."""
  _, model = pair
  pe = model.prompt_encoder
  box = jnp.array([[[4.0, 10.0, 40.0, 50.0]]])
  tokens = pe.embed_boxes(box)[0, 0]
  table = np.asarray(pe.point_embeddings[...])
  np.testing.assert_allclose(tokens[0], pe.fourier(jnp.array([4.5, 10.5]) / 64) + table[2], atol=1e-6)
  np.testing.assert_allclose(tokens[1], pe.fourier(jnp.array([40.5, 50.5]) / 64) + table[3], atol=1e-6)
  as_points = pe.embed_points(box.reshape(1, 1, 2, 2), jnp.array([[[2, 3]]]), pad=False)[0, 0]
  np.testing.assert_allclose(as_points, tokens, atol=1e-6)


def _hf_vision_params(**vision) -> int:
  with torch.device("meta"):
    encoder = transformers.models.sam.modeling_sam.SamVisionEncoder(transformers.SamVisionConfig(**vision))
  return sum(p.numel() for p in encoder.parameters())


HF_VISION = {"sam_vit_b": {}, "sam_vit_l": dict(hidden_size=1024, num_hidden_layers=24, num_attention_heads=16,
                                                  global_attn_indexes=[5, 11, 17, 23]),
             "sam_vit_h": dict(hidden_size=1280, num_hidden_layers=32, num_attention_heads=16,
                               global_attn_indexes=[7, 15, 23, 31])}


@pytest.mark.parametrize("name", ["sam_vit_b"] + (["sam_vit_l", "sam_vit_h"] if FULL else []))
def test_parameter_counts_match_hf(name):
  model = abstract(name)
  ours = num_params(model.image_encoder)
  assert ours == _hf_vision_params(**HF_VISION[name])
  assert ours == {"sam_vit_b": 89_670_912, "sam_vit_l": 308_278_272, "sam_vit_h": 637_026_048}[name]
  # The prompt encoder and mask decoder, 256-d: 4.06M whatever the image encoder.
  assert num_params(model.prompt_encoder) + num_params(model.mask_decoder) == 4_064_560
  with torch.device("meta"):
    hf = transformers.SamModel(transformers.SamConfig(vision_config=HF_VISION[name]))
  gaussian = model.prompt_encoder.gaussian.size  # a fixed buffer here, a (tied) parameter in HF
  assert num_params(model) + gaussian == sum(p.numel() for p in hf.parameters())


# ------------------------------------------------------------------------------------------------- loss


def _np_sigmoid(x):
  return 1 / (1 + np.exp(-x))


def _np_sam_loss(logits, iou_pred, target, valid):
  """SAM's loss, written out in numpy float64 per prompt."""
  logits, iou_pred, target = (np.asarray(a, np.float64) for a in (logits, iou_pred, target))
  losses, masks, ious_all = [], [], []
  for idx in np.ndindex(valid.shape):
    t = target[idx]
    per_mask, ious = [], []
    for m in range(logits.shape[len(valid.shape)]):
      x = logits[idx][m]
      p = _np_sigmoid(x)
      ce = -(t * np.log(p) + (1 - t) * np.log(1 - p))
      p_t = p * t + (1 - p) * (1 - t)
      focal = (ce * (1 - p_t) ** 2 * (0.25 * t + 0.75 * (1 - t))).mean()
      dice = 1 - (2 * (p * t).sum() + 1) / (p.sum() + t.sum() + 1)
      per_mask.append(20 * focal + dice)
      pred = x > 0
      union = (pred | (t > 0)).sum()
      ious.append((pred & (t > 0)).sum() / union if union else 1.0)
    iou_loss = np.mean((iou_pred[idx] - np.array(ious)) ** 2)
    losses.append(min(per_mask) + iou_loss)
  losses = np.array(losses).reshape(valid.shape)
  return (losses * valid).sum() / valid.sum()


def test_sam_loss_equals_numpy():
  rng = np.random.RandomState(0)
  logits = (2 * rng.randn(2, 3, 3, 9, 11)).astype(np.float32)
  target = rng.rand(2, 3, 9, 11) < 0.4
  target[0, 1] = False  # an empty target
  iou_pred = rng.rand(2, 3, 3).astype(np.float32)
  valid = np.array([[1, 1, 0], [1, 1, 1]], bool)
  got, parts = objective.sam_loss(jnp.asarray(logits), jnp.asarray(iou_pred), jnp.asarray(target), jnp.asarray(valid))
  np.testing.assert_allclose(float(got), _np_sam_loss(logits, iou_pred, target, valid), rtol=1e-5)
  # Only the best of the 3 masks gets a gradient; the IoU head gets one for every mask.
  grads = jax.grad(lambda x, q: objective.sam_loss(x, q, jnp.asarray(target), jnp.asarray(valid))[0], (0, 1))(
      jnp.asarray(logits), jnp.asarray(iou_pred))
  touched = np.abs(np.asarray(grads[0])).sum((-2, -1)) > 0
  assert (touched.sum(-1) == valid).all()
  assert (np.abs(np.asarray(grads[1])) > 0).all(-1)[valid].all()


# ------------------------------------------------------------------------------------- prompt sampling


def test_farthest_point_is_deepest_in_chessboard_distance():
  from scipy.ndimage import distance_transform_cdt
  rng = np.random.RandomState(0)
  masks = np.zeros((4, 20, 24), bool)
  masks[0, 3:12, 5:20] = True
  masks[1, 0:7, 0:7] = True  # touches the image border: outside counts as background
  masks[2] = rng.rand(20, 24) < 0.7
  # masks[3] stays empty
  xy, depth = jax.jit(task_lib.farthest_point)(jnp.asarray(masks))
  for m, (x, y), d in zip(masks, np.asarray(xy).astype(int), np.asarray(depth)):
    want = distance_transform_cdt(np.pad(m, 1), metric="chessboard")[1:-1, 1:-1]
    assert d == want.max()
    if m.any():
      assert m[y, x] and want[y, x] == want.max()
  assert tuple(np.asarray(xy)[1]) == (3, 3)


def test_random_points_and_error_region_labels():
  key = jax.random.key(0)
  region = np.zeros((3, 16, 16), bool)
  region[0, 2:5, 9:12] = True
  region[1, 15, 0] = True
  xy, found = task_lib.random_point(key, jnp.asarray(region))
  xy = np.asarray(xy).astype(int)
  assert list(np.asarray(found)) == [True, True, False]
  assert region[0, xy[0, 1], xy[0, 0]] and tuple(xy[1]) == (0, 15)
  # A point in the missed part of an object is positive, one in the spill-over negative.
  target = np.zeros((1, 1, 16, 16), bool)
  target[..., 4:12, 4:12] = True
  logits = np.full((1, 1, 4, 4), -5.0, np.float32)
  logits[..., 1:3, 1:2] = 5.0  # covers the object's left half only, at 1/4 resolution
  logits[..., 0, 3] = 5.0  # and a spot of background
  fn, fp = task_lib._pred_errors(jnp.asarray(logits), jnp.asarray(target), 16)
  assert np.asarray(fn).any() and np.asarray(fp).any() and not (np.asarray(fn) & np.asarray(fp)).any()
  for region, label in ((fn, 1), (fp, 0)):
    xy, _ = task_lib.random_point(jax.random.key(1), region)
    assert int(task_lib._at(fn, xy)[0, 0]) == label


def test_box_noise_scales_with_the_side_and_is_capped():
  boxes = jnp.tile(jnp.array([10.0, 10.0, 30.0, 50.0]), (2000, 1))
  noisy = np.asarray(task_lib.noisy_boxes(jax.random.key(0), boxes, 0.1, 3.0, 64))
  delta = noisy - np.asarray(boxes)
  assert np.abs(delta).max() <= 3.0 + 1e-6
  assert 1.5 < delta[:, 0].std() < 2.0  # σ = 10% of 20 = 2, clipped at 1.5σ
  assert np.abs(delta[:, 1]).max() == pytest.approx(3.0)  # σ = 4, often clipped


# ---------------------------------------------------------------------------------------------- FLOPs


def test_forward_flops_match_xla():
  model = abstract("sam_vit_b", **TINY)
  analytic = models.forward_flops(model)
  graphdef, state = nnx.split(model)
  images = jax.ShapeDtypeStruct((2, 64, 64, 3), jnp.float32)
  points = jax.ShapeDtypeStruct((2, 1, 1, 2), jnp.float32)
  cost = jax.jit(lambda s, x, p: nnx.merge(graphdef, s)(x, points=p)).lower(state, images, points).cost_analysis()
  xla = (cost[0] if isinstance(cost, (list, tuple)) else cost)["flops"] / 2
  assert 0.95 <= xla / analytic <= 1.05, xla / analytic


# ----------------------------------------------------------------------------------------------- config


def test_task_preprocess_gives_static_prompts():
  """The scenes config's task turns a scene into static shapes (its model builds in
  tests/test_configs.py::test_heavy_config_builds)."""
  from papers_jax.core import config as config_lib
  config = config_lib.load(os.path.join(os.path.dirname(__file__), "..", "configs", "sam", "scenes.py"))
  task = task_lib.PromptableSegmentationTask(config)
  source = task.source("test")
  example = task.preprocess(train=False)(source[0], None)
  n = len(source[0]["labels"])
  assert example["instance_masks"].shape == (6, 64, 64) and example["image"].shape == (64, 64, 3)
  assert list(example["box_valid"]) == [True] * n + [False] * (6 - n)
  for mask, box in zip(example["instance_masks"][:n], example["boxes"][:n]):
    rows, cols = np.nonzero(mask)
    assert list(box) == [cols.min(), rows.min(), cols.max() + 1, rows.max() + 1]
