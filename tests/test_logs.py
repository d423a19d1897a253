"""Training logs tell the truth: per-step lr, compile-free throughput, MFU, cumulative FLOPs, and the
compute accounting of summary.json."""

import json
import os

import jax
import numpy as np
import pytest
from flax import nnx

from conftest import load_config
from papers_jax import models
from papers_jax.core import loop

PEAK = 1e12  # FLOP/s per device, set in the config: a CPU has no known peak


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
  config = load_config("vit/digits.py", "smoke").unlock()
  config.peak_flops = PEAK
  config = config.lock()
  workdir = str(tmp_path_factory.mktemp("logs"))
  trainer = loop.Trainer(config, workdir)
  trainer.run()
  rows = [json.loads(l) for l in open(os.path.join(workdir, "metrics.jsonl"))]
  return config, trainer, [r for r in rows if "loss" in r], json.load(open(os.path.join(workdir, "summary.json")))


def test_lr_is_the_schedules_value_at_the_logged_step(smoke_run):
  config, trainer, rows, _ = smoke_run
  assert [r["step"] for r in rows] == list(range(config.log_every, config.num_steps + 1, config.log_every))
  for r in rows:  # the update of step s uses schedule(s - 1) (optax counts updates from 0)
    np.testing.assert_allclose(r["lr"], float(trainer.schedule(r["step"] - 1)), rtol=1e-6)
  # a window mean would differ: the cosine schedule moves within every window
  assert float(np.mean([trainer.schedule(s) for s in range(0, config.log_every)])) != pytest.approx(rows[0]["lr"])


def test_first_window_excludes_compilation(smoke_run):
  config, _, rows, summary = smoke_run
  assert rows[0]["compile_s"] > 0 and all("compile_s" not in r for r in rows[1:])
  first_window_s = config.log_every * config.batch_size / rows[0]["throughput"]
  assert first_window_s < rows[0]["compile_s"]  # a window that held the compile would take longer than it
  assert summary["compile_s"] == rows[0]["compile_s"]


def test_mfu_and_cumulative_flops_from_the_models_counter(smoke_run):
  config, trainer, rows, summary = smoke_run
  model = nnx.eval_shape(lambda: trainer.task.build_model(nnx.Rngs(0)))
  train_flops = 3 * models.forward_flops(model) * config.batch_size  # per step
  devices = trainer.mesh.devices.size
  for r in rows:
    np.testing.assert_allclose(r["flops"], r["step"] * train_flops, rtol=1e-6)
    np.testing.assert_allclose(r["mfu"], r["throughput"] / config.batch_size * train_flops / (PEAK * devices),
                               rtol=1e-6)
  params = sum(int(np.prod(p.shape)) for p in jax.tree.leaves(trainer.state.params))
  assert summary["params"] == params and summary["peak_flops"] == PEAK * devices
  assert summary["train_flops_per_example"] == 3 * summary["forward_flops_per_example"] > 0
  assert summary["train_flops"] == config.num_steps * train_flops
  assert "training = 3 × forward" in summary["flops_convention"]
  # Non-embedding params (Kaplan et al.): all but the patch projection, position embedding and class token.
  d, (ph, pw), c = model.embed_dim, model.patch_embed.patch_size, model.patch_embed.proj["kernel"].shape[2]
  embedding = (ph * pw * c * d + d) + (model.patch_embed.num_patches + 1) * d + d
  assert summary["non_embedding_params"] == params - embedding > 0
  assert summary["examples_seen"] == config.num_steps * config.batch_size and summary["tokens_seen"] is None
  assert summary["wall_time_s"] > 0


def test_no_mfu_without_a_known_peak():
  config = load_config("vit/digits.py", "smoke")
  from papers_jax.core import flops
  assert flops.run_peak(config)[0] is None  # CPU: no invented number
  assert flops.known_peak("NVIDIA H100 80GB HBM3", "bfloat16")[0] == 989e12
