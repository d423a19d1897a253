"""Named intermediates (models/intermediates.py): one `forward_intermediates` contract on ViT (and
its hybrid), Swin, ResNet, Mixer and CLIP's towers. The final entries equal the model's own
forward; blocks and stages are picked by `indices` and `stop_early` ends the forward there; ViT's
attention weights come from nn/attention.py's op (they reproduce the block's attention output);
the feature-extraction evaluators read them."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from conftest import load_config
from papers_jax import models
from papers_jax.core import loop
from papers_jax.evaluators import features
from papers_jax.models import clip as clip_lib
from papers_jax.models import registry
from papers_jax.models import intermediates, mixer, resnet, swin, vit

ATOL = 1e-5


def _images(size, batch=2, seed=0):
  return jnp.asarray(np.random.RandomState(seed).randn(batch, size, size, 3).astype(np.float32))


def _perturbed(model):
  """Random values in every param (zero-initialised heads and class tokens would hide mistakes)."""
  state = nnx.state(model, nnx.Param)
  rng = np.random.RandomState(1)
  nnx.update(model, jax.tree.map(lambda x: x + 0.05 * rng.randn(*x.shape).astype(np.float32), state))
  model.eval()
  return model


def _run(fn, model, *args):
  """fn(model, *args) compiled once (XLA CPU at -O0: these tiny forwards are compile-bound)."""
  graphdef, state = nnx.split(model)
  jitted = jax.jit(lambda state, *a: fn(nnx.merge(graphdef, state), *a),
                   compiler_options={"xla_backend_optimization_level": 0})
  return jax.device_get(jitted(state, *args))


def _close(a, b):
  np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=ATOL, rtol=1e-5)


BUILDERS = {
    "vit": lambda: vit.VisionTransformer(img_size=16, patch_size=4, embed_dim=32, depth=3, num_heads=2,
                                         num_classes=5, representation_size=24, rngs=nnx.Rngs(0)),
    "vit_avg": lambda: vit.VisionTransformer(img_size=16, patch_size=4, embed_dim=32, depth=2, num_heads=2,
                                             num_classes=5, global_pool="avg", class_token=False, rngs=nnx.Rngs(0)),
    "swin": lambda: swin.SwinTransformer(img_size=32, patch_size=2, embed_dim=16, depths=(2, 2), num_heads=(2, 4),
                                         window_size=4, num_classes=5, rngs=nnx.Rngs(0)),
    "resnet": lambda: resnet.ResNet(block="basic", layers=(1, 1, 1, 1), width=8, num_classes=5, rngs=nnx.Rngs(0)),
    "mixer": lambda: mixer.MlpMixer(img_size=16, patch_size=4, embed_dim=16, num_blocks=2, num_classes=5,
                                    rngs=nnx.Rngs(0)),
    "clip_resnet": lambda: clip_lib.ModifiedResNet(layers=(1, 1, 1, 1), width=8, out_dim=12, num_heads=2,
                                                   img_size=32, rngs=nnx.Rngs(0)),
}
SIZES = {"vit": 16, "vit_avg": 16, "swin": 32, "resnet": 32, "mixer": 16, "clip_resnet": 32}
STAGES = {"vit": 3, "vit_avg": 2, "swin": 2, "resnet": 4, "mixer": 2, "clip_resnet": 4}


@pytest.mark.parametrize("kind", sorted(BUILDERS))
def test_final_features_equal_the_forward(kind):
  model = _perturbed(BUILDERS[kind]())
  x = _images(SIZES[kind])

  def everything(model, x):
    out = model.forward_intermediates(x, train=False)
    if kind == "clip_resnet":
      return out, {"pre_logits": model(x, train=False)}
    encoded = model.forward_features(x, **({"train": False} if kind == "resnet" else {}))
    return out, {"logits": model(x, train=False), "encoded": encoded,
                 "pre_logits": model.forward_head(encoded, pre_logits=True)}

  out, want = _run(everything, model, x)
  for name in want:  # CLIP's ResNet tower: its output is the attention-pooled feature
    _close(out[name], want[name])
  # Every block or stage is reported, and nothing else is computed when the forward stops early.
  n = STAGES[kind]
  per_block = sorted(k for k in out if k.startswith(("block", "stage")))
  assert len(per_block) == {"vit": 2, "vit_avg": 2, "mixer": 2}.get(kind, 1) * n
  early = _run(lambda m, x: m.forward_intermediates(x, indices=[0], stop_early=True, train=False), model, x)
  assert "encoded" not in early and "pre_logits" not in early and "stem" in early
  first = [k for k in per_block if k.startswith(("block00", "stage0"))]
  assert sorted(k for k in early if k != "stem") == first
  for k in first:
    _close(early[k], out[k])
  last = jax.eval_shape(lambda x: model.forward_intermediates(x, indices=1, train=False), x)
  assert sorted(k for k in last if k.startswith(("block", "stage"))) == [k for k in per_block if str(n - 1) in k[:7]]


def test_select():
  assert intermediates.select(None, 4) == [0, 1, 2, 3]
  assert intermediates.select(2, 4) == [2, 3]
  assert intermediates.select([-1, 0, 0], 4) == [0, 3]
  with pytest.raises(ValueError):
    intermediates.select([4], 4)
  with pytest.raises(ValueError):
    intermediates.select(5, 4)


def test_vit_names_and_attention_weights_from_the_attention_op():
  model = _perturbed(BUILDERS["vit"]())
  x = _images(16)
  out = _run(lambda m, x: m.forward_intermediates(x, return_attention=True, train=False), model, x)
  assert set(out) == {"stem", "encoded", "pre_logits", "logits"} | {
      f"block{i:02d}/{k}" for i in range(3) for k in ("+sa", "+mlp", "attn")}
  assert out["stem"].shape == (2, 16, 32) and out["block02/attn"].shape == (2, 2, 17, 17)
  _close(out["block01/attn"].sum(-1), np.ones((2, 2, 17)))
  # The weights are the block's: weights · V through the output projection is its attention branch.
  def attention_branch(model, h, weights):
    block = model.blocks[1]
    v = block.attn.qkv(block.norm1(h))[:, :, 2]
    return h + block.attn.proj(jnp.einsum("bnts,bsnh->btnh", weights, v))

  with jax.default_matmul_precision("highest"):
    _close(_run(attention_branch, model, out["block00/+mlp"], out["block01/attn"]), out["block01/+sa"])
  assert "block00/attn" not in jax.eval_shape(lambda x: model.forward_intermediates(x, train=False), x)
  # The hybrid ViT shares the contract; its stem is the projected ResNet map (shapes only here).
  hybrid = nnx.eval_shape(lambda: models.create("vit_small_r26_s32_224", img_size=64, depth=1, embed_dim=32,
                                                num_heads=2, num_classes=3))
  hout = nnx.eval_shape(lambda m, y: m.forward_intermediates(y, train=False), hybrid, _images(64, batch=1))
  assert hout["stem"].shape == (1, 4, 32) and hout["logits"].shape == (1, 3)


def test_clip_text_tower():
  text = _perturbed(clip_lib.TextTransformer(vocab_size=50, context_length=8, width=16, layers=2, num_heads=2,
                                             rngs=nnx.Rngs(0)))
  tokens = jnp.asarray(np.random.RandomState(0).randint(1, 49, (2, 8)))
  out, want = _run(lambda m, t: (m.forward_intermediates(t, return_attention=True, train=False),
                                 m(t, deterministic=True)), text, tokens)
  _close(out["pre_logits"], want)
  # Causal: no query attends to a later token.
  attn = np.asarray(out["block01/attn"])
  assert np.all(np.triu(attn[0, 0], 1) == 0)
  early = jax.eval_shape(lambda t: text.forward_intermediates(t, indices=[0], stop_early=True), tokens)
  assert sorted(early) == ["block00/+mlp", "block00/+sa", "stem"]


def test_feature_evaluator_reads_named_intermediates():
  model = _perturbed(BUILDERS["resnet"]())
  x = _images(32)
  out, named, stage2 = _run(lambda m, x: (m.forward_intermediates(x, train=False), features.named(m, x),
                                          features.named(m, x, "stage2")), model, x)
  _close(named, out["pre_logits"])
  _close(stage2, out["stage2"].mean(axis=(1, 2)))
  with pytest.raises(KeyError, match="stage0"):
    features.named(model, x, "nope")


def test_ssl_feature_extraction_goes_through_forward_intermediates(monkeypatch):
  config = load_config("ssl/moco_v2.py", "smoke")
  trainer = loop.Trainer(config, "/nonexistent-workdir-unused", devices=jax.devices()[:2])
  backbone_class = registry.model_class(config.model.name)
  calls = []
  original = backbone_class.forward_intermediates

  def spy(self, *args, **kwargs):
    calls.append(kwargs)
    return original(self, *args, **kwargs)

  monkeypatch.setattr(backbone_class, "forward_intermediates", spy)
  size = config.data.image_size
  images = np.random.RandomState(0).randint(0, 256, (4, size, size, 3)).astype(np.uint8)
  got = np.asarray(trainer.task.feature_fn(trainer)(images))
  assert calls and calls[0]["train"] is False
  assert got.shape[0] == 4 and np.isfinite(got).all()


def test_mae_encoder_intermediates_feed_the_mae_knn_features(monkeypatch):
  from papers_jax.models import mae
  model = _perturbed(mae.MaskedAutoencoderViT(img_size=16, patch_size=4, in_chans=1, embed_dim=32, depth=2,
                                              num_heads=2, decoder_embed_dim=16, decoder_depth=1,
                                              decoder_num_heads=2, rngs=nnx.Rngs(0)))
  x = _images(16)[..., :1]

  def both(model, x):
    return (model.forward_intermediates(x, train=False), model.forward_features(x, deterministic=True),
            model.forward_intermediates(x, pool="avg", train=False)["pre_logits"])

  out, encoded, avg = _run(both, model, x)
  _close(out["encoded"], encoded)
  _close(out["pre_logits"], encoded[:, 0])
  _close(avg, encoded[:, 1:].mean(axis=1))
  assert sorted(k for k in out if k.startswith("block")) == ["block00/+mlp", "block00/+sa", "block01/+mlp",
                                                             "block01/+sa"]
  # The MAE task's k-NN features go through the encoder's named intermediates.
  calls = []
  original = mae.MaskedAutoencoderViT.forward_intermediates

  def spy(self, *args, **kwargs):
    calls.append(kwargs)
    return original(self, *args, **kwargs)

  monkeypatch.setattr(mae.MaskedAutoencoderViT, "forward_intermediates", spy)
  config = load_config("mae/digits.py", "stage=pretrain,smoke")
  trainer = loop.Trainer(config, "/nonexistent-workdir-unused", devices=jax.devices()[:2])
  size = config.data.image_size
  images = np.random.RandomState(0).randint(0, 256, (4, size, size, 1)).astype(np.uint8)
  got = np.asarray(trainer.task._fn(trainer, "encode")(trainer.state.params, trainer.state.model_state, images))
  assert calls and calls[0]["train"] is False and calls[0]["pool"] == config.mae.feature_pool
  assert got.shape == (4, trainer.state.params["cls_token"].shape[-1]) and np.isfinite(got).all()
