"""ALBEF: the fusion layer against HF BERT's cross-attention layer (random weights, every tensor perturbed,
float32), the paper's parameter counts, the FLOP counter against XLA, each objective against numpy (ITC with
queue and momentum distillation, the ITM hard-negative distribution, MLM distillation), the momentum update,
the retrieval evaluator on hand-built cases, and (make test-full) the task's sharded and single-device steps."""

import importlib.util
import itertools
import math
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from papers_jax import models
from papers_jax.evaluators import retrieval
from papers_jax.models import albef
from papers_jax.objectives import albef as objective
from papers_jax.objectives import contrastive
from timm_parity import FixedKeyRngs, num_params

if importlib.util.find_spec("torch") is None or importlib.util.find_spec("transformers") is None:
  torch = None
else:
  from papers_jax.convert.torch_compat import import_timm
  import_timm()  # the torchvision shim, before transformers
  import torch
  from transformers import BertConfig
  from transformers.models.bert.modeling_bert import BertAttention, BertForMaskedLM, BertLayer

needs_torch = pytest.mark.skipif(torch is None, reason="needs torch and transformers")
FULL = bool(os.environ.get("PAPERS_JAX_FULL_PARITY"))


# ----------------------------------------------------------------------------- the fusion layer
def _linear(layer):
  """torch Linear → (kernel (in, out), bias) numpy."""
  return layer.weight.detach().numpy().T, layer.bias.detach().numpy()


@needs_torch
def test_fusion_layer_matches_hf_bert_cross_attention_layer():
  """HF BertLayer with add_cross_attention (is_decoder=True only permits it; an explicit padding mask and
  eager attention keep its self-attention bidirectional, as ALBEF's fusion layers), every tensor random."""
  d, heads, hidden = 32, 4, 64
  config = BertConfig(hidden_size=d, num_attention_heads=heads, intermediate_size=hidden, is_decoder=True,
                      add_cross_attention=True, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0,
                      attn_implementation="eager")
  torch.manual_seed(0)
  ref = BertLayer(config).eval()
  generator = torch.Generator().manual_seed(1)
  with torch.no_grad():
    for key, p in ref.named_parameters():
      base = 1.0 if "LayerNorm" in key and key.endswith("weight") else 0.0
      p.copy_(base + (0.1 if p.ndim == 1 else 0.05) * torch.randn(p.shape, generator=generator))
  ours = albef.FusionLayer(d, heads, hidden, encoder_width=d, act="gelu", dropout_rate=0.0, attention_dropout_rate=0.0,
                           eps=1e-12, init=nnx.initializers.normal(0.02), rngs=nnx.Rngs(0))
  hd = d // heads
  q, qb = _linear(ref.attention.self.query)
  k, kb = _linear(ref.attention.self.key)
  v, vb = _linear(ref.attention.self.value)
  ours.attn.qkv.kernel[...] = np.stack([q, k, v], 1).reshape(d, 3, heads, hd)
  ours.attn.qkv.bias[...] = np.stack([qb, kb, vb]).reshape(3, heads, hd)
  w, b = _linear(ref.attention.output.dense)
  ours.attn.proj.kernel[...], ours.attn.proj.bias[...] = w.reshape(heads, hd, d), b
  q, qb = _linear(ref.crossattention.self.query)
  k, kb = _linear(ref.crossattention.self.key)
  v, vb = _linear(ref.crossattention.self.value)
  ours.cross_attn.q.kernel[...], ours.cross_attn.q.bias[...] = q.reshape(d, heads, hd), qb.reshape(heads, hd)
  ours.cross_attn.kv.kernel[...] = np.stack([k, v], 1).reshape(d, 2, heads, hd)
  ours.cross_attn.kv.bias[...] = np.stack([kb, vb]).reshape(2, heads, hd)
  w, b = _linear(ref.crossattention.output.dense)
  ours.cross_attn.proj.kernel[...], ours.cross_attn.proj.bias[...] = w.reshape(heads, hd, d), b
  ours.mlp.fc1.kernel[...], ours.mlp.fc1.bias[...] = _linear(ref.intermediate.dense)
  ours.mlp.fc2.kernel[...], ours.mlp.fc2.bias[...] = _linear(ref.output.dense)
  for mine, theirs in ((ours.attn_norm, ref.attention.output.LayerNorm),
                       (ours.cross_norm, ref.crossattention.output.LayerNorm), (ours.mlp_norm, ref.output.LayerNorm)):
    mine.scale[...], mine.bias[...] = theirs.weight.detach().numpy(), theirs.bias.detach().numpy()

  rng = np.random.default_rng(0)
  text = rng.standard_normal((3, 7, d)).astype(np.float32)
  image = rng.standard_normal((3, 5, d)).astype(np.float32)
  mask = np.ones((3, 7), np.float32)
  mask[1, 4:], mask[2, 2:] = 0, 0
  additive = torch.from_numpy((1.0 - mask)[:, None, None, :] * torch.finfo(torch.float32).min)
  with torch.no_grad():
    want = ref(torch.from_numpy(text), attention_mask=additive, encoder_hidden_states=torch.from_numpy(image))
  want = (want[0] if isinstance(want, tuple) else want).numpy()
  with jax.default_matmul_precision("highest"):
    got = ours(jnp.asarray(text), jnp.asarray(image), mask=jnp.asarray(mask, bool)[:, None, None, :],
               deterministic=True)
  np.testing.assert_allclose(np.asarray(got), want, atol=1e-4, rtol=0)


# ----------------------------------------------------------------------------- sizes and FLOPs
@pytest.fixture(scope="module")
def paper_model(smoke_task):
  """(config, task, abstract model) of configs/albef/paper.py as shipped: albef_base with its momentum copies
  and 65,536-entry queues, built by the task without allocating anything (the tokenizer, the same for both
  configs, is the smoke task's: training it takes seconds)."""
  from conftest import load_config
  from papers_jax.core import loop
  config = load_config("albef/paper.py")
  _, task = loop.check_config(config)
  task.__dict__["tokenizer"] = smoke_task[1].tokenizer
  return config, task, nnx.eval_shape(lambda: task.build_model(FixedKeyRngs()))


def test_paper_config_is_the_papers_recipe(paper_model):
  config, task, model = paper_model
  assert (config.optimizer.name, config.optimizer.lr, config.optimizer.weight_decay) == ("adamw", 1e-4, 0.02)
  assert (config.schedule.name, config.num_epochs, config.batch_size) == ("cosine", 30, 512)
  assert config.data.image_size == 256
  a = config.albef
  assert (a.queue_size, a.alpha, a.momentum, a.mlm_prob, a.mlm_weight) == (65536, 0.4, 0.995, 0.15, 1.0)
  assert model.image_queue.shape == (65536, 256) and model.visual_encoder.patch_embed.img_size == (256, 256)
  assert task.forward_flops(model) > 2 * models.forward_flops(model) > 0


@needs_torch
def test_albef_base_parameter_counts_against_the_paper(paper_model):
  """§3.5: "a BERT-base with 123.7M parameters and a ViT-B/16 with 85.8M parameters". Ours: the text side
  (embeddings, 6 + 6 layers, 6 cross-attention blocks, MLM head; no pooler) equals HF's BertForMaskedLM plus
  six HF cross-attention blocks (query/key/value/output + LayerNorm); the image side is timm's ViT-B/16 at
  256 px without a head. The momentum copies are not parameters."""
  from timm_parity import timm_param_count
  model = paper_model[2]
  text, vision = num_params(model.text_encoder), num_params(model.visual_encoder)
  config = BertConfig(is_decoder=True, add_cross_attention=True)
  with torch.device("meta"):
    mlm, cross = BertForMaskedLM(BertConfig()), BertAttention(config, is_cross_attention=True)
  hf_text = sum(p.numel() for p in mlm.parameters()) + 6 * sum(p.numel() for p in cross.parameters())
  assert text == hf_text == 123_697_722
  assert vision == timm_param_count("vit_base_patch16_224", img_size=256, num_classes=0) == 85_844_736
  assert round(text / 1e6, 1) == 123.7 and round(vision / 1e6, 1) == 85.8
  heads = num_params(model) - text - vision  # vision_proj, text_proj (768 → 256), itm_head, temp
  assert heads == 2 * (768 * 256 + 256) + 768 * 2 + 2 + 1
  assert num_params(model) == num_params(nnx.eval_shape(lambda: models.create("albef_base", rngs=FixedKeyRngs())))


def test_forward_flops_match_xla():
  """Matmuls only: at width 256 the elementwise ops XLA also counts stay under 5%."""
  model = nnx.eval_shape(lambda: albef.ALBEF(img_size=32, patch_size=8, vision_width=256, vision_depth=1,
                                             vision_heads=4, vocab_size=512, hidden_size=256, text_layers=1,
                                             fusion_layers=1, num_heads=4, intermediate_size=1024,
                                             max_position_embeddings=16, embed_dim=64, rngs=FixedKeyRngs()))
  graphdef, state = nnx.split(model)
  ids, images = jax.ShapeDtypeStruct((4, 12), jnp.int32), jax.ShapeDtypeStruct((4, 32, 32, 3), jnp.float32)
  cost = jax.jit(lambda s, i, x: nnx.merge(graphdef, s)(i, x)).lower(state, ids, images).cost_analysis()
  xla = (cost[0] if isinstance(cost, (list, tuple)) else cost)["flops"] / 4
  analytic = models.forward_flops(model, text_len=12)
  assert 1.0 <= xla / analytic < 1.05, xla / analytic


# ----------------------------------------------------------------------------- objectives
def _unit(rng, *shape):
  x = rng.standard_normal(shape)
  return x / np.linalg.norm(x, axis=-1, keepdims=True)


def _log_softmax(x):
  x = x - x.max(-1, keepdims=True)
  return x - np.log(np.exp(x).sum(-1, keepdims=True))


def test_itc_with_queue_and_distillation_matches_numpy():
  """Written from the official code: sim = feat @ [momentum batch; queue]ᵀ / τ, targets α·softmax(sim_m) +
  (1 − α)·one-hot, loss the mean of both directions' soft cross-entropies; no gradient into the targets."""
  rng = np.random.default_rng(0)
  b, k, e, temp, alpha = 4, 6, 8, 0.07, 0.4
  image, text, image_m, text_m = (_unit(rng, b, e) for _ in range(4))
  image_queue, text_queue = _unit(rng, k, e), _unit(rng, k, e)
  text_all, image_all = np.concatenate([text_m, text_queue]), np.concatenate([image_m, image_queue])

  def direction(feat, feat_m, gallery):
    sim, sim_m = feat @ gallery.T / temp, feat_m @ gallery.T / temp
    targets = alpha * np.exp(_log_softmax(sim_m)) + (1 - alpha) * np.eye(b, b + k)
    return -(targets * _log_softmax(sim)).sum(1).mean(), sim

  want_i2t, sim_i2t = direction(image, image_m, text_all)
  want_t2i, sim_t2i = direction(text, text_m, image_all)
  args = [jnp.asarray(x, jnp.float32) for x in (image, text, image_m, text_m, image_queue, text_queue)]
  loss, got_i2t, got_t2i = objective.itc_loss(*args, jnp.float32(temp), alpha)
  assert float(loss) == pytest.approx((want_i2t + want_t2i) / 2, rel=1e-5)
  np.testing.assert_allclose(got_i2t, sim_i2t, rtol=1e-5, atol=1e-4)
  np.testing.assert_allclose(got_t2i, sim_t2i, rtol=1e-5, atol=1e-4)
  # The momentum features, queues and targets are constants: only the online features get gradients.
  grads = jax.grad(lambda *a: objective.itc_loss(*a, jnp.float32(temp), alpha)[0], argnums=(0, 2, 4))(*args)
  assert float(jnp.abs(grads[0]).sum()) > 0 and float(jnp.abs(grads[1]).sum()) == float(jnp.abs(grads[2]).sum()) == 0
  # No queue and α = 0 with the online features as the "momentum" ones: CLIP's loss at scale 1/τ.
  empty = jnp.zeros((0, e))
  plain, _, _ = objective.itc_loss(args[0], args[1], args[0], args[1], empty, empty, jnp.float32(temp), 0.0)
  assert float(plain) == pytest.approx(float(contrastive.clip_loss(args[0], args[1], 1 / temp)), rel=1e-5)


def test_itm_hard_negatives_follow_the_contrastive_similarity():
  """The official weights: softmax(sim[:, :B]) per row with the diagonal zeroed (torch.multinomial
  renormalises). The draw's distribution equals it exactly, and 20,000 draws match it."""
  rng = np.random.default_rng(0)
  b = 5
  sim = rng.standard_normal((b, b + 3)) * 3.0  # the queue's columns (:, B:) never take part
  weights = np.exp(sim[:, :b] - sim[:, :b].max(1, keepdims=True))
  np.fill_diagonal(weights, 0.0)
  want = weights / weights.sum(1, keepdims=True)
  got = jax.nn.softmax(objective.hard_negative_logits(jnp.asarray(sim, jnp.float32)), axis=-1)
  np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-7)
  sim_t2i = rng.standard_normal((b, b + 3)) * 3.0
  keys = jax.random.split(jax.random.key(0), 20000)
  neg_text, neg_image = jax.vmap(lambda key: objective.sample_hard_negatives(
      key, jnp.asarray(sim, jnp.float32), jnp.asarray(sim_t2i, jnp.float32)))(keys)
  neg_text, neg_image = np.asarray(neg_text), np.asarray(neg_image)
  assert np.all(neg_text != np.arange(b)) and np.all(neg_image != np.arange(b))  # never the own pair
  counts = np.stack([np.bincount(neg_text[:, i], minlength=b) for i in range(b)]) / len(keys)
  np.testing.assert_allclose(counts, want, atol=0.015)
  weights_t = np.exp(sim_t2i[:, :b] - sim_t2i[:, :b].max(1, keepdims=True))
  np.fill_diagonal(weights_t, 0.0)
  counts = np.stack([np.bincount(neg_image[:, i], minlength=b) for i in range(b)]) / len(keys)
  np.testing.assert_allclose(counts, weights_t / weights_t.sum(1, keepdims=True), atol=0.015)
  np.testing.assert_array_equal(objective.itm_labels(3), [1, 1, 1, 0, 0, 0, 0, 0, 0])
  logits = rng.standard_normal((9, 2))
  labels = np.asarray(objective.itm_labels(3))
  want = -_log_softmax(logits)[np.arange(9), labels].mean()
  assert float(objective.itm_loss(jnp.asarray(logits), jnp.asarray(labels))) == pytest.approx(want, rel=1e-5)


def test_mlm_distillation_matches_numpy():
  """The official BertForMaskedLM loss: (1 − α)·CE(labels) + α·(−Σ softmax(momentum logits)·log_softmax),
  each averaged over the masked tokens; and α's warm-up over the first epoch."""
  rng = np.random.default_rng(1)
  logits, logits_m = rng.standard_normal((2, 3, 11)), rng.standard_normal((2, 3, 11))
  labels = rng.integers(0, 11, (2, 3))
  weights = np.asarray([[1, 1, 0], [1, 0, 0]], np.float32)
  log_p = _log_softmax(logits)
  soft = np.exp(_log_softmax(logits_m))
  per = 0.6 * -np.take_along_axis(log_p, labels[..., None], -1)[..., 0] + 0.4 * -(soft * log_p).sum(-1)
  want = (per * weights).sum() / weights.sum()
  got = objective.mlm_distill_loss(jnp.asarray(logits), jnp.asarray(labels), jnp.asarray(weights),
                                   jnp.asarray(logits_m), 0.4)
  assert float(got) == pytest.approx(want, rel=1e-5)
  assert [float(objective.distill_alpha(s, 0.4, 10)) for s in (0, 5, 10, 20)] == pytest.approx([0, 0.2, 0.4, 0.4])


# ----------------------------------------------------------------------------- the retrieval evaluator
def numpy_recalls(i2t, t2i, image_ids, text_ids, ks=(1, 5, 10)):
  """The official ALBEF itm_eval: each query's rank is the best position of a matching item."""
  out = {}
  for name, scores, query_ids, gallery_ids in (("i2t", i2t, image_ids, text_ids), ("t2i", t2i, text_ids, image_ids)):
    ranks = []
    for row, qid in zip(scores, query_ids):
      order = np.argsort(-row, kind="stable")
      ranks.append(min(np.flatnonzero(gallery_ids[order] == qid)))
    out |= {f"{name}_r{k}": float(np.mean(np.asarray(ranks) < k)) for k in ks}
  return out


def test_recall_from_scores_and_itm_reranking():
  rng = np.random.default_rng(0)
  image_ids = np.arange(6)
  text_ids = np.asarray([0, 0, 1, 2, 2, 2, 3, 4, 5, 5, 1, 3])  # 1 to 3 captions per image
  scores = rng.standard_normal((6, 12))
  got = retrieval.recall_from_scores(scores, image_ids, text_ids, ks=(1, 2, 5))
  assert got == pytest.approx(numpy_recalls(scores, scores.T, image_ids, text_ids, ks=(1, 2, 5)))
  # A hand-built case: image 0's best text is another image's; its own caption is second.
  s = np.asarray([[0.1, 0.9, 0.5], [0.8, 0.2, 0.1]])
  r = retrieval.recall_from_scores(s, np.arange(2), np.asarray([0, 1, 0]), ks=(1, 2))
  assert (r["i2t_r1"], r["i2t_r2"], r["t2i_r1"], r["t2i_r2"]) == (0.0, 1.0, 1 / 3, 1.0)

  # ITM re-ranking: an oracle ITM (1 for a match) within each ITC top-k; the rest get −100.
  calls = []

  def itm(text_idx, image_idx):
    calls.append((np.asarray(text_idx), np.asarray(image_idx)))
    return (text_ids[text_idx] == image_ids[image_idx]).astype(np.float32)

  i2t, t2i = retrieval.rerank_with_itm(scores, itm, k=4)
  assert len(calls) == 2 and len(calls[0][0]) == 6 * 4 and len(calls[1][0]) == 12 * 4
  top_texts = np.argsort(-scores, axis=1, kind="stable")[:, :4]
  for i in range(6):
    outside = np.setdiff1d(np.arange(12), top_texts[i])
    assert np.all(i2t[i, outside] == -100.0)
    np.testing.assert_array_equal(i2t[i, top_texts[i]], text_ids[top_texts[i]] == i)
  got = retrieval.recall_from_scores(i2t, image_ids, text_ids, t2i_scores=t2i)
  assert got == pytest.approx(numpy_recalls(i2t, t2i, image_ids, text_ids))
  itc = retrieval.recall_from_scores(scores, image_ids, text_ids)
  # With an oracle, R@1 after re-ranking is whether any match is in the ITC top 4: R@4 of ITC.
  assert got["i2t_r1"] == retrieval.recall_from_scores(scores, image_ids, text_ids, ks=(4,))["i2t_r4"]
  assert got["i2t_r1"] >= itc["i2t_r1"] and got["t2i_r1"] >= itc["t2i_r1"]


def test_recall_at_k_is_recall_from_cosine_scores():
  rng = np.random.default_rng(2)
  images, texts = rng.standard_normal((5, 8)), rng.standard_normal((9, 8))
  image_ids, text_ids = np.arange(5), rng.integers(0, 5, 9)
  cos = (images / np.linalg.norm(images, axis=1, keepdims=True)) @ (texts / np.linalg.norm(texts, axis=1,
                                                                                            keepdims=True)).T
  assert retrieval.recall_at_k(images, texts, image_ids, text_ids, chunk=2) == pytest.approx(
      retrieval.recall_from_scores(cos, image_ids, text_ids))


def test_chance_recall_is_the_mean_over_every_ranking():
  image_ids, text_ids = np.arange(3), np.asarray([0, 0, 1, 2, 2])
  sums, orders = {}, 0
  for perm_t in itertools.permutations(range(5)):
    for perm_i in itertools.permutations(range(3)):
      i2t = np.tile(-np.argsort(perm_t).astype(float), (3, 1))   # every image ranks the texts by perm_t
      t2i = np.tile(-np.argsort(perm_i).astype(float), (5, 1))
      r = retrieval.recall_from_scores(i2t, image_ids, text_ids, ks=(1, 2, 5), t2i_scores=t2i)
      sums = {k: sums.get(k, 0.0) + v for k, v in r.items()}
      orders += 1
  want = {k: v / orders for k, v in sums.items()}
  assert retrieval.chance_recall(image_ids, text_ids, ks=(1, 2, 5)) == pytest.approx(want)


# ----------------------------------------------------------------------------- the task
@pytest.fixture(scope="module")
def smoke_task():
  """(config, task, model) of configs/albef/scenes_pretrain.py:smoke; the model built for real (tiny)."""
  from conftest import load_config
  from papers_jax.core import loop
  config = load_config("albef/scenes_pretrain.py", "smoke")
  _, task = loop.check_config(config)
  return config, task, task.build_model(nnx.Rngs(0))


def test_task_traces_its_loss_and_evaluation(smoke_task):
  """Cheap (no compile): the loss and eval functions trace on real preprocessed examples; the queues
  and pointer move by the batch; every caption has a masked token."""
  config, task, model = smoke_task
  source = task.source("test")
  examples = [task.preprocess(train=True)(dict(source[i]), np.random.default_rng(i)) for i in range(4)]
  batch = {k: jnp.asarray(np.stack([e[k] for e in examples])) for k in examples[0]}
  assert int(batch["mlm_weights"].sum()) >= 4
  graphdef, params, rest = nnx.split(model, nnx.Param, ...)
  params, rest = nnx.to_pure_dict(params), nnx.to_pure_dict(rest)
  loss, (metrics, new_rest) = jax.eval_shape(task.make_loss_fn(graphdef), params, rest, batch, jax.random.key(0))
  assert loss.shape == () and {"itc_loss", "itm_loss", "mlm_loss", "alpha", "temperature"} <= set(metrics)
  assert new_rest["image_queue"].shape == (config.albef.queue_size, model.embed_dim)
  sums = jax.eval_shape(task.make_eval_fn(graphdef), params, rest, batch | {"mask": jnp.ones(4, bool)})
  assert {"loss", "itm_accuracy", "mlm_accuracy"} <= set(sums)
  assert models.forward_flops(model) > 0 and task.forward_flops(model) > models.forward_flops(model)


def test_momentum_update_is_an_ema_of_the_online_weights(smoke_task):
  """post_update: every momentum entry ← 0.99·momentum + 0.01·online (config's momentum), the queues kept,
  the step counter set to the next step."""
  config, task, model = smoke_task
  _, params, rest = nnx.split(model, nnx.Param, ...)
  params, rest = nnx.to_pure_dict(params), nnx.to_pure_dict(rest)
  moved = jax.tree.map(lambda p: p + 1.0, params)
  new = task.post_update(moved, rest, jnp.int32(6))
  m = config.albef.momentum
  for name in albef.MOMENTUM_ENCODERS:
    for old, online, got in zip(jax.tree.leaves(rest[f"{name}_m"]), jax.tree.leaves(moved[name]),
                                jax.tree.leaves(new[f"{name}_m"])):
      np.testing.assert_allclose(got, m * old + (1 - m) * online, rtol=1e-6, atol=1e-6)
  np.testing.assert_array_equal(new["image_queue"], rest["image_queue"])
  assert int(new["step"]) == 7
  assert float(model.temp[...]) == pytest.approx(0.07)
  # The momentum model starts equal to the online one (the official copy_params).
  np.testing.assert_array_equal(rest["text_proj_m"]["kernel"], params["text_proj"]["kernel"])


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
      losses.append([float(metrics[k]) for k in ("loss", "itc_loss", "itm_loss", "mlm_loss")])
  return np.array(losses), jax.device_get(state.model_state["image_queue"])


@pytest.mark.skipif(not FULL, reason="make test-full (PAPERS_JAX_FULL_PARITY=1): two compiles of the task's step")
def test_pretrain_smoke_run_and_sharded_equals_single_device(tmp_path):
  """configs/albef/scenes_pretrain.py:smoke through the real loop on 8 devices (evaluation with retrieval and
  its baselines, checkpoint), then its per-step losses and final queue on 8 devices against one device: the ITC
  negatives, the hard negatives and the queue span the global batch either way."""
  from conftest import load_config
  from papers_jax.core import loop
  from test_configs import check_smoke_run
  config = load_config("albef/scenes_pretrain.py", "smoke")
  summary = loop.train(config, str(tmp_path / "run"))
  check_smoke_run(config, summary, str(tmp_path / "run"))
  assert {"eval/itc_i2t_r1", "eval/itm_t2i_r10", "eval/baseline_nearest_caption_i2t_r1",
          "eval/baseline_chance_t2i_r1", "eval/mlm_accuracy"} <= set(summary)
  sharded, queue8 = _run_steps(config, jax.devices())
  single, queue1 = _run_steps(config, jax.devices()[:1])
  np.testing.assert_allclose(sharded, single, rtol=1e-4, atol=1e-5)
  np.testing.assert_allclose(queue8, queue1, atol=1e-5)
  assert math.isfinite(sharded.sum())
