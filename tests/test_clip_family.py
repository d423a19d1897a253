"""The CLIP family on the generated scenes: CLIP's image-text scenes data path and single-object
zero-shot (configs/clip/scenes.py); GroupViT (HF parity incl. segmentation logits, the multi-label loss
and the straight-through assignment against numpy, the task's nouns and segmentation scoring); LSeg
(where it coincides with HF's CLIPSeg, its logits and spatial blocks against numpy). The GroupViT-S
parameter count and the CLIPSeg comparison run in `make test-full` (PAPERS_JAX_FULL_PARITY=1)."""

import importlib.util
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from conftest import load_config
from papers_jax import convert, models
from papers_jax.data import vqa_scenes
from papers_jax.evaluators import zero_shot
from papers_jax.models import groupvit
from papers_jax.tasks.clip import CLIPTask
from timm_parity import FixedKeyRngs, num_params


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

FULL = bool(os.environ.get("PAPERS_JAX_FULL_PARITY"))
full_only = pytest.mark.skipif(not FULL, reason="make test-full (PAPERS_JAX_FULL_PARITY=1)")
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


def make_groupvit_pair(**layout):
  """(ours, HF's GroupViTModel in eval mode, the conversion report) on the same perturbed random weights;
  `layout`: depths, num_group_tokens, num_output_groups (default GROUPVIT_TINY's)."""
  from papers_jax.convert.torch_compat import import_timm
  import_timm()
  from transformers import GroupViTConfig, GroupViTModel
  layout = {k: GROUPVIT_TINY[k] for k in ("depths", "num_group_tokens", "num_output_groups")} | layout
  vision = dict(hidden_size=32, intermediate_size=128, num_attention_heads=2, image_size=32, patch_size=8,
                **{k: list(v) for k, v in layout.items()})
  text = dict(vocab_size=99, hidden_size=32, intermediate_size=128, num_hidden_layers=2, num_attention_heads=2,
              max_position_embeddings=16, eos_token_id=2, bos_token_id=1, pad_token_id=0)
  hf = perturbed_(GroupViTModel(GroupViTConfig(text_config=text, vision_config=vision, projection_dim=24,
                                               projection_intermediate_dim=48))).eval()
  ours = nnx.eval_shape(lambda: models.create("groupvit_small_patch16", rngs=FixedKeyRngs(),
                                              **(GROUPVIT_TINY | layout)))
  sd = {k: v.detach().numpy().copy() for k, v in hf.state_dict().items()}
  report = convert.load_torch_weights(ours, sd, source="hf")
  return ours, hf, report


@pytest.fixture(scope="module")
def groupvit_pair():
  return make_groupvit_pair()


@needs_torch
def test_groupvit_matches_hf_including_segmentation_logits(groupvit_pair):
  check_groupvit_against_hf(*groupvit_pair)


@full_only
@needs_torch
def test_one_stage_groupvit_matches_hf_including_segmentation_logits():
  """The paper's one-stage ablation (configs/groupvit/scenes.py:stages=1): one grouping block, its segments the
  output, two more blocks over them."""
  check_groupvit_against_hf(*make_groupvit_pair(depths=(2, 2), num_group_tokens=(8, 0), num_output_groups=(8, 8)))


def check_groupvit_against_hf(ours, hf, report):
  import torch
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


def multi_label_loss_reference(image, texts, valid, scale):
  """GroupViT's eqs. 4-5 with loops (numpy, float64)."""
  x = image / np.linalg.norm(image, axis=-1, keepdims=True)
  y = texts / np.linalg.norm(texts, axis=-1, keepdims=True)
  b, k = valid.shape
  i2t = []
  for i in range(b):
    num = sum(np.exp(scale * x[i] @ y[i, m]) for m in range(k) if valid[i, m])
    den = sum(np.exp(scale * x[i] @ y[j, m]) for j in range(b) for m in range(k) if valid[j, m])
    i2t.append(-np.log(num / den))
  t2i = []
  for i in range(b):
    for m in range(k):
      if valid[i, m]:
        t2i.append(-np.log(np.exp(scale * y[i, m] @ x[i]) / sum(np.exp(scale * y[i, m] @ x[j]) for j in range(b))))
  return 0.5 * (np.mean(i2t) + np.mean(t2i))


def test_multi_label_contrastive_loss_matches_numpy():
  from papers_jax.objectives import contrastive
  rng = np.random.default_rng(1)
  image, texts = rng.normal(size=(5, 8)), rng.normal(size=(5, 3, 8))
  valid = np.array([[1, 1, 1], [1, 0, 0], [1, 1, 0], [1, 0, 1], [1, 1, 1]], bool)
  got = contrastive.multi_label_contrastive_loss(jnp.asarray(image, jnp.float32), jnp.asarray(texts, jnp.float32),
                                                 jnp.asarray(valid), 3.0)
  np.testing.assert_allclose(float(got), multi_label_loss_reference(image, texts, valid, 3.0), rtol=1e-5)


def test_hard_assignment_is_one_hot_forward_and_softmax_backward():
  """The straight-through estimator: one-hot of the argmax over the groups (axis 1) forward, the
  softmax's gradient backward; the Gumbel version takes the argmax of logits + that key's Gumbel noise."""
  logits = jnp.asarray(np.random.default_rng(2).normal(size=(2, 4, 6)), jnp.float32)  # (B, groups, tokens)
  weights = jnp.asarray(np.random.default_rng(3).normal(size=(2, 4, 6)), jnp.float32)
  hard = groupvit.hard_assignment(logits, axis=1)
  np.testing.assert_allclose(hard, jax.nn.one_hot(jnp.argmax(logits, 1), 4, axis=1), atol=1e-6)
  g_hard = jax.grad(lambda z: jnp.sum(weights * groupvit.hard_assignment(z, axis=1)))(logits)
  g_soft = jax.grad(lambda z: jnp.sum(weights * jax.nn.softmax(z, axis=1)))(logits)
  np.testing.assert_allclose(g_hard, g_soft, atol=1e-6)
  key = jax.random.key(0)
  noisy = logits + jax.random.gumbel(key, logits.shape)
  sample = groupvit.gumbel_hard_assignment(logits, key, axis=1)
  np.testing.assert_allclose(sample, jax.nn.one_hot(jnp.argmax(noisy, 1), 4, axis=1), atol=1e-6)
  assert not np.array_equal(np.argmax(noisy, 1), np.argmax(logits, 1))  # the noise changes some assignments


def test_caption_nouns_are_the_object_phrases():
  from papers_jax.tasks.groupvit import caption_nouns
  assert caption_nouns("from left to right: a red circle, a blue 7 and a red circle.", 4) == ["red circle", "blue 7"]
  assert caption_nouns("the green square is left of the yellow 3.", 1) == ["green square"]
  assert caption_nouns("there are two shapes and one digit.", 4) == []


@full_only
@needs_torch
def test_groupvit_small_parameter_count_matches_hf_default_config():
  """The paper's GroupViT-S (2 stages, 64 + 8 group tokens) against HF's default GroupViTConfig, which is it."""
  import torch
  from transformers import GroupViTConfig, GroupViTModel
  with torch.device("meta"):
    hf = GroupViTModel(GroupViTConfig())
  ours = nnx.eval_shape(lambda: models.create("groupvit_small_patch16", rngs=FixedKeyRngs()))
  assert num_params(ours) == sum(p.numel() for p in hf.parameters())


# ----------------------------------------------------------------------------- LSeg

@full_only
@needs_torch
def test_lseg_coincides_with_hf_clipseg_on_text_embeddings_and_hooked_tokens():
  """Where LSeg and CLIPSeg coincide: the frozen CLIP text tower's prompt embeddings (CLIPSeg's
  conditional embeddings) and the CLIP ViT's tokens at the blocks the decoder reads (CLIPSeg's
  `extract_layers` activations). Their decoders differ (models/lseg.py)."""
  import torch
  from papers_jax.convert.torch_compat import import_timm
  import_timm()
  from transformers import CLIPSegConfig, CLIPSegForImageSegmentation
  text = dict(vocab_size=99, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
              max_position_embeddings=16, eos_token_id=2, bos_token_id=1, pad_token_id=0)
  vision = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=4, num_attention_heads=2, image_size=32,
                patch_size=8)
  hf = perturbed_(CLIPSegForImageSegmentation(CLIPSegConfig(
      text_config=text, vision_config=vision, projection_dim=24, extract_layers=(0, 1, 2), reduce_dim=16,
      decoder_num_attention_heads=2, decoder_intermediate_size=32))).eval()
  clip_sd = {k[len("clip."):]: v.detach().numpy().copy() for k, v in hf.state_dict().items() if k.startswith("clip.")}
  clip = nnx.eval_shape(lambda: models.create(
      "clip_vit_base_patch32", rngs=FixedKeyRngs(), embed_dim=24, img_size=32, patch_size=8, vision_width=32,
      vision_layers=4, vision_heads=2, vision_mlp_ratio=2.0, context_length=16, vocab_size=99, text_width=32,
      text_layers=2, text_heads=2, text_mlp_ratio=2.0))
  convert.load_torch_weights(clip, clip_sd, source="hf")
  lseg = nnx.eval_shape(lambda: models.create("lseg_vit_tiny", rngs=FixedKeyRngs(), img_size=32, patch_size=8,
                                              width=32, depth=4, num_heads=2, hooks=(0, 1, 2, 3), embed_dim=24))
  lseg.backbone = clip.visual  # LSeg's image encoder here is a CLIP-style ViT: CLIPSeg's weights fit it as they are
  rng = np.random.default_rng(0)
  images = rng.normal(size=(2, 32, 32, 3)).astype(np.float32)
  tokens = np.zeros((2, 16), np.int64)
  tokens[0, :5], tokens[1, :9] = rng.integers(3, 97, 5), rng.integers(3, 97, 9)
  tokens[0, 4] = tokens[1, 8] = 98
  with torch.no_grad():
    out = hf(input_ids=torch.from_numpy(tokens), pixel_values=torch.from_numpy(images.transpose(0, 3, 1, 2)))
    hidden = hf.clip.vision_model(pixel_values=torch.from_numpy(images.transpose(0, 3, 1, 2)),
                                  output_hidden_states=True).hidden_states
  np.testing.assert_allclose(np.asarray(clip.encode_text(jnp.asarray(tokens, jnp.int32))),
                             out.conditional_embeddings.numpy(), atol=1e-4)
  ours = jax.jit(lambda m, x: m.hooked_tokens(x))(lseg, jnp.asarray(images))
  for got, layer in zip(ours, lseg.hooks):
    np.testing.assert_allclose(np.asarray(got), hidden[layer + 1].numpy(), atol=1e-4)


def test_lseg_logits_and_spatial_blocks_match_numpy():
  """The per-pixel logits: temperature × cosine(pixel embedding, label embedding), then the bottleneck
  blocks (one shared 3×3 conv per label map, + the max over labels, ReLU between), against numpy."""
  from papers_jax.models import lseg as lseg_lib
  model = models.create("lseg_vit_tiny", rngs=nnx.Rngs(0), img_size=16, patch_size=8, width=16, depth=4,
                        num_heads=2, reassemble=(8, 8, 8, 8), features=8, embed_dim=12)
  rng = np.random.default_rng(0)
  images, text = rng.normal(size=(2, 16, 16, 3)).astype(np.float32), rng.normal(size=(5, 12)).astype(np.float32)
  logits = np.asarray(model(jnp.asarray(images), jnp.asarray(text)))
  assert logits.shape == (2, 16, 16, 5)
  pixels = np.asarray(model.pixel_embeddings(jnp.asarray(images)), np.float64)  # 16 × 16: the input size
  pixels /= np.linalg.norm(pixels, axis=-1, keepdims=True)
  t = text / np.linalg.norm(text, axis=-1, keepdims=True)
  x = (1 / 0.07) * pixels @ t.T
  w, b = np.asarray(model.spatial.kernel)[:, :, 0, 0], float(np.asarray(model.spatial.bias)[0])
  for i in range(2):
    padded = np.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
    y = sum(w[di, dj] * padded[:, di:di + 16, dj:dj + 16] for di in range(3) for dj in range(3)) + b
    y = y + y.max(-1, keepdims=True)
    x = np.maximum(y, 0) if i == 0 else y
  np.testing.assert_allclose(logits, x, rtol=1e-4, atol=1e-4)
  # Aligned-corner resizing keeps the corners and interpolates linearly between them.
  ramp = jnp.arange(4.0).reshape(1, 1, 4, 1) * jnp.ones((1, 2, 1, 1))
  np.testing.assert_allclose(lseg_lib.resize_align_corners(ramp, 2, 7)[0, 0, :, 0], np.linspace(0, 3, 7), atol=1e-6)


def test_groupvit_task_nouns_and_segmentation_scoring():
  """The task's examples carry the caption's prompted object phrases; its segmentation scoring, fed an
  oracle that scores each bright pixel's nearest colour, finds the background threshold on training
  scenes and scores near-perfect colour mIoU, far above its two baselines."""
  from papers_jax.tasks.groupvit import GroupViTTask
  task = GroupViTTask(load_config("groupvit/scenes.py", "smoke"))
  example = {"image": np.zeros((64, 64, 3), np.uint8), "label": 0,
             "texts": ("from left to right: a red circle and a blue 7.",)}
  out = task.preprocess(train=True)(example, np.random.default_rng(0))
  assert out["noun_valid"].tolist() == [True, True, False, False]
  np.testing.assert_array_equal(out["noun_tokens"][:2], task.tokenizer(["a red circle.", "a blue 7."]))
  assert not out["noun_tokens"][2:].any()

  rgb = np.asarray(list(vqa_scenes.COLOURS.values()), np.float32)

  def oracle(images, rows):  # (B, H, W, 4 colours + 13 kinds): 1 for the nearest colour of a bright pixel
    near = np.argmin(((images[..., None, :].astype(np.float32) - rgb) ** 2).sum(-1), -1)
    sims = np.zeros(images.shape[:3] + (len(rows),), np.float32)
    np.put_along_axis(sims, near[..., None], np.where(images.max(-1, keepdims=True) > 100, 1.0, 0.1), -1)
    return sims

  rng = np.random.default_rng(0)
  scores = task.segmentation_scores(oracle, lambda t: rng.normal(size=(len(t), 8)))
  assert scores["seg_colour_miou"] > 0.9, scores
  assert scores["seg_colour_miou"] > scores["seg_colour_miou_bright_majority"] + 0.3
  assert scores["seg_colour_miou_all_background"] < 0.25
