"""Audio-image-text triplets for AudioCLIP (bundled, generated, offline): `data.name = "sounds"`.

Every clip is one second at 16 kHz, labelled with one of the 13 object kinds of the generated scenes
(data/vqa_scenes.py KINDS: circle, square, triangle, 0 ... 9), so that the scenes CLIP, whose word-level
tokenizer knows only the scenes' words, can read its class names:
  - the digits "0" ... "9": the spoken digits of data/spoken.py (eSpeak NG voices; 51 training and 13
    test speakers, none shared; 102 training and 26 test clips per digit);
  - "circle", "square", "triangle": synthetic tones named after the oscillator waveform that makes them,
    sine ("circle": the sine is the circle's projection), square and triangle waves, band-limited (odd
    harmonics below 8 kHz with amplitudes 1/k and 1/k²). Each clip holds 1 to 3 beeps of a random pitch
    (150-1,200 Hz), duration, loudness and envelope; a beep is steady, a siren (slow vibrato of ±3-8%), or a
    chirp (a glide to 0.5-2 × its pitch); white noise at 10-30 dB SNR under the whole clip. The class is in
    the timbre, not in the pitch or the rhythm. As many clips per waveform as per digit (balanced classes).
Each clip is paired with an image, one object of its kind drawn as the scenes draw it (data/vqa_scenes.py
`render`: a random colour, size and place on the dark noisy canvas; a digit's image from the split's own
scikit-learn digits), and a text naming that object, "a {colour} {kind}.", the scenes CLIP's caption form.

Splits and seeds are fixed: scene `i` of a split is the same on every call. Examples:
{"audio": float32 (16000,) in [-1, 1], "image": uint8 (64, 64, 3), "text": str, "label": int32 (into
KINDS), "colour": int32 (into COLOURS)}.
"""

import functools

import numpy as np

from papers_jax.data import spoken, vqa_scenes
from papers_jax.data.audio import SAMPLE_RATE
from papers_jax.errors import DataError

KINDS = vqa_scenes.KINDS                       # the class names, as the scenes CLIP reads them
COLOURS = tuple(vqa_scenes.COLOURS)
WAVEFORMS = {"circle": "sine", "square": "square", "triangle": "triangle"}
CLIP_SECONDS = 1.0
NUM_SAMPLES = int(CLIP_SECONDS * SAMPLE_RATE)
SPLITS = ("train", "test")
SEED = 32
_SPLIT_SEED = {"train": 0, "test": 1}


def oscillator(waveform: str, phase: np.ndarray) -> np.ndarray:
  """A band-limited periodic wave of `phase` (radians, (n,)): the sum of its odd harmonics below the Nyquist
  frequency of the instantaneous pitch (at most 40), normalised to peak about 1."""
  if waveform == "sine":
    return np.sin(phase)
  freq = np.abs(np.gradient(phase)) * SAMPLE_RATE / (2 * np.pi)
  k = np.arange(1, 80, 2)[:, None]
  keep = k * freq[None] < SAMPLE_RATE / 2
  if waveform == "square":
    amplitude = 4 / np.pi / k
  elif waveform == "triangle":
    amplitude = (-1.0) ** ((k - 1) // 2) * 8 / np.pi ** 2 / k ** 2
  else:
    raise DataError(f"unknown waveform {waveform!r}; use one of {tuple(WAVEFORMS.values())}")
  return np.sum(keep * amplitude * np.sin(k * phase[None]), axis=0)


def tone_clip(waveform: str, rng: np.random.Generator) -> np.ndarray:
  """One second of 1-3 beeps of `waveform` with white noise (the module docstring)."""
  t = np.arange(NUM_SAMPLES) / SAMPLE_RATE
  clip = np.zeros(NUM_SAMPLES)
  num_beeps = int(rng.integers(1, 4))
  start = rng.uniform(0.0, 0.3)
  for _ in range(num_beeps):
    length = rng.uniform(0.12, 0.6 / num_beeps + 0.1)
    if start + 0.05 > CLIP_SECONDS:
      break
    f0 = np.exp(rng.uniform(np.log(150.0), np.log(1200.0)))
    u = np.clip((t - start) / length, 0.0, 1.0)
    style = rng.integers(3)
    if style == 0:      # steady
      freq = np.full_like(t, f0)
    elif style == 1:    # siren: a slow vibrato
      freq = f0 * (1 + rng.uniform(0.03, 0.08) * np.sin(2 * np.pi * rng.uniform(2.0, 6.0) * t))
    else:               # chirp: a glide
      freq = f0 * np.exp(np.log(rng.uniform(0.5, 2.0)) * u)
    phase = 2 * np.pi * np.cumsum(freq) / SAMPLE_RATE + rng.uniform(0, 2 * np.pi)
    attack, release = rng.uniform(0.005, 0.05), rng.uniform(0.01, 0.1)
    inside = slice(int(start * SAMPLE_RATE), min(NUM_SAMPLES, int((start + length) * SAMPLE_RATE)))
    ts = t[inside]
    envelope = np.minimum(np.clip((ts - start) / attack, 0, 1), np.clip((start + length - ts) / release, 0, 1))
    clip[inside] += envelope * rng.uniform(0.2, 0.6) * oscillator(waveform, phase[inside])
    start += length + rng.uniform(0.03, 0.2)
  signal_rms = np.sqrt(np.mean(clip ** 2)) + 1e-8
  noise = rng.standard_normal(NUM_SAMPLES) * signal_rms / 10 ** (rng.uniform(10.0, 30.0) / 20)
  return np.clip(clip + noise, -1.0, 1.0).astype(np.float32)


def fit_clip(audio: np.ndarray) -> np.ndarray:
  """Zero-padded (centred) or centre-cut to NUM_SAMPLES."""
  audio = np.asarray(audio, np.float32)
  if len(audio) >= NUM_SAMPLES:
    start = (len(audio) - NUM_SAMPLES) // 2
    return audio[start:start + NUM_SAMPLES]
  left = (NUM_SAMPLES - len(audio)) // 2
  return np.pad(audio, (left, NUM_SAMPLES - len(audio) - left))


@functools.cache
def _digit_images_by_class(split: str) -> tuple[np.ndarray, ...]:
  """Indices of the split's scikit-learn digit images, per digit."""
  labels = np.asarray(vqa_scenes._digits(split)._labels)
  return tuple(np.flatnonzero(labels == d) for d in range(10))


def object_image(kind: str, rng: np.random.Generator, split: str) -> tuple[np.ndarray, int]:
  """One object of `kind` in a random colour, size and place, drawn as the scenes draw it: (image, colour id)."""
  colour = int(rng.integers(len(COLOURS)))
  size = 16 if kind.isdigit() else int(rng.integers(11, 16))
  x, y = (int(v) for v in rng.integers(1, vqa_scenes.SIZE - size, 2))
  digit_index = int(rng.choice(_digit_images_by_class(split)[int(kind)])) if kind.isdigit() else -1
  obj = dict(kind=kind, colour=COLOURS[colour], x=x, y=y, size=size, digit_index=digit_index)
  return vqa_scenes.render([obj], vqa_scenes._digits(split), rng), colour


class SoundSource:
  """The audio-image-text triplets of `split` (the module docstring); the spoken digits come from their stored
  set (data/spoken.py, generated on first use), the tones and images are drawn on access."""

  def __init__(self, split: str, *, num_speakers: int = 64, repeats: int = 2, limit: int = 0):
    if split not in SPLITS:
      raise DataError(f"unknown split {split!r} of the sounds data (data.train_split / data.eval_split); use one "
                      f"of {SPLITS}")
    self.split, self.name, self.num_classes = split, "sounds", len(KINDS)
    self.speech = spoken.SpokenSource(split, kind="digits", num_speakers=num_speakers, repeats=repeats)
    per_class = len(self.speech) // 10
    # Example i < len(speech): spoken digit i; after that, tones: waveform-major, `per_class` each.
    self.num_tones = per_class * len(WAVEFORMS)
    labels = np.concatenate([np.asarray(self.speech._data["label"]) + len(vqa_scenes.SHAPES),
                             np.repeat(np.arange(len(WAVEFORMS)), per_class)]).astype(np.int32)
    # `limit` > 0 keeps that many examples, evenly spaced over the split (every class kept; smoke runs).
    self.index = np.arange(len(labels)) if not limit else np.linspace(0, len(labels) - 1, limit).astype(np.int64)
    self.labels = labels[self.index]
    self._labels = labels

  def __len__(self) -> int:
    return len(self.index)

  def audio(self, j: int) -> np.ndarray:
    """The clip of example `j` of the whole split (not of the `limit` view)."""
    rng = np.random.default_rng([SEED, _SPLIT_SEED[self.split], int(j), 0])
    if j < len(self.speech):
      return fit_clip(self.speech[j]["audio"])
    return tone_clip(WAVEFORMS[KINDS[int(self._labels[j])]], rng)

  def __getitem__(self, i) -> dict:
    if not 0 <= int(i) < len(self):
      raise IndexError(i)
    i = int(self.index[int(i)])
    label = int(self._labels[i])
    image, colour = object_image(KINDS[label], np.random.default_rng([SEED, _SPLIT_SEED[self.split], i, 1]),
                                 self.split)
    return {"audio": self.audio(i), "image": image, "text": f"a {COLOURS[colour]} {KINDS[label]}.",
            "label": np.int32(label), "colour": np.int32(colour)}
