"""BERT fine-tuning (tasks/text_finetune.py): init_from a pre-training run of configs/bert/python_docs.py.

The losses' HF parity is in tests/test_bert_fnet.py; the formulas' numpy references in
tests/test_lm_objectives.py; the smoke run of bert/finetune_numbers.py in tests/test_configs.py (that of
bert/finetune_topics.py in make test-full).
"""

import numpy as np
import pytest

from conftest import load_config
from papers_jax import convert
from papers_jax.core import loop
from papers_jax.errors import CheckpointError, ConfigError
from papers_jax.tasks import get_task


def test_init_from_a_pretraining_run_loads_the_encoder_and_skips_the_pretraining_heads(tmp_path):
  pre = load_config("bert/python_docs.py", "smoke").unlock()
  pre.num_steps, pre.checkpoint_every, pre.data.eval_split = 3, 3, ""
  loop.train(pre.lock(), str(tmp_path / "pre"))
  checkpoint = str(tmp_path / "pre" / "checkpoints" / "3" / "state")
  saved = convert._flatten(convert._restore_params_numpy(checkpoint))
  assert any(k.startswith("mlm_head/") for k in saved) and "bert/pooler/kernel" in saved

  for name, head in (("bert/finetune_topics.py", "classifier"), ("bert/finetune_numbers.py", "qa_outputs")):
    config = load_config(name, "smoke").unlock()
    config.init_from = checkpoint
    params = convert._flatten(loop.Trainer(config.lock(), str(tmp_path / head)).state.params)
    encoder = [k for k in params if k.startswith("bert/")]
    assert len(encoder) >= 29 and {f"{head}/kernel", f"{head}/bias"} <= set(params) - set(saved)
    for key in encoder:  # every encoder param is the pre-trained one (the random init would differ)
      np.testing.assert_array_equal(np.asarray(params[key]), saved[key], err_msg=key)
    assert ("bert/pooler/kernel" in params) == (head == "classifier")

  # Without the skip list the pre-training heads are unexpected: the error names them.
  config = load_config("bert/finetune_topics.py", "smoke").unlock()
  config.init_from, config.init_skip = checkpoint, ()
  with pytest.raises(CheckpointError, match="mlm_head"):
    loop.Trainer(config.lock(), str(tmp_path / "bad"))


def test_objective_and_data_must_agree():
  config = load_config("bert/finetune_topics.py", "smoke").unlock()
  config.finetune.objective = "span"
  with pytest.raises(ConfigError, match="classification task"):
    get_task(config)
