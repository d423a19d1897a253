"""The audio front ends against HF's feature extractors, the bundled spoken set's split and storage, and
the manifest source."""

import os

import jax
import numpy as np
import pytest

from papers_jax.data import audio, spoken
from papers_jax.data.sources import get_source
from papers_jax.errors import DataError

transformers = pytest.importorskip("transformers")


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
  path = str(tmp_path_factory.mktemp("cache"))
  old = os.environ.get("PAPERS_JAX_CACHE")
  os.environ["PAPERS_JAX_CACHE"] = path
  spoken.load.cache_clear()
  yield path
  if old is None:
    os.environ.pop("PAPERS_JAX_CACHE")
  else:
    os.environ["PAPERS_JAX_CACHE"] = old
  spoken.load.cache_clear()


@pytest.fixture(scope="module")
def small(cache):
  """A 5-speaker set: 4 train speakers × 10 digits, 1 test speaker."""
  return {split: spoken.SpokenSource(split, num_speakers=5, repeats=1) for split in ("train", "test")}


def speech(seconds=1.0, seed=0):
  """A spoken number padded with a little noise to `seconds`."""
  x = spoken.synthesize("three hundred and forty two", "en-us+f2")[:int(seconds * 16000)]
  x = np.pad(x, (0, int(seconds * 16000) - len(x)))
  return x + 1e-3 * np.random.RandomState(seed).randn(len(x)).astype(np.float32)


def test_log_mel_matches_whispers_feature_extractor():
  x = speech(2.0)
  ref = transformers.WhisperFeatureExtractor(chunk_length=2)(x, sampling_rate=16000, return_tensors="np")
  expected = ref["input_features"][0].T  # (frames, 80)
  got = np.asarray(jax.jit(audio.log_mel_spectrogram)(x[None]))[0]
  assert got.shape == expected.shape == (200, 80)
  np.testing.assert_allclose(got, expected, atol=2e-4, rtol=1e-4)


def test_mel_filters_are_whispers():
  from transformers.audio_utils import mel_filter_bank
  expected = mel_filter_bank(num_frequency_bins=201, num_mel_filters=80, min_frequency=0.0, max_frequency=8000.0,
                             sampling_rate=16000, norm="slaney", mel_scale="slaney")
  np.testing.assert_allclose(audio.mel_filters(80), expected, atol=1e-7, rtol=1e-5)


def test_waveform_normalisation_matches_wav2vec2s_over_the_valid_samples():
  x = [speech(1.0, seed=1)[:12000], speech(1.0, seed=2)[:16000]]
  ref = transformers.Wav2Vec2FeatureExtractor(do_normalize=True, return_attention_mask=True)(
      x, sampling_rate=16000, padding=True, return_tensors="np")
  padded, masks = zip(*(audio.pad_or_trim(a, 16000) for a in x))
  got = np.asarray(audio.normalize_waveform(np.stack(padded), np.stack(masks)))
  np.testing.assert_array_equal(np.stack(masks), ref["attention_mask"].astype(bool))
  np.testing.assert_allclose(got, ref["input_values"], atol=1e-4)
  assert np.all(got[0, 12000:] == 0)


def test_spec_augment_masks_whole_bands_and_spans():
  features = np.ones((100, 80), np.float32)
  out = audio.spec_augment(features, np.random.default_rng(0), freq_masks=1, freq_width=10, time_masks=1,
                           time_ratio=0.1)
  masked_channels = np.flatnonzero((out == 0).all(0))
  masked_frames = np.flatnonzero((out == 0).all(1))
  assert 0 < len(masked_channels) <= 10 and 0 < len(masked_frames) <= 10
  assert np.all(np.diff(masked_channels) == 1) and np.all(np.diff(masked_frames) == 1)  # contiguous
  assert (out == 0).sum() == 100 * len(masked_channels) + 80 * len(masked_frames) - len(masked_channels) * len(
      masked_frames)


def test_spoken_digits_split_by_speaker_with_transcripts(small):
  train, test = small["train"], small["test"]
  assert len(train) == 40 and len(test) == 10
  assert not set(train._data["speaker"]) & set(test._data["speaker"])  # no test voice is heard in training
  for i in range(0, 40, 7):
    example = train[i]
    assert example["text"] == spoken.DIGITS[example["label"]]
    assert example["audio"].dtype == np.float32 and 0.15 < len(example["audio"]) / 16000 < 1.5
    assert 0.05 < np.abs(example["audio"]).max() <= 1.0
  assert sorted(np.bincount(train._data["label"])) == [4] * 10


def test_spoken_set_is_stored_once_and_read_back_identically(small, cache):
  path = os.path.join(cache, "spoken", "digits_train_s5_r1_seed0.npz")
  assert os.path.exists(path) and not [f for f in os.listdir(os.path.dirname(path)) if "partial" in f]
  first = small["train"][3]["audio"]
  spoken.load.cache_clear()  # a new process: read from the file, not regenerated
  mtime = os.path.getmtime(path)
  again = spoken.SpokenSource("train", num_speakers=5, repeats=1)[3]["audio"]
  np.testing.assert_array_equal(first, again)
  assert os.path.getmtime(path) == mtime


def test_spoken_numbers_are_written_out_numbers(cache):
  import ml_collections
  source = get_source(ml_collections.ConfigDict(dict(name="spoken_numbers", num_speakers=5, repeats=1)), "test")
  assert len(source) == 10
  from papers_jax.data import translation
  for i in range(len(source)):
    example = source[i]
    assert example["text"] == translation.english_number(int(example["label"])).replace("-", " ")


def test_manifest_source_reads_wavs_and_transcripts(tmp_path):
  x = speech(0.5)
  audio.write_wav(str(tmp_path / "a.wav"), x)
  (tmp_path / "train.tsv").write_text(f"{tmp_path}\na.wav\t{len(x)}\n")
  (tmp_path / "train.wrd").write_text("three hundred and forty two\n")
  source = audio.ManifestSource(str(tmp_path), "train")
  example = source[0]
  assert example["text"] == "three hundred and forty two"
  np.testing.assert_allclose(example["audio"], x, atol=1e-4)  # 16-bit PCM
  (tmp_path / "bad.tsv").write_text(f"{tmp_path}\na.wav 100\n")
  with pytest.raises(DataError, match="num_samples"):
    audio.ManifestSource(str(tmp_path), "bad")
  with pytest.raises(DataError, match="no manifest"):
    audio.ManifestSource(str(tmp_path), "test")
