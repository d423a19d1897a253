"""TFDS `librispeech` prepared as ArrayRecord, read through `data.name="tfds:librispeech"` without
TensorFlow: a tiny set written here in TFDS's layout (dataset_info.json, features.json, one ArrayRecord
shard of serialised tf.train.Examples) with librispeech's features: 16 kHz int16 "speech", "text",
"speaker_id", "chapter_id", "id". Nothing downloads."""

import json
import pickle

import ml_collections
import numpy as np
import pytest

from papers_jax.data import audio, sources
from papers_jax.errors import DataError

TEXTS = ["HE HOPED THERE WOULD BE STEW", "STUFF IT INTO YOU", "AFTER EARLY NIGHTFALL"]


def waveform(i: int, dtype) -> np.ndarray:
  x = 0.5 * np.sin(2 * np.pi * 220 * (i + 1) * np.arange(800 + 400 * i) / 16_000)
  return np.round(x * 32767).astype(np.int16) if dtype == np.int16 else x.astype(dtype)


def prepare(data_dir, dataset: str, dtype, rate: int = 16_000):
  """Writes the set with `tfds build`'s machinery. TFDS's Audio feature cannot be built without TensorFlow,
  so the samples are written as the Tensor feature it extends (the same serialised records), and
  features.json is then given the Audio entry that librispeech's builder writes."""
  import tensorflow_datasets as tfds

  class TinySpeech(tfds.core.GeneratorBasedBuilder, skip_registration=True):
    name = dataset
    VERSION = tfds.core.Version("2.1.1")

    def _info(self):
      return tfds.core.DatasetInfo(builder=self, features=tfds.features.FeaturesDict({
          "speech": tfds.features.Tensor(shape=(None,), dtype=dtype), "text": tfds.features.Text(),
          "speaker_id": np.int64, "chapter_id": np.int64, "id": np.str_}))

    def _split_generators(self, dl_manager):
      return {"dev_clean": self._generate_examples()}

    def _generate_examples(self):
      for i, text in enumerate(TEXTS):
        key = f"{1272 + i}-128104-{i:04d}"
        yield key, {"speech": waveform(i, dtype), "text": text, "speaker_id": 1272 + i, "chapter_id": 128104,
                    "id": key}

  builder = TinySpeech(data_dir=str(data_dir), file_format="array_record")
  builder.download_and_prepare(download_config=tfds.download.DownloadConfig(try_download_gcs=False))
  path = f"{builder.data_dir}/features.json"
  with open(path) as f:
    features = json.load(f)
  features["featuresDict"]["features"]["speech"] = {
      "pythonClassName": "tensorflow_datasets.core.features.audio_feature.Audio",
      "audio": {"shape": {"dimensions": ["-1"]}, "dtype": np.dtype(dtype).name, "fileFormat": "flac",
                "sampleRate": str(rate), "encoding": "none"}}
  with open(path, "w") as f:
    json.dump(features, f)


def test_librispeech_array_record_reads_audio_text_and_speakers(tmp_path):
  config = ml_collections.ConfigDict({"name": "tfds:librispeech", "data_dir": str(tmp_path)})
  with pytest.raises(DataError, match="tfds build librispeech"):
    sources.get_source(config, "dev_clean")
  assert not list(tmp_path.iterdir())  # nothing was downloaded or prepared

  prepare(tmp_path, "librispeech", np.int16)
  source = sources.get_source(config, "dev_clean")
  assert isinstance(source, audio.TfdsSpeechSource) and len(source) == 3
  rows = sorted((source[i] for i in range(3)), key=lambda r: r["speaker"])
  for i, row in enumerate(rows):
    assert row["audio"].dtype == np.float32
    np.testing.assert_array_equal(row["audio"], waveform(i, np.int16) / np.float32(32768))
    assert (row["text"], row["speaker"], row["id"]) == (TEXTS[i], 1272 + i, f"{1272 + i}-128104-{i:04d}")
  np.testing.assert_array_equal(pickle.loads(pickle.dumps(source))[1]["audio"], source[1]["audio"])  # data workers
  padded = audio.padded_example(rows[2], 1000)  # as the speech tasks batch it
  assert padded["audio_mask"].all() and int(padded["speaker"]) == 1274
  with pytest.raises(DataError, match="Available splits"):
    sources.get_source(config, "train_clean100")


def test_float_audio_and_the_wrong_sample_rate(tmp_path):
  prepare(tmp_path, "papers_jax_float_speech", np.float32)
  config = ml_collections.ConfigDict({"name": "tfds:papers_jax_float_speech", "data_dir": str(tmp_path),
                                      "audio_key": "speech"})
  source = sources.get_source(config, "dev_clean")
  row = min((source[i] for i in range(3)), key=lambda r: r["speaker"])
  np.testing.assert_array_equal(row["audio"], waveform(0, np.float32))
  prepare(tmp_path, "papers_jax_8k_speech", np.int16, rate=8000)
  with pytest.raises(DataError, match="8000 Hz"):
    sources.get_source(ml_collections.ConfigDict({"name": "tfds:papers_jax_8k_speech", "data_dir": str(tmp_path),
                                                  "audio_key": "speech"}), "dev_clean")
