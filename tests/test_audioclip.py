"""AudioCLIP: the three-pair loss and the FBSP transform against numpy, the audio tower's pieces and its parameter
count at the paper's sizes, the generated sounds."""

import math
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from papers_jax.data import sounds
from papers_jax.models import audioclip as model_lib
from papers_jax.objectives import audioclip as objective
from tests.timm_parity import FixedKeyRngs

FULL = bool(os.environ.get("PAPERS_JAX_FULL_PARITY"))


# ---------------------------------------------------------------- the loss
def _ce_np(logits):
  """Mean cross-entropy of the diagonal, float64."""
  logits = logits - logits.max(axis=1, keepdims=True)
  logp = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
  return -np.mean(np.diag(logp))


def _audioclip_loss_np(embeddings, scales, pairs):
  """The official loss_fn: Σ over present pairs of CE(L) + CE(Lᵀ), divided by n!."""
  norm = {k: v / np.linalg.norm(v, axis=-1, keepdims=True) for k, v in embeddings.items()}
  total, n = 0.0, 0
  for pair, scale in zip(objective.PAIRS, scales):
    a, b = pair.split("_")
    if pair in pairs:
      logits = scale * norm[a] @ norm[b].T
      total += _ce_np(logits) + _ce_np(logits.T)
      n += 1
  return total / math.factorial(n)


@pytest.mark.parametrize("pairs", [objective.PAIRS, ("audio_image", "audio_text"), ("audio_text",)])
def test_loss_matches_numpy(pairs):
  rng = np.random.default_rng(0)
  emb = {k: rng.standard_normal((6, 5)) for k in ("audio", "image", "text")}
  scales = (37.0, 80.0, 12.5)
  loss, terms = objective.audioclip_loss(*(jnp.asarray(emb[k], jnp.float32) for k in ("audio", "image", "text")),
                                         tuple(jnp.float32(s) for s in scales), pairs)
  np.testing.assert_allclose(float(loss), _audioclip_loss_np(emb, scales, pairs), rtol=1e-5)
  assert set(terms) == set(pairs)


# ---------------------------------------------------------------- the FBSP transform, framing, pooling
def _fbsp_weights_np(m, fb, fc, n, normalized, eps=1e-8):
  """The official `_materialize_weights` in complex numpy."""
  t = np.pi * np.linspace(-1.0, 1.0, n)[None, :] + eps
  m, fb, fc = m[:, None], fb[:, None], fc[:, None]
  x = fb * t / (m + eps)
  sinc = np.where(x == 0, 1.0, np.sin(x) / np.where(x == 0, 1.0, x))
  win = np.power(sinc.astype(np.complex128), m)  # the principal complex power: a negative lobe gets a phase
  w = np.sqrt(fb) * win * np.exp(-1j * fc * t)
  return w / np.sqrt(n) if normalized else w


@pytest.mark.parametrize("normalized", [True, False])
def test_fbsp_weights_match_numpy(normalized):
  rng = np.random.default_rng(2)
  k, n = 9, 32
  m = rng.uniform(0.2, 2.0, k)           # away from 0: the window is a power of a sinc with negative lobes
  fb = rng.uniform(0.5, 3.0, k)
  fc = np.arange(k) + rng.uniform(-0.3, 0.3, k)
  re, im = model_lib.fbsp_weights(jnp.asarray(m, jnp.float32), jnp.asarray(fb, jnp.float32),
                                  jnp.asarray(fc, jnp.float32), n, normalized)
  ref = _fbsp_weights_np(m, fb, fc, n, normalized)
  t = np.pi * np.linspace(-1, 1, n)
  assert (np.sinc(fb[:, None] * t / m[:, None] / np.pi) < 0).any()  # a negative lobe: the phase case is hit
  np.testing.assert_allclose(np.asarray(re), ref.real, atol=2e-5)
  np.testing.assert_allclose(np.asarray(im), ref.imag, atol=2e-5)


def test_fbsp_starts_as_a_fourier_transform_with_unit_norms():
  """At its initialisation (m = 0, fb = 1, fc = k) the transform is exp(−i k t) / √n: a DFT-like basis, boxcar
  window, each frequency's weights of norm 1, so the regulariser starts at 0."""
  k, n = 9, 32                                                  # the shapes above: no new compilation
  re, im = model_lib.fbsp_weights(jnp.zeros(k), jnp.ones(k), jnp.arange(k, dtype=jnp.float32), n, True)
  t = np.pi * np.linspace(-1.0, 1.0, n) + 1e-8
  ref = np.exp(-1j * np.arange(k)[:, None] * t[None, :]) / np.sqrt(n)
  np.testing.assert_allclose(np.asarray(re), ref.real, atol=1e-5)
  np.testing.assert_allclose(np.asarray(im), ref.imag, atol=1e-5)
  np.testing.assert_allclose(np.sqrt((np.asarray(re) ** 2 + np.asarray(im) ** 2).sum(-1)), 1.0, atol=1e-5)


def test_frame_signal_pads_half_each_side_and_windows():
  audio = np.arange(1, 25, dtype=np.float32)[None]             # 24 samples, frames of 8 every 5
  window = np.linspace(0.5, 1.0, 8).astype(np.float32)
  frames = np.asarray(model_lib.frame_signal(jnp.asarray(audio), 8, 5, window, 12))
  num = 1 + math.ceil((24 - 8) / 5)                              # 5 frames over 28 samples: 2 zeros each side
  padded = np.concatenate([np.zeros(2), audio[0], np.zeros(2)])
  ref = np.stack([padded[i * 5:i * 5 + 8] * window for i in range(num)])
  ref = np.pad(ref, ((0, 0), (2, 2)))
  np.testing.assert_allclose(frames[0], ref)


def test_adaptive_max_pool_matches_torchs_bins():
  x = np.random.default_rng(4).standard_normal((2, 7, 10, 3)).astype(np.float32)
  out = np.asarray(model_lib.adaptive_max_pool(jnp.asarray(x), (4, 3)))
  ref = np.zeros((2, 4, 3, 3), np.float32)
  for i in range(4):
    for j in range(3):
      r0, r1 = (i * 7) // 4, -(-(i + 1) * 7 // 4)
      c0, c1 = (j * 10) // 3, -(-(j + 1) * 10 // 3)
      ref[:, i, j] = x[:, r0:r1, c0:c1].max(axis=(1, 2))
  np.testing.assert_array_equal(out, ref)


# ---------------------------------------------------------------- the audio tower
def test_paper_audio_tower_parameter_count():
  """ESResNeXt-fbsp as the official code builds it (1,024-d output): torchvision's resnext50_32x4d (25,028,904)
  with a 1,024-way fc, the five attention blocks' shapes (depthwise + pointwise convs with biases, BatchNorm) and
  the FBSP's three vectors of 1,025."""
  model = nnx.eval_shape(lambda: model_lib.ESResNeXt(n_fft=2048, rngs=FixedKeyRngs()))
  size = lambda node: sum(math.prod(v.shape) for v in jax.tree.leaves(nnx.state(node, nnx.Param)))  # noqa: E731
  attention = size(model.attention) + size(model.attention_pool)
  expected_attention = 0
  for c_in, c_out, (kh, kw) in zip((64, 256, 512, 1024, 2048), (256, 512, 1024, 2048, 2048),
                                   model_lib.ATTENTION_KERNELS):
    expected_attention += c_in * kh * kw + c_in + c_in * c_out + c_out + 2 * c_out
  assert attention == expected_attention == 7_023_616
  assert size(model.fbsp) == 3 * 1025
  assert size(model) - attention - size(model.fbsp) == 25_028_904 - (2048 * 1000 + 1000) + (2048 * 1024 + 1024)
  assert size(model) == 32_104_771


def test_tiny_audio_tower_shapes_and_flops():
  kw = dict(out_dim=8, layers=(1, 1, 1, 1), width=16, groups=4, width_per_group=4, n_fft=64, hop_length=160,
            win_length=64, sample_rate=16_000, clip_seconds=0.1)
  model = nnx.eval_shape(lambda: model_lib.ESResNeXt(rngs=FixedKeyRngs(), **kw))
  graphdef, state = nnx.split(model)
  audio = jax.ShapeDtypeStruct((2, 1600), jnp.float32)
  # Shapes only (compiling it costs ~20 s on the shared CPU; the smoke run of configs/audioclip/sounds.py runs it).
  spec, out = jax.eval_shape(lambda s, a: (nnx.merge(graphdef, s).spectrogram(a), nnx.merge(graphdef, s)(a)),
                             state, audio)
  assert spec.shape == (2, 33 // 3, 1 + math.ceil((1600 - 64) / 160), 3)
  assert out.shape == (2, 8)
  assert model_lib.esresnext_forward_flops(model) > 0


# ---------------------------------------------------------------- the data
def test_oscillators_have_their_waveforms_harmonics():
  phase = 2 * np.pi * 400.0 * np.arange(16_000) / 16_000
  for waveform, third in (("sine", 0.0), ("square", 1 / 3), ("triangle", 1 / 9)):
    spectrum = np.abs(np.fft.rfft(sounds.oscillator(waveform, phase)))
    assert spectrum[1200] / spectrum[400] == pytest.approx(third, abs=1e-3), waveform
    assert spectrum[800] / spectrum[400] < 1e-3                   # odd harmonics only


def test_sounds_are_fixed_balanced_and_paired():
  source = sounds.SoundSource("test", num_speakers=5, repeats=1)
  assert np.bincount(source.labels, minlength=13).tolist() == [np.bincount(source.labels).max()] * 13
  tone = len(source) - 1                                          # the last tone: a "triangle"
  a, b = source[tone], source[tone]
  np.testing.assert_array_equal(a["audio"], b["audio"])
  np.testing.assert_array_equal(a["image"], b["image"])
  assert a["audio"].shape == (sounds.NUM_SAMPLES,) and a["text"].endswith(" triangle.")
  assert a["text"] == f"a {sounds.COLOURS[int(a['colour'])]} triangle."
  digit = source[0]
  assert digit["text"].endswith(f" {sounds.KINDS[int(digit['label'])]}.") and digit["label"] >= 3
  assert len(sounds.SoundSource("test", num_speakers=5, repeats=1, limit=13)) == 13


@pytest.mark.skipif(not FULL, reason="make test-full: imports timm and compiles a ResNeXt (the grouped blocks)")
def test_grouped_bottlenecks_match_timm_resnext():
  """The ResNeXt blocks the audio tower stacks (models/resnet.py Block with groups) against timm's, every tensor
  perturbed, in evaluation mode."""
  import chex
  import torch

  from papers_jax import convert
  from papers_jax.convert.torch_compat import import_timm
  from papers_jax.models.resnet import ResNet
  from tests.test_resnet import perturb
  timm = import_timm()
  from timm.models.resnet import Bottleneck
  ref = perturb(timm.models.resnet.ResNet(Bottleneck, [1, 2, 1, 1], cardinality=4, base_width=8, num_classes=10))
  ours = ResNet(layers=(1, 2, 1, 1), groups=4, width_per_group=8, num_classes=10, rngs=nnx.Rngs(0))
  convert.load_torch_weights(ours, ref.state_dict(), source="timm")
  x = np.random.default_rng(6).standard_normal((2, 40, 40, 3)).astype(np.float32)
  with torch.no_grad():
    expected = ref(torch.from_numpy(x).permute(0, 3, 1, 2)).numpy()
  with jax.default_matmul_precision("highest"):
    logits = np.asarray(ours(x, train=False))
  chex.assert_trees_all_close(logits, expected, atol=1e-4, rtol=1e-4)
