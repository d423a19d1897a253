"""AudioCLIP (Guzhov, Raue, Hees and Dengel, ICASSP 2022, "AudioCLIP: Extending CLIP to Image, Text and Audio").

CLIP's image and text towers plus an audio tower, ESResNeXt-fbsp (Guzhov et al., ICPR 2020), trained so that
audio, image and text embeddings share CLIP's joint space. The audio tower, as the official code builds it
(github.com/AndreyGuzhov/AudioCLIP, model/esresnet/{base,fbsp,attention}.py):
  - Framing: the waveform cut into frames of `win_length` every `hop_length` (zero-padded, half each side,
    to a whole number of frames), multiplied by a window (Blackman-Harris), zero-padded to `n_fft`.
  - The trainable time-frequency transform (`LinearFBSP`, "frequency B-spline" wavelets): per output
    frequency k three parameters m_k (initially 0), fb_k (1), fc_k (k); over t = π·linspace(−1, 1, n_fft),
    the complex weight w_k(t) = √fb_k · sinc(fb_k t / m_k)^m_k · exp(−i fc_k t) (a complex power, so a
    negative sinc lobe gives a phase), divided by √n_fft when `normalized`. At initialisation it is a plain
    DFT (boxcar window): the transform starts as an STFT and learns its wavelets.
  - Power spectrogram in dB (10 log10, floored at 1e-18); the n_fft / 2 + 1 frequencies split into three
    equal bands stacked as three input channels (the remainder bins dropped), frequency as height, time as
    width.
  - ResNeXt-50 (32×4d: bottlenecks of (3, 4, 6, 3) blocks, 32 groups of 4 channels at the first stage) on
    those three channels, with the attention blocks (`Attention2d`, `apply_attention=True` in AudioCLIP):
    after each stage, the stage's input max-pooled to the stage's output size, a depthwise convolution
    ((3, 1) or (1, 5), alternating; (3, 5) on the last), a 1×1 convolution to the stage's width, BatchNorm
    and a sigmoid, multiplying the stage's output; a fifth on the average-pooled features.
  - A linear layer to the joint space (its `num_classes` is CLIP's embed_dim, 1,024 for the RN50 CLIP).
  - The regulariser `fbsp_norm_loss`: the mean square of (‖w_k‖ − 1) over the frequencies (target √n_fft
    when not normalised), added to the loss.
The model learns two temperatures of its own, for audio-image and audio-text, initialised at 100, used
clamped to [1, 100] as CLIP's (whose own scale serves image-text).

Parameter count at the paper's sizes (`esresnext_fbsp_paper_count`, tests/test_audioclip.py): 32,104,771 for the
audio tower with AudioCLIP's 1,024-d output, from the official code's layer shapes: ResNeXt-50 32×4d with a
1,024-way fc, 25,078,080 (torchvision's resnext50_32x4d, 25,028,904, with its 1,000-way fc replaced); the five
attention blocks, 7,023,616; the FBSP transform, 3 × 1,025. (Issue 32 quotes "~30M" for ESResNeXt; the
official shapes give 32.1M, 25.1M of it without the attention blocks.)
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from papers_jax.models import clip as clip_lib
from papers_jax.models import resnet
from papers_jax.nn.conv import Conv, conv_flops, max_pool
from papers_jax.nn.linear import Dense, param
from papers_jax.nn.norms import BatchNorm

# The trainable parameters are the audio tower's and the two temperatures: the frozen CLIP is no parameter here.
EMBEDDINGS = ()
# Depthwise kernels of the five attention blocks (the official code's).
ATTENTION_KERNELS = ((3, 1), (1, 5), (3, 1), (1, 5), (3, 5))


def frame_signal(audio, win_length: int, hop_length: int, window: np.ndarray, n_fft: int):
  """(B, N) waveforms → (B, T, n_fft) windowed frames: T = 1 + ⌈(N − win) / hop⌉, the signal zero-padded
  (half each side) to fill the last frame, each frame zero-padded (half each side) from win_length to n_fft."""
  n = audio.shape[-1]
  num_frames = 1 if n <= win_length else 1 + math.ceil((n - win_length) / hop_length)
  pad = max(0, (num_frames - 1) * hop_length + win_length - n)
  audio = jnp.pad(audio, ((0, 0), (pad // 2, pad - pad // 2)))
  index = np.arange(num_frames)[:, None] * hop_length + np.arange(win_length)[None, :]
  frames = audio[:, index] * jnp.asarray(window, jnp.float32)
  extra = n_fft - win_length
  return jnp.pad(frames, ((0, 0), (0, 0), (extra // 2, extra - extra // 2)))


def fbsp_weights(m, fb, fc, in_features: int, normalized: bool, eps: float = 1e-8):
  """The FBSP transform's complex weights (real, imaginary), each (K, in_features) (module docstring)."""
  t = np.pi * jnp.linspace(-1.0, 1.0, in_features) + eps
  m, fb, fc = m[:, None], fb[:, None], fc[:, None]
  arg = fb * t / (m + eps)
  sinc = jnp.where(arg == 0, 1.0, jnp.sin(arg) / jnp.where(arg == 0, 1.0, arg))
  # sinc^m as a complex power of a real number: |sinc|^m · exp(i·m·phase), phase 0 or π.
  magnitude = jnp.abs(sinc) ** m
  phase = jnp.arctan2(0.0, sinc)
  win_re, win_im = magnitude * jnp.cos(m * phase), magnitude * jnp.sin(m * phase)
  ker_re, ker_im = jnp.cos(fc * t), -jnp.sin(fc * t)
  scale = jnp.sqrt(fb) / (math.sqrt(in_features) if normalized else 1.0)
  return scale * (win_re * ker_re - win_im * ker_im), scale * (win_re * ker_im + win_im * ker_re)


class LinearFBSP(nnx.Module):
  """The trainable time-frequency transform: frames (B, T, n_fft) → complex spectrum (re, im), each (B, T, K)."""

  def __init__(self, num_frequencies: int, *, normalized: bool = True, rngs: nnx.Rngs):
    del rngs  # deterministic initialisation
    self.normalized = normalized
    k = num_frequencies
    self.m = nnx.Param(jnp.zeros((k,), jnp.float32), axes=(None,))
    self.fb = nnx.Param(jnp.ones((k,), jnp.float32), axes=(None,))
    self.fc = nnx.Param(jnp.arange(k, dtype=jnp.float32), axes=(None,))

  def weights(self, in_features: int):
    return fbsp_weights(self.m[...], self.fb[...], self.fc[...], in_features, self.normalized)

  def __call__(self, frames):
    w_re, w_im = self.weights(frames.shape[-1])
    frames = frames.astype(jnp.float32)
    return (jnp.einsum("btn,kn->btk", frames, w_re, precision="highest"),
            jnp.einsum("btn,kn->btk", frames, w_im, precision="highest"))

  def norm_loss(self, in_features: int):
    """Mean square of each frequency's weight norm from its target (1 normalised, else √in_features)."""
    w_re, w_im = self.weights(in_features)
    norm = jnp.sqrt(jnp.sum(w_re ** 2 + w_im ** 2, axis=-1))
    target = 1.0 if self.normalized else math.sqrt(in_features)
    return jnp.mean((norm - target) ** 2)


def adaptive_max_pool(x, size: tuple[int, int]):
  """torch's adaptive_max_pool2d on NHWC: cell i covers rows ⌊iH/h⌋ … ⌈(i+1)H/h⌉ − 1 (columns alike)."""
  for axis, out in zip((1, 2), size):
    n = x.shape[axis]
    if n == out:
      continue
    starts = [(i * n) // out for i in range(out)]
    ends = [-((-(i + 1) * n) // out) for i in range(out)]
    width = max(e - s for s, e in zip(starts, ends))
    index = np.asarray([[min(s + j, e - 1) for j in range(width)] for s, e in zip(starts, ends)])
    x = jnp.take(x, index.reshape(-1), axis=axis)
    shape = list(x.shape)
    shape[axis:axis + 1] = [out, width]
    x = x.reshape(shape).max(axis=axis + 1)
  return x


class Attention2d(nnx.Module):
  """ESResNeXt's attention block: max-pool to the target size, depthwise conv, 1×1 conv, BatchNorm, sigmoid."""

  def __init__(self, in_features: int, out_features: int, kernel: tuple[int, int], *, dtype=None,
               param_dtype=jnp.float32, rngs: nnx.Rngs):
    kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
    init = nnx.initializers.variance_scaling(2.0, "fan_out", "normal")  # the network's kaiming_normal_ (fan out)
    self.conv_depth = Conv(in_features, in_features, kernel, padding=(kernel[0] // 2, kernel[1] // 2),
                           groups=in_features, use_bias=True, kernel_init=init, **kw)
    self.conv_point = Conv(in_features, out_features, 1, use_bias=True, kernel_init=init, **kw)
    self.bn = BatchNorm(out_features, **kw)

  def __call__(self, x, size: tuple[int, int], *, train: bool):
    x = adaptive_max_pool(x, size)
    return jax.nn.sigmoid(self.bn(self.conv_point(self.conv_depth(x)), train=train).astype(jnp.float32))


class ESResNeXt(nnx.Module):
  """ESResNeXt-fbsp (module docstring): waveforms (B, N) in [-1, 1] → (B, out_dim) audio embeddings.

  `width` is the stem's and the first stage's planes (64 in the paper; stage i has width·2^i planes),
  `groups` and `width_per_group` the grouped 3×3 convolutions' (32, 4), `layers` the blocks per stage."""

  def __init__(self, *, out_dim: int = 1024, layers=(3, 4, 6, 3), width: int = 64, groups: int = 32,
               width_per_group: int = 4, n_fft: int = 2048, hop_length: int = 561, win_length: int = 1654,
               window: str = "blackmanharris", normalized: bool = True, apply_attention: bool = True,
               sample_rate: int = 44_100, clip_seconds: float = 5.0, dtype=None, param_dtype=jnp.float32,
               rngs: nnx.Rngs):
    kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
    self.n_fft, self.hop_length, self.win_length = n_fft, hop_length, win_length
    self.window = window  # a name: its samples are a trace-time constant (`window_samples`)
    self.apply_attention, self.out_dim = apply_attention, out_dim
    self.num_samples = int(round(sample_rate * clip_seconds))  # the input forward_flops assumes
    self.fbsp = LinearFBSP(n_fft // 2 + 1, normalized=normalized, rngs=rngs)
    self.conv1 = Conv(3, width, 7, stride=2, **kw)
    self.bn1 = BatchNorm(width, **kw)
    stages, attention, features = [], [], width
    for i, depth in enumerate(layers):
      planes = width * 2 ** i
      blocks = [resnet.Block("bottleneck", features if j == 0 else planes * 4, planes,
                             2 if (i > 0 and j == 0) else 1, zero_init_last=False, groups=groups,
                             base_width=width_per_group, **kw) for j in range(depth)]
      stages.append(nnx.List(blocks))
      if apply_attention:
        attention.append(Attention2d(features, planes * 4, ATTENTION_KERNELS[i], **kw))
      features = planes * 4
    self.layers = nnx.List(stages)
    self.attention = nnx.List(attention) if apply_attention else None
    self.attention_pool = Attention2d(features, features, ATTENTION_KERNELS[4], **kw) if apply_attention else None
    self.num_features = features
    bound = 1.0 / math.sqrt(features)  # torch Linear's default init
    uniform = lambda key, shape, dtype=jnp.float32: jax.random.uniform(key, shape, dtype, -bound, bound)  # noqa: E731
    self.fc = Dense(features, out_dim, axes=(None, None), kernel_init=uniform, bias_init=uniform, **kw)

  def spectrogram(self, audio):
    """(B, N) → (B, F/3, T, 3) dB power in three frequency bands (low, middle, high) as channels."""
    frames = frame_signal(audio.astype(jnp.float32), self.win_length, self.hop_length, self.window_samples(),
                          self.n_fft)
    re, im = self.fbsp(frames)                                    # (B, T, K)
    band = re.shape[-1] // 3
    power = (re ** 2 + im ** 2)[..., :3 * band]
    power = jnp.where(power > 0.0, power, 1e-18)
    db = 10.0 * jnp.log10(power)
    b, t, _ = db.shape
    return db.reshape(b, t, 3, band).transpose(0, 3, 1, 2)       # frequency as height, time as width

  def __call__(self, audio, *, train: bool = False):
    x = self.spectrogram(audio)
    x = max_pool(jax.nn.relu(self.bn1(self.conv1(x), train=train)))
    for i, stage in enumerate(self.layers):
      y = x
      for block in stage:
        y = block(y, train=train)
      if self.apply_attention:
        y = y * self.attention[i](x, y.shape[1:3], train=train).astype(y.dtype)
      x = y
    pooled = x.astype(jnp.float32).mean(axis=(1, 2), keepdims=True)
    if self.apply_attention:
      pooled = pooled * self.attention_pool(x, (1, 1), train=train)
    return self.fc(pooled[:, 0, 0])

  def window_samples(self) -> np.ndarray:
    from scipy import signal  # at call time: importing scipy.signal costs every process ~1 s

    return np.asarray(signal.get_window(self.window, self.win_length, fftbins=True), np.float32)

  def fbsp_norm_loss(self):
    return self.fbsp.norm_loss(self.n_fft)


class AudioCLIP(nnx.Module):
  """A CLIP (its weights `Frozen` by the task: the paper's "partial training", audio head only) with the
  ESResNeXt audio tower and the audio-image and audio-text temperatures."""

  def __init__(self, clip: nnx.Module, audio: ESResNeXt, *, rngs: nnx.Rngs):
    self.clip, self.audio = clip, audio
    self.logit_scale_ai = param(rngs, nnx.initializers.constant(math.log(100.0)), (), jnp.float32, ())
    self.logit_scale_at = param(rngs, nnx.initializers.constant(math.log(100.0)), (), jnp.float32, ())

  def encode_audio(self, audio, *, train: bool = False):
    return self.audio(audio, train=train)

  def encode_image(self, images):
    return jax.lax.stop_gradient(self.clip.encode_image(images, train=False))

  def encode_text(self, tokens):
    return jax.lax.stop_gradient(self.clip.encode_text(tokens, train=False))

  def scales(self):
    """The (audio-image, audio-text, image-text) temperatures exp(·), each clamped to [1, 100] (the official code)."""
    clamp = lambda v: jnp.clip(jnp.exp(v.astype(jnp.float32)), 1.0, 100.0)  # noqa: E731
    return clamp(self.logit_scale_ai[...]), clamp(self.logit_scale_at[...]), clamp(self.clip.logit_scale[...])


def esresnext_forward_flops(model: ESResNeXt, num_samples: int | None = None) -> float:
  """Matmul FLOPs per clip of `num_samples` (default the model's): the FBSP transform (a real frame times a
  complex weight: 2 × 2 per multiply-add), every convolution (the attention blocks' too) and the fc."""
  n = num_samples or model.num_samples
  frames = 1 if n <= model.win_length else 1 + math.ceil((n - model.win_length) / model.hop_length)
  k = model.n_fft // 2 + 1
  total = 2 * 2 * frames * model.n_fft * k
  h, w = k // 3, frames
  f, h, w = conv_flops(model.conv1, h, w)
  total += f
  h, w = (h + 2 - 3) // 2 + 1, (w + 2 - 3) // 2 + 1
  for i, stage in enumerate(model.layers):
    for block in stage:
      hb, wb = h, w
      for conv in (block.conv1, block.conv2, block.conv3):
        f, h, w = conv_flops(conv, h, w)
        total += f
      if block.downsample_conv is not None:
        total += conv_flops(block.downsample_conv, hb, wb)[0]
    if model.apply_attention:
      att = model.attention[i]
      total += conv_flops(att.conv_depth, h, w)[0] + conv_flops(att.conv_point, h, w)[0]
  if model.apply_attention:
    total += conv_flops(model.attention_pool.conv_depth, 1, 1)[0] + conv_flops(model.attention_pool.conv_point, 1, 1)[0]
  return float(total + 2 * model.num_features * model.out_dim)


def forward_flops(model: AudioCLIP) -> float:
  """Per training triplet: the audio tower, CLIP's image tower and its text tower once each."""
  return esresnext_forward_flops(model.audio) + float(clip_lib.forward_flops(model.clip))


def esresnext_fbsp_paper_count() -> int:
  """Parameters of the paper's audio tower, built abstractly (ESResNeXt-fbsp, 1,024-d output)."""
  from papers_jax.models import param_counts
  model = nnx.eval_shape(lambda: ESResNeXt(rngs=nnx.Rngs(0)))
  return param_counts(model)["params"]
