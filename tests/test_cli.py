"""The `papers-jax` command on a checkpoint of the digits demo's config: eval, predict, export, list-models."""

import json
import os
import subprocess
import sys

import jax
import numpy as np
import pytest
from PIL import Image

from conftest import ROOT
from papers_jax import cli, export
from papers_jax.core import loop
from papers_jax.data.sources import DigitsSource

CONFIG = os.path.join(ROOT, "configs", "vit", "digits.py") + ":smoke"
STEPS = ["--set", "num_steps=80", "--set", "optimizer.lr=0.005"]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp("cli_run"))
  config = cli._load_config(CONFIG, ["num_steps=80", "optimizer.lr=0.005", "checkpoint_every=40"])
  summary = loop.train(config, workdir)
  return workdir, summary


def _json_out(capsys, argv):
  assert cli.main(argv) == 0
  return json.loads(capsys.readouterr().out)


def test_eval_reproduces_the_runs_final_evaluation(run, capsys, tmp_path):
  workdir, summary = run
  assert summary["eval/accuracy"] > 0.2  # twice chance (0.1): the checkpoint has learned something
  out = _json_out(capsys, ["eval", "--config", CONFIG, "--checkpoint", workdir, *STEPS, "--out", str(tmp_path)])
  assert out["step"] == 80 and out["checkpoint"].endswith("step 80")
  assert out["eval/accuracy"] == pytest.approx(summary["eval/accuracy"], abs=1e-6)
  assert out["eval/count"] == 360
  assert json.load(open(tmp_path / "eval.json"))["eval/accuracy"] == out["eval/accuracy"]
  # An earlier step of the same run, and a checkpoints/<step> directory, restore that step.
  earlier = _json_out(capsys, ["eval", "--config", CONFIG, "--checkpoint", os.path.join(workdir, "checkpoints", "40"),
                               *STEPS])
  assert earlier["step"] == 40


def test_predict_labels_image_files_as_the_model_does(run, capsys, tmp_path):
  workdir, _ = run
  source = DigitsSource("test")
  paths = []
  for i in range(12):
    path = str(tmp_path / f"digit{i}.png")
    Image.fromarray(source[i]["image"][:, :, 0]).save(path)
    paths.append(path)
  out = _json_out(capsys, ["predict", "--config", CONFIG, "--checkpoint", workdir, *STEPS, *paths, "--top-k", "3"])
  assert [o["input"] for o in out] == paths
  # The same images straight from the source, through the evaluation's model and preprocessing.
  trainer, _ = cli._restored_trainer(cli._parser().parse_args(["eval", "--config", CONFIG, "--checkpoint", workdir,
                                                               *STEPS]))
  from papers_jax.tasks.classification import normalize_images
  fn = loop.preprocess_fn(trainer.config, trainer.task, train=False)
  images = np.stack([fn(dict(source[i]), None)["image"] for i in range(12)])
  logits = np.asarray(cli._model(trainer)(normalize_images(images, trainer.task.mean, trainer.task.std), train=False))
  assert [o["top"][0]["index"] for o in out] == list(np.argmax(logits, -1))
  for o in out:
    probs = [t["probability"] for t in o["top"]]
    assert len(probs) == 3 and probs == sorted(probs, reverse=True) and sum(probs) <= 1 + 1e-6


def test_export_stablehlo_reloads_with_the_same_logits(run, capsys, tmp_path):
  workdir, _ = run
  out = str(tmp_path / "vit.stablehlo")
  assert cli.main(["export", "--config", CONFIG, "--checkpoint", workdir, *STEPS, "--format", "stablehlo",
                   "--out", out]) == 0
  trainer, _ = cli._restored_trainer(cli._parser().parse_args(["eval", "--config", CONFIG, "--checkpoint", workdir,
                                                               *STEPS]))
  x = np.random.RandomState(0).randn(5, 16, 16, 1).astype(np.float32)
  got = np.asarray(export.load_stablehlo(open(out, "rb").read())(x))
  np.testing.assert_allclose(got, np.asarray(cli._model(trainer)(x, train=False)), rtol=1e-5, atol=1e-5)


def test_list_models_help_and_clear_errors(capsys, tmp_path):
  assert cli.main(["list-models", "swin_*"]) == 0
  names = capsys.readouterr().out.split()
  assert "swin_tiny_patch4_window7_224" in names and all(n.startswith("swin_") for n in names)
  assert cli.main(["eval", "--config", CONFIG, "--checkpoint", str(tmp_path / "missing")]) == 2
  assert "does not exist" in capsys.readouterr().err
  proc = subprocess.run([sys.executable, "-m", "papers_jax.cli", "--help"], cwd=ROOT, capture_output=True, text=True,
                        timeout=120)
  assert proc.returncode == 0 and "papers-jax eval" in proc.stdout and "list-models" in proc.stdout


def test_export_hf_layout_round_trips(capsys, tmp_path):
  """`export --format hf` of a GPT params checkpoint writes GPT2LMHeadModel's keys (parity with HF:
  tests/test_gpt.py), and reading the file back gives the checkpoint's params exactly."""
  from flax import nnx
  from safetensors.numpy import load_file

  from papers_jax import convert, tasks
  config = os.path.join(ROOT, "configs", "gpt", "python_docs.py") + ":smoke"
  params_of = lambda model: nnx.to_pure_dict(nnx.state(model, nnx.Param))  # noqa: E731
  model = tasks.get_task(cli._load_config(config, [])).build_model(nnx.Rngs(params=1))
  convert.save_params(params_of(model), str(tmp_path / "params"))
  out = str(tmp_path / "gpt2.safetensors")
  assert cli.main(["export", "--config", config, "--checkpoint", str(tmp_path / "params"), "--format", "hf",
                   "--out", out]) == 0
  assert "hf layout" in capsys.readouterr().out
  sd = load_file(out)
  assert {"lm_head.weight", "transformer.wte.weight", "transformer.h.0.attn.c_attn.weight"} <= set(sd)
  back = tasks.get_task(cli._load_config(config, [])).build_model(nnx.Rngs(params=2))
  convert.load_torch_weights(back, sd, source="hf")
  jax.tree.map(np.testing.assert_array_equal, params_of(back), params_of(model))


def test_a_config_files_own_error_is_not_reported_as_a_bad_override(tmp_path, capsys):
  from papers_jax import main
  bad = tmp_path / "bad.py"
  bad.write_text("def get_config(arg=None):\n  return object().series\n")
  with pytest.raises(SystemExit):
    main._parse_flags(["main", f"--config={bad}"])
  err = capsys.readouterr().err
  assert "bad.py" in err and "AttributeError" in err and "override" not in err, err


def test_set_takes_python_literals_and_names_bad_overrides():
  from papers_jax.errors import ConfigError
  config = cli._load_config(CONFIG, ["deterministic=True", "optimizer.nesterov=true", "num_steps=7"])
  assert config.deterministic is True and config.optimizer.nesterov is True and config.num_steps == 7
  with pytest.raises(ConfigError, match="neither JSON nor a Python literal"):
    cli._load_config(CONFIG, ["num_steps=seven"])
  with pytest.raises(ConfigError, match="no field 'optimizer.nesterovv'"):
    cli._load_config(CONFIG, ["optimizer.nesterovv=1"])
