"""Bad configs stop before anything is written, with one message that names the key (issue 22).

Regression tests for the failures that ended in a traceback (a missing config file, an
unwritable workdir, data.image_size against the model, out-of-range numbers), and a config fuzz
test: every numeric key of every shipped config (smoke mode) set to 0, -1, NaN and a huge value,
and every string key set to an unknown value, gives a ConfigError/UserError naming the key or is
accepted. The bulk runs against the validation layer (`loop.check_config`); a seeded sample of the
accepted cases builds the whole Trainer (everything before the workdir is written) and one accepted
value trains; a few cases run through `python -m papers_jax.main`.

PAPERS_JAX_FUZZ_FULL=1 checks every value of every key in the validation layer (about 6,900 cases),
builds the Trainer for every accepted one (about 1,600, at 5-12 s each on 2 cores: hours) and trains
every accepted numeric value of the digits ViT's keys.
"""

import errno
import math
import os
import random

import pytest

from conftest import load_config
from mainrun import run_main
from test_configs import CONFIGS, make_image_folder
from papers_jax.core import config as config_lib, loop
from papers_jax.errors import ConfigError, UserError, WorkdirError

FULL = os.environ.get("PAPERS_JAX_FUZZ_FULL") == "1"
HUGE_INT, HUGE_FLOAT = 10**9, 1e30


# ------------------------------------------------------------------ regressions (main at e0dda93 failed each)

@pytest.mark.parametrize("key, value", [
    ("optimizer.lr", 0.0), ("optimizer.lr", -1e-3), ("optimizer.momentum", 1.0), ("optimizer.momentum", -0.1),
    ("optimizer.weight_decay", -1e-4), ("label_smoothing", 1.5), ("schedule.end_lr_ratio", 2.0),
    ("model.drop_path_rate", 1.0), ("optimizer.b2", float("nan")), ("log_every", 0), ("checkpoint_every", 0),
    ("keep_checkpoints", 0), ("data.crop_pct", 0.0), ("mesh.fsdp", 0), ("num_epochs", 1e30), ("ema_decay", 1.0),
])
def test_out_of_range_numbers_are_config_errors_naming_the_key(key, value):
  config = load_config("vit/digits.py", "smoke").unlock()
  config_lib.set_path(config, key, value)
  with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
    loop.check_config(config)


@pytest.mark.parametrize("task_config, key, value", [
    ("mae/digits.py", "model.mask_ratio", 1.0), ("bert/python_docs.py", "lm.masked_lm_prob", 1.5),
    ("ssl/simclr.py", "ssl.temperature", 0.0), ("ssl/byol.py", "ssl.momentum", -0.5),
    ("ssl/simclr.py", "ssl.views", "no_such_views"),
])
def test_task_sections_have_their_own_ranges(task_config, key, value):
  config = load_config(task_config, "smoke").unlock()
  config_lib.set_path(config, key, value)
  with pytest.raises(ConfigError, match=key.split(".")[-1]):
    loop.check_config(config)


def test_every_shipped_config_passes_validation():
  for name in CONFIGS:
    for arg in ("smoke", None):
      config = load_config(name, arg)
      config_lib.check_ranges(config, config_lib.RANGES)
      section = config.get(config.task)
      if section is not None:
        import importlib
        module = importlib.import_module(f"papers_jax.tasks.{config.task}")
        config_lib.check_ranges(section, module.RANGES, f"{config.task}.")


def test_image_size_that_does_not_fit_the_model_stops_before_the_workdir(tmp_path):
  config = load_config("vit/digits.py", "smoke").unlock()
  config.data.image_size = 8  # the model is built for 16x16
  with pytest.raises(ConfigError, match="image_size"):
    loop.Trainer(config.lock(), str(tmp_path / "run"))
  assert not (tmp_path / "run").exists()


def test_full_disk_writing_config_json_is_one_workdir_error(tmp_path, monkeypatch):
  from papers_jax.core import metrics as metrics_lib
  config = load_config("vit/digits.py", "smoke").unlock()
  config.async_checkpoint = False
  trainer = loop.Trainer(config.lock(), str(tmp_path / "run"))

  def full_disk(path, obj):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), path)
  monkeypatch.setattr(metrics_lib, "write_json_atomic", full_disk)
  with pytest.raises(WorkdirError, match="config.json: No space left on device"):
    trainer.run()


@pytest.mark.parametrize("case", ["missing_config", "workdir_under_a_file", "error_in_get_config"])
def test_main_gives_one_line_and_exit_2(tmp_path, case):
  workdir = tmp_path / "run"
  config = None
  if case == "missing_config":
    config = ["--config", str(tmp_path / "no_such_config.py")]
  elif case == "workdir_under_a_file":
    (tmp_path / "a_file").write_text("")
    workdir = tmp_path / "a_file" / "run"
  else:
    from conftest import ROOT
    config = ["--config", os.path.join(ROOT, "configs/vit/digits.py") + ":no_such_arg=1"]
  proc = run_main(str(workdir), "--config.num_steps=4", check=False, **({"config": config} if config else {}))
  errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
  assert proc.returncode == 2 and len(errors) == 1, proc.stderr[-3000:]
  assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
  assert {"missing_config": "no_such_config.py does not exist", "workdir_under_a_file": "a_file/run",
          "error_in_get_config": "no_such_arg"}[case] in errors[0]
  assert not workdir.exists()


# ------------------------------------------------------------------ config fuzz

def _leaves(d, prefix=""):
  for key, value in d.items():
    if isinstance(value, dict):
      yield from _leaves(value, f"{prefix}{key}.")
    else:
      yield f"{prefix}{key}", value


def _is_number(x) -> bool:
  return isinstance(x, (int, float)) and not isinstance(x, bool)


def fuzz_values(value) -> list:
  """0, a negative value, NaN and a huge value for a number (element-wise for a tuple of numbers),
  an unknown value for a string; nothing for anything else. NaN for an int key is the flag parser's
  error (the subprocess cases below), as the config's types refuse it."""
  if _is_number(value):
    kind = type(value)
    return [kind(0), kind(-1), *([float("nan")] if kind is float else []), HUGE_INT if kind is int else HUGE_FLOAT]
  if isinstance(value, tuple) and value and all(_is_number(x) for x in value):
    return [tuple(v for _ in value) for v in fuzz_values(value[0])]
  if isinstance(value, str):
    return ["no_such_value"]
  return []


_BASE = {}


def _base_config(name, data_root):
  """The smoke config, loaded once; image configs whose dataset needs `tfds build` run on a generated
  folder (as in test_configs)."""
  if name not in _BASE:
    config = load_config(name, "smoke").unlock()
    if config.data.name.startswith("tfds:") and config.task != "lm":
      size = config.data.image_size + 8
      root = os.path.join(data_root, str(size))
      if not os.path.isdir(root):
        make_image_folder(root, num_classes=4, size=size)
      config.data.name, config.data.data_dir = "folder", root
      config.data.train_split, config.data.eval_split = "train", "test"
    _BASE[name] = config
  return _BASE[name]


def fuzz_cases(full: bool):
  """(config name, key, value): every value of every key when `full`, else one value per key of
  each config, the kinds taken in turn so that each appears for every kind of key."""
  turn = 0
  for name in CONFIGS:
    for key, value in _leaves(load_config(name, "smoke").to_dict()):
      values = fuzz_values(value)
      if not values:
        continue
      if not full:
        values = [values[turn % len(values)]]
        turn += 1
      for v in values:
        yield name, key, v


def mutated(name, key, value, data_root):
  """The smoke config with one key changed; None when the config's types refuse the value (the
  command line reports those as a flag error naming the key)."""
  config = _base_config(name, data_root).copy_and_resolve_references()
  try:
    config_lib.set_path(config, key, value)
  except (TypeError, ValueError):
    return None
  return config.lock()


def _names_key(error, key) -> bool:
  return key.split(".")[-1] in str(error) and "\n" not in str(error).strip()


_ACCEPTED = {}
FUZZ_SAMPLE = 800


def validation_outcomes(full: bool, data_root):
  """Runs every fuzz case through the validation layer: returns (accepted cases, failures)."""
  if full in _ACCEPTED:
    return _ACCEPTED[full]
  accepted, failures = [], []
  cases = list(fuzz_cases(full))
  if not full:  # a fixed sample of the one-value-per-key cases (6,600 at 69 configs, 16 ms each)
    cases = random.Random(0).sample(cases, min(FUZZ_SAMPLE, len(cases)))
  for name, key, value in cases:
    config = mutated(name, key, value, data_root)
    if config is None:
      continue
    try:
      loop.check_config(config)
    except UserError as e:
      if not _names_key(e, key):
        failures.append((name, key, value, f"message does not name the key: {e}"))
    except Exception as e:  # noqa: BLE001  (a traceback for the user)
      failures.append((name, key, value, f"{type(e).__name__}: {e}"))
    else:
      accepted.append((name, key, value))
  _ACCEPTED[full] = accepted, failures
  return accepted, failures


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
  return str(tmp_path_factory.mktemp("fuzz_data"))


def test_config_fuzz_validation_names_the_key_or_accepts(data_root):
  accepted, failures = validation_outcomes(FULL, data_root)
  assert not failures, "\n".join(map(str, failures[:20]))
  assert accepted  # zeros of optional settings (eval_every=0, ...) are meant to pass


def _sample(cases, k, seed):
  return cases if FULL else random.Random(seed).sample(cases, min(k, len(cases)))


def test_config_fuzz_accepted_cases_build_the_trainer_or_name_the_key(data_root, tmp_path):
  """Everything the Trainer checks before it writes the workdir (data, model, optimizer, one traced
  step): an accepted case either builds or stops with a UserError naming the key, and writes nothing.
  Unknown strings are the likeliest to get through the validation layer, so half the sample is them."""
  accepted, _ = validation_outcomes(FULL, data_root)
  strings = [c for c in accepted if isinstance(c[2], str)]
  numbers = [c for c in accepted if not isinstance(c[2], str)]
  failures = []
  for i, (name, key, value) in enumerate(_sample(strings, 2, 0) + _sample(numbers, 1, 1)):
    workdir = tmp_path / f"run{i}"
    try:
      loop.Trainer(mutated(name, key, value, data_root), str(workdir))
    except UserError as e:
      if not _names_key(e, key):
        failures.append((name, key, value, f"message does not name the key: {e}"))
    except Exception as e:  # noqa: BLE001
      failures.append((name, key, value, f"{type(e).__name__}: {e}"))
    if workdir.exists():
      failures.append((name, key, value, "wrote the workdir while validating"))
  assert not failures, "\n".join(map(str, failures[:20]))


# Keys whose fuzzed value changes the run's length or bookkeeping rather than its training.
_LENGTH_KEYS = ("num_steps", "num_epochs", "log_every", "checkpoint_every", "eval_every", "schedule.warmup_steps",
                "debug.sigterm_at_step", "debug.sigterm_process", "debug.nan_at_positions")


def test_config_fuzz_accepted_cases_train(data_root, tmp_path):
  """One accepted numeric value of the digits ViT's keys (zeros of optional settings, huge keep counts,
  ...) really train 3 steps to finite losses."""
  candidates = []
  for key, value in _leaves(load_config("vit/digits.py", "smoke").to_dict()):
    for v in fuzz_values(value):
      config = mutated("vit/digits.py", key, v, data_root)
      if isinstance(v, str) or key.startswith(_LENGTH_KEYS) or config is None:
        continue
      try:
        loop.check_config(config)
      except UserError:
        continue
      candidates.append(("vit/digits.py", key, v))
  for i, (name, key, value) in enumerate(_sample(candidates, 1, 2)):
    config = mutated(name, key, value, data_root).unlock()
    config.num_steps, config.log_every, config.checkpoint_every, config.async_checkpoint = 3, 1, 3, False
    config.schedule.warmup_steps = 1
    summary = loop.train(config.lock(), str(tmp_path / f"run{i}"))
    assert summary["steps"] == 3, (key, value)
    assert math.isfinite(summary["train/loss"]), (key, value, summary)


@pytest.mark.parametrize("args, key", [
    (["--config.optimizer.momentum=nan"], "optimizer.momentum"),
    (["--config.batch_size=nan"], "batch_size"),
])
def test_config_fuzz_main_gives_exit_2_one_line_no_workdir(tmp_path, args, key):
  workdir = tmp_path / "run"
  proc = run_main(str(workdir), *args, check=False)
  errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
  assert proc.returncode == 2 and len(errors) == 1, proc.stderr[-3000:]
  assert key in errors[0] and "Traceback" not in proc.stderr, proc.stderr[-3000:]
  assert not workdir.exists()


def test_check_ranges_reads_interval_notation():
  ranges = (("a", "[0, 1)"), ("b", "-1 | [1, inf)"), ("c.*", "(0, 10]"))
  config_lib.check_ranges({"a": 0.0, "b": -1, "c": {"x": 10, "y": (1.0, 2.0)}}, ranges)
  for bad in ({"a": 1.0}, {"b": 0}, {"c": {"x": 0}}, {"c": {"y": (1.0, 11.0)}}, {"z": float("inf")}):
    with pytest.raises(ConfigError):
      config_lib.check_ranges(bad, ranges)


def test_a_classifier_without_a_head_is_a_config_error():
  """model.num_classes=0 means "no head" (a backbone); the classification task said nothing and divided by zero in
  its first step (found by the fuzz above on alexnet/digits.py)."""
  from papers_jax.tasks.classification import ClassificationTask
  config = load_config("alexnet/digits.py").unlock()
  config.model.num_classes = 0
  with pytest.raises(ConfigError, match="model.num_classes=0"):
    ClassificationTask(config.lock())
