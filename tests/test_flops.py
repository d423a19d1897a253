"""Every family's analytic FLOP counter (models.forward_flops) agrees with XLA's cost analysis within 5%,
and the parameter accounting (models.param_counts) leaves out exactly the embeddings.

XLA's count comes from the lowered, uncompiled program of a shape-only model (no parameters are
drawn and nothing compiles, so each case takes well under a second). XLA counts elementwise work
too (norms, softmax, GELU), so it is at least the matmul count; the configs are wide and shallow, so
that matmuls dominate, and small. Convolutions are counted without the taps on the zero padding
here, as XLA does (`count_padding=False`; the default counts them, as the papers do).
"""

import math

import jax
import jax.numpy as jnp
import pytest
from flax import nnx

from conftest import load_config
from papers_jax import models, tasks
from papers_jax.core.state import split_model
from papers_jax.models import conv_flops, fnet, resnet

B = 2  # examples in the lowered batch


def images(size, batch=B):
  return jax.ShapeDtypeStruct((batch, size, size, 3), jnp.float32)


def ids(length):
  return jax.ShapeDtypeStruct((B, length), jnp.int32)


def call(m, x):
  return m(x)


# family: (model name, overrides, forward of (model, *inputs), inputs, the counter's keyword arguments)
CASES = {
    "vit": ("vit_base_patch16_224", dict(img_size=32, patch_size=8, embed_dim=384, depth=2, num_heads=6,
                                         num_classes=10), call, (images(32),), {}),
    # The kernels' weight standardisation runs once per batch (and is not counted): a batch of 16 amortises it.
    "vit_hybrid": ("vit_small_r26_s32_224", dict(img_size=64, depth=2, num_classes=10), call, (images(64, 16),),
                   dict(count_padding=False)),
    "swin": ("swin_tiny_patch4_window7_224", dict(img_size=32, patch_size=4, embed_dim=192, depths=(2, 2),
                                                  num_heads=(6, 12), window_size=4, num_classes=10,
                                                  drop_path_rate=0.0), call, (images(32),), {}),
    "mixer": ("mixer_b16_224", dict(img_size=32, patch_size=4, embed_dim=384, num_blocks=2, num_classes=10), call,
              (images(32),), {}),
    "mae": ("mae_vit_base_patch16", dict(img_size=64, patch_size=8, embed_dim=384, depth=2, num_heads=6,
                                         decoder_embed_dim=256, decoder_depth=1, decoder_num_heads=4),
            lambda m, x: m(x, rng=jax.random.key(0))[0], (images(64),), {}),
    "mae_encoder_mask_token": ("mae_vit_base_patch16", dict(
        img_size=64, patch_size=8, embed_dim=384, depth=2, num_heads=6, decoder_embed_dim=256, decoder_depth=1,
        decoder_num_heads=4, encoder_mask_token=True), lambda m, x: m(x, rng=jax.random.key(0))[0], (images(64),), {}),
    "clip": ("clip_vit_base_patch32", dict(embed_dim=256, img_size=32, patch_size=8, vision_width=384, vision_layers=1,
                                           vision_heads=6, context_length=16, vocab_size=64, text_width=384,
                                           text_layers=1, text_heads=6),
             lambda m, x, t: (m.encode_image(x), m.encode_text(t)), (images(32), ids(16)), {}),
    "clip_resnet": ("clip_rn50", dict(embed_dim=256, vision_layers=(1, 1, 1, 1), vision_width=32, img_size=64,
                                      context_length=16, vocab_size=64, text_width=256, text_layers=1, text_heads=4),
                    lambda m, x, t: (m.encode_image(x), m.encode_text(t)), (images(64), ids(16)),
                    dict(count_padding=False)),
    "resnet_cifar": ("resnet20_cifar", dict(layers=(1, 1, 1), img_size=32), call, (images(32),),
                     dict(count_padding=False)),
    "resnet": ("resnet50", dict(width=16, layers=(1, 1, 1, 1), shortcut="C", num_classes=10, img_size=64), call,
               (images(64),), dict(count_padding=False)),
    "danet": ("danet_resnet50", dict(width=16, layers=(1, 1, 1, 1), num_classes=5, img_size=64), call, (images(64),),
              dict(count_padding=False)),
    "pkinet": ("pkinet_t", dict(depths=(1, 1, 2, 1), num_classes=10, img_size=64), call, (images(64),),
               dict(count_padding=False)),
    "gpt": ("gpt2", dict(vocab_size=512, context_length=64, embed_dim=384, depth=2, num_heads=6), call, (ids(32),),
            dict(seq_len=32)),
    "bert": ("bert-base-uncased", dict(vocab_size=512, hidden_size=384, num_layers=2, num_heads=6,
                                       intermediate_size=1536, max_position_embeddings=64),
             lambda m, t, p: m(t, masked_positions=p), (ids(32), ids(5)), dict(seq_len=32, predictions=5)),
    "fnet": ("fnet-base", dict(vocab_size=512, hidden_size=384, num_layers=2, intermediate_size=1536,
                               max_position_embeddings=64),
             lambda m, t, p: m(t, masked_positions=p), (ids(32), ids(5)), dict(seq_len=32, predictions=5)),
    "transformer": ("transformer_base", dict(vocab_size=512, num_layers=1, d_model=384, d_ff=1536, num_heads=6),
                    lambda m, s, t: m(s, t), (ids(24), ids(16)), dict(source_len=24, target_len=16)),
}


def abstract(name, **overrides):
  return nnx.eval_shape(lambda: models.create(name, rngs=nnx.Rngs(0), **overrides))


def xla_flops(fn, *args) -> float:
  """XLA's FLOP count of fn(*args), lowered without compiling, each loop's body once per step (conv_flops.xla_flops)."""
  return conv_flops.xla_flops(fn, *args)


def xla_forward_flops(model, forward, inputs) -> float:
  graphdef, state = nnx.split(model)
  return xla_flops(lambda s, *x: forward(nnx.merge(graphdef, s), *x), state, *inputs) / inputs[0].shape[0]


def xla_fft_flops(t: int, d: int) -> float:
  """XLA's count of one example's Fourier mixing (T × D), which has its own FFT rule (fnet.forward_flops)."""
  return xla_flops(fnet.fourier_mix, jax.ShapeDtypeStruct((B, t, d), jnp.float32)) / B


@pytest.mark.parametrize("case", sorted(CASES))
def test_forward_flops_match_xla(case):
  name, overrides, forward, inputs, lengths = CASES[case]
  model = abstract(name, **overrides)
  analytic = models.forward_flops(model, **lengths)
  xla = xla_forward_flops(model, forward, inputs)
  if case == "fnet":  # XLA's FFT rule in place of the documented 5·N·log2 N, the rest as counted
    t, d, layers = lengths["seq_len"], overrides["hidden_size"], overrides["num_layers"]
    assert xla_fft_flops(t, d) == pytest.approx(8 * t * d * math.log2(t) * math.floor(math.log2(d)), rel=0.01)
    xla += layers * (5 * t * d * math.log2(t * d) - xla_fft_flops(t, d))
  assert 1.0 <= xla / analytic < 1.05, (case, xla / analytic)


@pytest.mark.parametrize("method", ["simclr", "dino", "cmc"])
def test_ssl_step_counter_matches_xla(method):
  """An SSL method's FLOPs (tasks/ssl/task.py) are its traced loss's, views and element-wise work included:
  in-batch similarities (SimCLR), multi-crop with a teacher (DINO), two encoders and their memory banks
  (CMC)."""
  config = load_config(f"ssl/{method}.py", "smoke")
  task = tasks.get_task(config)
  model = nnx.eval_shape(lambda: task.build_model(nnx.Rngs(0)))
  graphdef, params, model_state = split_model(model)
  b, size = config.batch_size, config.data.image_size
  batch = {"image": jax.ShapeDtypeStruct((b, size, size, len(task.mean)), jnp.uint8),
           "label": jax.ShapeDtypeStruct((b,), jnp.int32), "index": jax.ShapeDtypeStruct((b,), jnp.int32)}
  xla = xla_flops(task.make_loss_fn(graphdef), params, model_state, batch, jax.random.key(0)) / b
  assert 1.0 <= xla / task.forward_flops(model, count_padding=False) < 1.05
  assert models.forward_flops(model) is None  # the wrapper has no model counter: the task counts


def test_sequence_counters_default_to_the_models_lengths():
  gpt = abstract("gpt2", vocab_size=512, context_length=64, embed_dim=64, depth=1, num_heads=2)
  assert models.forward_flops(gpt) == models.forward_flops(gpt, seq_len=64) > models.forward_flops(gpt, seq_len=32)
  kw = dict(vocab_size=512, hidden_size=64, num_layers=1, max_position_embeddings=64, intermediate_size=128)
  for name, heads in (("bert-base-uncased", dict(num_heads=2)), ("fnet-base", {})):  # default: MLM at every position
    model = abstract(name, **kw, **heads)
    assert models.forward_flops(model) == models.forward_flops(model, seq_len=64, predictions=64)
  # The fine-tuning heads count too: a sequence classifier reads the pooled output only.
  kw["num_heads"] = 2
  classifier = nnx.eval_shape(lambda: models.bert.BertForSequenceClassification(num_labels=3, rngs=nnx.Rngs(0), **kw))
  body = models.forward_flops(classifier, seq_len=32) - 2 * 64 * 3
  pretraining = abstract("bert-base-uncased", **kw)
  heads = 2 * 5 * 64 * 64 + 2 * 5 * 64 * 512 + 2 * 64 * 2  # MLM transform and decoder at 5 positions, NSP
  assert body == models.forward_flops(pretraining, seq_len=32, predictions=5) - heads


def test_fnet_counts_a_layer_as_its_fft_and_its_ffn():
  t, d, h = 32, 64, 128
  one, two = (abstract("fnet-base", vocab_size=512, hidden_size=d, num_layers=n, intermediate_size=h,
                       max_position_embeddings=64) for n in (1, 2))
  layer = models.forward_flops(two, seq_len=t) - models.forward_flops(one, seq_len=t)
  assert layer == pytest.approx(5 * t * d * math.log2(t * d) + 2 * 2 * t * d * h)  # the 2-D FFT: 5·N·log2 N


def test_mae_counts_the_encoder_on_the_kept_tokens_only():
  overrides = CASES["mae"][1]
  full = models.forward_flops(abstract("mae_vit_base_patch16", **overrides, encoder_mask_token=True))
  masked = models.forward_flops(abstract("mae_vit_base_patch16", **overrides))
  assert 2.0 < full / masked < 4.0


def test_convolution_counts_with_and_without_padding():
  model = abstract("resnet20_cifar")
  assert resnet.forward_flops(model) > resnet.forward_flops(model, count_padding=False)
  hybrid = abstract("vit_small_r26_s32_224", img_size=64, depth=1)
  assert models.forward_flops(hybrid) > models.forward_flops(hybrid, count_padding=False)
  assert models.forward_flops(hybrid) > models.forward_flops(abstract("vit_small_patch16_224", img_size=64, depth=1))


def test_non_embedding_params_leave_out_the_embedding_tables():
  gpt = abstract("gpt2", vocab_size=512, context_length=64, embed_dim=64, depth=2, num_heads=2)
  counts = models.param_counts(gpt)
  assert counts["params"] - counts["non_embedding_params"] == 512 * 64 + 64 * 64  # token and position tables
  # Kaplan et al.'s N ≈ 12·layers·d² (attention 4d², MLP 8d²), plus biases and LayerNorms.
  assert 12 * 2 * 64 ** 2 < counts["non_embedding_params"] < 1.05 * 12 * 2 * 64 ** 2
  vit = abstract("vit_base_patch16_224", img_size=32, patch_size=8, embed_dim=64, depth=1, num_heads=2)
  counts = models.param_counts(vit)
  assert counts["params"] - counts["non_embedding_params"] == (8 * 8 * 3 * 64 + 64) + 17 * 64 + 64  # patch, pos, cls
  assert models.param_counts(abstract("resnet20_cifar"))["non_embedding_params"] == models.param_counts(
      abstract("resnet20_cifar"))["params"]  # a convnet has no embedding
  bert = abstract("bert-base-uncased", vocab_size=512, hidden_size=64, num_layers=1, num_heads=2,
                  max_position_embeddings=64, intermediate_size=128)
  counts = models.param_counts(bert)
  assert counts["params"] - counts["non_embedding_params"] == (512 + 64 + 2) * 64 + 512  # + the MLM output bias
  assert models.param_counts(nnx.Linear(2, 3, rngs=nnx.Rngs(0)))["non_embedding_params"] is None  # no family
