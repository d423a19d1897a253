"""Audio front ends: Whisper's log-Mel spectrogram, wav2vec 2.0's waveform normalisation, padding with
masks, SpecAugment, and reading WAV files, fairseq-style manifests and TFDS speech sets (ArrayRecord).

Everything here is numpy or jax.numpy with static shapes, so that the features can be computed on the
host in the input pipeline or on the device inside the jitted step (`log_mel_spectrogram` is jittable).

Whisper's front end (Radford et al., 2022, §2.2): 16 kHz audio, 25 ms windows (n_fft 400, a periodic
Hann window) every 10 ms (hop 160), centred frames with reflection padding, the power spectrum through
80 Mel filters (Slaney's Mel scale and area normalisation, 0–8 kHz), log10 floored at 1e-10, clipped to
8 below the utterance's maximum and scaled to (log + 4) / 4. The last frame is dropped, so N samples give
N / 160 frames (3,000 for Whisper's 30-second windows).
"""

import functools
import math
import os
import wave

import jax.numpy as jnp
import numpy as np

from papers_jax.errors import DataError

SAMPLE_RATE = 16_000
N_FFT = 400
HOP_LENGTH = 160


# ---------------------------------------------------------------- Mel filters
def hz_to_mel(hz):
  """Slaney's Mel scale: linear below 1 kHz (3 Mel per 200 Hz), logarithmic above."""
  hz = np.asarray(hz, np.float64)
  log_step = math.log(6.4) / 27.0
  return np.where(hz < 1000.0, 3.0 * hz / 200.0, 15.0 + np.log(np.maximum(hz, 1e-10) / 1000.0) / log_step)


def mel_to_hz(mel):
  mel = np.asarray(mel, np.float64)
  log_step = math.log(6.4) / 27.0
  return np.where(mel < 15.0, 200.0 * mel / 3.0, 1000.0 * np.exp(log_step * (mel - 15.0)))


@functools.cache
def mel_filters(num_mels: int = 80, n_fft: int = N_FFT, sample_rate: int = SAMPLE_RATE, f_min: float = 0.0,
                f_max: float | None = None) -> np.ndarray:
  """(n_fft // 2 + 1, num_mels) triangular filters, equally spaced on the Mel scale, each scaled to unit
  area (Slaney's normalisation: 2 / its bandwidth in Hz)."""
  f_max = sample_rate / 2 if f_max is None else f_max
  fft_hz = np.linspace(0.0, sample_rate // 2, n_fft // 2 + 1)
  edges = mel_to_hz(np.linspace(hz_to_mel(f_min), hz_to_mel(f_max), num_mels + 2))
  width = np.diff(edges)
  rising = (fft_hz[:, None] - edges[None, :-2]) / width[None, :-1]
  falling = (edges[None, 2:] - fft_hz[:, None]) / width[None, 1:]
  filters = np.maximum(0.0, np.minimum(rising, falling))
  return (filters * (2.0 / (edges[2:] - edges[:-2]))[None, :]).astype(np.float32)


def hann_window(length: int) -> np.ndarray:
  """The periodic Hann window (torch.hann_window's default), as STFTs use."""
  return (0.5 - 0.5 * np.cos(2 * np.pi * np.arange(length) / length)).astype(np.float32)


# ---------------------------------------------------------------- features
def log_mel_spectrogram(audio, num_mels: int = 80, *, n_fft: int = N_FFT, hop_length: int = HOP_LENGTH):
  """Whisper's log-Mel features of (..., N) float waveforms at 16 kHz → (..., N // hop, num_mels).

  Jittable. The clip at 8 below the maximum takes each waveform's own maximum, as Whisper does."""
  audio = jnp.asarray(audio, jnp.float32)
  pad = n_fft // 2
  padded = jnp.pad(audio, [(0, 0)] * (audio.ndim - 1) + [(pad, pad)], mode="reflect")
  num_frames = 1 + (padded.shape[-1] - n_fft) // hop_length
  index = np.arange(num_frames)[:, None] * hop_length + np.arange(n_fft)[None, :]
  frames = padded[..., index] * hann_window(n_fft)
  power = jnp.abs(jnp.fft.rfft(frames, axis=-1)) ** 2
  mel = jnp.einsum("...tf,fm->...tm", power[..., :-1, :], mel_filters(num_mels, n_fft), precision="highest")
  log_spec = jnp.log10(jnp.maximum(mel, 1e-10))
  log_spec = jnp.maximum(log_spec, log_spec.max(axis=(-2, -1), keepdims=True) - 8.0)
  return (log_spec + 4.0) / 4.0


def normalize_waveform(audio, mask=None, eps: float = 1e-7):
  """wav2vec 2.0's input normalisation: zero mean and unit variance per utterance over its valid samples
  (`mask`), padding left at 0."""
  audio = jnp.asarray(audio, jnp.float32)
  mask = jnp.ones_like(audio) if mask is None else jnp.asarray(mask, jnp.float32)
  count = jnp.maximum(mask.sum(-1, keepdims=True), 1.0)
  mean = (audio * mask).sum(-1, keepdims=True) / count
  var = (((audio - mean) * mask) ** 2).sum(-1, keepdims=True) / count
  return (audio - mean) / jnp.sqrt(var + eps) * mask


def pad_or_trim(audio: np.ndarray, length: int) -> tuple[np.ndarray, np.ndarray]:
  """(audio zero-padded or cut to `length` samples, its validity mask)."""
  audio = np.asarray(audio, np.float32)[:length]
  mask = np.zeros(length, bool)
  mask[:len(audio)] = True
  return np.pad(audio, (0, length - len(audio))), mask


def spec_augment(features, rng: np.random.Generator, *, freq_masks: int = 2, freq_width: int = 27,
                 time_masks: int = 2, time_ratio: float = 0.05, mask_value: float = 0.0) -> np.ndarray:
  """SpecAugment's frequency and time masking (Park et al., 2019; no time warping) of (T, F) features:
  `freq_masks` bands of up to `freq_width` channels and `time_masks` spans of up to `time_ratio` · T
  frames each, set to `mask_value`."""
  out = np.array(features, copy=True)
  t, f = out.shape
  for _ in range(freq_masks):
    width = rng.integers(0, freq_width + 1)
    start = rng.integers(0, max(1, f - width + 1))
    out[:, start:start + width] = mask_value
  for _ in range(time_masks):
    width = rng.integers(0, int(time_ratio * t) + 1)
    start = rng.integers(0, max(1, t - width + 1))
    out[start:start + width] = mask_value
  return out


# ---------------------------------------------------------------- files
def read_wav(path: str) -> np.ndarray:
  """A 16-bit PCM WAV file as float32 in [-1, 1], channels averaged. It must be 16 kHz: resample
  offline (the pipeline never resamples silently)."""
  try:
    with wave.open(path, "rb") as f:
      rate, channels, width, frames = f.getframerate(), f.getnchannels(), f.getsampwidth(), f.readframes(-1)
  except (wave.Error, EOFError) as e:
    raise DataError(f"{path}: not a PCM WAV file ({e}); convert it to 16-bit PCM WAV at 16 kHz") from e
  if width != 2:
    raise DataError(f"{path}: {8 * width}-bit samples; convert it to 16-bit PCM WAV at 16 kHz")
  if rate != SAMPLE_RATE:
    raise DataError(f"{path}: sampled at {rate} Hz; resample it to {SAMPLE_RATE} Hz")
  audio = np.frombuffer(frames, np.int16).reshape(-1, channels).mean(-1)
  return (audio / 32768.0).astype(np.float32)


def write_wav(path: str, audio: np.ndarray, rate: int = SAMPLE_RATE) -> None:
  pcm = np.clip(np.round(np.asarray(audio) * 32767.0), -32768, 32767).astype(np.int16)
  with wave.open(path, "wb") as f:
    f.setnchannels(1)
    f.setsampwidth(2)
    f.setframerate(rate)
    f.writeframes(pcm.tobytes())


class ManifestSource:
  """A folder of WAV files listed in a fairseq manifest: `<root>/<split>.tsv` whose first line is the audio
  root directory and each further line `relative/path.wav<TAB>num_samples`, with the transcripts one per
  line in `<root>/<split>.wrd` (words; fairseq's `.ltr` letters are derived from them). Examples:
  {"audio": float32 (n,), "text": str}."""

  def __init__(self, root: str, split: str):
    tsv = os.path.join(root, f"{split}.tsv")
    if not os.path.exists(tsv):
      raise DataError(f"no manifest {tsv}: write <split>.tsv (audio root, then path<TAB>num_samples lines) "
                      f"and <split>.wrd (one transcript per line)")
    with open(tsv) as f:
      lines = f.read().splitlines()
    self.audio_root = lines[0].strip()
    self.paths, self.lengths = [], []
    for number, line in enumerate(lines[1:], start=2):
      parts = line.split("\t")
      if len(parts) != 2 or not parts[1].strip().isdigit():
        raise DataError(f"{tsv}:{number}: expected 'relative/path.wav<TAB>num_samples', got {line!r}")
      self.paths.append(parts[0])
      self.lengths.append(int(parts[1]))
    wrd = os.path.join(root, f"{split}.wrd")
    self.texts = None
    if os.path.exists(wrd):
      with open(wrd) as f:
        self.texts = f.read().splitlines()
      if len(self.texts) != len(self.paths):
        raise DataError(f"{wrd} has {len(self.texts)} transcripts for {len(self.paths)} files in {tsv}")
    self.name, self.split = f"manifest:{root}", split

  def __len__(self) -> int:
    return len(self.paths)

  def __getitem__(self, i) -> dict:
    example = {"audio": read_wav(os.path.join(self.audio_root, self.paths[i]))}
    if self.texts is not None:
      example["text"] = self.texts[i]
    return example


def pcm_to_float(audio, dtype: str) -> np.ndarray:
  """float32 samples: integer PCM ("int16", "int32") scaled by its full range (int16 / 32768), floats as
  they are."""
  audio = np.asarray(audio)
  if dtype.startswith("int"):
    return (audio / float(-np.iinfo(np.dtype(dtype)).min)).astype(np.float32)
  return audio.astype(np.float32)


class TfdsSpeechSource:
  """A split of a TFDS speech set prepared as ArrayRecord, e.g. `librispeech` (splits train_clean100,
  train_clean360, train_other500, dev_clean, dev_other, test_clean, test_other), read as
  {"audio": float32 (n,), "text": str, "speaker": int, "id": str} from its features {"speech": 16 kHz
  int16 (or float) samples, "text", "speaker_id", "id"}.

  TFDS's own reader cannot open these sets without TensorFlow (its Audio feature imports it), so the
  records are read directly: the split's shards listed in dataset_info.json, each record a serialised
  tf.train.Example (parsed with the proto that tensorflow_datasets ships). Nothing is downloaded or
  prepared here.
  """

  def __init__(self, name: str, split: str, data_dir: str | None = None, audio_key: str = "speech",
               text_key: str = "text"):
    import json
    from papers_jax.data.sources import _tfds_prepare_hint
    self.name, self.split, self.audio_key, self.text_key = f"tfds:{name}", split, audio_key, text_key
    root = os.path.expanduser(data_dir or os.environ.get("TFDS_DATA_DIR", "~/tensorflow_datasets"))
    hint = _tfds_prepare_hint(name, data_dir) + " (building librispeech needs TensorFlow; reading it does not)"
    directory = _prepared_directory(os.path.join(root, name))
    if directory is None:
      raise DataError(f"TFDS dataset {name!r} is not prepared under {root}. {hint}")
    with open(os.path.join(directory, "dataset_info.json")) as f:
      info = json.load(f)
    if info.get("fileFormat") != "array_record":
      raise DataError(f"TFDS dataset {name!r} in {directory} is prepared as {info.get('fileFormat', 'tfrecord')}, "
                      f"which has no random access. Delete {directory} and rebuild it. {hint}")
    splits = {s["name"]: s for s in info.get("splits", [])}
    if split not in splits:
      raise DataError(f"Bad split {split!r} (data.train_split / data.eval_split) for TFDS dataset {name!r}. "
                      f"Available splits: {sorted(splits)}")
    features = {}
    if os.path.exists(os.path.join(directory, "features.json")):
      with open(os.path.join(directory, "features.json")) as f:
        features = json.load(f).get("featuresDict", {}).get("features", {})
    if audio_key not in features:
      raise DataError(f"TFDS dataset {name!r} has no feature {audio_key!r}; its features are {sorted(features)}.")
    spec = features[audio_key].get("audio") or features[audio_key].get("tensor", {})
    if spec.get("lazyDecode") or spec.get("encoding", "none") != "none":
      raise DataError(f"TFDS dataset {name!r} stores {audio_key!r} encoded (lazy_decode); prepare the default "
                      f"config, which stores the decoded samples. {hint}")
    self.dtype = spec.get("dtype", "int16")
    rate = int(spec.get("sampleRate", SAMPLE_RATE))
    if rate != SAMPLE_RATE:
      raise DataError(f"TFDS dataset {name!r} has {audio_key!r} at {rate} Hz; the speech models need "
                      f"{SAMPLE_RATE} Hz audio (resample it when preparing the set)")
    lengths = [int(n) for n in splits[split].get("shardLengths", [])]
    self.paths = [os.path.join(directory, f"{info['name']}-{split}.array_record-{i:05d}-of-{len(lengths):05d}")
                  for i in range(len(lengths))]
    lost = [p for p in self.paths if not os.path.exists(p)]
    if lost:
      raise DataError(f"TFDS dataset {name!r} in {directory} is missing {len(lost)} file(s), e.g. {lost[0]}. "
                      f"Delete {directory} and rebuild it. {hint}")
    self._length = sum(lengths)
    self._records = None  # opened on first read, so that the source pickles into data workers

  def __len__(self) -> int:
    return self._length

  def __getstate__(self):
    return dict(self.__dict__, _records=None)

  def __getitem__(self, i) -> dict:
    from array_record.python.array_record_data_source import ArrayRecordDataSource
    from tensorflow_datasets.proto import tf_example_pb2
    if self._records is None:
      self._records = ArrayRecordDataSource(self.paths)
    feature = tf_example_pb2.Example.FromString(self._records[int(i)]).features.feature
    speech = feature[self.audio_key]
    samples = speech.float_list.value if self.dtype.startswith("float") else speech.int64_list.value
    example = {"audio": pcm_to_float(np.asarray(samples), self.dtype)}
    if self.text_key in feature:
      example["text"] = feature[self.text_key].bytes_list.value[0].decode("utf-8")
    if "speaker_id" in feature:
      example["speaker"] = int(feature["speaker_id"].int64_list.value[0])
    if "id" in feature:
      example["id"] = feature["id"].bytes_list.value[0].decode("utf-8")
    return example


def _prepared_directory(path: str) -> str | None:
  """The newest version folder holding a dataset_info.json under `path` (<name>[/<config>]/<version>)."""
  found = []
  for folder, _, files in os.walk(path):
    version = os.path.basename(folder).split(".")
    if "dataset_info.json" in files and all(v.isdigit() for v in version):
      found.append((tuple(int(v) for v in version), folder))
  if len({os.path.dirname(folder) for _, folder in found}) > 1:
    configs = sorted(os.path.relpath(os.path.dirname(folder), os.path.dirname(path)) for _, folder in found)
    raise DataError(f"{path} holds several prepared configs {configs}: name one in data.name (tfds:<name>/<config>)")
  return max(found)[1] if found else None


def padded_example(example: dict, length: int) -> dict:
  """{"audio" (length,) float32, "audio_mask" (length,) bool, "label" int32, "speaker" int32 (-1 if
  unknown)}: a source's example padded or cut to a static length, as the speech tasks batch them."""
  audio, mask = pad_or_trim(example["audio"], length)
  return {"audio": audio, "audio_mask": mask, "label": np.asarray(example.get("label", -1), np.int32),
          "speaker": np.asarray(example.get("speaker", -1), np.int32)}
