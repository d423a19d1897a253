"""The CLIP family on the generated scenes: CLIP's image-text scenes data path and single-object
zero-shot (configs/clip/scenes.py)."""

import numpy as np

from conftest import load_config
from papers_jax.data import vqa_scenes
from papers_jax.evaluators import zero_shot
from papers_jax.tasks.clip import CLIPTask


def test_clip_reads_the_scenes_captions_and_scores_single_objects():
  """The clip task reads data.name="vqa_scenes" as image-text data with a word-level tokenizer of its
  texts, and the single-object zero-shot scores each object's colour and kind: with image features
  that are all one vector, every object gets the same prompt, so each score is that class's frequency."""
  task = CLIPTask(load_config("clip/scenes.py", "smoke"))
  example = task.source("train")[3]
  assert example["texts"] == vqa_scenes.scenes("train")[3]["captions"] and task.image_text
  assert task.tokenizer.vocab_size == 59 and task.class_names is None
  prompts = [t.format(f"{c} {k}") for t in task.clip.eval_templates for c in vqa_scenes.COLOURS
             for k in vqa_scenes.KINDS]
  assert not task.tokenizer.unknown_words(prompts + list(example["texts"]))
  tokens = task.preprocess(train=True)(example, np.random.default_rng(0))["tokens"]
  assert tokens.shape == (24,) and tokens.max() == task.tokenizer.eot_id

  images, colours, kinds = vqa_scenes.single_objects("test", 64)
  assert len(images) == sum(len(s["objects"]) for s in vqa_scenes.scenes("test")[:64])
  # One object per image: its pixels brighter than the noise are the only ones.
  assert np.all((images.max(-1) > 60).sum((1, 2)) > 20)
  rng = np.random.default_rng(0)
  text_table = rng.normal(size=(task.tokenizer.vocab_size, 8))
  encode_text = lambda t: text_table[t].sum(1)  # noqa: E731  (distinct rows per prompt)
  encode_image = lambda x: np.ones((len(x), 8))  # noqa: E731
  out = task._scene_objects_zero_shot(encode_image, encode_text, step=0)
  names = [f"{c} {k}" for c in vqa_scenes.COLOURS for k in vqa_scenes.KINDS]
  weights = zero_shot.classifier_weights(encode_text, task.tokenizer, names, task.clip.eval_templates)
  pick = int(np.argmax(weights.sum(1)))  # the prompt row closest to the all-ones image feature
  assert out["object_colour_top1"] == np.mean(colours == pick // 13)
  assert out["object_kind_top1"] == np.mean(kinds == pick % 13)
  assert out["object_top1"] == np.mean((colours == pick // 13) & (kinds == pick % 13))


# ----------------------------------------------------------------------------- GroupViT

import importlib.util  # noqa: E402

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import pytest  # noqa: E402
from flax import nnx  # noqa: E402

from papers_jax import convert, models  # noqa: E402
from papers_jax.models import groupvit  # noqa: E402
from timm_parity import FixedKeyRngs, num_params  # noqa: E402

HAS_TORCH = importlib.util.find_spec("torch") is not None and importlib.util.find_spec("transformers") is not None
needs_torch = pytest.mark.skipif(not HAS_TORCH, reason="needs torch and transformers")

# A tiny GroupViT: 32 px / 8 px patches (16 tokens), width 32, stages of 2, 1, 1 blocks grouping 16 → 8 → 4.
GROUPVIT_TINY = dict(img_size=32, patch_size=8, width=32, depths=(2, 1, 1), num_group_tokens=(8, 4, 0),
                     num_output_groups=(8, 4, 4), num_heads=2, context_length=16, vocab_size=99, text_width=32,
                     text_layers=2, text_heads=2, embed_dim=24, projection_hidden=48)


def perturbed_(module, seed=0):
  """Every float tensor random: norm scales 1 + N(0, 0.1²), running variances in [1, 1.2], else N(0, 0.1²)."""
  import torch
  generator = torch.Generator().manual_seed(seed)
  with torch.no_grad():
    for key, p in module.state_dict().items():
      if not p.is_floating_point():
        continue
      if key.endswith("running_var"):
        p.copy_(1.0 + 0.2 * torch.rand(p.shape, generator=generator))
        continue
      is_scale = key.endswith(".weight") and p.ndim == 1
      p.copy_((1.0 if is_scale else 0.0) + 0.1 * torch.randn(p.shape, generator=generator))
  return module


@pytest.fixture(scope="module")
def groupvit_pair():
  """(ours, HF's GroupViTModel in eval mode) on the same perturbed random weights."""
  from papers_jax.convert.torch_compat import import_timm
  import_timm()
  from transformers import GroupViTConfig, GroupViTModel
  vision = dict(hidden_size=32, intermediate_size=128, depths=[2, 1, 1], num_group_tokens=[8, 4, 0],
                num_output_groups=[8, 4, 4], num_attention_heads=2, image_size=32, patch_size=8)
  text = dict(vocab_size=99, hidden_size=32, intermediate_size=128, num_hidden_layers=2, num_attention_heads=2,
              max_position_embeddings=16, eos_token_id=2, bos_token_id=1, pad_token_id=0)
  hf = perturbed_(GroupViTModel(GroupViTConfig(text_config=text, vision_config=vision, projection_dim=24,
                                               projection_intermediate_dim=48))).eval()
  ours = nnx.eval_shape(lambda: models.create("groupvit_small_patch16", rngs=FixedKeyRngs(), **GROUPVIT_TINY))
  sd = {k: v.detach().numpy().copy() for k, v in hf.state_dict().items()}
  report = convert.load_torch_weights(ours, sd, source="hf")
  return ours, hf, report


@needs_torch
def test_groupvit_matches_hf_including_segmentation_logits(groupvit_pair):
  import torch
  ours, hf, report = groupvit_pair
  assert not report.missing and not report.unexpected
  rng = np.random.default_rng(0)
  images = rng.normal(size=(2, 32, 32, 3)).astype(np.float32)
  tokens = np.zeros((3, 16), np.int64)
  for row, n in zip(tokens, (5, 9, 16)):
    row[:n] = rng.integers(3, 97, n)
    row[n - 1] = 98  # the largest id ends each caption ([EOS] by HF's argmax rule)
  with torch.no_grad():
    out = hf(input_ids=torch.from_numpy(tokens), pixel_values=torch.from_numpy(images.transpose(0, 3, 1, 2)),
             output_segmentation=True)

  @jax.jit
  def forward(model, images, tokens):
    return model.encode_image(images), model.encode_text(tokens), model(images, tokens)[0], \
        model.segmentation_logits(images, tokens)

  image, text, logits, seg = forward(ours, jnp.asarray(images), jnp.asarray(tokens, jnp.int32))
  norm = lambda x: x / np.linalg.norm(x, axis=-1, keepdims=True)  # noqa: E731
  np.testing.assert_allclose(norm(np.asarray(image)), out.image_embeds.numpy(), atol=1e-4)
  np.testing.assert_allclose(norm(np.asarray(text)), out.text_embeds.numpy(), atol=1e-4)
  np.testing.assert_allclose(np.asarray(logits), out.logits_per_image.numpy(), rtol=1e-4, atol=1e-4)
  want = out.segmentation_logits.numpy().transpose(0, 2, 3, 1)  # (B, H, W, texts)
  assert seg.shape == want.shape == (2, 32, 32, 3)
  np.testing.assert_allclose(np.asarray(seg), want, rtol=1e-4, atol=1e-4 * np.abs(want).max())
