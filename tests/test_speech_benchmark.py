"""tools/benchmark.py's speech twins: HF's wav2vec 2.0 (pre-training and CTC) have our models' sizes (parameter
counts equal) and run. PAPERS_JAX_FULL_PARITY=1 adds Whisper's greedy `generate` twin (as many tokens as ours)
and `--mode decode` end to end (tests/test_benchmark.py checks the Whisper twin's parameter count)."""

import importlib.util
import os

import jax
import numpy as np
import pytest
from flax import nnx

from papers_jax import tasks
from papers_jax.core import config as config_lib

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
pytestmark = pytest.mark.torch
FULL = bool(os.environ.get("PAPERS_JAX_FULL_PARITY"))


@pytest.fixture(scope="module")
def benchmark():
  spec = importlib.util.spec_from_file_location("benchmark", os.path.join(ROOT, "tools", "benchmark.py"))
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def twin_of(benchmark, config: str, mode: str = "train", **model):
  pytest.importorskip("transformers")
  import torch
  cfg = config_lib.load(os.path.join(ROOT, "configs", config)).unlock()
  cfg.model.update(model)
  task = tasks.get_task(cfg.lock())
  ours = nnx.eval_shape(lambda: task.build_model(nnx.Rngs(0)))
  count = sum(x.size for x in jax.tree.leaves(nnx.state(ours, nnx.Param)))
  return (*benchmark._transformers_twin(ours, task, 2, "cpu", torch, mode), ours, task, count, torch)


@pytest.mark.parametrize("config", ["wav2vec2/spoken_digits_pretrain.py:smoke", "wav2vec2/spoken_numbers_ctc.py:smoke"])
def test_wav2vec2_twins_have_our_sizes(benchmark, config):
  # The smoke model with a second codebook group, so the product quantiser's layout is exercised.
  twin, loss, infer, library, ours, task, count, torch = twin_of(benchmark, config, num_codevector_groups=2)
  assert type(twin).__name__ == ("Wav2Vec2ForCTC" if "ctc" in config else "Wav2Vec2ForPreTraining")
  assert sum(p.numel() for p in twin.parameters()) == count
  assert torch.isfinite(loss())
  frames = ours.num_frames(task.synthetic_batch(2, np.random.default_rng(0))["audio"].shape[1])
  assert infer().shape[:2] == (2, frames)


@pytest.mark.skipif(not FULL, reason="set PAPERS_JAX_FULL_PARITY=1")
def test_whisper_decode_twin_generates_as_many_tokens_as_ours(benchmark):
  _, _, decode, _, _, task, _, _ = twin_of(benchmark, "whisper/spoken_numbers.py:smoke", mode="decode")
  tokens = decode()  # HF returns the prompt, then the new tokens
  assert tokens.shape == (2, len(task.prompt) + int(task.c.max_tokens) + 1)
  assert tokens[:, :len(task.prompt)].tolist() == [task.prompt] * 2


@pytest.mark.skipif(not FULL, reason="set PAPERS_JAX_FULL_PARITY=1 (compiles the decoding loop)")
def test_decode_mode_times_whisper_against_hf_generate(benchmark):
  result = benchmark.main(["--config", os.path.join(ROOT, "configs", "whisper/spoken_numbers.py:smoke"), "--batch", "8",
                           "--mode", "decode", "--steps", "1", "--warmup", "0", "--reference", "torch",
                           "--reference-gemm-size", "64"])
  assert result["mode"] == "decode" and result["median_step_s"] > 0 and np.isnan(result["analytic_flops_per_sample"])
  assert result["torch_reference"]["model"] == "WhisperForConditionalGeneration" and result["jax_to_torch"] > 0
