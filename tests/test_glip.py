"""GLIP (models/glip.py, objectives/glip.py, tasks/glip.py): numpy references for the word-region alignment loss,
ATSS's assignment and the X-MHA fusion layer; the fusion / head parameter counts at GLIP-T's sizes against the
official code's shapes; the prompts' positive maps; the task's loss (traced) and detection scoring. The FLOP
counter against XLA runs with PAPERS_JAX_FULL_PARITY=1."""

import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from papers_jax import models
from papers_jax.errors import ConfigError
from papers_jax.models import glip as glip_model
from papers_jax.objectives import glip as objective
from papers_jax.tasks import glip as glip_task
from tests.timm_parity import FixedKeyRngs


def _np_focal(logit, target, alpha, gamma):
  p = 1 / (1 + np.exp(-logit))
  ce = -(target * np.log(p) + (1 - target) * np.log(1 - p))
  p_t = p * target + (1 - p) * (1 - target)
  a_t = alpha * target + (1 - alpha) * (1 - target)
  return a_t * ce * (1 - p_t) ** gamma


def test_alignment_loss_matches_numpy_loops():
  """The paper's binary focal loss over tokens, with class targets expanded to their phrases' tokens: a numpy
  loop over images, regions and real tokens, normalised by the positive regions."""
  rng = np.random.default_rng(0)
  b, a, g, t = 2, 7, 3, 6
  logits = rng.normal(0, 2, (b, a, t)).astype(np.float32)
  matched = rng.integers(-1, g, (b, a)).astype(np.int32)
  positive_map = rng.random((b, g, t)) < 0.4
  text_mask = np.array([[1, 1, 1, 1, 1, 0], [1, 1, 1, 0, 0, 0]], bool)
  got = objective.alignment_loss(jnp.asarray(logits), objective.token_targets(jnp.asarray(matched),
                                 jnp.asarray(positive_map)), jnp.asarray(text_mask), alpha=0.25, gamma=2.0)
  want, num_pos = 0.0, 0
  for i in range(b):
    for r in range(a):
      num_pos += matched[i, r] >= 0
      for k in range(t):
        if text_mask[i, k]:
          target = float(matched[i, r] >= 0 and positive_map[i, matched[i, r], k])
          want += _np_focal(float(logits[i, r, k]), target, 0.25, 2.0)
  np.testing.assert_allclose(float(got) / max(num_pos, 1), want / max(num_pos, 1), rtol=1e-5)


def _np_atss(anchor_boxes, gt_boxes, valid, topk):
  def iou(a, b):
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = w * h
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)
  centres = (anchor_boxes[:, :2] + anchor_boxes[:, 2:]) / 2
  best = -np.ones(len(anchor_boxes), int)
  best_iou = -np.ones(len(anchor_boxes))
  for j, box in enumerate(gt_boxes):
    if not valid[j]:
      continue
    c = (box[:2] + box[2:]) / 2
    candidates = np.argsort(np.linalg.norm(centres - c, axis=1), kind="stable")[:topk]
    ious = np.array([iou(box, anchor_boxes[q]) for q in candidates])
    threshold = ious.mean() + ious.std(ddof=1)
    for q, v in zip(candidates, ious):
      x, y = centres[q]
      inside = min(x - box[0], y - box[1], box[2] - x, box[3] - y) > 0.01
      if v >= threshold and inside and v > best_iou[q]:
        best[q], best_iou[q] = j, v
  return best


def test_atss_assignment_matches_numpy():
  rng = np.random.default_rng(1)
  anchor_boxes = glip_model.anchors(8, 8, 8.0, 16.0)
  xy = rng.uniform(0, 48, (5, 2))
  gt = np.concatenate([xy, xy + rng.uniform(8, 16, (5, 2))], 1).astype(np.float32)
  valid = np.array([True, True, True, True, False])
  got = objective.atss_assign(jnp.asarray(anchor_boxes), jnp.asarray(gt), jnp.asarray(valid), topk=9)
  want = _np_atss(anchor_boxes, gt, valid, 9)
  np.testing.assert_array_equal(np.asarray(got), want)
  assert (want >= 0).sum() >= 4  # every real box has positives; the padded one none
  assert 4 not in want


def _np_layer_norm(x, scale, bias, eps=1e-5):
  mean = x.mean(-1, keepdims=True)
  var = ((x - mean) ** 2).mean(-1, keepdims=True)
  return (x - mean) / np.sqrt(var + eps) * scale + bias


def _np_softmax(x, axis):
  e = np.exp(x - x.max(axis, keepdims=True))
  return e / e.sum(axis, keepdims=True)


def test_fusion_layer_matches_numpy_equations():
  """X-MHA (the paper's eqs.: one Attn = O W^q,I (P W^q,L)ᵀ / √d shared by image-to-text attention over
  the real tokens and text-to-image attention Attnᵀ over the regions), pre-LN and layer scale, written per
  head in numpy, with every parameter perturbed."""
  block = glip_model.FusionBlock(6, 5, 8, 2, init_value=0.5, dropout_rate=0.1, rngs=nnx.Rngs(0))
  rng = np.random.default_rng(2)
  state = nnx.state(block, nnx.Param)
  leaves, treedef = jax.tree.flatten(state)
  leaves = [jnp.asarray(np.asarray(x) + rng.normal(0, 0.3, x.shape), jnp.float32) for x in leaves]
  nnx.update(block, jax.tree.unflatten(treedef, leaves))
  v = rng.normal(size=(2, 4, 6)).astype(np.float32)
  l = rng.normal(size=(2, 3, 5)).astype(np.float32)
  mask = np.array([[1, 1, 1], [1, 1, 0]], bool)
  got_v, got_l = block(jnp.asarray(v), jnp.asarray(l), jnp.asarray(mask), deterministic=True)

  p = {k: np.asarray(x) for k, x in nnx.to_flat_state(nnx.state(block, nnx.Param))}
  def dense(x, name):
    return x @ p[("attn", name, "kernel")] + p[("attn", name, "bias")]
  vn = _np_layer_norm(v, p[("layer_norm_v", "scale")], p[("layer_norm_v", "bias")])
  ln = _np_layer_norm(l, p[("layer_norm_l", "scale")], p[("layer_norm_l", "bias")])
  want_v, want_l = np.zeros_like(v), np.zeros_like(l)
  for i in range(2):
    q, k = dense(vn[i], "v_proj"), dense(ln[i], "l_proj")
    val_v, val_l = dense(vn[i], "values_v_proj"), dense(ln[i], "values_l_proj")
    heads_v, heads_l = [], []
    for h in range(2):
      s = slice(4 * h, 4 * h + 4)
      attn = q[:, s] @ k[:, s].T / 2.0  # √d, d = 4
      heads_v.append(_np_softmax(np.where(mask[i][None], attn, -np.inf), 1) @ val_l[:, s])
      heads_l.append(_np_softmax(attn.T, 1) @ val_v[:, s])
    o_t2i = np.concatenate(heads_v, 1) @ p[("attn", "out_v_proj", "kernel")] + p[("attn", "out_v_proj", "bias")]
    p_i2t = np.concatenate(heads_l, 1) @ p[("attn", "out_l_proj", "kernel")] + p[("attn", "out_l_proj", "bias")]
    want_v[i] = v[i] + p[("gamma_v",)] * o_t2i
    want_l[i] = l[i] + p[("gamma_l",)] * p_i2t
  np.testing.assert_allclose(np.asarray(got_v), want_v, atol=1e-5)
  np.testing.assert_allclose(np.asarray(got_l), want_l, atol=1e-5)


def _count(tree) -> int:
  return sum(int(np.prod(x.shape)) for x in jax.tree.leaves(tree))


def test_glip_t_fusion_and_head_parameters_match_official_shapes():
  """`glip_t_head` (abstract): GLIP-T's 6 fusion layers (the official VLFuse's BiAttentionBlockForCheckpoint:
  v_dim 256, l_dim 768, embed_dim 2048, 8 heads), its 6 BERT-base layers and the dot-product token head,
  counted from the shapes of microsoft/GLIP's fuse_helper.py / vldyhead.py."""
  model = nnx.eval_shape(lambda: models.create("glip_t_head", rngs=FixedKeyRngs()))
  v, l, e = 256, 768, 2048
  linear = lambda i, o: i * o + o  # noqa: E731
  fusion = (linear(v, e) * 2 + linear(l, e) * 2 + linear(e, v) + linear(e, l)  # the six projections
            + 2 * v + 2 * l + v + l)  # the two LayerNorms, gamma_v and gamma_l
  assert _count(nnx.state(model.fuse, nnx.Param)) == 6 * fusion == 6 * 6_303_744
  bert_layer = 4 * linear(l, l) + 2 * l + linear(l, 3072) + linear(3072, l) + 2 * l  # BertEncoderLayer
  assert _count(nnx.state(model.text_layers, nnx.Param)) == 6 * bert_layer == 6 * 7_087_872
  # dot_product_projection_text Linear(768, 256), bias_lang (768), bias0, log_scale; bbox_pred and centerness
  # Conv2d(256, ·, 1); one Scale (the official head has one per FPN level: 5).
  head = linear(l, v) + l + 1 + 1 + linear(v, 4) + linear(v, 1) + 1
  got = sum(_count(nnx.state(getattr(model, name), nnx.Param)) for name in (
      "dot_product_projection_text", "bbox_pred", "centerness")) + sum(
      int(np.prod(getattr(model, name).shape)) for name in ("bias_lang", "bias0", "log_scale", "scale"))
  assert got == head == 198_920
  # The text encoder is BERT-base without its pooler and with one token type: 108,890,880.
  assert _count(nnx.state(model.text, nnx.Param)) == 108_891_648 - 768


def test_prompts_ground_each_box_to_its_phrase():
  source = glip_task.GroundingSource("train")
  fn = glip_task.glip_preprocess(64, 4, 32, prompt="grounding", num_phrases=8)
  for i in range(3):
    example = source[i]
    out = fn(dict(example), np.random.default_rng(i))
    words = [glip_task.WORDS[t] for t in out["input_ids"][out["text_mask"]]]
    assert words[0] == "[CLS]" and words[-1] == "[SEP]" and words.count(".") == 8
    for j, (colour, kind) in enumerate(zip(example["colours"], example["labels"])):
      positive = [glip_task.WORDS[t] for t in out["input_ids"][out["positive_map"][j]]]
      assert positive == [glip_task.COLOURS[colour], glip_task.KINDS[kind]]
    assert not out["positive_map"][len(example["labels"]):].any()
    np.testing.assert_allclose(out["boxes"][:len(example["labels"])], example["boxes"], atol=1e-4)
  det = glip_task.glip_preprocess(64, 4, 32, prompt="detection", num_phrases=8)(dict(source[0]), None)
  for j, kind in enumerate(source[0]["labels"]):
    assert [glip_task.WORDS[t] for t in det["input_ids"][det["positive_map"][j]]] == [glip_task.KINDS[kind]]


def test_task_loss_traces_and_detection_reads_class_tokens():
  """The smoke config's task: its loss traced (eval_shape) on a preprocessed training batch; `detect` on
  hand-made outputs: a class's score is the mean of its tokens' sigmoid scores with the centerness, and the
  duplicate box of the same class is suppressed."""
  from conftest import load_config
  from papers_jax.core import loop
  config = load_config("glip/scenes.py", "smoke")
  _, task = loop.check_config(config)
  source = task.source("train")
  fn = task.preprocess(True)
  examples = [fn(dict(source[i]), np.random.default_rng(i)) for i in range(2)]
  batch = {k: jnp.asarray(np.stack([e[k] for e in examples])) for k in examples[0]}
  model = nnx.eval_shape(lambda: task.build_model(FixedKeyRngs()))
  graphdef, params, rest = nnx.split(model, nnx.Param, ...)
  loss, (metrics, _) = jax.eval_shape(task.make_loss_fn(graphdef), nnx.to_pure_dict(params), nnx.to_pure_dict(rest),
                                      batch, jax.random.key(0))
  assert loss.shape == () and metrics["loss_align"].shape == ()
  short = config.copy_and_resolve_references()
  short.model.max_text_len = 64  # the 52-phrase evaluation prompt takes 158 tokens
  with pytest.raises(ConfigError, match="max_text_len"):
    loop.check_config(short)

  ids, mask, spans = glip_task.encode_prompt(glip_task.PAIR_PHRASES[:3], 12)  # red circle / square / triangle
  matrix = jnp.asarray(glip_task.class_token_matrix(spans, 12))
  logits = np.full((1, 3, 12), -8.0, np.float32)
  logits[0, 0, spans[1]] = 4.0   # anchors 0 and 1: "red square", the same box
  logits[0, 1, spans[1]] = 3.0
  logits[0, 2, spans[2][0]] = 4.0  # anchor 2: only "red" of "red triangle"
  boxes = np.array([[[0, 0, 10, 10], [0, 0, 10, 10], [20, 20, 30, 30]]], np.float32)
  out = {"logits": jnp.asarray(logits), "boxes": jnp.asarray(boxes), "centerness": jnp.zeros((1, 3))}
  got = glip_task.detect(out, matrix, score_threshold=0.05, nms_iou=0.6, pre_nms_top_n=9, max_detections=4)
  keep = np.asarray(got["keep"][0])
  sig = lambda x: 1 / (1 + np.exp(-x))  # noqa: E731
  want_square = np.sqrt(sig(4.0) * 0.5)
  want_triangle = np.sqrt((sig(4.0) + sig(-8.0)) / 2 * 0.5)
  np.testing.assert_allclose(np.asarray(got["scores"][0])[keep][:2], [want_square, want_triangle], rtol=1e-5)
  np.testing.assert_array_equal(np.asarray(got["labels"][0])[keep][:2], [1, 2])
  np.testing.assert_allclose(np.asarray(got["boxes"][0])[keep][0], boxes[0, 0])
  assert 1 not in np.asarray(got["labels"][0])[keep][2:]  # anchor 1's "red square" suppressed by anchor 0's


@pytest.mark.skipif(not os.environ.get("PAPERS_JAX_FULL_PARITY"), reason="CI time: PAPERS_JAX_FULL_PARITY=1")
def test_flop_counter_matches_xla():
  """`forward_flops` (the jaxpr count, element-wise work included) against XLA's cost analysis of the lowered
  forward pass (nothing compiled), on the scenes demo's model, within 5%."""
  from papers_jax.models import conv_flops
  model = nnx.eval_shape(lambda: models.create("glip_tiny_scenes", vocab_size=21, max_text_len=32,
                                               rngs=FixedKeyRngs()))
  graphdef, state = nnx.split(model)
  x = jax.ShapeDtypeStruct((2, 64, 64, 3), jnp.float32)
  ids = jax.ShapeDtypeStruct((2, 20), jnp.int32)
  xla = conv_flops.xla_flops(lambda s, x, i: nnx.merge(graphdef, s)(x, i, i), state, x, ids) / 2
  analytic = models.forward_flops(model, img_size=64, seq_len=20)
  assert 0.95 < xla / analytic < 1.05, xla / analytic
