"""The FLOP counters of the generative, detection and speech families (models.forward_flops) agree with
XLA's cost analysis within 5%, and their tasks report the FLOPs of a training step's forward passes.

These counters trace the forward to a jaxpr and count it with its element-wise work
(models/conv_flops.py: `traced_flops`), since norms, softmaxes, gates and deformable sampling are a
large share of these small models. XLA's count comes from the lowered, uncompiled program of a
shape-only model at a batch of B, divided by B. Convolutions are counted without the taps on the zero
padding here, as XLA does. CPC's GRU is a `scan`, whose body XLA counts once: `conv_flops.xla_flops` adds
the other steps.
"""

import os

import jax
import jax.numpy as jnp
import pytest
from flax import nnx

from conftest import load_config
from papers_jax import models, tasks
from papers_jax.core import flops as flops_lib
from papers_jax.core.state import split_model
from papers_jax.models import conv_flops
from timm_parity import FixedKeyRngs

B = 2  # examples in the lowered batch
S = jax.ShapeDtypeStruct


def images(size, chans=3):
  return S((B, size, size, chans), jnp.float32)


def audio(samples):
  return S((B, samples), jnp.float32)


def eval_call(m, x):
  return m(x, train=False)


def w2v_pretrain(m, a):
  return m.pretrain(a, mask_time_indices=jnp.zeros((a.shape[0], m.num_frames(a.shape[1])), bool))


DETECTOR = dict(num_classes=3, backbone_width=8, backbone_layers=(1, 1, 1, 1), d_model=32, num_heads=4,
                encoder_layers=1, decoder_layers=1, ffn_dim=64, num_queries=5)
W2V = dict(conv_dim=(32,) * 7, hidden_size=32, num_layers=2, num_heads=4, mlp_dim=64, pos_conv_kernel=16,
           pos_conv_groups=4)
QUANTIZER = dict(num_codevector_groups=2, num_codevectors_per_group=8, codevector_dim=16, proj_codevector_dim=12)

# family: (model name, overrides, forward of (model, *inputs) as XLA lowers it, inputs, the counter's arguments)
CASES = {
    "dcgan": ("dcgan_32", dict(z_dim=16, g_width=8, d_width=8),
              lambda m, z, x: (m.generator(z), m.discriminator(x)), (S((B, 16), jnp.float32), images(32)), {}),
    "gan_mlp_1d": ("gan_mlp_1d", {}, lambda m, z, x: (m.generator(z), m.discriminator(x)),
                   (S((B, 1), jnp.float32), S((B, 1), jnp.float32)), {}),
    "vae_mlp": ("vae_mlp", {}, lambda m, x: m(x, jax.random.key(0)), (images(28, 1),), {}),
    "vae_conv": ("vae_conv", dict(widths=(16, 32, 64)), lambda m, x: m(x, jax.random.key(0)), (images(32, 1),), {}),
    "detr": ("detr_resnet50", DETECTOR, eval_call, (images(64),), dict(img_size=64)),
    "deformable_detr": ("deformable_detr_resnet50", dict(DETECTOR, num_feature_levels=2), eval_call,
                        (images(32),), dict(img_size=32)),
    "query_detector": ("query_detector_tiny", {}, eval_call, (images(32),), dict(img_size=32)),
    "ddpm_unet": ("ddpm_cifar10", dict(ch=16, ch_mult=(1, 2), num_res_blocks=1, attn_levels=(1,), dropout=0.0,
                                       num_groups=8),
                  lambda m, x, t: m(x, t), (images(8), S((B,), jnp.int32)), dict(img_size=8)),
    "vqvae": ("vqvae", dict(hidden=32, res_hidden=8, num_codes=32, code_dim=8), lambda m, x: m(x)[0], (images(16),),
              dict(img_size=16)),
    "wav2vec2": ("wav2vec2_base", W2V | QUANTIZER, w2v_pretrain, (audio(4000),), dict(num_samples=4000)),
    "wav2vec2_ctc": ("wav2vec2_base_ctc", W2V, lambda m, a: m(a), (audio(4000),), dict(num_samples=4000)),
    "dlinear": ("dlinear", dict(num_channels=2, context_length=96, prediction_length=96), lambda m, x: m(x),
                (S((B, 96, 2), jnp.float32),), {}),
    "cpc": ("cpc_audio", dict(channels=16, context_dim=64), lambda m, a: m(a), (audio(3200),),
            dict(num_samples=3200)),
    "unclip_prior": ("unclip_prior", dict(width=32, depth=1, num_heads=2), lambda m, z, t, e, x: m(z, t, e, x),
                     (S((B, 64), jnp.float32), S((B,), jnp.int32), S((B, 64), jnp.float32),
                      S((B, 24, 64), jnp.float32)), {}),
    "unclip_decoder": ("unclip_decoder", dict(unet=dict(ch=16, ch_mult=(1, 2), attn_levels=(1,), head_channels=16,
                                                        num_groups=8, dropout=0.0)),
                       lambda m, x, t, e, tok, mask: m(x, t, e, tok, mask),
                       (images(8), S((B,), jnp.int32), S((B, 64), jnp.float32), S((B, 24), jnp.int32),
                        S((B, 24), jnp.bool_)), dict(img_size=8)),
}


def abstract(name, **overrides):
  return nnx.eval_shape(lambda: models.create(name, rngs=FixedKeyRngs(), **overrides))


# The embedding tables of a scaling study's parameter count (models.embedding_params); the others have none.
EMBEDDING_PARAMS = {
    "detr": 5 * 32,  # the object queries
    "query_detector": 12 * 64,
    "deformable_detr": 5 * 2 * 32 + 2 * 32,  # the queries (position and target halves), the level embeddings
    "vqvae": 32 * 8,  # the codebook
    "wav2vec2": 32 + 2 * 8 * 16 // 2,  # the mask vector and the two codebooks
    "wav2vec2_ctc": 32,
}


# CI time: these run with make test-full (PAPERS_JAX_FULL_PARITY=1) only.
FULL_ONLY_CASES = {"unclip_prior", "unclip_decoder"}


@pytest.mark.parametrize("case", sorted(CASES))
def test_forward_flops_match_xla(case):
  if case in FULL_ONLY_CASES and not os.environ.get("PAPERS_JAX_FULL_PARITY"):
    pytest.skip("make test-full (PAPERS_JAX_FULL_PARITY=1): CI time")
  name, overrides, forward, inputs, lengths = CASES[case]
  model = abstract(name, **overrides)
  no_padding = {} if case == "dlinear" else dict(count_padding=False)  # DLinear has no convolution
  analytic = models.forward_flops(model, **no_padding, **lengths)
  graphdef, state = nnx.split(model)
  xla = conv_flops.xla_flops(lambda s, *x: forward(nnx.merge(graphdef, s), *x), state, *inputs) / B
  assert 0.95 < xla / analytic < 1.05, (case, xla / analytic)
  assert models.embedding_params(model) == EMBEDDING_PARAMS.get(case, 0)


def test_gan_step_counts_two_generator_and_three_discriminator_passes():
  """The GAN task's FLOPs per example are its two phases' forward passes (tasks/gan.py), in training mode."""
  config = load_config("gan/dcgan_digits.py", "smoke")
  task = tasks.get_task(config)
  model = nnx.eval_shape(lambda: task.build_model(nnx.Rngs(0)))
  graphdef, params, model_state = split_model(model)
  b, size = config.batch_size, model.discriminator.img_size
  batch = {"image": S((b, size, size, model.discriminator.in_chans), jnp.uint8),
           "z": S((b, model.z_dim), jnp.float32)}
  xla = sum(conv_flops.xla_flops(phase, params, model_state, batch, jax.random.key(0))
            for phase in task.make_loss_fn(graphdef).values()) / b
  assert 0.95 < xla / task.forward_flops(model, count_padding=False) < 1.05
  assert flops_lib.forward_flops(model, task) > models.forward_flops(model)  # the step, not one pass of each

