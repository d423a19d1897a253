"""ViLT: the model against HF transformers' ViltModel, ViltForMaskedLM and ViltForQuestionAnswering
(random weights, every tensor perturbed, float32), ViLT-B/32's parameter count, the FLOP counter
against XLA, `init_from` a ViT checkpoint, and the objectives (ITM, IPOT word-patch alignment,
whole-word masking, VQA BCE) against numpy references."""

import importlib.util
import math
import os
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from papers_jax import convert, models
from papers_jax.data import mlm
from papers_jax.models import vilt
from papers_jax.objectives import vision_language as vl
from timm_parity import FixedKeyRngs, num_params

if importlib.util.find_spec("torch") is None or importlib.util.find_spec("transformers") is None:
  torch = None
else:
  from papers_jax.convert.torch_compat import import_timm
  import_timm()  # the torchvision shim, before transformers
  import torch
  from transformers import ViltConfig, ViltForMaskedLM, ViltForQuestionAnswering

needs_torch = pytest.mark.skipif(torch is None, reason="needs torch and transformers")

# Tiny ViLT: width 32, 2 layers, 32 px images in 8 px patches (16 patches), 16 text positions, 7 answers.
TINY = dict(vocab_size=99, max_text_len=16, hidden_size=32, depth=2, num_heads=4, mlp_ratio=2.0, img_size=32,
            patch_size=8, num_answers=7)


def perturb_(module, seed=0):
  """Every floating tensor random: LayerNorm scales 1 + N(0, 0.1²), everything else N(0, 0.1²)."""
  generator = torch.Generator().manual_seed(seed)
  with torch.no_grad():
    for key, p in module.state_dict().items():
      if not p.is_floating_point():
        continue
      is_norm = (re.search(r"(LayerNorm|layernorm)", key) or key.startswith("classifier.1.")) and key.endswith("weight")
      p.copy_((1.0 if is_norm else 0.0) + 0.1 * torch.randn(p.shape, generator=generator))
  return module


@pytest.fixture(scope="module")
def hf_pair():
  """(HF masked-LM model, HF VQA model sharing its encoder, our model with both heads loaded)."""
  config = ViltConfig(vocab_size=99, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
                      max_position_embeddings=16, image_size=32, patch_size=8, num_labels=7, max_image_length=-1,
                      hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
  torch.manual_seed(0)
  mlm_model = perturb_(ViltForMaskedLM(config).eval())
  qa_model = ViltForQuestionAnswering(config).eval()
  qa_model.vilt.load_state_dict(mlm_model.vilt.state_dict())
  perturb_(qa_model.classifier, seed=1)
  sd = {k: v.detach().numpy().copy() for k, v in mlm_model.state_dict().items()}
  sd |= {k: v.detach().numpy().copy() for k, v in qa_model.state_dict().items() if k.startswith("classifier.")}
  ours = nnx.eval_shape(lambda: vilt.ViLT(**TINY, itm_head=False, rngs=FixedKeyRngs()))
  report = convert.load_torch_weights(ours, sd, source="hf")
  assert not report.missing and not report.unexpected
  return mlm_model, qa_model, ours


@needs_torch
@pytest.mark.parametrize("image_size", [32, 48])
def test_matches_hf_vilt(hf_pair, image_size, monkeypatch):
  """ViltModel's sequence and pooled outputs, ViltForMaskedLM's and ViltForQuestionAnswering's logits,
  with text padding; at 48 px the position table is resampled (bilinear, aligned corners) to 6×6.
  HF draws the kept patches with torch.multinomial even when it keeps all of them (a random
  permutation); here it returns them in order, so the image tokens line up with ours."""
  mlm_model, qa_model, ours = hf_pair
  monkeypatch.setattr(torch, "multinomial", lambda probs, n, replacement=False: torch.arange(n))
  rng = np.random.default_rng(0)
  ids = rng.integers(5, 99, (3, 11)).astype(np.int64)
  mask = np.ones_like(ids)
  mask[1, 7:], mask[2, 4:] = 0, 0
  images = rng.standard_normal((3, image_size, image_size, 3)).astype(np.float32)
  inputs = dict(input_ids=torch.from_numpy(ids), attention_mask=torch.from_numpy(mask),
                pixel_values=torch.from_numpy(images.transpose(0, 3, 1, 2).copy()))
  with torch.no_grad():
    base = mlm_model.vilt(**inputs)
    mlm_logits = mlm_model(**inputs).logits.numpy()
    vqa_logits = qa_model(**inputs).logits.numpy()
  with jax.default_matmul_precision("highest"):
    out = nnx.jit(lambda m, i, x, a: m(i, x, a))(ours, jnp.asarray(ids, jnp.int32), jnp.asarray(images),
                                                  jnp.asarray(mask, jnp.int32))
  np.testing.assert_allclose(out["sequence"], base.last_hidden_state.numpy(), atol=1e-4, rtol=0)
  np.testing.assert_allclose(out["pooled"], base.pooler_output.numpy(), atol=1e-4, rtol=0)
  np.testing.assert_allclose(out["mlm_logits"], mlm_logits, atol=1e-4, rtol=0)
  np.testing.assert_allclose(out["vqa_logits"], vqa_logits, atol=1e-4, rtol=0)


@needs_torch
def test_vilt_b32_parameter_count():
  """ViLT-B/32 with the MLM and VQA heads against HF's classes built on the meta device (HF's config
  defaults are ViLT-B/32's: 384 px, 32 px patches, 40 text positions, BERT-base-uncased's vocabulary)."""
  config = ViltConfig(num_labels=3129)
  with torch.device("meta"):
    hf_mlm, hf_qa = ViltForMaskedLM(config), ViltForQuestionAnswering(config)
  hf_mlm_count = sum(p.numel() for p in hf_mlm.parameters())  # the tied decoder counted once
  hf_qa_count = sum(p.numel() for p in hf_qa.parameters())
  ours_mlm = nnx.eval_shape(lambda: models.create("vilt_b32", itm_head=False, rngs=FixedKeyRngs()))
  ours_qa = nnx.eval_shape(lambda: models.create("vilt_b32", itm_head=False, mlm_head=False, num_answers=3129,
                                                 rngs=FixedKeyRngs()))
  assert num_params(ours_mlm) == hf_mlm_count
  assert num_params(ours_qa) == hf_qa_count
  # The paper's 87.4M for ViLT-B/32 (Table 6) leaves out the text embeddings (23.5M, the word table
  # nearly all of it): ours without them is 88.1M (0.8% more), 87.5M without the pooler too.
  base = nnx.eval_shape(lambda: models.create("vilt_b32", itm_head=False, mlm_head=False, rngs=FixedKeyRngs()))
  text = sum(math.prod(x.shape) for x in jax.tree.leaves(nnx.state(base.text_embeddings, nnx.Param)))
  assert (num_params(base), text) == (111_595_008, 23_474_688)
  assert abs((num_params(base) - text) / 87.4e6 - 1) < 0.01


def test_forward_flops_match_xla():
  """Matmuls only: at width 256 the elementwise ops XLA also counts stay under 5%."""
  model = nnx.eval_shape(lambda: vilt.ViLT(vocab_size=512, max_text_len=16, hidden_size=256, depth=1, num_heads=4,
                                           img_size=64, patch_size=16, num_answers=16, rngs=FixedKeyRngs()))
  graphdef, state = nnx.split(model)
  ids, images = jax.ShapeDtypeStruct((4, 12), jnp.int32), jax.ShapeDtypeStruct((4, 64, 64, 3), jnp.float32)
  cost = jax.jit(lambda s, i, x: nnx.merge(graphdef, s)(i, x)).lower(state, ids, images).cost_analysis()
  xla = (cost[0] if isinstance(cost, (list, tuple)) else cost)["flops"] / 4
  analytic = models.forward_flops(model, text_len=12)
  assert 1.0 <= xla / analytic < 1.05, xla / analytic


def test_init_from_a_vit_checkpoint(tmp_path):
  """A ViT params checkpoint of the same width and depth fills the image side and the transformer
  (its 4×4 position grid resampled to ViLT's 2×2 here); VIT_INIT_SKIP keeps the rest at init."""
  kw = dict(embed_dim=32, depth=2, num_heads=4, mlp_ratio=2.0, patch_size=8, num_classes=10)
  vit_model = models.create("vit_base_patch16_224", img_size=32, rngs=nnx.Rngs(1), norm_eps=1e-12, **kw)
  vit_params = nnx.to_pure_dict(nnx.state(vit_model, nnx.Param))
  convert.save_params(vit_params, str(tmp_path / "vit"))
  ours = vilt.ViLT(**(TINY | dict(img_size=16)), rngs=nnx.Rngs(0))
  params = nnx.to_pure_dict(nnx.state(ours, nnx.Param))
  loaded, report = convert.init_params_from_checkpoint(str(tmp_path / "vit"), params, skip=vilt.VIT_INIT_SKIP)
  np.testing.assert_array_equal(loaded["blocks"][1]["mlp"]["fc2"]["kernel"], vit_params["blocks"][1]["mlp"]["fc2"]["kernel"])
  np.testing.assert_array_equal(loaded["patch_embed"]["proj"]["kernel"], vit_params["patch_embed"]["proj"]["kernel"])
  assert loaded["pos_embed"].shape == (1, 5, 32) and "pos_embed" in report
  np.testing.assert_array_equal(loaded["text_embeddings"]["word_embeddings"], params["text_embeddings"]["word_embeddings"])


# ----------------------------------------------------------------------------- objectives
def numpy_ipot_distance(cost, beta=0.5, iterations=50):
  """IPOT on one unpadded (M, N) cost, written from the algorithm (Xie et al. 2020, Alg. 1 with one
  inner step): uniform marginals, plan T (N, M) starts at ones, Q = exp(−Cᵀ/β) ⊙ T,
  δ = 1 / (N · Q σ), σ = 1 / (M · Qᵀ δ), T = diag(δ) Q diag(σ); distance = Σ C ⊙ Tᵀ."""
  m, n = cost.shape
  kernel = np.exp(-cost.T / beta)
  plan, sigma = np.ones((n, m)), np.full(m, 1.0 / m)
  for _ in range(iterations):
    q = kernel * plan
    delta = 1.0 / (n * q @ sigma)
    sigma = 1.0 / (m * q.T @ delta)
    plan = delta[:, None] * q * sigma[None, :]
  return float((cost * plan.T).sum()), plan


def test_wpa_distance_matches_numpy_ipot():
  """Padded text and image tokens: the masked batch version equals IPOT on each example's real
  tokens (words without [CLS] and [SEP]; patches without the class token)."""
  rng = np.random.default_rng(0)
  text = rng.standard_normal((3, 9, 16)).astype(np.float32)
  image = rng.standard_normal((3, 7, 16)).astype(np.float32)
  mask = np.zeros((3, 9), np.int32)
  for row, length in zip(mask, (9, 5, 3)):
    row[:length] = 1
  got = np.asarray(vl.wpa_distance(jnp.asarray(text), jnp.asarray(image), jnp.asarray(mask)))
  for b, length in enumerate((9, 5, 3)):
    x, y = text[b, 1:length - 1], image[b, 1:]
    x, y = x / np.linalg.norm(x, axis=-1, keepdims=True), y / np.linalg.norm(y, axis=-1, keepdims=True)
    want, plan = numpy_ipot_distance(1.0 - x @ y.T)
    assert got[b] == pytest.approx(want, rel=1e-4, abs=1e-6)
    np.testing.assert_allclose(plan.sum(1), 1.0 / plan.shape[0], rtol=1e-3)  # near the image marginal
  loss = vl.wpa_loss(jnp.asarray(got), jnp.asarray([1, 0, 1]))
  assert float(loss) == pytest.approx((got[0] - got[1] + got[2]) / 3, rel=1e-6)


def test_wpa_gradient_flows_through_the_cost_only():
  rng = np.random.default_rng(1)
  text, image = jnp.asarray(rng.standard_normal((2, 6, 8))), jnp.asarray(rng.standard_normal((2, 5, 8)))
  mask = jnp.ones((2, 6), jnp.int32)
  grad = jax.grad(lambda t: vl.wpa_distance(t, image, mask).sum())(text)
  plan = vl.ipot(vl.cosine_cost(text, image)[:, 1:5, 1:], jnp.ones((2, 4), bool), jnp.ones((2, 4), bool))
  want = jax.grad(lambda t: jnp.einsum("bmn,bnm->b", vl.cosine_cost(t, image)[:, 1:5, 1:], plan).sum())(text)
  np.testing.assert_allclose(grad[:, 1:5], want[:, 1:5], atol=1e-5)
  np.testing.assert_allclose(grad[:, [0, 5]], 0.0)  # [CLS] and [SEP] carry no alignment


def test_itm_pairs_and_losses_against_numpy():
  images = jnp.arange(10, dtype=jnp.float32)[:, None, None, None] * jnp.ones((10, 2, 2, 1))
  for seed in range(5):
    swapped, labels = vl.itm_pairs(jax.random.key(seed), images)
    labels, firsts = np.asarray(labels), np.asarray(swapped[:, 0, 0, 0])
    assert labels.sum() == 5
    np.testing.assert_array_equal(firsts[labels == 1], np.flatnonzero(labels == 1))
    assert np.all(firsts[labels == 0] != np.flatnonzero(labels == 0))
  rng = np.random.default_rng(0)
  logits, labels = rng.standard_normal((6, 2)), rng.integers(0, 2, 6)
  want = -np.log(np.exp(logits[np.arange(6), labels]) / np.exp(logits).sum(1))
  np.testing.assert_allclose(vl.itm_loss(jnp.asarray(logits), jnp.asarray(labels)), want, rtol=1e-5)
  logits, targets = rng.standard_normal((4, 5)), rng.uniform(0, 1, (4, 5))
  p = 1 / (1 + np.exp(-logits))
  want = -(targets * np.log(p) + (1 - targets) * np.log(1 - p)).sum(1)
  np.testing.assert_allclose(vl.vqa_bce(jnp.asarray(logits), jnp.asarray(targets)), want, rtol=1e-5)


def test_whole_word_masking_masks_whole_words():
  pieces = ["[CLS]", "how", "many", "tri", "##ang", "##les", "are", "there", "?", "[SEP]", "[PAD]", "[PAD]"]
  words = mlm.word_ids(pieces, {"[CLS]", "[SEP]", "[PAD]"})
  np.testing.assert_array_equal(words, [-1, 0, 1, 2, 2, 2, 3, 4, 5, -1, -1, -1])
  tokens = np.arange(10, 22)
  counts = np.zeros(len(pieces))
  for seed in range(300):
    inputs, positions, labels, weights = mlm.whole_word_mask_tokens(
        tokens, words, np.random.default_rng(seed), mask_id=4, vocab_size=30, max_predictions=4, prob=0.4)
    chosen = positions[weights > 0]
    assert 1 <= len(chosen) <= 4 and np.all(words[chosen] >= 0)  # round(0.4 · 8) = 3 at most, specials never
    assert len(chosen) <= 3
    for w in np.unique(words[chosen]):  # a chosen word is chosen whole
      assert set(np.flatnonzero(words == w)) <= set(chosen)
    np.testing.assert_array_equal(labels[weights > 0], tokens[chosen])
    unchosen = np.setdiff1d(np.arange(12), chosen)
    np.testing.assert_array_equal(inputs[unchosen], tokens[unchosen])
    counts[chosen] += 1
  assert counts[3] == counts[4] == counts[5] > 0 and counts[1] > 0


# ----------------------------------------------------------------------------- the task
FULL = bool(os.environ.get("PAPERS_JAX_FULL_PARITY"))


@pytest.mark.parametrize("name", ["vilt/scenes_pretrain.py", "vilt/scenes_vqa.py"])
def test_task_traces_both_objectives(name):
  """Cheap (no compile): each demo config validates, its preprocessed examples have static shapes, and
  the loss and eval functions trace on a batch of them with the smoke model."""
  from conftest import load_config
  from papers_jax.core import loop
  from papers_jax.tasks import vision_language
  config = load_config(name, "smoke")
  _, task = loop.check_config(config)
  source = task.source("test")
  examples = [task.preprocess(train=True)(dict(source[i]), np.random.default_rng(i)) for i in range(4)]
  batch = {k: jnp.asarray(np.stack([e[k] for e in examples])) for k in examples[0]}
  model = task.build_model(nnx.Rngs(0))
  graphdef, params, rest = nnx.split(model, nnx.Param, ...)
  params, rest = nnx.to_pure_dict(params), nnx.to_pure_dict(rest)
  loss, (metrics, _) = jax.eval_shape(task.make_loss_fn(graphdef), params, rest, batch, jax.random.key(0))
  assert loss.shape == ()
  sums = jax.eval_shape(task.make_eval_fn(graphdef), params, rest, batch | {"mask": jnp.ones(4, bool)})
  if task.pretrain:
    assert {"mlm_loss", "itm_loss", "wpa_loss", "itm_accuracy", "mlm_accuracy"} <= set(metrics)
    assert int(batch["mlm_weights"].sum()) >= 4  # every caption has a masked word
  else:
    assert {"accuracy_count", "accuracy_relation"} <= set(sums)
  assert task.augment is None and config.vl.randaugment == ""  # the demo's departure; the default's ops:
  config = config.unlock()
  config.vl.randaugment = vision_language.default_config().randaugment
  assert "Invert" not in type(task)(config).augment.transforms
  assert len(type(task)(config).augment.transforms) == 14  # timm's 15 ops less colour inversion


def _run_steps(config, devices):
  from papers_jax.core import loop, sharding
  from papers_jax.data import pipeline
  trainer = loop.Trainer(config, "/nonexistent-workdir-unused", devices=devices)
  batches = pipeline.train_batches(trainer.train_source, trainer._preprocess(train=True),
                                   global_batch=config.batch_size, seed=config.seed,
                                   starts=pipeline.batch_starts(0, config.num_steps, config.batch_size))
  losses, state = [], trainer.state
  with sharding.use_mesh(trainer.mesh, trainer.rules):
    for local in batches:
      state, metrics = trainer.train_step(state, sharding.global_batch(local, trainer.mesh, trainer.rules))
      losses.append(float(metrics["loss"]))
  return np.array(losses)


@pytest.mark.skipif(not FULL, reason="make test-full (PAPERS_JAX_FULL_PARITY=1): two compiles of the task's step")
def test_pretrain_smoke_run_and_sharded_equals_single_device(tmp_path):
  """configs/vilt/scenes_pretrain.py:smoke through the real loop on 8 devices (evaluation with ITM
  retrieval, checkpoint), then its per-step losses on 8 devices against one device (the ITM negatives
  and the MLM/ITM batch statistics span the global batch either way)."""
  from conftest import load_config
  from papers_jax.core import loop
  from test_configs import check_smoke_run
  config = load_config("vilt/scenes_pretrain.py", "smoke")
  summary = loop.train(config, str(tmp_path / "run"))
  check_smoke_run(config, summary, str(tmp_path / "run"))
  assert {"eval/i2t_r1", "eval/t2i_r10", "eval/itm_accuracy", "eval/mlm_accuracy", "eval/baseline_chance_i2t_r1",
          "eval/baseline_nearest_caption_t2i_r1"} <= set(summary)
  assert summary["eval/count"] == 500
  np.testing.assert_allclose(_run_steps(config, jax.devices()), _run_steps(config, jax.devices()[:1]), rtol=1e-4)
