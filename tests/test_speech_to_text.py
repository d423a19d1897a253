"""The speech-to-text task's decoder targets: Whisper's prompt given, the transcript and <|endoftext|>
predicted. Its end-to-end smoke run is tests/test_configs.py's; WER / CER (evaluators/speech.py) are
checked against jiwer in tests/test_wav2vec2.py."""

import numpy as np
import pytest

from conftest import load_config
from papers_jax import tasks
from papers_jax.errors import DataError

def test_targets_are_the_transcript_and_end_of_text_after_the_prompt():
  task = tasks.get_task(load_config("whisper/spoken_numbers.py", "smoke"))
  example = {"audio": np.ones(100, np.float32), "text": "forty two", "label": 42}
  out = task.preprocess(train=True)(example, None)
  ids = task.encode_text("forty two")
  prompt = task.prompt
  assert len(prompt) == 4 and prompt[0] == task.tokens.sot
  np.testing.assert_array_equal(out["tokens"][:len(prompt) + len(ids) + 1], prompt + ids + [task.tokens.eot])
  targets = out["tokens"][1:][out["target_mask"]]  # what the masked positions predict
  np.testing.assert_array_equal(targets, ids + [task.tokens.eot])
  assert out["audio"].shape == (task.num_samples,) and out["audio_mask"].sum() == 100
  assert task.decode_text(ids + [task.tokens.eot, 3, 4]) == "forty two"
  with pytest.raises(DataError, match="alphabet"):
    task.preprocess(train=True)({"audio": np.ones(10, np.float32), "text": "Forty-2"}, None)
