"""CLIP: the model against HF transformers' CLIPModel and timm's CLIP ResNet, both converters, parameter
counts of every registered variant, the loss (numpy reference, 8 devices = 1), the zero-shot and
retrieval evaluators on features with known answers, the caption tokenizer, and a smoke run."""

import importlib.util
import json
import math
import os
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from jax.sharding import NamedSharding, PartitionSpec

from conftest import load_config
from papers_jax import convert, models
from papers_jax.core import loop
from papers_jax.data import captions
from papers_jax.errors import CheckpointError
from papers_jax.evaluators import retrieval, zero_shot
from papers_jax.objectives import contrastive
from papers_jax.tasks.clip import masked_clip_losses
from timm_parity import FixedKeyRngs, num_params

if importlib.util.find_spec("torch") is None or importlib.util.find_spec("transformers") is None:
  torch = None
else:
  from papers_jax.convert.torch_compat import import_timm
  timm = import_timm()  # the torchvision shim, before transformers
  import torch
  from timm.models.byobnet import ByobNet, ByoBlockCfg, ByoModelCfg
  from transformers import CLIPConfig, CLIPModel, CLIPTextConfig, CLIPTextModel

needs_torch = pytest.mark.skipif(torch is None, reason="needs torch, timm and transformers")

# A tiny CLIP: ViT tower 32 px / 8 px patches, width 48, 2 layers; text tower width 32, 2 layers.
TINY = dict(embed_dim=24, img_size=32, patch_size=8, vision_width=48, vision_layers=2, vision_heads=4,
            vision_mlp_ratio=2.0, context_length=16, vocab_size=99, text_width=32, text_layers=2, text_heads=4,
            text_mlp_ratio=2.0)


def abstract(name="clip_vit_base_patch32", **overrides):
  """A shape-only model (every param then comes from a checkpoint)."""
  return nnx.eval_shape(lambda: models.create(name, rngs=FixedKeyRngs(), **overrides))


@jax.jit
def _forward(model, images, tokens):
  return model.encode_image(images), model.encode_text(tokens), *model(images, tokens)


def hf_tiny_config(eos_token_id=2):
  text = dict(vocab_size=99, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
              max_position_embeddings=16, eos_token_id=eos_token_id, bos_token_id=1, pad_token_id=0)
  vision = dict(hidden_size=48, intermediate_size=96, num_hidden_layers=2, num_attention_heads=4, image_size=32,
                patch_size=8)
  return CLIPConfig(text_config=text, vision_config=vision, projection_dim=24)


def perturb_(module, seed=0, skip=()):
  """Every parameter and BatchNorm statistic random: LayerNorm / BatchNorm scales 1 + N(0, 0.1²),
  running variances in [1, 1.2], everything else N(0, 0.1²)."""
  generator = torch.Generator().manual_seed(seed)
  with torch.no_grad():
    for key, p in module.state_dict().items():
      if key.endswith("num_batches_tracked") or key in skip or not p.is_floating_point():
        continue
      if key.endswith("running_var"):
        p.copy_(1.0 + 0.2 * torch.rand(p.shape, generator=generator))
        continue
      is_norm = re.search(r"(norm|layrnorm|\.bn|ln_)", key) and key.endswith(".weight")
      p.copy_((1.0 if is_norm else 0.0) + 0.1 * torch.randn(p.shape, generator=generator))
  return module


def numpy_sd(module):
  return {k: v.detach().numpy().copy() for k, v in module.state_dict().items()}


def tokens_with_eos(rng, batch, length, vocab, eos, ends):
  """Rows of random ids < eos with `eos` at each row's end and zeros after it."""
  tokens = rng.integers(1, eos, (batch, length))
  for row, end in zip(tokens, ends):
    row[end], row[end + 1:] = eos, 0
  return tokens.astype(np.int32)


@pytest.fixture(scope="module")
def hf_pair():
  torch.manual_seed(0)
  ref = perturb_(CLIPModel(hf_tiny_config()).eval(), skip=("logit_scale",))
  with torch.no_grad():
    ref.logit_scale.fill_(2.5)  # below log(100), where our clip would differ from HF (which does not clip)
  sd = numpy_sd(ref)
  ours = abstract(**TINY)
  report = convert.load_torch_weights(ours, sd, source="hf")
  assert not report.missing and not report.unexpected
  return ref, sd, ours


@needs_torch
@pytest.mark.parametrize("eos_rule", ["argmax", "eos_id"])
def test_matches_hf_clip_model(hf_pair, eos_rule):
  ref, _, ours = hf_pair
  rng = np.random.default_rng(0)
  images = rng.standard_normal((3, 32, 32, 3)).astype(np.float32)
  if eos_rule == "argmax":  # HF's rule for eos_token_id=2: the largest id; ours for eos_token_id=None
    tokens, hf_eos, our_eos = tokens_with_eos(rng, 4, 16, 99, 98, [4, 15, 8, 1]), 2, None
  else:  # the first occurrence of an explicit id (here a small one, so argmax would pick another position)
    tokens, hf_eos, our_eos = tokens_with_eos(rng, 4, 16, 99, 98, [4, 15, 8, 1]), 5, 5
    tokens[:, :-1] = np.where(tokens[:, :-1] == 5, 7, tokens[:, :-1])
    tokens[np.arange(4), [4, 15, 8, 1]] = 5
  ref.text_model.eos_token_id, ours.text.eos_token_id = hf_eos, our_eos
  to_torch = lambda a: torch.from_numpy(np.ascontiguousarray(a))  # noqa: E731
  with torch.no_grad():
    pixels, ids = to_torch(images.transpose(0, 3, 1, 2)), to_torch(tokens.astype(np.int64))
    out = ref(input_ids=ids, pixel_values=pixels)
    ref_image = ref.get_image_features(pixel_values=pixels).pooler_output.numpy()
    ref_text = ref.get_text_features(input_ids=ids).pooler_output.numpy()
  with jax.default_matmul_precision("highest"):
    image, text, logits_per_image, logits_per_text = _forward(ours, jnp.asarray(images), jnp.asarray(tokens))
  np.testing.assert_allclose(image, ref_image, atol=1e-4)
  np.testing.assert_allclose(text, ref_text, atol=1e-4)
  np.testing.assert_allclose(logits_per_image, out.logits_per_image.numpy(), atol=1e-4)
  np.testing.assert_allclose(logits_per_text, out.logits_per_text.numpy(), atol=1e-4)
  assert logits_per_image.shape == (3, 4) and logits_per_text.shape == (4, 3)
  ours.text.eos_token_id = None


@needs_torch
def test_hf_export_is_the_state_dict_hf_loads(hf_pair, tmp_path):
  """export_state_dict(ours, "hf") is CLIPModel's state dict exactly (q/k/v split again): HF loads it
  strictly from safetensors and gives our logits; importing it again restores ours exactly."""
  import safetensors.torch
  _, sd, ours = hf_pair
  exported = convert.export_state_dict(ours, "hf")
  assert sorted(exported) == sorted(sd)
  for key, value in sd.items():
    np.testing.assert_array_equal(exported[key], value, err_msg=key)
  path = str(tmp_path / "clip.safetensors")
  convert.save_state_dict(exported, path)
  ref = CLIPModel(hf_tiny_config()).eval()
  ref.load_state_dict(safetensors.torch.load_file(path), strict=True)
  rng = np.random.default_rng(1)
  images = rng.standard_normal((2, 32, 32, 3)).astype(np.float32)
  tokens = tokens_with_eos(rng, 3, 16, 99, 98, [5, 15, 2])
  with torch.no_grad():
    out = ref(input_ids=torch.from_numpy(tokens.astype(np.int64)),
              pixel_values=torch.from_numpy(np.ascontiguousarray(images.transpose(0, 3, 1, 2))))
  with jax.default_matmul_precision("highest"):
    _, _, logits_per_image, _ = _forward(ours, jnp.asarray(images), jnp.asarray(tokens))
  np.testing.assert_allclose(logits_per_image, out.logits_per_image.numpy(), atol=1e-4)
  back = abstract(**TINY)
  convert.load_torch_weights(back, safetensors.torch.load_file(path), source="hf")
  jax.tree.map(np.testing.assert_array_equal, nnx.state(back, nnx.Param), nnx.state(ours, nnx.Param))


@needs_torch
def test_remat_and_scan_keep_the_features(hf_pair):
  """Both towers under `nnx.remat` and one `lax.scan` over their blocks (the causal mask passed through)."""
  _, sd, ours = hf_pair
  other = abstract(**TINY, remat="dots", scan=True)
  convert.load_torch_weights(other, sd, source="hf")
  rng = np.random.default_rng(2)
  images, tokens = rng.standard_normal((3, 32, 32, 3)).astype(np.float32), tokens_with_eos(rng, 4, 16, 99, 98, [3] * 4)
  with jax.default_matmul_precision("highest"):
    want, got = _forward(ours, images, tokens), _forward(other, images, tokens)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, atol=1e-5), got, want)


def hf_to_openai(sd):
  """HF CLIPModel keys → OpenAI's layout (q/k/v stacked into in_proj, projections as (in, out))."""
  out = {}
  for key, value in sd.items():
    k = key
    for tower, prefix in (("vision_model.", "visual."), ("text_model.", "")):
      if k.startswith(tower):
        k = prefix + k[len(tower):]
    k = (k.replace("encoder.layers.", "transformer.resblocks.").replace("self_attn.", "attn.")
         .replace("layer_norm1", "ln_1").replace("layer_norm2", "ln_2").replace("mlp.fc1", "mlp.c_fc")
         .replace("mlp.fc2", "mlp.c_proj").replace("visual.pre_layrnorm", "visual.ln_pre")
         .replace("visual.post_layernorm", "visual.ln_post").replace("final_layer_norm", "ln_final")
         .replace("visual.embeddings.patch_embedding", "visual.conv1")
         .replace("visual.embeddings.position_embedding.weight", "visual.positional_embedding")
         .replace("visual.embeddings.class_embedding", "visual.class_embedding")
         .replace("embeddings.token_embedding", "token_embedding")
         .replace("embeddings.position_embedding.weight", "positional_embedding"))
    if k == "visual_projection.weight":
      k, value = "visual.proj", value.T
    elif k == "text_projection.weight":
      k, value = "text_projection", value.T
    out[k] = value
  for key in [k for k in out if re.search(r"attn\.q_proj\.", k)]:
    kind = key.rsplit(".", 1)[1]
    parts = [out.pop(key.replace("q_proj", p)) for p in ("q_proj", "k_proj", "v_proj")]
    out[key.replace(f"q_proj.{kind}", f"in_proj_{kind}")] = np.concatenate(parts, axis=0)
  out["input_resolution"], out["context_length"], out["vocab_size"] = np.array(32), np.array(16), np.array(99)
  return out


@needs_torch
def test_openai_layout_loads_the_same_params(hf_pair):
  _, sd, ours = hf_pair
  other = abstract(**TINY)
  report = convert.load_torch_weights(other, hf_to_openai(sd), source="openai")
  assert not report.missing and not report.unexpected
  jax.tree.map(np.testing.assert_array_equal, nnx.to_pure_dict(nnx.state(other, nnx.Param)),
               nnx.to_pure_dict(nnx.state(ours, nnx.Param)))


@needs_torch
def test_hf_has_no_resnet_tower(hf_pair):
  _, sd, _ = hf_pair
  rn = abstract("clip_rn50", vision_layers=(1, 1, 1, 1), vision_width=8, img_size=64, embed_dim=24, text_layers=0,
                vocab_size=8, context_length=4, text_width=16)
  with pytest.raises(CheckpointError, match="ResNet"):
    convert.load_torch_weights(rn, sd, source="hf")


def timm_to_openai(sd):
  """timm's CLIP ResNet keys (ByobNet) → OpenAI's `visual.` layout (the inverse of timm's filter)."""
  out = {}
  names = {"conv1_1x1": "1", "conv2_kxk": "2", "conv3_1x1": "3"}
  for key, value in sd.items():
    k = re.sub(r"^stem\.conv(\d)\.conv\.", r"visual.conv\1.", key)
    k = re.sub(r"^stem\.conv(\d)\.bn\.", r"visual.bn\1.", k)
    k = re.sub(r"^stages\.(\d)\.(\d+)\.(conv\d_\w+?)\.(conv|bn)\.",
               lambda m: f"visual.layer{int(m[1]) + 1}.{m[2]}.{m[4]}{names[m[3]]}.", k)
    k = re.sub(r"^stages\.(\d)\.(\d+)\.shortcut\.conv\.(conv|bn)\.",
               lambda m: f"visual.layer{int(m[1]) + 1}.{m[2]}.downsample.{int(m[3] == 'bn')}.", k)
    k = re.sub(r"^head\.pos_embed$", "visual.attnpool.positional_embedding", k)
    k = re.sub(r"^head\.(q|k|v)\.", r"visual.attnpool.\1_proj.", k)
    k = re.sub(r"^head\.proj\.", "visual.attnpool.c_proj.", k)
    out[k] = value
  return out


@needs_torch
def test_resnet_tower_matches_timm_clip_resnet():
  """timm's resnet50_clip family re-implements OpenAI's ModifiedResNet (and loads its weights); a
  small one (width 8, blocks (2, 1, 1, 1), 64 px, 4 pooling heads), every tensor perturbed, BN in eval."""
  cfg = ByoModelCfg(blocks=tuple(ByoBlockCfg(type="bottle", d=d, c=c, s=s, br=0.25)
                                 for d, c, s in ((2, 32, 1), (1, 64, 2), (1, 128, 2), (1, 256, 2))),
                    stem_chs=(4, 4, 8), stem_type="", stem_pool="avg2", downsample="avg", aa_layer="avg",
                    head_type="attn_abs")
  torch.manual_seed(0)
  ref = perturb_(ByobNet(cfg, num_classes=24, img_size=64).eval())
  ours = abstract("clip_rn50", vision_layers=(2, 1, 1, 1), vision_width=8, img_size=64, embed_dim=24,
                  context_length=4, vocab_size=8, text_width=16, text_layers=0)  # a text tower without blocks
  sd = timm_to_openai(numpy_sd(ref))
  rng = np.random.default_rng(0)
  sd |= {"token_embedding.weight": rng.standard_normal((8, 16)), "positional_embedding": rng.standard_normal((4, 16)),
         "ln_final.weight": np.ones(16), "ln_final.bias": np.zeros(16),
         "text_projection": rng.standard_normal((16, 24)), "logit_scale": np.float32(2.0)}
  report = convert.load_torch_weights(ours, sd, source="openai")
  assert not report.missing and not report.unexpected
  rng = np.random.default_rng(0)
  images = rng.standard_normal((2, 64, 64, 3)).astype(np.float32)
  with torch.no_grad():
    want = ref(torch.from_numpy(images.transpose(0, 3, 1, 2).copy())).numpy()
  with jax.default_matmul_precision("highest"):
    got = jax.jit(lambda m, x: m.encode_image(x))(ours, jnp.asarray(images))
  np.testing.assert_allclose(got, want, atol=1e-4, rtol=1e-4)


# The released models' sizes in HF's configs (the RN50 exists only in OpenAI's and timm's code).
HF_SIZES = {
    "clip_vit_base_patch32": dict(text=(512, 8), vision=(768, 12, 12, 32), projection=512),
    "clip_vit_base_patch16": dict(text=(512, 8), vision=(768, 12, 12, 16), projection=512),
    "clip_vit_large_patch14": dict(text=(768, 12), vision=(1024, 24, 16, 14), projection=768),
}
RN50_PARAMS = 102_007_137  # OpenAI's RN50, `sum(p.numel() for p in model.parameters())`


def hf_text_config(width, heads):
  return CLIPTextConfig(vocab_size=49408, hidden_size=width, intermediate_size=4 * width, num_hidden_layers=12,
                        num_attention_heads=heads, max_position_embeddings=77)


@needs_torch
def test_parameter_counts_match_the_references():
  assert set(models.list_models("clip_*")) == set(HF_SIZES) | {"clip_rn50"}
  for name, size in HF_SIZES.items():
    width, depth, heads, patch = size["vision"]
    vision = dict(hidden_size=width, intermediate_size=4 * width, num_hidden_layers=depth, num_attention_heads=heads,
                  image_size=224, patch_size=patch)
    with torch.device("meta"):
      ref = CLIPModel(CLIPConfig(text_config=hf_text_config(*size["text"]).to_dict(), vision_config=vision,
                                 projection_dim=size["projection"]))
    ours = nnx.eval_shape(lambda: models.create(name, rngs=FixedKeyRngs()))  # noqa: B023
    assert num_params(ours) == sum(p.numel() for p in ref.parameters()), name
  # RN50: timm's CLIP ResNet-50 (the image tower with attention pooling into 1,024-d) + HF's text
  # Transformer of the same size + the text projection (512 → 1,024) + the temperature.
  with torch.device("meta"):
    visual = timm.create_model("resnet50_clip", pretrained=False, num_classes=1024)
    text = CLIPTextModel(hf_text_config(512, 8))
  ours = nnx.eval_shape(lambda: models.create("clip_rn50", rngs=FixedKeyRngs()))
  assert num_params(ours.visual) == sum(p.numel() for p in visual.parameters())
  assert num_params(ours.text) == sum(p.numel() for p in text.parameters())
  assert num_params(ours) == num_params(ours.visual) + num_params(ours.text) + 512 * 1024 + 1 == RN50_PARAMS


# ------------------------------------------------------------------------------ model behaviour


@needs_torch
def test_causal_text_tower_reads_eos(hf_pair):
  model = hf_pair[2]
  rng = np.random.default_rng(1)
  images = jnp.zeros((3, 32, 32, 3))
  tokens = tokens_with_eos(rng, 4, 16, 99, 98, [5, 9, 3, 12])
  after, before = tokens.copy(), tokens.copy()
  after[:, 14] = 3       # after every row's [EOS]: invisible to it under the causal mask
  before[:, 2] += 1      # before it: changes the feature
  base = _forward(model, images, jnp.asarray(tokens))[1]
  np.testing.assert_array_equal(_forward(model, images, jnp.asarray(after))[1], base)
  assert np.abs(_forward(model, images, jnp.asarray(before))[1] - base).min() > 1e-6


def test_temperature_starts_at_1_over_007_and_is_clipped_at_100():
  model = models.create("clip_vit_base_patch32", **TINY | dict(vision_layers=0, text_layers=0))
  assert float(model.logit_scale[...]) == pytest.approx(math.log(1 / 0.07))
  assert float(model.temperature_scale()) == pytest.approx(1 / 0.07, rel=1e-5)
  model.logit_scale[...] = jnp.asarray(7.0)
  assert float(model.temperature_scale()) == pytest.approx(100.0, rel=1e-5)


# ------------------------------------------------------------------------------ the loss


def numpy_clip_loss(image, text, scale):
  image = image / np.linalg.norm(image, axis=1, keepdims=True)
  text = text / np.linalg.norm(text, axis=1, keepdims=True)
  logits = scale * image.astype(np.float64) @ text.T.astype(np.float64)

  def ce(l):  # row-wise cross-entropy with the diagonal as labels
    l = l - l.max(axis=1, keepdims=True)
    return np.mean(np.log(np.exp(l).sum(axis=1)) - np.diagonal(l))
  return 0.5 * (ce(logits) + ce(logits.T))


def test_clip_loss_matches_numpy():
  rng = np.random.default_rng(0)
  image, text = rng.standard_normal((12, 8)).astype(np.float32), rng.standard_normal((12, 8)).astype(np.float32)
  loss = jax.jit(contrastive.clip_loss)
  for scale in (1.0, 14.3, 100.0):
    np.testing.assert_allclose(loss(image, text, scale), numpy_clip_loss(image, text, scale), rtol=1e-5, atol=1e-5)
  # Uncorrelated embeddings at scale 1: the loss is near log N.
  assert abs(float(loss(image, text, 1.0)) - np.log(12)) < 0.5
  # Masking padding rows leaves the loss of the valid pairs alone (the eval step's form).
  valid = np.arange(12) < 9
  losses = jax.jit(masked_clip_losses)(image, text, 14.3, valid)
  np.testing.assert_allclose(losses[9:], 0.0)
  np.testing.assert_allclose(losses.sum() / 9, numpy_clip_loss(image[:9], text[:9], 14.3), rtol=1e-5)


def test_clip_loss_and_gradient_on_8_devices_equal_one():
  """The batch split over 8 devices: every device's examples are negatives for every other's."""
  rng = np.random.default_rng(0)
  image, text = rng.standard_normal((32, 16)).astype(np.float32), rng.standard_normal((32, 16)).astype(np.float32)
  grad = jax.value_and_grad(lambda i, t, s: contrastive.clip_loss(i, t, jnp.exp(s)), argnums=(0, 1, 2))
  s = jnp.asarray(np.log(1 / 0.07), jnp.float32)
  with jax.default_matmul_precision("highest"):
    loss1, grads1 = jax.jit(grad)(*jax.device_put((image, text, s), jax.devices()[0]))
    mesh = jax.make_mesh((8,), ("data",), axis_types=(jax.sharding.AxisType.Auto,), devices=jax.devices()[:8])
    rows, replicated = NamedSharding(mesh, PartitionSpec("data", None)), NamedSharding(mesh, PartitionSpec())
    sharded = (jax.device_put(image, rows), jax.device_put(text, rows), jax.device_put(s, replicated))
    loss8, grads8 = jax.jit(grad)(*sharded)
  assert len(sharded[0].sharding.device_set) == 8 and len(grads8[0].sharding.device_set) == 8
  np.testing.assert_allclose(loss8, loss1, rtol=1e-6)
  np.testing.assert_allclose(loss1, numpy_clip_loss(image, text, 1 / 0.07), rtol=1e-5)
  for g8, g1 in zip(grads8, grads1):
    np.testing.assert_allclose(g8, g1, rtol=1e-5, atol=1e-7)


# ------------------------------------------------------------------------------ evaluators


def test_zero_shot_ensembles_normalised_prompts_once_per_key():
  """A fake text encoder: one-hot class directions plus a per-template offset that ensembling removes."""
  names = ["cat", "dog", "eel"]
  templates = ("a photo of a {}.", "a drawing of a {}.")

  def tokenize(texts):
    return np.asarray([[names.index(t.split()[-1].rstrip(".")), templates.index(t.replace(t.split()[-1], "{}."))]
                       for t in texts], np.int32)

  calls = []

  def encode_text(ids):
    calls.append(len(ids))
    ids = np.asarray(ids)
    out = np.zeros((len(ids), 4), np.float32)
    out[np.arange(len(ids)), ids[:, 0]] = 1.0 + ids[:, 1]      # the class direction, a different length
    out[:, 3] = np.where(ids[:, 1] == 0, 1.0, -1.0) * (1.0 + ids[:, 1])  # cancels in the normalised mean
    return out

  clf = zero_shot.ZeroShotClassifier(names, templates, tokenize, batch_size=4)
  weights = clf.weights(encode_text, key=10)
  np.testing.assert_allclose(weights, np.eye(3, 4), atol=1e-6)
  images = np.asarray([[0.1, 0.9, 0.0, 5.0], [1.0, 0.2, 0.3, -5.0], [0.0, 0.1, 0.2, 0.0]], np.float32)
  scores = clf.evaluate(images, np.asarray([1, 0, 0]), encode_text, key=10, ks=(1, 2, 3))
  assert scores == {"top1": pytest.approx(2 / 3), "top2": pytest.approx(2 / 3), "top3": 1.0}
  assert clf.num_text_encodings == 1 and calls == [4, 4]  # 6 prompts in fixed batches of 4, once
  clf.weights(encode_text, key=20)
  assert clf.num_text_encodings == 2


def test_retrieval_recall_both_directions():
  images = np.eye(4, dtype=np.float32)
  # Texts 0-3 describe images 0-3 except that text 2 is closest to image 3; text 4 is a second caption of image 0.
  texts = np.asarray([[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 0.5, 1], [0, 0, 0, 1], [0.9, 0.1, 0, 0]], np.float32)
  r = retrieval.recall_at_k(images, texts, np.arange(4), np.asarray([0, 1, 2, 3, 0]), ks=(1, 2))
  # image→text: image 2's best text is text 2 (0.447) — a hit; all four hit at 1.
  assert r["i2t_r1"] == 1.0 and r["i2t_r2"] == 1.0
  # text→image: text 2 retrieves image 3 first (a miss at 1, a hit at 2).
  assert r["t2i_r1"] == pytest.approx(4 / 5) and r["t2i_r2"] == 1.0
  # Class-level matching (captions made from class names): ids are classes.
  r = retrieval.recall_at_k(images, texts, np.asarray([0, 0, 1, 1]), np.asarray([0, 0, 1, 1, 0]), ks=(1,), chunk=3)
  assert r == {"i2t_r1": 1.0, "t2i_r1": 1.0}


# ------------------------------------------------------------------------------ captions and tokenizer


def test_digit_captions_and_tokenizer():
  names = [n for ns in captions.DIGIT_NAMES for n in ns]
  train = set(captions.captions(captions.DIGIT_TRAIN_TEMPLATES, names))
  held_out = captions.captions(captions.DIGIT_HELD_OUT_TEMPLATES, names)
  assert not train & set(held_out)  # zero-shot prompts never appear in training
  tok = captions.CaptionTokenizer.train(sorted(train), context_length=8)
  assert tok.unknown_words(held_out) == set()  # ...but use only words training saw
  assert tok.eot_id == tok.vocab_size - 1 and tok.sot_id == tok.vocab_size - 2
  ids = tok(["The digit 7.", "a small scan of a handwritten seven , written by hand ."])
  assert ids.shape == (2, 8) and ids.dtype == np.int32
  assert ids[0, 0] == tok.sot_id and list(ids[0, 5:]) == [tok.eot_id, 0, 0]  # [SOT] the digit 7 . [EOT]
  assert ids[1, -1] == tok.eot_id and 0 not in ids[1]  # cut to the context, [EOT] kept last
  assert captions.CaptionTokenizer.train(sorted(train)).backend.to_str() == \
      captions.CaptionTokenizer.train(sorted(train)).backend.to_str()  # deterministic
  rng = np.random.default_rng(0)
  drawn = {captions.caption_for(7, captions.DIGIT_NAMES, captions.DIGIT_TRAIN_TEMPLATES, rng) for _ in range(200)}
  assert drawn <= train and {"the digit 7.", "the digit seven."} <= drawn


def test_image_text_folder_source(tmp_path):
  """img2dataset's `files` layout: captions come from the .txt beside each image (a random line for
  training, the first for evaluation); a missing tokenizer or data_dir is a clear error."""
  from PIL import Image
  from papers_jax.errors import ConfigError, DataError
  from papers_jax.tasks.clip import CLIPTask
  for i in range(3):
    os.makedirs(tmp_path / "data" / "train" / "00000", exist_ok=True)
    Image.fromarray(np.full((12, 20, 3), 40 * i, np.uint8)).save(tmp_path / "data" / "train" / "00000" / f"{i}.jpg")
    (tmp_path / "data" / "train" / "00000" / f"{i}.txt").write_text(f"a red square {i}\na blue circle\n")
  captions.CaptionTokenizer.train(["a red square 0 1 2", "a blue circle"]).save(str(tmp_path / "tok.json"))
  config = load_config("clip/paper.py", "smoke").unlock()
  config.data.update(name="captions_folder", data_dir=str(tmp_path / "data"), image_size=16)
  with pytest.raises(ConfigError, match="needs a tokenizer"):
    CLIPTask(config.lock()).source("train")
  config = config.unlock()
  config.clip.tokenizer = str(tmp_path / "tok.json")
  task = CLIPTask(config.lock())
  source = task.source("train")
  assert len(source) == 3 and source[1]["texts"] == ("a red square 1", "a blue circle")
  tok = task.tokenizer
  first = task.preprocess(train=False)(dict(source[2]), None)
  assert first["image"].shape == (16, 16, 3) and list(first["tokens"][:6]) == [
      tok.sot_id, *tok.backend.encode("a red square 2").ids, tok.eot_id]
  drawn = {tuple(task.preprocess(train=True)(dict(source[2]), np.random.default_rng(s))["tokens"]) for s in range(20)}
  assert len(drawn) == 2  # both captions are used in training
  config = config.unlock()
  config.data.data_dir = None
  with pytest.raises(DataError, match="needs data.data_dir"):
    CLIPTask(config.lock()).source("train")


# ------------------------------------------------------------------------------ smoke run


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
  """The shipped smoke run, once for the module: 200 steps (about 25 s of CPU on 8 simulated devices),
  because CLIP's features first sit on a collapsed plateau for about 70 steps (test below)."""
  workdir = tmp_path_factory.mktemp("clip_smoke")
  config = load_config("clip/digits.py", "smoke")
  return config, loop.train(config, str(workdir)), workdir


def test_digits_smoke_run_writes_its_outputs(smoke_run):
  """Also test_configs.py's checks of every shipped smoke run (which leaves this config to this file)."""
  from test_configs import check_smoke_run
  config, summary, workdir = smoke_run
  check_smoke_run(config, summary, str(workdir))
  assert summary["steps"] == config.num_steps and summary["eval/count"] == 360
  for key in ("eval/loss", "eval/zero_shot_top1", "eval/i2t_r1", "eval/t2i_r1", "eval/zero_shot_top1_train_templates"):
    assert 0.0 <= summary[key] and np.isfinite(summary[key]), key
  tok = captions.CaptionTokenizer.from_file(str(workdir / "tokenizer.json"), 16)
  assert tok.vocab_size == 43  # trained at start-up, saved with the run


def test_digits_smoke_run_learns(smoke_run):
  """Both towers' features collapse onto one point within 3 steps (train loss log 64 = 4.159, zero-shot
  at chance) and the run leaves that plateau near step 70 (configs/clip/digits.py); the smoke run once
  stopped at step 20, on it. Measured (seed 0, 200 steps, 8 devices): zero-shot top-1 0.433, last
  logged train loss 3.44 (the mean of steps 191-200)."""
  config, summary, workdir = smoke_run
  losses = [json.loads(l)["loss"] for l in open(workdir / "metrics.jsonl") if '"loss"' in l]
  # Zero-shot top-1 over the 10 digit classes: chance is 0.1, and a guesser's accuracy on 360 images has
  # a standard deviation of sqrt(0.1 * 0.9 / 360) = 0.016, so 0.25 is chance + 9.5 of them.
  assert summary["eval/zero_shot_top1"] > 0.25, summary["eval/zero_shot_top1"]
  # log(batch) is the collapsed features' loss; 0.5 below it the geometric mean of the own caption's
  # in-batch softmax probability is e^0.5 = 1.65 times the uniform 1/64.
  assert losses[-1] < np.log(config.batch_size) - 0.5, losses
