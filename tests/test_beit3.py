"""BEiT-3: the Multiway block against a numpy reference (shared attention, each token through its modality's
expert), expert routing by perturbation, the prefix-LM mask, parameter counts against the paper's Table 2
(giant) and the released base model, the FLOP counter against XLA, block-wise masking, the NLVR-style data,
and the task (traced in the default suite; smoke runs and 8-device = 1-device steps under
PAPERS_JAX_FULL_PARITY=1)."""

import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from papers_jax import models
from papers_jax.data import nlvr_scenes
from papers_jax.models import beit3
from papers_jax.objectives import beit3 as objective
from timm_parity import FixedKeyRngs, num_params

FULL = bool(os.environ.get("PAPERS_JAX_FULL_PARITY"))
TINY = dict(vocab_size=50, max_text_len=8, img_size=16, patch_size=8, hidden_size=16, depth=2, num_heads=2,
            mlp_dim=24, vl_layers=1, mlm_head=True, num_visual_tokens=11)


def perturb_(module, seed):
  """Every parameter of `module` (in place) plus N(0, 0.3²): LayerNorms, biases and the tokens included."""
  rng = np.random.default_rng(seed)
  for _, var in nnx.iter_graph(module):
    if isinstance(var, nnx.Param):
      var[...] = var[...] + jnp.asarray(0.3 * rng.standard_normal(var.shape), var.dtype)


@pytest.fixture(scope="module")
def tiny():
  """A tiny BEiT-3 with every parameter perturbed, and a batch: 2 images (4 patches) and texts of 6 tokens,
  the second padded after 4."""
  model = beit3.BEiT3(**TINY, rngs=nnx.Rngs(0))
  perturb_(model, 0)
  rng = np.random.default_rng(1)
  images = jnp.asarray(rng.standard_normal((2, 16, 16, 3)), jnp.float32)
  ids = jnp.asarray(rng.integers(0, 50, (2, 6)), jnp.int32)
  text_mask = jnp.asarray([[1] * 6, [1] * 4 + [0] * 2], jnp.int32)
  return model, images, ids, text_mask


def _np_layer_norm(x, norm):
  mu, var = x.mean(-1, keepdims=True), x.var(-1, keepdims=True)
  return (x - mu) / np.sqrt(var + norm.eps) * np.asarray(norm.scale[...]) + np.asarray(norm.bias[...])


def _np_expert(x, expert):
  h = _np_layer_norm(x, expert.norm) @ np.asarray(expert.mlp.fc1.kernel[...]) + np.asarray(expert.mlp.fc1.bias[...])
  h = np.asarray(jax.nn.gelu(jnp.asarray(h), approximate=False))
  return h @ np.asarray(expert.mlp.fc2.kernel[...]) + np.asarray(expert.mlp.fc2.bias[...])


def _np_block(block, x, keys, n_image, mode):
  """The Multiway block written out: shared attention over every token (padding keys masked), then the
  vision expert on the first n_image tokens and the language expert on the rest (mode "pair" below the
  VL layers), or the VL expert on all (mode "pair" in a VL layer)."""
  b, n, d = x.shape
  h = _np_layer_norm(x, block.norm1)
  qkv = np.einsum("bnd,dthk->bnthk", h, np.asarray(block.attn.qkv.kernel[...])) + np.asarray(block.attn.qkv.bias[...])
  q, k, v = qkv[:, :, 0], qkv[:, :, 1], qkv[:, :, 2]
  scores = np.einsum("bqhk,bshk->bhqs", q, k) / np.sqrt(q.shape[-1])
  scores = np.where(keys[:, None, None, :], scores, -np.inf)
  p = np.exp(scores - scores.max(-1, keepdims=True))
  p /= p.sum(-1, keepdims=True)
  y = np.einsum("bhqs,bshk->bqhk", p, v)
  x = x + np.einsum("bqhk,hkd->bqd", y, np.asarray(block.attn.proj.kernel[...])) + np.asarray(block.attn.proj.bias[...])
  if mode == "pair" and block.vl is not None:
    return x + _np_expert(x, block.vl)
  out = np.concatenate([_np_expert(x[:, :n_image], block.vision), _np_expert(x[:, n_image:], block.language)], 1)
  return x + out


def _run_blocks(model, x, n_image, keys, mode, upto):
  mask = jnp.asarray(keys)[:, None, None, :]
  for block in list(model.blocks)[:upto]:
    x = block(x, mode=mode, n_image=n_image, mask=mask)
  return np.asarray(x)


def test_multiway_blocks_match_numpy(tiny):
  """Each block of a pair (layer 0: vision/language experts; layer 1: the VL expert) against the numpy
  block; the whole encoder (embeddings included) against numpy, float32, ≤ 1e-5."""
  model, images, ids, text_mask = tiny
  with jax.default_matmul_precision("highest"):
    image = np.asarray(model.embed_image(images))
    x = np.concatenate([image, np.asarray(model.embed_text(ids))], 1)
    n_image = image.shape[1]
    keys = np.concatenate([np.ones((2, n_image), bool), np.asarray(text_mask, bool)], 1)
    ref = x
    for i, block in enumerate(model.blocks):
      ref = _np_block(block, ref, keys, n_image, "pair")
      ours = _run_blocks(model, jnp.asarray(x), n_image, keys, "pair", i + 1)
      np.testing.assert_allclose(ours, ref, atol=1e-5, rtol=1e-5)
    seq, n = model.encode(images, ids, text_mask)
    assert n == n_image == 5
    np.testing.assert_allclose(np.asarray(seq), _np_layer_norm(ref, model.norm), atol=1e-5, rtol=1e-5)
    # An image alone goes through the vision expert in every layer, the VL layer included.
    alone, _ = model.encode(images)
    ref = image
    for block in model.blocks:
      ref = _np_block(block, ref, np.ones((2, n_image), bool), n_image=n_image, mode="vision")
    np.testing.assert_allclose(np.asarray(alone), _np_layer_norm(ref, model.norm), atol=1e-5, rtol=1e-5)


def test_experts_route_by_modality(tiny):
  """Perturb one expert and see which outputs move: in layer 0 of a pair, the vision expert moves only the
  image tokens and the language expert only the text tokens; through the shared attention of layer 1 both
  reach every token; in the VL layer only the VL expert matters for a pair, and it does not for an image
  or a text alone."""
  model, images, ids, text_mask = tiny
  n = model.num_image_tokens
  keys = np.concatenate([np.ones((2, n), bool), np.asarray(text_mask, bool)], 1)
  x = jnp.concatenate([model.embed_image(images), model.embed_text(ids)], 1)

  def changes(path, fn):
    """Which of (image tokens, text tokens) fn's output changes when the expert at `path` is perturbed."""
    before = np.asarray(fn(model))
    graphdef, state = nnx.split(model)
    other = nnx.merge(graphdef, jax.tree.map(lambda a: a, state))
    expert = other.blocks[path[0]]
    perturb_(getattr(expert, path[1]), 7)
    after = np.asarray(fn(other))
    moved = np.abs(after - before).max(-1) > 1e-6  # (B, N)
    return bool(moved[:, :n].any()), bool(moved[:, n:][np.asarray(text_mask, bool)].any())

  layer0 = lambda m: _run_blocks(m, x, n, keys, "pair", 1)  # noqa: E731
  assert changes((0, "vision"), layer0) == (True, False)
  assert changes((0, "language"), layer0) == (False, True)
  both = lambda m: m.encode(images, ids, text_mask)[0]  # noqa: E731
  assert changes((0, "vision"), both) == (True, True)
  assert changes((0, "language"), both) == (True, True)
  assert changes((1, "vision"), both) == (False, False)
  assert changes((1, "language"), both) == (False, False)
  assert changes((1, "vl"), both) == (True, True)
  image_alone = lambda m: jnp.concatenate([m.encode(images)[0], jnp.zeros((2, 6, 16))], 1)  # noqa: E731
  assert changes((1, "vl"), image_alone) == (False, False)
  assert changes((1, "vision"), image_alone) == (True, False)
  def text_alone(m):
    return jnp.concatenate([jnp.zeros((2, n, 16)), m.encode(input_ids=ids, text_mask=text_mask)[0]], 1)

  assert changes((1, "language"), text_alone) == (False, True)
  assert changes((1, "vision"), text_alone) == (False, False)


def test_prefix_lm_mask(tiny):
  """The mask by hand for 2 image tokens and 3 text tokens (the last one padding); then in the model:
  a text token's change moves only itself and the text after it, never the image; the image moves all."""
  mask = np.asarray(beit3.prefix_lm_mask(2, jnp.asarray([[1, 1, 0]])))[0, 0]
  want = np.array([[1, 1, 0, 0, 0],
                   [1, 1, 0, 0, 0],
                   [1, 1, 1, 0, 0],
                   [1, 1, 1, 1, 0],
                   [1, 1, 1, 1, 0]], bool)
  np.testing.assert_array_equal(mask, want)
  model, images, ids, text_mask = tiny
  n = model.num_image_tokens
  full = jnp.ones_like(text_mask)
  def run(im, t):
    return np.asarray(model.encode(im, t, full, attention_mask=beit3.prefix_lm_mask(n, full))[0])

  before = run(images, ids)
  moved = np.abs(run(images, ids.at[:, 3].set((ids[:, 3] + 1) % 50)) - before).max(-1) > 1e-6
  np.testing.assert_array_equal(moved[0], np.arange(n + 6) >= n + 3)
  moved = np.abs(run(images * 0.5, ids) - before).max(-1) > 1e-6
  assert moved.all()


def test_parameter_counts_against_the_paper():
  """BEiT-3 giant against the paper's Table 2: V-FFN 692M, L-FFN 692M, VL-FFN 52M (the top three layers),
  shared self-attention 317M, 1.9B in all. Ours: 1.846B with the word and position embeddings, 1.884B
  with the MLM head as well (the table does not say what its total holds). Base: the paper gives no size;
  the released BEiT3-base (its README: 222M for the ITC model) keeps a second set of attention projections
  per modality and no VL experts: ours with vl_layers=0 plus that second set is 220.0M (−0.9%; the rest is
  its two ITC projections, 1,024 text positions and Magneto's sub-LayerNorms)."""
  giant = nnx.eval_shape(lambda: models.create("beit3_giant_patch14_224", rngs=FixedKeyRngs()))
  def part(name):
    return sum(num_params(getattr(b, name)) for b in giant.blocks if getattr(b, name) is not None)

  assert [round(part(k) / 1e6) for k in ("vision", "language", "vl", "attn")] == [692, 692, 52, 317]
  assert sum(b.vl is not None for b in giant.blocks) == 3 and giant.blocks[-1].vl is not None
  assert num_params(giant) == 1_845_830_528
  base = nnx.eval_shape(lambda: models.create("beit3_base_patch16_224", vl_layers=0, rngs=FixedKeyRngs()))
  decoupled = num_params(base) + sum(num_params(b.attn) for b in base.blocks)
  assert num_params(base) == 191_695_872 and abs(decoupled / 222e6 - 1) < 0.01


def test_forward_flops_match_xla():
  model = nnx.eval_shape(lambda: beit3.BEiT3(vocab_size=512, max_text_len=16, hidden_size=256, depth=2, num_heads=4,
                                             mlp_dim=1024, vl_layers=0, img_size=64, patch_size=16, mlm_head=True,
                                             num_visual_tokens=64, rngs=FixedKeyRngs()))
  graphdef, state = nnx.split(model)

  def forward(s, i, x):
    m = nnx.merge(graphdef, s)
    seq, n = m.encode(x, i)
    return m.mlm_head(seq[:, n:]), m.mim_head(seq[:, 1:n])

  ids, images = jax.ShapeDtypeStruct((4, 12), jnp.int32), jax.ShapeDtypeStruct((4, 64, 64, 3), jnp.float32)
  cost = jax.jit(forward).lower(state, ids, images).cost_analysis()
  xla = (cost[0] if isinstance(cost, (list, tuple)) else cost)["flops"] / 4
  analytic = models.forward_flops(model, text_len=12)
  assert 1.0 <= xla / analytic < 1.05, xla / analytic


def test_block_mask():
  """At most `count` patches, on average within 10% of it, grown as rectangles: masked patches have far
  more masked 4-neighbours than a uniform random mask of the same size gives."""
  rng = np.random.default_rng(0)
  counts, neighbours, random_neighbours = [], [], []
  for _ in range(200):
    m = objective.block_mask((14, 14), 78, rng, min_patches=16)
    counts.append(m.sum())
    pairs = lambda a: (a[1:] & a[:-1]).sum() + (a[:, 1:] & a[:, :-1]).sum()  # noqa: E731
    neighbours.append(pairs(m))
    r = np.zeros(196, bool)
    r[rng.choice(196, m.sum(), replace=False)] = True
    random_neighbours.append(pairs(r.reshape(14, 14)))
  assert max(counts) <= 78 and np.mean(counts) > 0.9 * 78
  assert np.mean(neighbours) > 1.5 * np.mean(random_neighbours)
  small = objective.block_mask((4, 4), 6, np.random.default_rng(1), min_patches=2)
  assert 0 < small.sum() <= 6


def test_nlvr_statements_and_labels():
  """Train and test statements are disjoint and every template, colour and kind is trained; the test
  examples are deterministic, balanced, and each label is the statement's truth on the two scenes' objects."""
  train, test = set(nlvr_scenes.split_statements("train")), set(nlvr_scenes.split_statements("test"))
  assert not train & test and len(train | test) == 95 and len(test) == 19
  assert {nlvr_scenes.statement(*k) for k in train}.isdisjoint({nlvr_scenes.statement(*k) for k in test})
  for pos in (0, 1):
    assert {k[pos] for k in train} == {k[pos] for k in train | test}
  colour_train, colour_test = (set(nlvr_scenes.split_statements(s, "colours")) for s in ("train", "test"))
  assert len(colour_train) == 16 and colour_test <= test and colour_train <= train
  assert sorted(nlvr_scenes.SUBJECTS[s][0] for _, s, _ in colour_test) == sorted(nlvr_scenes.COLOURS[1:])
  # held_out="wordings": unseen sentences whose meaning (template, subject) is trained in two other wordings,
  # and whose wording is trained with other subjects; all in whole words of the tokenizer (no [UNK]).
  from papers_jax.tasks.beit3 import _scene_wordpiece
  tokenizer = _scene_wordpiece(320)
  for subjects in ("all", "colours"):
    train, test = (set(nlvr_scenes.split_statements(s, subjects, "wordings")) for s in ("train", "test"))
    assert not train & test and len(test) * 2 == len(train)
    train_text = {nlvr_scenes.statement(*k) for k in train}
    assert train_text.isdisjoint({nlvr_scenes.statement(*k) for k in test})
    for t, s, w in test:
      assert sum((t, s, v) in train for v in range(3)) == 2
      assert any(k[0] == t and k[2] == w for k in train)
    for k in train | test:
      sentence = nlvr_scenes.statement(*k)
      words = sentence.rstrip(".").split()
      assert [tokenizer.encode(x) for x in words] == [[tokenizer.token_to_id(x)] for x in words], k
      assert len(tokenizer.encode(sentence)) + 2 <= 16  # [CLS] … [SEP] fit configs/beit3/nlvr.py's max_text_len
  source = nlvr_scenes.NLVRScenesSource("test", "all", "wordings")
  assert len(source) == 1000 and 0.45 < source.label.mean() < 0.55
  scenes = source.scenes.scenes
  for i in range(0, 1000, 50):
    ex = source[i]
    colour, kind = nlvr_scenes.SUBJECTS[int(source.subject[i])]
    count = lambda s: sum((not colour or o["colour"] == colour) and kind in ("object", o["kind"])  # noqa: E731
                          for o in scenes[s]["objects"])
    left, right = ex["scenes"]
    assert bool(nlvr_scenes.truth(int(ex["template"]), count(left), count(right))) == bool(ex["label"])
    assert ex["image"].shape == (2, 64, 64, 3) and ex["statement"] == nlvr_scenes.statement(
        int(source.template[i]), int(source.subject[i]), int(source.wording[i]))
    np.testing.assert_array_equal(ex["image"][0], source.scenes.image(int(left)))
  assert nlvr_scenes.statement(2, nlvr_scenes.SUBJECTS.index(("", "circle"))) == "neither image has a circle."


@pytest.mark.parametrize("name", ["beit3/scenes_pretrain.py", "beit3/nlvr.py", "beit3/scenes_captioning.py"])
def test_task_traces_every_objective(name, monkeypatch):
  """Cheap (no compile): each demo config validates, its preprocessed examples have static shapes, and the
  loss and eval functions trace on a batch of them with the smoke model; captioning goes through the
  prefix-LM mask and masks 60% of each caption after [CLS]."""
  calls = []
  monkeypatch.setattr(beit3, "prefix_lm_mask", lambda *a: calls.append(a) or _prefix_lm_mask(*a))
  from conftest import load_config
  from papers_jax.core import loop
  config = load_config(name, "smoke")
  _, task = loop.check_config(config)
  source = task.source("test")
  if task.pretrain:  # an untrained tokenizer ("random") on a few scenes; the real one reads a checkpoint
    task._visual_tokens |= {"train": np.zeros((6000, 16), np.int32), "test": np.zeros((500, 16), np.int32)}
  examples = [task.preprocess(train=True)(dict(source[i]), np.random.default_rng(i)) for i in range(4)]
  batch = {k: jnp.asarray(np.stack([e[k] for e in examples])) for k in examples[0]}
  model = nnx.eval_shape(lambda: task.build_model(nnx.Rngs(0)))
  graphdef, params, rest = nnx.split(model, nnx.Param, ...)
  params, rest = nnx.to_pure_dict(params), nnx.to_pure_dict(rest)
  loss, (metrics, _) = jax.eval_shape(task.make_loss_fn(graphdef), params, rest, batch, jax.random.key(0))
  assert loss.shape == ()
  sums = jax.eval_shape(task.make_eval_fn(graphdef), params, rest, batch | {"mask": jnp.ones(4, bool)})
  if task.captioning:
    assert len(calls) == 2 and set(sums) == {"loss", "accuracy", "count"} and "accuracy" in metrics
    frac = batch["weights"].sum() / (batch["text_mask"].sum() - 4)
    assert 0.5 < frac < 0.7 and bool(jnp.all(batch["input_ids"][:, 0] == task.tokenizer.cls_id))
  elif task.pretrain:
    assert {"mim_loss", "mlm_loss", "pair_mim_loss", "pair_mlm_accuracy"} <= set(metrics)
    assert batch["image_mask"].shape == (4, 16) and int(batch["image_mask"].sum()) <= 4 * 6
    text_frac = batch["text_weights"].sum() / (batch["text_mask"].sum() - 8)
    pair_frac = batch["pair_weights"].sum() / (batch["pair_text_mask"].sum() - 8)
    assert 0.1 < text_frac < 0.25 and 0.4 < pair_frac < 0.6  # 15% of a text alone, 50% of a pair's
  else:
    assert not calls
    assert {"accuracy_both", "accuracy_left_more", "accuracy_blank_images"} <= set(sums)
    assert batch["image"].shape == (4, 2, 64, 64, 3)
    # Held out by combinations, the colours subset tests no "left_more" statement: no per-template accuracy
    # over zero examples.
    colours = load_config("beit3/nlvr_colours.py", "smoke").unlock()
    colours.data.held_out = "combinations"
    colour_task = loop.check_config(colours)[1]
    sums = jax.eval_shape(colour_task.make_eval_fn(graphdef), params, rest, batch | {"mask": jnp.ones(4, bool)})
    assert set(sums["counts"]) == {"accuracy_both", "accuracy_exactly_one", "accuracy_neither", "accuracy_right_more"}


_prefix_lm_mask = beit3.prefix_lm_mask


def test_caption_logits_and_beam_decoding(tiny):
  """caption_logits: a text position's logits move only with the tokens at or before it. beam_caption with
  beam 1 equals greedy decoding written out (append [MASK], take the head's argmax there, [SEP] ruled out
  before min_len), and beam 3 gives (B, max_len − P) ids."""
  from papers_jax.tasks.beit3 import beam_caption
  model, images, ids, text_mask = tiny
  full = jnp.ones_like(text_mask)
  base = model.caption_logits(images, ids, full)
  moved = model.caption_logits(images, ids.at[:, 3].set((ids[:, 3] + 1) % 50), full)
  change = np.abs(np.asarray(moved - base)).max(axis=(0, 2))
  assert change[:3].max() == 0 and change[3:].min() > 1e-4
  prompt, mask_id, eos, pad, min_len, max_len = [1, 7], 3, 4, 0, 4, 8
  tokens, done = [list(prompt) for _ in range(2)], [False, False]
  for _ in range(max_len - len(prompt)):
    seq, seen = np.zeros((2, 8), np.int32), np.zeros((2, 8), np.int32)
    for b, t in enumerate(tokens):
      seq[b, :len(t) + 1], seen[b, :len(t) + 1] = t + [mask_id], 1
    logits = np.asarray(model.caption_logits(images, jnp.asarray(seq), jnp.asarray(seen)))
    for b, t in enumerate(tokens):
      row = logits[b, len(t)].copy()
      if len(t) < min_len:
        row[eos] = -np.inf
      t.append(pad if done[b] else int(row.argmax()))
      done[b] = done[b] or t[-1] == eos
  kw = dict(max_len=max_len, min_len=min_len, mask_id=mask_id, eos_id=eos, pad_id=pad)
  greedy = jax.jit(lambda x: beam_caption(model, x, prompt, beam_size=1, **kw))(images)
  np.testing.assert_array_equal(np.asarray(greedy), np.asarray([t[len(prompt):] for t in tokens]))
  beams = jax.eval_shape(lambda x: beam_caption(model, x, prompt, beam_size=3, **kw), images)
  assert beams.shape == (2, max_len - len(prompt))


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


@pytest.mark.skipif(not FULL, reason="make test-full (PAPERS_JAX_FULL_PARITY=1): smoke runs and four step compiles")
@pytest.mark.parametrize("name", ["beit3/scenes_pretrain.py", "beit3/nlvr.py", "beit3/scenes_captioning.py"])
def test_smoke_run_and_sharded_equals_single_device(name, tmp_path):
  """The smoke config through the real loop on 8 devices (evaluation, checkpoint), then its per-step
  losses on 8 devices against one device."""
  from conftest import load_config
  from papers_jax.core import loop
  from test_configs import check_smoke_run
  config = load_config(name, "smoke")
  summary = loop.train(config, str(tmp_path / "run"))
  check_smoke_run(config, summary, str(tmp_path / "run"))
  if "captioning" in name:
    assert summary["eval/caption_bleu4"] >= 0 and summary["eval/baseline_nearest_bleu4"] > 0
  else:
    assert summary["eval/count"] == (500 if "pretrain" in name else 1000)
  np.testing.assert_allclose(_run_steps(config, jax.devices()), _run_steps(config, jax.devices()[:1]), rtol=1e-4)


def test_scene_configs_centre_the_images():
  """Every BEiT-3 scenes config normalises the dark scenes to about zero mean and unit std per channel (with
  0.5 / 0.5 the background was a constant -0.86 and the patch projection's response to it drowned the
  objects; docs/beit3.md), while the visual tokenizer keeps the 0.5 / 0.5 it was trained with."""
  from conftest import load_config
  from papers_jax.data import vqa_scenes
  source = vqa_scenes.VQAScenesSource("train")
  pixels = np.stack([source.image(i) for i in range(0, 6000, 60)]).astype(np.float32) / 255
  for name in ("beit3/scenes_pretrain.py", "beit3/nlvr_colours.py", "beit3/scenes_captioning.py"):
    config = load_config(name)
    x = (pixels - np.asarray(config.data.mean)) / np.asarray(config.data.std)
    assert np.abs(x.mean((0, 1, 2))).max() < 0.1 and np.all(np.abs(x.std((0, 1, 2)) - 1) < 0.15), name
    assert tuple(config.beit3.visual_tokenizer_mean) == tuple(load_config("beit3/tokenizer.py").data.mean)


def test_one_hop_statements_split_and_labels():
  """Held out by wording: train and test sentences disjoint, each test sentence's meaning trained in its two
  other wordings, all in whole words of the tokenizer; labels are each statement's truth on the scenes; the
  five-template set and the tokenizer's texts are unchanged by the new templates."""
  from papers_jax.tasks.beit3 import _scene_wordpiece
  train, test = (set(nlvr_scenes.split_statements(s, "colours", "wordings", "one_hop")) for s in ("train", "test"))
  assert len(train) == 24 and len(test) == 12 and not train & test
  assert {nlvr_scenes.TEMPLATES[t] for t, _, _ in train | test} == {"left_has", "right_has", "both"}
  for t, s, w in test:
    assert sum((t, s, v) in train for v in range(3)) == 2
  tokenizer = _scene_wordpiece(320)
  for k in train | test:
    words = nlvr_scenes.statement(*k).rstrip(".").split()
    assert [tokenizer.encode(x) for x in words] == [[tokenizer.token_to_id(x)] for x in words], k
  # The five-template set (and so the tokenizer, built on its training sentences) is what it was.
  assert len(nlvr_scenes.split_statements("train")) + len(nlvr_scenes.split_statements("test")) == 95
  assert len(nlvr_scenes.training_statements()) == 76
  source = nlvr_scenes.NLVRScenesSource("test", "colours", "wordings", "one_hop")
  assert len(source) == 1000 and 0.45 < source.label.mean() < 0.55
  counts = nlvr_scenes.scene_counts("test")
  for name, expect in (("left_has", lambda l, r: l > 0), ("right_has", lambda l, r: r > 0),
                       ("both", lambda l, r: (l > 0) & (r > 0))):
    rows = source.template == nlvr_scenes.TEMPLATES.index(name)
    assert rows.sum() > 200
    left, right = counts[source.left[rows], source.subject[rows]], counts[source.right[rows], source.subject[rows]]
    np.testing.assert_array_equal(expect(left, right), source.label[rows].astype(bool))
  assert source[0]["statement"] == nlvr_scenes.statement(int(source.template[0]), int(source.subject[0]),
                                                          int(source.wording[0]))
  assert nlvr_scenes.statement(5, nlvr_scenes.SUBJECTS.index(("red", "object")), 1) == \
      "the image to the left has a red object."


def test_mixed_templates_train_on_seven_and_test_on_the_five(monkeypatch):
  """configs/beit3/nlvr_mixed.py: training statements from all seven templates, none a test sentence; the test
  pairs are nlvr_colours.py's (the five pair templates), so its baselines hold. The task's sources are stubbed:
  generating the 10,000 training pairs costs ~10 s of CPU."""
  from papers_jax.core import config as config_lib
  from papers_jax.tasks import beit3 as beit3_task
  train = set(nlvr_scenes.split_statements("train", "colours", "wordings", "mixed"))
  test = set(nlvr_scenes.split_statements("test", "colours", "wordings", "pair"))
  assert {nlvr_scenes.TEMPLATES[t] for t, _, _ in train} == set(nlvr_scenes.TEMPLATES) and not train & test
  assert set(nlvr_scenes.split_statements("train", "colours", "wordings", "pair")) < train
  monkeypatch.setattr(beit3_task.nlvr_scenes, "NLVRScenesSource", lambda *args: args)
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  task = beit3_task.BEiT3Task(config_lib.load(os.path.join(root, "configs", "beit3", "nlvr_mixed.py")))
  assert task.source("train") == ("train", "colours", "wordings", "mixed")
  assert task.source("test") == ("test", "colours", "wordings", "pair")
