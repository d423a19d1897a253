"""tools/benchmark.py: the harness runs end to end (AOT compile, timed steps, overrides, JSON) and reports
the models' FLOP counters (each checked against XLA in tests/test_flops.py) beside XLA's count."""

import importlib.util
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from papers_jax import models
from papers_jax.core import config as config_lib

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def benchmark():
  spec = importlib.util.spec_from_file_location("benchmark", os.path.join(ROOT, "tools", "benchmark.py"))
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def test_harness_runs_a_config_with_overrides(benchmark, tmp_path, monkeypatch):
  # Fixed step times and peak: the arithmetic is checked, not this machine's speed.
  real_time_steps = benchmark.time_steps
  monkeypatch.setattr(benchmark, "time_steps", lambda *a, **k: ([0.5, 0.25], real_time_steps(*a, **k)[1]))
  monkeypatch.setattr(benchmark, "device_peak", lambda dtype: (2e12, "fixed for the test"))
  out = tmp_path / "result.json"
  result = benchmark.main(["--config", os.path.join(ROOT, "configs/mae/pretrain.py:smoke=True"), "--batch", "8",
                           "--steps", "2", "--warmup", "1", "--set", "model.encoder_mask_token=true",
                           "--set", "model.mask_ratio=0.5", "--json", str(out)])
  assert json.load(open(out)) == json.loads(json.dumps(result))
  assert result["model"] == "mae_vit_base_patch16" and result["overrides"][0] == "model.encoder_mask_token=true"
  assert result["compile_s"] > 0 and result["step_times_s"] == [0.5, 0.25]
  assert (result["min_step_s"], result["median_step_s"], result["max_step_s"]) == (0.25, 0.375, 0.5)
  flops = result["analytic_flops_per_sample"]
  assert np.isfinite(flops) and flops > 0
  # MFU = analytic FLOPs of the batch per median step / peak; samples/s = batch / median step.
  assert result["samples_per_s"] == pytest.approx(8 / 0.375)
  assert result["mfu"] == pytest.approx(flops * 8 / 0.375 / 2e12)
  assert result["peak_flops_per_s"] == 2e12 and result["peak_source"] == "fixed for the test"
  assert result["peak_memory_bytes"] > 0
  usage = result["host_usage_per_step"]
  assert set(usage) == {"user_cpu_s", "system_cpu_s", "minor_page_faults", "max_resident_bytes"}
  assert usage["user_cpu_s"] > 0 and usage["max_resident_bytes"] > result["peak_memory_bytes"] / 2
  assert result["host_cpu"]
  assert "glibc_tunables" in result and "transparent_hugepage" in result
  assert "xla_flops_note" not in result  # the RNG's while loops run no matmul: XLA's count stays whole


def test_harness_flags_xla_counts_of_a_scanned_program(benchmark):
  result = benchmark.main(["--config", os.path.join(ROOT, "configs/vit/digits.py:smoke=True"), "--mode", "infer",
                           "--scan", "--set", "model.drop_path_rate=0", "--steps", "1", "--warmup", "1"])
  # The smoke ViT has 2 blocks and XLA counts the loop's body once: well under the analytic count.
  assert result["scan"] and "while loop" in result["xla_flops_note"], result.get("xla_flops_note")
  assert result["xla_to_analytic"] < 0.9


@pytest.mark.parametrize("mode", ["infer", "input"])
def test_harness_runs_each_mode(benchmark, mode, tmp_path):
  profile = ["--profile", str(tmp_path)] if mode == "infer" else []
  result = benchmark.main(["--config", os.path.join(ROOT, "configs/vit/digits.py:smoke=True"), "--mode", mode,
                           "--steps", "3", "--warmup", "1", *profile])
  assert result["mode"] == mode and "xla_flops_note" not in result
  if mode == "input":
    assert result["data"] == "digits" and result["examples_per_s"] > 0 and result["batches"] == 3
  else:
    assert 1.0 <= result["xla_to_analytic"] < 1.5 and result["samples_per_s"] > 0
    # The profile found the compiled program's instructions in the trace, the matmuls among them.
    kinds = result["profile"]["seconds_per_step_by_kind"]
    assert result["profile"]["instructions_timed"] > 10 and kinds.get("matmul", 0) > 0, result["profile"]


def test_input_mode_decodes_a_generated_jpeg_folder(benchmark, tmp_path):
  spec = importlib.util.spec_from_file_location("make_image_folder", os.path.join(ROOT, "tools", "make_image_folder.py"))
  maker = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(maker)
  summary = maker.main(["--out", str(tmp_path), "--images", "6", "--classes", "2"])
  assert 30 < summary["mean_file_kb"] < 300

  from papers_jax.data.sources import ImageFolderSource
  source = ImageFolderSource(str(tmp_path), "train")
  assert len(source) == 6 and source.num_classes == 2
  for i in range(len(source)):
    image = source[i]["image"]
    assert image.dtype == np.uint8 and (image.shape[1], image.shape[0]) in maker.SIZES and image.shape[2] == 3

  result = benchmark.main(["--config", os.path.join(ROOT, "configs/vit/imagenet.py:smoke=True"), "--mode", "input",
                           "--set", "data.name=folder", "--set", f"data.data_dir={tmp_path}",
                           "--set", "data.train_split=train", "--steps", "2", "--warmup", "1"])
  assert result["data"] == "folder" and result["examples_per_s"] > 0 and result["batches"] == 2
  assert result["serial_read_ms_per_example"] > 0 and result["serial_preprocess_ms_per_example"] > 0


@pytest.mark.parametrize("name", ["vit_base_patch16_224", "mae_vit_base_patch16"])
def test_remat_and_scan_leave_loss_and_gradients_unchanged(name):
  small = dict(img_size=32, patch_size=8, embed_dim=64, depth=2, num_heads=4)
  small |= dict(num_classes=10) if name.startswith("vit") else dict(decoder_embed_dim=32, decoder_depth=1,
                                                                     decoder_num_heads=4)
  images = jax.random.normal(jax.random.key(1), (4, 32, 32, 3))

  def loss_and_grads(remat, scan=False):
    model = models.create(name, **small, remat=remat, scan=scan, rngs=nnx.Rngs(0))
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)

    def loss(p):
      out = nnx.merge(graphdef, p, rest)(images, **({"rng": jax.random.key(2)} if name.startswith("mae") else {}))
      return jnp.mean(jnp.square(out[0] if isinstance(out, tuple) else out))
    return jax.jit(jax.value_and_grad(loss))(params)

  reference = loss_and_grads("")
  variants = (("full", False), ("dots", False), ("dots_no_batch", False), ("", True), ("dots", True))
  if name.startswith("mae"):  # the same code path as the ViT's; two variants keep the suite short
    variants = (("full", False), ("dots", True))
  for policy, scan in variants:
    value, grads = loss_and_grads(policy, scan)
    np.testing.assert_allclose(value, reference[0], rtol=1e-6)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7), grads, reference[1])
  with pytest.raises(Exception, match="remat must be"):
    models.create(name, **small, remat="everything", rngs=nnx.Rngs(0))


def test_override_parsing(benchmark):
  config = config_lib.load(os.path.join(ROOT, "configs/mae/pretrain.py:smoke=True")).unlock()
  benchmark.apply_override(config, "model.encoder_mask_token=true")
  benchmark.apply_override(config, "model.mask_ratio=0.9")
  benchmark.apply_override(config, "data.name=tfds:other")
  assert config.model.encoder_mask_token is True and config.model.mask_ratio == 0.9
  assert config.data.name == "tfds:other"
  with pytest.raises(SystemExit, match="KEY=VALUE"):
    benchmark.apply_override(config, "model.mask_ratio")


# The text tasks pass their sequence lengths to the models' counters; wide enough that matmuls dominate.
LM_CASES = {
    "bert": ("bert/python_docs.py:smoke", ["model.hidden_size=384", "model.num_heads=6",
                                           "model.intermediate_size=1536"]),
    "transformer": ("transformer/numbers.py:smoke", ["model.d_model=384", "model.num_heads=6", "model.d_ff=1536"]),
}


@pytest.mark.parametrize("case", sorted(LM_CASES))
def test_text_tasks_count_flops_like_xla(benchmark, case):
  config, overrides = LM_CASES[case]
  sets = [x for item in overrides + ["model.vocab_size=512"] for x in ("--set", item)]
  result = benchmark.main(["--config", os.path.join(ROOT, "configs", config), "--mode", "infer", "--batch", "8",
                           "--steps", "1", "--warmup", "0", *sets])
  assert 1.0 <= result["xla_to_analytic"] < 1.1, result["xla_to_analytic"]
  cfg = config_lib.load(os.path.join(ROOT, "configs", config)).lm
  length = cfg.max_seq_len if case == "bert" else cfg.max_source_len + cfg.max_target_len
  assert result["tokens_per_s"] == pytest.approx(result["samples_per_s"] * length)


def test_gemm_rate_is_the_fastest_call_with_a_fake_clock(benchmark, monkeypatch):
  calls, clock = [], iter([10.0, 13.0, 20.0, 22.0, 30.0, 34.0, 40.0, 42.5, 50.0, 55.0])  # calls of 3, 2, 4, 2.5, 5 s
  monkeypatch.setattr(benchmark, "time", type("FakeTime", (), {"perf_counter": staticmethod(lambda: next(clock))}))
  rate = benchmark.gemm_rate(lambda: calls.append(1), 100)
  assert len(calls) == 6  # one untimed warm-up call, then five timed
  assert rate == 2 * 100 ** 3 / 2.0


@pytest.mark.torch
@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_reference_times_timm_and_its_gemm_in_the_same_run(benchmark, dtype):
  pytest.importorskip("torch")
  result = benchmark.main(["--config", os.path.join(ROOT, "configs/vit/digits.py:smoke"), "--batch", "8",
                           "--steps", "2", "--warmup", "1", "--reference", "torch", "--dtype", dtype,
                           "--reference-gemm-size", "256"])  # CPUs without native bf16 take minutes at 2048³
  ref = result["torch_reference"]
  assert ref["device"] == "cpu" and ref["dtype"] == dtype  # JAX's device and precision
  assert not ref["compiled"] and 0 < ref["min_step_s"] <= ref["median_step_s"] <= ref["max_step_s"]
  assert np.isfinite(ref["gemm_peak_flops_per_s"]) and ref["gemm_peak_flops_per_s"] > 0  # its value: the machine's
  assert result["jax_to_torch"] == pytest.approx(ref["median_step_s"] / result["median_step_s"])


# Both twins are built and checked; the timed run against one (the harness's code is the same for either) is GPT's.
@pytest.mark.torch
@pytest.mark.parametrize("config, timed", [("gpt/python_docs.py:smoke", True), ("bert/python_docs.py:smoke", False)])
def test_language_models_are_timed_against_transformers_of_the_same_size(benchmark, config, timed):
  pytest.importorskip("transformers")
  import torch
  from papers_jax import tasks
  cfg = config_lib.load(os.path.join(ROOT, "configs", config)).unlock()
  cfg.model.vocab_size = 512
  task = tasks.get_task(cfg.lock())
  ours = nnx.eval_shape(lambda: task.build_model(nnx.Rngs(0)))
  twin, loss, infer, library = benchmark._transformers_twin(ours, task, 2, "cpu", torch)
  assert library["library"] == "transformers"
  # Same sizes: every parameter counted once (the LM heads are tied to the token embedding in both).
  ours_count = sum(x.size for x in jax.tree.leaves(nnx.state(ours, nnx.Param)))
  assert sum(p.numel() for p in twin.parameters()) == ours_count
  assert torch.isfinite(loss()) and infer().shape[-1] == 512
  if not timed:
    return
  result = benchmark.main(["--config", os.path.join(ROOT, "configs", config), "--batch", "8", "--steps", "1",
                           "--warmup", "1", "--set", "model.vocab_size=512", "--reference", "torch"])
  assert result["torch_reference"]["model"] == type(twin).__name__ and result["jax_to_torch"] > 0


@pytest.mark.torch
def test_whisper_is_timed_against_transformers_of_the_same_size(benchmark):
  pytest.importorskip("transformers")
  import torch
  from papers_jax import tasks
  cfg = config_lib.load(os.path.join(ROOT, "configs", "whisper/spoken_numbers.py:smoke"))
  task = tasks.get_task(cfg)
  ours = nnx.eval_shape(lambda: task.build_model(nnx.Rngs(0)))
  twin, loss, infer, library = benchmark._transformers_twin(ours, task, 2, "cpu", torch)
  ours_count = sum(x.size for x in jax.tree.leaves(nnx.state(ours, nnx.Param)))
  # HF stores the encoder's fixed sinusoids as a parameter; ours computes them
  assert sum(p.numel() for p in twin.parameters()) == ours_count + ours.max_source_positions * ours.d_model
  assert torch.isfinite(loss()) and infer().shape[-1] == ours.token_embedding.shape[0]
  batch = task.synthetic_batch(2, np.random.default_rng(0))
  assert batch["audio"].shape == (2, task.num_samples) and batch["tokens"][0, 0] == task.tokens.sot
