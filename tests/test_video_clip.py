"""CLIP4Clip and ActionCLIP (models/video_clip.py, objectives/video_text.py, tasks/video_clip.py) and the
moving-shape clips (data/clips.py): the losses against numpy, the temporal transformer against HF X-CLIP's
MIT, the LSTM against torch.nn.LSTM, the calculators' order (in)variance, parameter counts against the
papers' reference modules, the data's properties. The demo trainings run in make test-full (tests/test_configs.py
FULL_ONLY)."""

import importlib.util
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from papers_jax import models
from papers_jax.data import clips
from papers_jax.models import video_clip
from papers_jax.objectives import video_text
from timm_parity import FixedKeyRngs, num_params

if importlib.util.find_spec("torch") is None or importlib.util.find_spec("transformers") is None:
  torch = None
else:
  from papers_jax.convert.torch_compat import import_timm
  import_timm()  # the torchvision shim, before transformers
  import torch

needs_torch = pytest.mark.skipif(torch is None, reason="needs torch and transformers")
full_only = pytest.mark.skipif(not os.environ.get("PAPERS_JAX_FULL_PARITY"), reason="make test-full")


# ----------------------------------------------------------------------------- data


def test_clips_are_deterministic_balanced_and_split():
  train, test = clips.MovingShapesSource("train"), clips.MovingShapesSource("test")
  a, b = train[5], clips.MovingShapesSource("train")[5]
  assert a["frames"].shape == (8, 32, 32, 3) and a["frames"].dtype == np.uint8
  np.testing.assert_array_equal(a["frames"], b["frames"])
  assert a["caption"] == clips.caption(tuple(clips.COLOURS)[a["colour"]], clips.SHAPES[a["shape"]],
                                       clips.MOTIONS[a["label"]])
  assert len(train) == 4800 and len(test) == 480
  assert np.all(np.bincount(train.labels) == 400) and np.all(np.bincount(test.labels) == 40)
  assert not np.array_equal(train[0]["frames"], test[0]["frames"])
  seen = clips.MovingShapesSource("train", classes=[0, 1, 2], shots=3)
  assert len(seen) == 9 and sorted(np.bincount(seen.labels, minlength=12)[:3]) == [3, 3, 3]
  assert seen[0]["label"] in (0, 1, 2)


def test_motions_move_as_named_and_reversed_pairs_share_their_frames():
  rng = lambda: np.random.default_rng(7)  # noqa: E731
  centres, _, _ = clips.motion_path(0, rng(), 8, 32)                  # moving left
  step = (np.diff(centres, axis=0) + 16) % 32 - 16
  assert np.all(step[:, 0] < -1) and np.allclose(step[:, 1], 0)
  _, grow, _ = clips.motion_path(8, rng(), 8, 32)
  _, shrink, _ = clips.motion_path(9, rng(), 8, 32)
  assert np.all(np.diff(grow) > 0) and np.allclose(grow, shrink[::-1])   # the same sizes in reverse order
  _, _, cw = clips.motion_path(10, rng(), 8, 32)
  _, _, acw = clips.motion_path(11, rng(), 8, 32)
  assert np.all(np.diff(cw) > 0) and np.allclose(cw - cw[0], -(acw - acw[0]))
  # A growing clip drawn backwards is a shrinking clip: the renderer depends on the frame's own state only.
  kw = dict(size=32, noise=np.zeros((8, 32, 32, 1)))
  c = np.full((8, 2), 16.0)
  forward = clips.render("triangle", (200, 0, 0), c, grow, np.zeros(8), **kw)
  backward = clips.render("triangle", (200, 0, 0), c, shrink, np.zeros(8), **kw)
  np.testing.assert_array_equal(forward[::-1], backward)


# ----------------------------------------------------------------------------- losses against numpy


def _log_softmax(x):
  x = x - x.max(axis=1, keepdims=True)
  return x - np.log(np.exp(x).sum(axis=1, keepdims=True))


def numpy_info_nce(logits):
  n = len(logits)
  return 0.5 * (-_log_softmax(logits)[np.arange(n), np.arange(n)].mean()
                - _log_softmax(logits.T)[np.arange(n), np.arange(n)].mean())


def numpy_kl(logits, labels, scale=10.0):
  """ActionCLIP's KLLoss: KLDivLoss(log_softmax(pred), softmax(10·gt)) averaged over the N² entries, times N."""
  gt = (labels[:, None] == labels[None, :]).astype(np.float64) * scale
  target = np.exp(_log_softmax(gt))
  n = len(labels)
  one = lambda pred: np.mean(target * (np.log(target) - _log_softmax(pred))) * n  # noqa: E731
  return 0.5 * (one(logits) + one(logits.T))


def test_losses_match_numpy():
  rng = np.random.default_rng(0)
  logits = rng.normal(0, 3, (6, 6)).astype(np.float32)
  labels = np.array([0, 1, 0, 2, 1, 0])
  assert np.isclose(video_text.symmetric_info_nce(jnp.asarray(logits)), numpy_info_nce(logits.astype(np.float64)),
                    rtol=1e-5)
  assert np.isclose(video_text.multi_positive_kl(jnp.asarray(logits), jnp.asarray(labels)),
                    numpy_kl(logits.astype(np.float64), labels), rtol=1e-5)
  # Padded rows and columns drop out: the loss of the first 4 pairs alone.
  valid = jnp.asarray([True] * 4 + [False] * 2)
  assert np.isclose(video_text.symmetric_info_nce(jnp.asarray(logits), valid), numpy_info_nce(logits[:4, :4]),
                    rtol=1e-5)
  assert np.isclose(video_text.multi_positive_kl(jnp.asarray(logits), jnp.asarray(labels), valid=valid),
                    numpy_kl(logits[:4, :4].astype(np.float64), labels[:4]), rtol=1e-5)
  # Every pair of a class is a positive: same-class columns with equal logits leave only the spread loss.
  eye = np.where(labels[:, None] == labels[None, :], 20.0, 0.0).astype(np.float32)
  assert video_text.multi_positive_kl(jnp.asarray(eye), jnp.asarray(labels)) < 1e-3
  assert video_text.symmetric_info_nce(jnp.asarray(eye)) > 0.5  # InfoNCE counts them as negatives


# ----------------------------------------------------------------------------- modules


def _tiny(temporal, **kw):
  return models.create(f"clip4clip_meanp_vit_base_patch32", temporal=temporal, embed_dim=32, img_size=16,
                       patch_size=8, vision_width=32, vision_layers=1, vision_heads=2, text_width=32, text_layers=1,
                       text_heads=2, context_length=8, vocab_size=20, temporal_layers=1, temporal_heads=2,
                       max_frames=8, rngs=nnx.Rngs(0), **kw)


@needs_torch
def test_temporal_transformer_matches_hf_xclip_mit():
  from transformers.models.x_clip.configuration_x_clip import XCLIPVisionConfig
  from transformers.models.x_clip.modeling_x_clip import XCLIPMultiframeIntegrationTransformer
  torch.manual_seed(0)
  # XCLIPModel builds its MIT from the vision config with the mit_* sizes (hidden, intermediate, layers, heads).
  config = XCLIPVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                             num_frames=8)
  mit = XCLIPMultiframeIntegrationTransformer(config).eval()
  g = torch.Generator().manual_seed(1)
  with torch.no_grad():
    for key, p in mit.state_dict().items():  # every tensor random, norms around 1
      norm = "layer_norm" in key and key.endswith("weight")
      p.copy_((1.0 if norm else 0.0) + 0.1 * torch.randn(p.shape, generator=g))
  sd = {k: v.numpy() for k, v in mit.state_dict().items()}
  ours = video_clip.TemporalTransformer(32, 2, 4, max_frames=8, mlp_ratio=2.0, rngs=nnx.Rngs(0))
  ours.pos_embed[...] = sd["position_embedding"][0]
  for i, block in enumerate(ours.blocks):
    layer = lambda name: sd[f"encoder.layers.{i}.{name}"]  # noqa: E731,B023
    block.norm1.scale[...], block.norm1.bias[...] = layer("layer_norm1.weight"), layer("layer_norm1.bias")
    block.norm2.scale[...], block.norm2.bias[...] = layer("layer_norm2.weight"), layer("layer_norm2.bias")
    qkv_w = np.concatenate([layer(f"self_attn.{w}_proj.weight") for w in "qkv"])        # (3D, D)
    block.attn.qkv.kernel[...] = qkv_w.T.reshape(block.attn.qkv.kernel.shape)
    block.attn.qkv.bias[...] = np.concatenate([layer(f"self_attn.{w}_proj.bias") for w in "qkv"]).reshape(
        block.attn.qkv.bias.shape)
    block.attn.proj.kernel[...] = layer("self_attn.out_proj.weight").T.reshape(block.attn.proj.kernel.shape)
    block.attn.proj.bias[...] = layer("self_attn.out_proj.bias")
    for fc in ("fc1", "fc2"):
      getattr(block.mlp, fc).kernel[...] = layer(f"mlp.{fc}.weight").T
      getattr(block.mlp, fc).bias[...] = layer(f"mlp.{fc}.bias")
  x = np.random.default_rng(0).standard_normal((3, 8, 32)).astype(np.float32)
  with torch.no_grad():
    ref = mit(torch.from_numpy(x))
  with jax.default_matmul_precision("highest"):
    y = np.asarray(ours(jnp.asarray(x)))
  np.testing.assert_allclose(y, ref.last_hidden_state.numpy(), atol=1e-4)
  np.testing.assert_allclose(y.mean(axis=1), ref.pooler_output.numpy(), atol=1e-4)


@needs_torch
def test_lstm_matches_torch():
  torch.manual_seed(0)
  ref = torch.nn.LSTM(16, 16, batch_first=True)
  ours = video_clip.LSTM(16, 16, rngs=nnx.Rngs(0))
  sd = {k: v.detach().numpy() for k, v in ref.state_dict().items()}
  ours.ih.kernel[...], ours.ih.bias[...] = sd["weight_ih_l0"].T, sd["bias_ih_l0"]
  ours.hh.kernel[...], ours.hh.bias[...] = sd["weight_hh_l0"].T, sd["bias_hh_l0"]
  x = np.random.default_rng(0).standard_normal((2, 5, 16)).astype(np.float32)
  with torch.no_grad():
    expected = ref(torch.from_numpy(x))[0].numpy()
  with jax.default_matmul_precision("highest"):
    np.testing.assert_allclose(np.asarray(ours(jnp.asarray(x))), expected, atol=1e-5)


@pytest.mark.skipif(not os.environ.get("PAPERS_JAX_FULL_PARITY"), reason="make test-full (CI time)")
def test_calculators_order_single_frame_and_tight():
  frames = jax.random.normal(jax.random.key(0), (2, 6, 32))
  reverse = frames[:, ::-1]
  mean = _tiny("mean")
  # Mean pooling cannot see order; the sequential calculators can.
  np.testing.assert_allclose(mean.pool_frames(frames), mean.pool_frames(reverse), atol=1e-6)
  transf = video_clip.TemporalTransformer(32, 1, 2, max_frames=8, rngs=nnx.Rngs(0))
  lstm = video_clip.LSTM(32, 32, rngs=nnx.Rngs(0))
  for module in (transf, lstm):
    assert np.abs(np.asarray(module(frames)[:, ::-1] - module(reverse))).max() > 1e-3
  # CLIP4Clip normalises each frame before the mean; ActionCLIP does not.
  unit = frames / jnp.linalg.norm(frames, axis=-1, keepdims=True)
  np.testing.assert_allclose(mean.pool_frames(frames), unit.mean(axis=1), atol=1e-6)
  mean.normalize_frames = False
  np.testing.assert_allclose(mean.pool_frames(frames), frames.mean(axis=1), atol=1e-6)
  # The single-frame baseline reads the middle frame only.
  single = _tiny("single_frame")
  videos = jax.random.normal(jax.random.key(1), (2, 5, 16, 16, 3))
  changed = videos.at[:, jnp.array([0, 1, 3, 4])].set(0.0)
  np.testing.assert_allclose(single.encode_video(videos), single.encode_video(changed), atol=1e-6)
  np.testing.assert_allclose(single.encode_video(videos)[0], single.encode_image(videos[:1, 2])[0] /
                             jnp.linalg.norm(single.encode_image(videos[:1, 2])[0]), atol=1e-5)
  # Tight: one joint pass per (text, video) pair, order-sensitive.
  tight = video_clip.TightTransformer(32, 1, 2, max_positions=8, rngs=nnx.Rngs(0))
  params = nnx.state(tight, nnx.Param)  # every weight N(0, 0.5²): non-uniform attention makes order visible
  leaves, treedef = jax.tree.flatten(params)
  keys = jax.random.split(jax.random.key(3), len(leaves))
  nnx.update(tight, jax.tree.unflatten(treedef, [0.5 * jax.random.normal(k, x.shape) for k, x in zip(keys, leaves)]))
  text = jax.random.normal(jax.random.key(2), (3, 32))
  single.tight = tight  # tight_scores on any VideoCLIP holding a TightTransformer
  scores = single.tight_scores(text, frames)
  assert scores.shape == (3, 2)
  np.testing.assert_allclose(scores[1, 0], tight(text[1:2, None], frames[0:1])[0], atol=1e-5)
  assert np.abs(np.asarray(single.tight_scores(text, reverse) - scores)).max() > 1e-3


def test_parameter_counts_match_the_papers_reference_modules():
  """The registered names add to CLIP ViT-B/32 what the official code builds: CLIP4Clip's seqTransf 4
  residual attention blocks of width 512 (8 heads) and a 128-entry frame-position table, its seqLSTM
  nn.LSTM(512, 512); ActionCLIP's fusion 6 such blocks and 8 frame positions."""
  def added(name):  # the registered variant's temporal part, built abstractly at its sizes
    config = models.model_config(name)
    model = nnx.eval_shape(lambda: models.create(name, rngs=FixedKeyRngs(), vision_layers=0, text_layers=0))
    assert config["embed_dim"] == 512 and config["vision_width"] == 768 and config["patch_size"] == 32
    parts = [getattr(model, p) for p in ("temporal_transformer", "lstm", "tight")]
    return sum(num_params(p) for p in parts if p is not None)

  width = 512
  attn, norms, mlp = 4 * width * width + 4 * width, 2 * 2 * width, 2 * width * 4 * width + 4 * width + width
  block = attn + norms + mlp
  if torch is not None:  # CLIP's ResidualAttentionBlock as the references define it
    ref = torch.nn.ModuleDict(dict(attn=torch.nn.MultiheadAttention(width, 8), ln_1=torch.nn.LayerNorm(width),
                                   c_fc=torch.nn.Linear(width, 4 * width), c_proj=torch.nn.Linear(4 * width, width),
                                   ln_2=torch.nn.LayerNorm(width)))
    assert block == sum(p.numel() for p in ref.parameters())
    lstm = torch.nn.LSTM(width, width)
    assert added("clip4clip_seqlstm_vit_base_patch32") == sum(p.numel() for p in lstm.parameters())
  assert added("clip4clip_meanp_vit_base_patch32") == added("actionclip_meanp_vit_base_patch32") == 0
  assert added("clip4clip_seqtransf_vit_base_patch32") == 4 * block + 128 * width == 12_675_072
  assert added("actionclip_transf_vit_base_patch32") == 6 * block + 8 * width == 18_918_400
  # tight: 4 blocks, 128 positions, 2 token types, the pooler (LayerNorm + Linear) and the 1-output head.
  pooler_and_head = 2 * width + width * width + width + width + 1
  assert added("clip4clip_tight_vit_base_patch32") == 4 * block + 130 * width + pooler_and_head


@pytest.mark.parametrize("temporal", [pytest.param("transformer", marks=full_only),
                                      pytest.param("lstm", marks=full_only), "tight"])
def test_forward_flops_match_xla(temporal):
  from papers_jax.models import conv_flops
  overrides = dict(embed_dim=256, img_size=32, patch_size=8, vision_width=256, vision_layers=1, vision_heads=4,
                   context_length=16, vocab_size=64, text_width=256, text_layers=1, text_heads=4, temporal=temporal,
                   temporal_layers=1, temporal_heads=4, max_frames=8)
  model = nnx.eval_shape(lambda: models.create("clip4clip_meanp_vit_base_patch32", rngs=FixedKeyRngs(), **overrides))
  videos = jax.ShapeDtypeStruct((2, 4, 32, 32, 3), jnp.float32)
  tokens = jax.ShapeDtypeStruct((2, 16), jnp.int32)

  def forward(m, v, t):  # one (video, caption) pair per example; tight: each pair's own joint pass
    if temporal == "tight":
      return m.tight(m.encode_text(t)[:, None], m.encode_frames(v))
    return m.encode_video(v), m.encode_text(t)

  graphdef, state = nnx.split(model)
  xla = conv_flops.xla_flops(lambda s, v, t: forward(nnx.merge(graphdef, s), v, t), state, videos, tokens) / 2
  analytic = video_clip.forward_flops(model, num_frames=4)
  assert 1.0 <= xla / analytic < 1.05, xla / analytic


def test_retrieval_and_motion_metrics_on_an_oracle_encoder():
  """tasks/video_clip.py's CLIP4Clip evaluation with encoders that know each clip's caption exactly (recall 1),
  and with one that sees the reversed motion's caption (reversal accuracy 0)."""
  from conftest import load_config
  from papers_jax.tasks.video_clip import VideoCLIPTask
  task = VideoCLIPTask(load_config("video_clip/clip4clip.py", "smoke"))
  source = clips.MovingShapesSource("test")
  ids = source.caption_ids()[:96]
  text_fn = lambda tokens: np.asarray(tokens, np.float32) + 1.0  # noqa: E731  distinct captions, distinct vectors

  def frames_of(caption_ids):  # each clip's "frames": its caption's vector, 3 times
    captions = [clips.caption(tuple(clips.COLOURS)[i % 4], clips.SHAPES[i // 4 % 4], clips.MOTIONS[i // 16],
                              task.vc.caption_templates[0]) for i in caption_ids]
    return np.repeat(text_fn(task.tokenizer(captions))[:, None], 3, axis=1)

  enc = {"text": text_fn, "video": lambda f: np.asarray(f).mean(axis=1)}
  out = task._retrieval(enc, frames_of(ids), ids, batch=32)
  assert out["t2v_r1"] == out["v2t_r1"] == out["motion_top1"] == out["motion_reversal_top1"] == 1.0
  assert out["captions"] == len(np.unique(ids // 16 * 4 + ids // 4 % 4))  # the templates leave the colour out
  assert out["chance_t2v_r1"] < 0.1
  flip = dict(clips.REVERSED_PAIRS + tuple((b, a) for a, b in clips.REVERSED_PAIRS))
  reversed_ids = np.asarray([flip[i // 16] * 16 + i % 16 for i in ids])
  out = task._retrieval(enc, frames_of(reversed_ids), ids, batch=32)
  assert out["motion_reversal_top1"] == 0.0 and out["t2v_r1"] < 0.1
