"""Spoken digits and numbers, synthesised offline: the bundled speech set (no wheel ships recorded speech).

The synthesiser is eSpeak NG, from the libespeak-ng and voice data that the `espeakng-loader` wheel
bundles, driven through ctypes. Nothing is downloaded. The seed fixes the speakers, the split, the texts,
the rates and pitches; eSpeak's own output is not bit-exact between generations (its noise sources and
some internal state carry over between calls: durations agree, samples differ slightly), so a set is
generated once and stored under `$PAPERS_JAX_CACHE/spoken/` (default `~/.cache/papers_jax`), and every
later use reads the same waveforms. Delete the file to regenerate it.

Speakers. A speaker is an English accent (8: en, en-us, en-gb-scotland, ...) with a voice variant (the
bundled male, female and character variants) and its own pitch, pitch range and speaking rate drawn
from the seed. Each utterance jitters the rate and pitch around its speaker's. The split is by speaker:
`test` speakers are never heard in `train`, so a test score measures generalisation to new voices.

Utterances ("kind"):
  digits     one digit word, "zero" … "nine"; label = the digit (10 classes). Every speaker says each
             digit `repeats` times.
  numbers    a number 0–999 written out as British English words ("three hundred and forty two", the
             words of data/translation.py without the hyphen), for CTC and sequence-to-sequence models;
             label = the number. Every speaker says `repeats` × 10 numbers.

Examples: {"audio": float32 (n,) at 16 kHz in [-1, 1], "label": int32, "text": str, "speaker": int32}.
eSpeak renders at 22,050 Hz; the waveforms are resampled to 16 kHz with a polyphase filter.
"""

import ctypes
import functools
import os
import threading

import numpy as np

from papers_jax.data import translation
from papers_jax.data.audio import SAMPLE_RATE
from papers_jax.errors import DataError
from papers_jax.models.pretrained import cache_dir

ACCENTS = ("en", "en-us", "en-gb-scotland", "en-gb-x-rp", "en-029", "en-gb-x-gbclan", "en-gb-x-gbcwmd", "en-us-nyc")
VARIANTS = ("m1", "m2", "m3", "m4", "m5", "m6", "m7", "m8", "f1", "f2", "f3", "f4", "f5", "croak", "klatt",
            "klatt2", "klatt3", "whisper", "Alex", "Annie", "Andy", "belinda", "benjamin", "david", "edward",
            "grandma", "grandpa", "linda", "michael", "robert", "steph", "travis")
DIGITS = tuple(translation.english_number(d) for d in range(10))
KINDS = ("digits", "numbers")
SPLITS = ("train", "test")
TEST_FRACTION = 0.2

_NATIVE_RATE = 22_050
_lock = threading.Lock()  # eSpeak keeps one global synthesiser


@functools.cache
def _espeak():
  """The initialised library and the list its callback fills (one per process)."""
  try:
    import espeakng_loader
  except ImportError as e:
    raise DataError("the spoken data set needs the espeakng-loader wheel: pip install espeakng-loader") from e
  lib = ctypes.CDLL(espeakng_loader.get_library_path())
  chunks: list[np.ndarray] = []
  callback_type = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p)

  def collect(wav, num_samples, events):
    if num_samples > 0:
      chunks.append(np.ctypeslib.as_array(wav, shape=(num_samples,)).copy())
    return 0

  callback = callback_type(collect)
  synchronous = 2  # AUDIO_OUTPUT_SYNCHRONOUS: samples come back through the callback
  rate = lib.espeak_Initialize(synchronous, 0, espeakng_loader.get_data_path().encode(), 0)
  if rate != _NATIVE_RATE:
    raise DataError(f"libespeak-ng failed to start (returned {rate})")
  lib.espeak_SetSynthCallback(callback)
  return lib, chunks, callback  # the callback object must outlive the library's use of it


def synthesize(text: str, voice: str, *, words_per_minute: int = 175, pitch: int = 50,
               pitch_range: int = 50) -> np.ndarray:
  """eSpeak NG's rendering of `text` with `voice` ("accent+variant"), as float32 at 16 kHz."""
  from scipy import signal
  lib, chunks, _ = _espeak()
  with _lock:
    chunks.clear()
    if lib.espeak_SetVoiceByName(voice.encode()) != 0:
      raise DataError(f"eSpeak NG has no voice {voice!r}")
    for parameter, value in ((1, words_per_minute), (3, pitch), (4, pitch_range)):  # rate, pitch, range
      lib.espeak_SetParameter(parameter, int(value), 0)
    data = text.encode()
    lib.espeak_Synth(ctypes.c_char_p(data), ctypes.c_size_t(len(data) + 1), 0, 1, 0, 0, None, None)
    lib.espeak_Synchronize()
    pcm = np.concatenate(chunks) if chunks else np.zeros(0, np.int16)
  audio = signal.resample_poly(pcm.astype(np.float32) / 32768.0, 320, 441)  # 22,050 → 16,000 Hz
  return np.clip(audio, -1.0, 1.0).astype(np.float32)


def speakers(seed: int = 0) -> list[dict]:
  """Every speaker: voice name, pitch, pitch range and rate, in a fixed order."""
  rng = np.random.default_rng(seed)
  out = []
  for accent in ACCENTS:
    for variant in VARIANTS:
      out.append(dict(voice=f"{accent}+{variant}", pitch=int(rng.integers(25, 76)),
                      pitch_range=int(rng.integers(20, 81)), rate=int(rng.integers(130, 221))))
  return out


def split_speakers(split: str, num_speakers: int, seed: int = 0) -> np.ndarray:
  """Indices of the `split` speakers among the first `num_speakers`: a seeded 20% are `test`."""
  if split not in SPLITS:
    raise DataError(f"unknown split {split!r} of the spoken data; use one of {SPLITS}")
  order = np.random.default_rng(seed + 1).permutation(num_speakers)
  num_test = max(1, round(TEST_FRACTION * num_speakers))
  return np.sort(order[:num_test] if split == "test" else order[num_test:])


def _utterances(kind: str, speaker_ids, repeats: int, seed: int):
  """(speaker id, text, label, rate, pitch) of every utterance, in a fixed order."""
  table = speakers(seed)
  for s in speaker_ids:
    rng = np.random.default_rng([seed, int(s)])
    spec = table[s]
    if kind == "digits":
      labels = np.repeat(np.arange(10), repeats)
    else:
      labels = rng.integers(0, 1000, size=10 * repeats)
    for label in labels:
      text = translation.english_number(int(label)).replace("-", " ")
      rate = int(spec["rate"] * rng.uniform(0.85, 1.15))
      pitch = int(np.clip(spec["pitch"] + rng.integers(-8, 9), 0, 99))
      yield int(s), text, int(label), rate, pitch, spec


def _generate(kind: str, split: str, num_speakers: int, repeats: int, seed: int) -> dict[str, np.ndarray]:
  audio, labels, texts, speaker_of = [], [], [], []
  for s, text, label, rate, pitch, spec in _utterances(kind, split_speakers(split, num_speakers, seed), repeats,
                                                        seed):
    audio.append(synthesize(text, spec["voice"], words_per_minute=rate, pitch=pitch,
                            pitch_range=spec["pitch_range"]))
    labels.append(label)
    texts.append(text)
    speaker_of.append(s)
  pcm = np.round(np.concatenate(audio) * 32767.0).astype(np.int16)  # stored as 16-bit PCM
  return {"pcm": pcm, "offsets": np.cumsum([0] + [len(a) for a in audio]),
          "label": np.asarray(labels, np.int32), "text": np.asarray(texts), "speaker": np.asarray(speaker_of, np.int32)}


@functools.cache
def load(kind: str, split: str, num_speakers: int, repeats: int, seed: int) -> dict[str, np.ndarray]:
  """The stored set, generated and written on first use (atomically: a crash leaves no partial file)."""
  path = os.path.join(cache_dir(), "spoken", f"{kind}_{split}_s{num_speakers}_r{repeats}_seed{seed}.npz")
  if not os.path.exists(path):
    data = _generate(kind, split, num_speakers, repeats, seed)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    partial = f"{path}.{os.getpid()}.partial.npz"
    np.savez(partial, **data)
    os.replace(partial, path)
  with np.load(path) as f:
    return {k: f[k] for k in f.files}


class SpokenSource:
  """The bundled spoken digits or numbers (see the module docstring), generated on first use (about 15 ms
  an utterance) and stored."""

  def __init__(self, split: str, *, kind: str = "digits", num_speakers: int = 64, repeats: int = 2,
               seed: int = 0):
    if kind not in KINDS:
      raise DataError(f"unknown spoken data kind {kind!r}; use one of {KINDS}")
    if not 5 <= num_speakers <= len(ACCENTS) * len(VARIANTS):
      raise DataError(f"num_speakers={num_speakers}: choose 5 to {len(ACCENTS) * len(VARIANTS)}")
    if repeats < 1:
      raise DataError(f"repeats={repeats}: at least 1")
    self.name, self.split, self.kind = f"spoken_{kind}", split, kind
    self.num_classes = 10 if kind == "digits" else 1000
    self._data = load(kind, split, num_speakers, repeats, seed)

  def __len__(self) -> int:
    return len(self._data["label"])

  def __getitem__(self, i) -> dict:
    d = self._data
    audio = d["pcm"][d["offsets"][i]:d["offsets"][i + 1]].astype(np.float32) / 32767.0
    return {"audio": audio, "label": d["label"][i],
            "text": str(d["text"][i]), "speaker": d["speaker"][i]}
