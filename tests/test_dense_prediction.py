"""DPT against HF transformers' DPTForSemanticSegmentation (random weights, every tensor perturbed), SETR's
parameter counts against the paper's Tables 2 and 4, and the segmentation task's loss with auxiliary heads
against numpy (models/dpt.py, models/setr.py, tasks/segmentation.py)."""

import math
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from conftest import load_config
from papers_jax import convert, models, tasks
from papers_jax.convert.torch_compat import import_timm
from papers_jax.models import dpt, lseg
from timm_parity import FixedKeyRngs

import_timm()
import torch  # noqa: E402
from transformers import DPTConfig, DPTForSemanticSegmentation  # noqa: E402

TOL = 1e-4
FULL = bool(os.environ.get("PAPERS_JAX_FULL_PARITY"))
TINY = dict(img_size=32, patch_size=8, width=32, depth=4, num_heads=2, mlp_ratio=2.0, hooks=(0, 1, 2, 3),
            reassemble=(8, 16, 32, 32), features=16, num_classes=3)


def _numpy_ce(logits, labels, ignore):
  """Mean softmax cross-entropy over the pixels whose label is not `ignore` (float64)."""
  z = logits.astype(np.float64)
  logp = z - z.max(-1, keepdims=True)
  logp -= np.log(np.exp(logp).sum(-1, keepdims=True))
  keep = labels != ignore
  return -np.take_along_axis(logp, np.where(keep, labels, 0)[..., None], -1)[..., 0][keep].mean()


@pytest.fixture(scope="module")
def dpt_pair():
  """A tiny HF DPTForSemanticSegmentation with every parameter and BatchNorm statistic random, ours loaded
  from its state dict, an image batch and labels with ignored pixels."""
  cfg = DPTConfig(hidden_size=32, num_hidden_layers=4, num_attention_heads=2, intermediate_size=64, image_size=32,
                  patch_size=8, backbone_out_indices=[0, 1, 2, 3], neck_hidden_sizes=[8, 16, 32, 32],
                  fusion_hidden_size=16, num_labels=3, use_auxiliary_head=True, auxiliary_loss_weight=0.4)
  torch.manual_seed(0)
  ref = DPTForSemanticSegmentation(cfg).eval()
  with torch.no_grad():
    for key, p in ref.named_parameters():
      one = p.ndim == 1 and key.endswith(".weight")  # LayerNorm / BatchNorm scales
      p.copy_((1.0 if one else 0.0) + (0.1 if p.ndim == 1 else 0.05) * torch.randn(p.shape))
    for key, b in ref.named_buffers():
      if key.endswith("running_mean"):
        b.copy_(0.1 * torch.randn(b.shape))
      elif key.endswith("running_var"):
        b.copy_(1.0 + 0.2 * torch.rand(b.shape))
  ours = nnx.eval_shape(lambda: models.create("dpt_vit_tiny", **TINY, rngs=FixedKeyRngs()))  # every tensor loaded
  report = convert.load_torch_weights(ours, ref.state_dict(), "hf")
  rng = np.random.RandomState(0)
  images = rng.randn(2, 32, 32, 3).astype(np.float32)
  labels = rng.randint(0, 3, (2, 32, 32))
  labels[0, :5] = 255
  return ref, ours, report, images, labels


def test_dpt_matches_hf(dpt_pair):
  ref, ours, report, images, labels = dpt_pair
  assert not report.missing and not report.unexpected
  pixels = torch.from_numpy(images.transpose(0, 3, 1, 2))
  with torch.no_grad():
    out = ref(pixels, labels=torch.from_numpy(labels), output_hidden_states=True)
    hooked = [h for i, h in enumerate(out.hidden_states[1:]) if i in ref.config.backbone_out_indices]
    want_aux = ref.auxiliary_head(ref.neck(hooked)[-1])
  logits, aux = ours.head_logits(jnp.asarray(images), return_aux=True)
  assert logits.shape == (2, 64, 64, 3) and aux[0].shape == (2, 32, 32, 3)
  np.testing.assert_allclose(np.asarray(logits), out.logits.numpy().transpose(0, 2, 3, 1), atol=TOL, rtol=TOL)
  np.testing.assert_allclose(np.asarray(aux[0]), want_aux.numpy().transpose(0, 2, 3, 1), atol=TOL, rtol=TOL)
  # HF's loss: both heads' logits resized to the labels (align_corners=False), cross-entropy, aux at 0.4;
  # ours: the same logits through __call__'s resize and the numpy cross-entropy.
  full, full_aux = (np.asarray(dpt.resize_half_pixel(x, 32, 32)) for x in (logits, aux[0]))
  loss = _numpy_ce(full, labels, 255) + 0.4 * _numpy_ce(full_aux, labels, 255)
  assert loss == pytest.approx(out.loss.item(), rel=1e-5)


def test_lseg_uses_dpt_blocks():
  assert lseg.FusionBlock is dpt.FusionBlock and lseg.Reassemble is dpt.Reassemble


def test_segmentation_loss_with_aux_heads_matches_numpy():
  """tasks/segmentation.py's training loss on SETR-MLA (four auxiliary heads on its streams): the main
  cross-entropy plus 0.4 × each auxiliary one, over the pixels not ignored."""
  config = load_config("setr/shapes.py", "decoder=mla,smoke")
  task = tasks.get_task(config)
  model = task.build_model(nnx.Rngs(0))
  graphdef, params, rest = nnx.split(model, nnx.Param, ...)
  rng = np.random.RandomState(1)
  batch = {"image": rng.randint(0, 256, (2, 32, 32, 3)).astype(np.uint8),
           "label": rng.randint(0, 5, (2, 32, 32)).astype(np.int32)}
  batch["label"][1, 3:9] = 255
  loss, _ = task.make_loss_fn(graphdef)(nnx.to_pure_dict(params), nnx.to_pure_dict(rest), batch, jax.random.key(0))
  images = jnp.asarray((batch["image"] / 255.0 - 0.5) / 0.25, jnp.float32)
  logits, aux = nnx.merge(graphdef, params, rest)(images, train=True, rngs=nnx.Rngs(dropout=0), return_aux=True)
  assert len(aux) == 4
  want = _numpy_ce(np.asarray(logits), batch["label"], 255)
  want += sum(0.4 * _numpy_ce(np.asarray(a), batch["label"], 255) for a in aux)
  assert float(loss) == pytest.approx(want, rel=1e-5)


# The paper's Tables 2 and 4 (#Params). They count the ADE20K configuration (512×512 crops: a 32×32 grid;
# 150 classes), the official code's class token and its position-table slot (2·width; our SETR drops the
# class token, as the paper's text does), and the 1×1 `conv_seg` (512 → classes) that mmsegmentation's
# decode-head base class builds in every head and SETR's heads never call: 4 of them for Naïve (the decoder
# and 3 auxiliary heads), 5 for PUP and MLA.
PAPER_PARAMS = {
    ("naive", "large"): (305.67e6, 4), ("pup", "large"): (318.31e6, 5), ("mla", "large"): (310.57e6, 5),
    ("naive", "base"): (87.69e6, 4), ("pup", "base"): (97.64e6, 5), ("mla", "base"): (92.59e6, 5),
}
DEFAULT_SUITE = {("pup", "base")}  # the others: make test-full (each ViT-L shape build takes seconds)


@pytest.mark.parametrize("decoder,size", sorted(PAPER_PARAMS))
def test_setr_parameter_counts_match_the_paper(decoder, size):
  if (decoder, size) not in DEFAULT_SUITE and not FULL:
    pytest.skip("make test-full (CI time)")
  paper, conv_segs = PAPER_PARAMS[decoder, size]
  base = (dict(width=768, depth=12, num_heads=12, aux_layers=(4, 7, 9, 11)[:conv_segs - 1] if decoder != "mla" else ())
          if size == "base" else {})
  model = nnx.eval_shape(lambda: models.create(f"setr_{decoder}_vit_large_patch16", img_size=512, num_classes=150,
                                               rngs=FixedKeyRngs(), **base))
  width = model.backbone.embed_dim
  ours = sum(math.prod(v.shape) for v in jax.tree.leaves(nnx.state(model, nnx.Param)))
  assert round((ours + 2 * width + conv_segs * (512 * 150 + 150)) / 1e4) == round(paper / 1e4)
