"""BLIP: ITC, ITM and captioning logits against HF transformers' BlipForImageTextRetrieval and
BlipForConditionalGeneration (random weights, every tensor perturbed, float32), the cached decode step
against the full decoder, the objectives against numpy references, the generation loops, the captioning
metrics (BLEU-4, CIDEr-D) on hand-worked cases, and the task."""

import importlib.util
import math
import os
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from papers_jax.convert import hf_blip
from papers_jax.models import blip
from timm_parity import FixedKeyRngs

if importlib.util.find_spec("torch") is None or importlib.util.find_spec("transformers") is None:
  torch = None
else:
  from papers_jax.convert.torch_compat import import_timm
  import_timm()  # the torchvision shim, before transformers
  import torch
  from transformers import BlipConfig, BlipForConditionalGeneration, BlipForImageTextRetrieval

needs_torch = pytest.mark.skipif(torch is None, reason="needs torch and transformers")
FULL = bool(os.environ.get("PAPERS_JAX_FULL_PARITY"))

# Tiny BLIP: a 48-wide ViT (2 layers, 32 px in 8 px patches) and 32-wide text layers, so the cross-attention's
# keys and values come from another width than the text's.
TINY = dict(img_size=32, patch_size=8, vision_width=48, vision_depth=2, vision_heads=4, vision_mlp_ratio=2.0,
            vocab_size=99, hidden_size=32, num_layers=2, num_heads=4, intermediate_size=64,
            max_position_embeddings=20, embed_dim=16, dropout_rate=0.0, attention_dropout_rate=0.0)


def perturb_(module, seed=0):
  """Every floating tensor random: LayerNorm scales 1 + N(0, 0.1²), everything else N(0, 0.1²)
  (tied tensors stay tied: they are one tensor)."""
  generator = torch.Generator().manual_seed(seed)
  with torch.no_grad():
    for key, p in module.named_parameters():
      is_norm = re.search(r"(LayerNorm|layer_norm|layernorm)", key) and key.endswith("weight")
      p.copy_((1.0 if is_norm else 0.0) + 0.1 * torch.randn(p.shape, generator=generator))
  return module


def _numpy_state_dict(model):
  return {k: v.detach().numpy().copy() for k, v in model.state_dict().items()}


@pytest.fixture(scope="module")
def hf_outputs():
  """HF's outputs and ours on the same random inputs, each HF model loaded into its own copy of ours."""
  config = BlipConfig(
      text_config=dict(vocab_size=99, hidden_size=32, encoder_hidden_size=48, intermediate_size=64,
                       num_hidden_layers=2, num_attention_heads=4, max_position_embeddings=20,
                       hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0, is_decoder=True),
      vision_config=dict(hidden_size=48, intermediate_size=96, num_hidden_layers=2, num_attention_heads=4,
                         image_size=32, patch_size=8, layer_norm_eps=1e-6, attention_dropout=0.0),
      image_text_hidden_size=16)
  torch.manual_seed(0)
  retrieval = perturb_(BlipForImageTextRetrieval(config).eval(), seed=0)
  captioning = perturb_(BlipForConditionalGeneration(config).eval(), seed=1)
  rng = np.random.default_rng(0)
  pixels = rng.normal(size=(3, 3, 32, 32)).astype(np.float32)
  ids = rng.integers(1, 99, (3, 9)).astype(np.int64)
  mask = np.ones((3, 9), np.int64)
  mask[1, 6:] = 0
  mask[2, 4:] = 0
  with torch.no_grad():
    t = dict(pixel_values=torch.tensor(pixels), input_ids=torch.tensor(ids), attention_mask=torch.tensor(mask))
    theirs = dict(itm=retrieval(**t, use_itm_head=True).itm_score.numpy(),
                  itc=retrieval(**t, use_itm_head=False).itm_score.numpy(),
                  lm=captioning(**t).logits.numpy())
  images = jnp.asarray(pixels.transpose(0, 2, 3, 1))
  ids, mask = jnp.asarray(ids, jnp.int32), jnp.asarray(mask, jnp.int32)
  reports, ours = {}, {}
  with jax.default_matmul_precision("highest"):
    for kind, hf in (("retrieval", retrieval), ("captioning", captioning)):
      model = blip.BLIP(**TINY, rngs=nnx.Rngs(0))
      reports[kind] = hf_blip.load_hf_blip(model, _numpy_state_dict(hf))
      image_embeds = model.encode_image(images)
      if kind == "retrieval":
        ours["itm"] = model.itm_logits(model.encode_multimodal(ids, mask, image_embeds))
        ours["itc"] = model.image_feature(image_embeds) @ model.text_feature(model.encode_text(ids, mask)).T
      else:
        ours["lm"] = model.decoder_logits(ids, mask, image_embeds)
        # The cached decode step: the first 4 tokens at once, then one at a time (row 0 has no padding).
        cache = model.init_decode_cache(image_embeds[:1], 9)
        steps, ours_lm0 = [(0, 4)] + [(i, i + 1) for i in range(4, 9)], []
        for a, b in steps:
          logits, cache = model.decode_step(ids[:1, a:b], cache)
          ours_lm0.append(logits[0])
        ours["lm_cached_row0"] = jnp.concatenate(ours_lm0)
  return theirs, {k: np.asarray(v) for k, v in ours.items()}, reports


@needs_torch
def test_matches_hf_blip(hf_outputs):
  theirs, ours, reports = hf_outputs
  np.testing.assert_allclose(ours["itm"], theirs["itm"], atol=1e-4, rtol=1e-4)
  np.testing.assert_allclose(ours["itc"], theirs["itc"], atol=1e-4, rtol=1e-4)
  real = np.array([[1] * 9, [1] * 6 + [0] * 3, [1] * 4 + [0] * 5], bool)
  np.testing.assert_allclose(ours["lm"][real], theirs["lm"][real], atol=1e-4, rtol=1e-4)
  np.testing.assert_allclose(ours["lm_cached_row0"], theirs["lm"][0], atol=1e-4, rtol=1e-4)
  # Strict: each HF model fills every param but the other one's, and uses every key it has.
  for kind, other in (("retrieval", hf_blip.CAPTIONING_ONLY), ("captioning", hf_blip.RETRIEVAL_ONLY)):
    report = reports[kind]
    assert not report.unexpected and not report.mismatched
    assert report.missing and all(any(re.search(p, k) for p in other) for k in report.missing), report.missing
  assert any("dec_self_attn" in k for k in reports["retrieval"].missing)
  assert any(k.startswith("itm_head") for k in reports["captioning"].missing)


def test_encoder_and_decoder_share_all_but_self_attention():
  """The decoder's own params are its self-attention (and norm) per layer and the LM head; the rest of the
  text stack (embeddings, cross-attention, FFN) is one set of arrays, used by all three text paths."""
  model = nnx.eval_shape(lambda: blip.BLIP(**TINY, rngs=FixedKeyRngs()))
  paths = ["/".join(map(str, p)) for p, _ in nnx.to_flat_state(nnx.state(model, nnx.Param))]
  text = [p for p in paths if p.startswith("text/")]
  decoder_only = [p for p in text if "/dec_self_attn" in p]
  encoder_only = [p for p in text if "/self_attn" in p and "/dec_self_attn" not in p]
  assert len(decoder_only) == len(encoder_only) == 2 * 6  # qkv, proj (kernel, bias), norm (scale, bias)
  shared = set(text) - set(decoder_only) - set(encoder_only)
  assert any("cross_attn" in p for p in shared) and any("/mlp/" in p for p in shared)
  assert any("embeddings" in p for p in shared)


# ----------------------------------------------------------------------------- objectives
def _softmax(x, axis=-1):
  e = np.exp(x - x.max(axis, keepdims=True))
  return e / e.sum(axis, keepdims=True)


def _log_softmax(x, axis=-1):
  return x - x.max(axis, keepdims=True) - np.log(np.exp(x - x.max(axis, keepdims=True)).sum(axis, keepdims=True))


def test_objectives_against_numpy():
  from papers_jax.objectives import blip as obj
  rng = np.random.default_rng(0)
  feats = [rng.normal(size=(6, 8)).astype(np.float32) for _ in range(4)]
  feats = [f / np.linalg.norm(f, axis=1, keepdims=True) for f in feats]
  i, t, i_m, t_m = feats
  temp, alpha = 0.07, 0.4
  # ITC with momentum distillation, written out from ALBEF/BLIP's code.
  eye = np.eye(6)
  tgt_i2t = alpha * _softmax(i_m @ t_m.T / temp) + (1 - alpha) * eye
  tgt_t2i = alpha * _softmax(t_m @ i_m.T / temp) + (1 - alpha) * eye
  want = (-(np.sum(_log_softmax(i @ t_m.T / temp) * tgt_i2t, 1)).mean()
          - (np.sum(_log_softmax(t @ i_m.T / temp) * tgt_t2i, 1)).mean()) / 2
  got, sim_i2t, _ = obj.itc_loss(*map(jnp.asarray, feats), temp, alpha)
  np.testing.assert_allclose(float(got), want, rtol=1e-5)
  np.testing.assert_allclose(np.asarray(sim_i2t), i @ t_m.T / temp, rtol=1e-5, atol=1e-5)
  # ITM: 2-way cross-entropy with labels [1]*B + [0]*2B.
  logits = rng.normal(size=(9, 2)).astype(np.float32)
  loss, labels = obj.itm_loss(jnp.asarray(logits))
  np.testing.assert_array_equal(np.asarray(labels), [1, 1, 1, 0, 0, 0, 0, 0, 0])
  np.testing.assert_allclose(float(loss), -_log_softmax(logits)[np.arange(9), [1] * 3 + [0] * 6].mean(), rtol=1e-6)
  # LM: torch's label smoothing (1 - ε) one-hot + ε / V, over the real targets only.
  logits = rng.normal(size=(2, 5, 7)).astype(np.float32)
  ids = rng.integers(0, 7, (2, 5))
  mask = np.array([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]])
  lp = _log_softmax(logits[:, :-1])
  target = 0.9 * np.eye(7)[ids[:, 1:]] + 0.1 / 7
  per = -(lp * target).sum(-1)
  w = mask[:, 1:]
  got, sums, counts = obj.lm_loss(jnp.asarray(logits), jnp.asarray(ids), jnp.asarray(mask), 0.1)
  np.testing.assert_allclose(float(got), (per * w).sum() / w.sum(), rtol=1e-5)
  np.testing.assert_allclose(np.asarray(counts), [4, 2])


def test_hard_negatives_follow_the_similarity_softmax():
  """Draws follow softmax(sim) + 1e-4 over the non-positive pairs, and never a positive (the pair itself or a
  pair with the same text)."""
  from papers_jax.objectives import blip as obj
  sim = jnp.asarray(np.random.default_rng(1).normal(size=(4, 4)) * 2, jnp.float32)
  positive = jnp.eye(4, dtype=bool).at[0, 2].set(True).at[2, 0].set(True)  # texts 0 and 2 are the same string
  keys = jax.random.split(jax.random.key(0), 4000)
  neg_image, neg_text = jax.vmap(lambda k: obj.itm_negatives(k, sim, sim.T, positive))(keys)
  w = _softmax(np.asarray(sim).T, 1) + 1e-4  # text t → image j by sim_t2i = sim.T
  w[np.asarray(positive)] = 0
  w /= w.sum(1, keepdims=True)
  freq = np.stack([np.bincount(np.asarray(neg_image)[:, t], minlength=4) / 4000 for t in range(4)])
  np.testing.assert_allclose(freq, w, atol=0.03)
  assert not np.asarray(positive)[np.arange(4)[None, :], np.asarray(neg_image)].any()
  assert not np.asarray(positive)[np.arange(4)[None, :], np.asarray(neg_text)].any()


# ----------------------------------------------------------------------------- captioning metrics
def test_cider_d_on_hand_worked_cases():
  """Worked by hand from the COCO code's definition: N = 2 images, L = log 2 the idf of a term in one image's
  references, σ = 6, lengths counted in bigrams."""
  from papers_jax.evaluators import captioning
  # The hypothesis is its only reference: unigram and bigram cosines 1, no 3- or 4-grams → 10 · (1 + 1) / 4.
  np.testing.assert_allclose(captioning.cider_d_scores(["a b", "c d"], [["a b"], ["c d"]]), [5.0, 5.0])
  # "a a b" against "a b": unigram vectors (2L, L) and (L, L): Σ min·ref = 2L², norms √5 L, √2 L → 2/√10;
  # bigrams {"a a": L, "a b": L} and {"a b": L} → 1/√2; 2 bigrams against 1: penalty exp(−1/72).
  want = 10 * (2 / math.sqrt(10) + 1 / math.sqrt(2)) * math.exp(-1 / 72) / 4
  np.testing.assert_allclose(captioning.cider_d_scores(["a a b", "c d"], [["a b"], ["c d"]])[0], want, rtol=1e-12)
  # Two references, one matched, one disjoint: the mean over references halves the first case.
  np.testing.assert_allclose(captioning.cider_d_scores(["a b", "c d"], [["a b", "x y"], ["c d"]])[0], 2.5)
  # Punctuation and case do not count: "A b." is "a b".
  np.testing.assert_allclose(captioning.cider_d(["A b.", "c d"], [["a b"], ["c, d"]]), 5.0)


def test_bleu4_with_several_references():
  from papers_jax.evaluators import captioning
  refs = [["from left to right: a red 7 and a blue circle.", "there are one shape and one digit."],
          ["from top to bottom: a green square, a red 2 and a yellow 7."]]
  assert captioning.bleu4(["from left to right : a red 7 and a blue circle .",
                           "from top to bottom: a green square, a red 2 and a yellow 7."], refs) == pytest.approx(100.0)
  import sacrebleu
  hyps = ["from left to right a red 7 and a red circle", "from top to bottom a green square a red 2"]
  want = sacrebleu.corpus_bleu(hyps, [["from left to right a red 7 and a blue circle",
                                       "from top to bottom a green square a red 2 and a yellow 7"],
                                      ["there are one shape and one digit", None]]).score
  assert captioning.bleu4(hyps, refs) == pytest.approx(want)
  assert 0 < want < 100


# ----------------------------------------------------------------------------- generation
@pytest.mark.skipif(not FULL, reason="make test-full (PAPERS_JAX_FULL_PARITY=1): compiles six decoding loops")
def test_beam_and_nucleus_generation_respect_min_length_and_agree_with_greedy():
  """With the LM head pushed to [SEP] (EOS), every search must still give min_len − 1 tokens after [DEC] before
  it; a beam of 1 is greedy decoding; nucleus sampling with a tiny p keeps only the top token (greedy)."""
  from papers_jax.tasks import blip as task
  model = blip.BLIP(**TINY, rngs=nnx.Rngs(0))
  memory = model.encode_image(jnp.asarray(np.random.default_rng(0).normal(size=(2, 32, 32, 3)), jnp.float32))
  eos, pad, dec = 3, 0, 98
  kw = dict(max_len=9, min_len=5, eos_id=eos, pad_id=pad)
  greedy = task.sample_generate(model, memory, [dec, 7], None, temperature=0.0, **kw)
  beam1 = task.beam_generate(model, memory, [dec, 7], beam_size=1, **kw)
  nucleus = task.sample_generate(model, memory, [dec, 7], jax.random.key(1), top_p=1e-6, **kw)
  np.testing.assert_array_equal(np.asarray(beam1), np.asarray(greedy))
  np.testing.assert_array_equal(np.asarray(nucleus), np.asarray(greedy))
  model.lm_head.bias[...] = model.lm_head.bias[...].at[eos].set(100.0)
  for tokens in (task.sample_generate(model, memory, [dec, 7], None, temperature=0.0, **kw),
                 task.beam_generate(model, memory, [dec, 7], beam_size=3, **kw),
                 task.sample_generate(model, memory, [dec, 7], jax.random.key(1), **kw)):
    tokens = np.asarray(tokens)
    assert tokens.shape == (2, 7)
    # [DEC] 7 g1 g2 g3 [SEP]: EOS is allowed once 5 tokens are in, then pad.
    assert (tokens[:, :3] != eos).all() and (tokens[:, 3] == eos).all() and (tokens[:, 4:] == pad).all()


# ----------------------------------------------------------------------------- the task
@pytest.mark.skipif(not FULL, reason="make test-full (PAPERS_JAX_FULL_PARITY=1): traces every path (~25-60 s of CPU); "
                    "tests/test_configs.py::test_heavy_config_builds validates the configs and builds the models")
@pytest.mark.parametrize("name", ["blip/scenes_pretrain.py", "blip/scenes_vqa.py"])
def test_task_traces_its_objectives(name):
  """No compile: the demo config validates, its examples have static shapes, and the loss and eval functions
  trace on a batch of them with the smoke model."""
  from conftest import load_config
  from papers_jax.core import loop
  config = load_config(name, "smoke")
  _, task = loop.check_config(config)
  source = task.source("test")
  examples = [task.preprocess(train=True)(dict(source[i]), np.random.default_rng(i)) for i in range(4)]
  batch = {k: jnp.asarray(np.stack([e[k] for e in examples])) for k in examples[0]}
  model = task.build_model(nnx.Rngs(0))
  assert (model.visual_m is not None) == task.pretrain  # the momentum encoders only where ITC needs them
  graphdef, params, rest = nnx.split(model, nnx.Param, ...)
  params, rest = nnx.to_pure_dict(params), nnx.to_pure_dict(rest)
  loss, (metrics, new_rest) = jax.eval_shape(task.make_loss_fn(graphdef), params, rest, batch, jax.random.key(0))
  assert loss.shape == ()
  sums = jax.eval_shape(task.make_eval_fn(graphdef), params, rest, batch | {"mask": jnp.ones(4, bool)})
  if task.pretrain:
    assert {"itc_loss", "itm_loss", "lm_loss", "itm_accuracy", "itc_top1", "temp"} <= set(metrics)
    assert {"lm_accuracy", "itm_accuracy", "itc_top1"} <= set(sums)
    # The momentum encoders mirror the online weights, so post_update's EMA maps one tree onto the other.
    from papers_jax.tasks.blip import MOMENTUM_PAIRS
    for online, target in MOMENTUM_PAIRS:
      assert jax.tree.structure(params[online]) == jax.tree.structure(rest[target])
    updated = jax.eval_shape(task.post_update, params, rest, jnp.zeros((), jnp.int32))
    assert jax.tree.structure(updated) == jax.tree.structure(rest)
  else:
    assert {"accuracy", "accuracy_count", "accuracy_relation"} <= set(sums)
    assert task.post_update is None


def test_momentum_update_is_an_ema_of_the_online_weights():
  from papers_jax.tasks import blip as task_lib
  params = {name: {"w": jnp.full((2,), 1.0)} for name, _ in task_lib.MOMENTUM_PAIRS}
  state = {target: {"w": jnp.full((2,), 3.0)} for _, target in task_lib.MOMENTUM_PAIRS}
  task = task_lib.BLIPTask.__new__(task_lib.BLIPTask)
  task.c = task_lib.default_config()
  new = task.post_update(params, state, jnp.zeros((), jnp.int32))
  for _, target in task_lib.MOMENTUM_PAIRS:
    np.testing.assert_allclose(np.asarray(new[target]["w"]), 0.995 * 3.0 + 0.005 * 1.0, rtol=1e-6)


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
      losses.append([float(metrics[k]) for k in ("loss", "itc_loss", "itm_loss", "lm_loss")])
  return np.array(losses)


@pytest.mark.skipif(not FULL, reason="make test-full (PAPERS_JAX_FULL_PARITY=1): trains and compiles several steps")
def test_smoke_runs_and_a_capfilt_round(tmp_path):
  """configs/blip/scenes_pretrain.py:smoke through the real loop on 8 devices (captioning evaluation and its
  baselines, checkpoint); one CapFilt round on its checkpoint (tools/blip_capfilt.py) and the second
  pre-training config reading the file; VQA's smoke run."""
  import json as json_lib
  from conftest import load_config
  from papers_jax.core import loop
  from test_configs import check_smoke_run
  config = load_config("blip/scenes_pretrain.py", "smoke")
  summary = loop.train(config, str(tmp_path / "run"))
  check_smoke_run(config, summary, str(tmp_path / "run"))
  assert {"eval/caption_bleu4", "eval/caption_cider", "eval/baseline_nearest_bleu4",
          "eval/baseline_frequent_cider", "eval/itm_accuracy"} <= set(summary)
  import importlib.util
  spec = importlib.util.spec_from_file_location("blip_capfilt", os.path.join(os.path.dirname(__file__), "..", "tools",
                                                                          "blip_capfilt.py"))
  blip_capfilt = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(blip_capfilt)
  out = str(tmp_path / "capfilt.json")
  root = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
  counts = blip_capfilt.main(["--config", os.path.join(root, "configs/blip/scenes_pretrain.py:smoke"), "--checkpoint",
                              str(tmp_path / "run"), "--out", out, "--set", "blip.generate_batch=500",
                              "--workdir", str(tmp_path / "second"), "--threshold", "0",  # the 4-step filter keeps nothing
                              "--second_config", os.path.join(root, "configs/blip/scenes_capfilt.py:smoke")])
  assert counts["corrupted"] == 6000 and counts["corrupted_true"] == 0 and counts["original_true"] == counts["original"]
  assert 0 <= counts["filter"]["precision"] <= 1 and 0 <= counts["filter"]["recall"] <= 1
  assert counts["comparison"]["bootstrapped"]["caption_bleu4"] is not None
  assert counts["comparison"]["first"]["itc_i2t_r1"] is not None  # the smoke config's retrieval evaluation
  with open(out) as f:
    kept = json_lib.load(f)["captions"]
  assert len(kept) == 6000 and counts["synthetic"] == 6000
  from papers_jax.data import vqa_scenes
  assert counts["original"] == sum(len(s["captions"]) for s in vqa_scenes.scenes("train"))
  assert sum(len(k) for k in kept) <= counts["original_kept"] + counts["synthetic_kept"]  # duplicates kept once
  capfilt_config = load_config("blip/scenes_capfilt.py", f"smoke,captions={out}")
  _, task = loop.check_config(capfilt_config)
  assert len(task.source("train")) == counts["scenes_kept"]
  vqa = load_config("blip/scenes_vqa.py", "smoke")
  summary = loop.train(vqa, str(tmp_path / "vqa"))
  assert {"eval/accuracy", "eval/baseline_majority"} <= set(summary)


@pytest.mark.skipif(not FULL, reason="make test-full (PAPERS_JAX_FULL_PARITY=1): two compiles of the task's step")
def test_sharded_step_equals_single_device():
  """The pre-training step's losses on 8 devices against one device: ITC's targets, the hard negatives and the LM
  mean span the global batch either way."""
  from conftest import load_config
  config = load_config("blip/scenes_pretrain.py", "smoke")
  sharded, single = _run_steps(config, jax.devices()), _run_steps(config, jax.devices()[:1])
  assert len(jax.devices()) == 8 and sharded.shape == (4, 4)
  np.testing.assert_allclose(sharded, single, rtol=1e-4, atol=1e-6)
