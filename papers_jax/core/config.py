"""Shared config pieces: trainer defaults, `key=value` argument parsing, validation.

Experiment files in configs/<family>/<name>.py call `base_config()`, fill in the experiment and
return `config.lock()`-ed dicts, so a misspelt `--config.key` fails instead of being ignored.
"""

import fnmatch
import importlib.util
import math
import os
import re

import ml_collections

from papers_jax.core import sharding
from papers_jax.errors import ConfigError


def load_file(path: str, function: str, what: str = "config"):
  """The `function` (e.g. get_config) defined by the Python file at `path`; a ConfigError when either is missing."""
  if not os.path.isfile(path):
    raise ConfigError(f"{what} file {path} does not exist")
  module_spec = importlib.util.spec_from_file_location(f"{what}_{abs(hash(os.path.abspath(path)))}", path)
  module = importlib.util.module_from_spec(module_spec)
  module_spec.loader.exec_module(module)
  if not hasattr(module, function):
    raise ConfigError(f"{what} file {path} has no {function}()")
  return getattr(module, function)


def load(spec: str) -> ml_collections.ConfigDict:
  """'configs/vit/imagenet.py:variant=B/16' → that file's `get_config("variant=B/16")`, as `--config` loads it."""
  path, _, arg = spec.partition(":")
  return load_file(path, "get_config")(arg or None)


def parse_arg(arg: str | None, **defaults) -> ml_collections.ConfigDict:
  """'variant=B/16,smoke' → {variant: 'B/16', smoke: True}; unknown keys are an error."""
  values = dict(defaults)
  for item in filter(None, (arg or "").split(",")):
    key, _, value = item.partition("=")
    key = key.strip()
    if key not in defaults:
      raise ConfigError(f"unknown config argument {key!r}; this config takes {sorted(defaults)}")
    default = defaults[key]
    if not _:
      value = True
    elif isinstance(default, bool):
      value = value.lower() in ("1", "true", "yes")
    elif isinstance(default, int):
      value = int(value)
    elif isinstance(default, float):
      value = float(value)
    values[key] = value
  return ml_collections.ConfigDict(values)


def set_path(config: ml_collections.ConfigDict, key: str, value) -> None:
  """`set_path(c, "optimizer.lr", 1e-3)` sets c.optimizer.lr; a missing field raises as `--config.key` does."""
  *parents, leaf = key.split(".")
  node = config
  for name in parents:
    node = node[name]
  node[leaf] = value


NONFINITE_POLICIES = ("stop", "rollback")


def base_config() -> ml_collections.ConfigDict:
  """Trainer defaults shared by every experiment. No paper's recipe lives here: gradient clipping
  is off, and every experiment config sets its optimizer's clipping, weight-decay exclusions and
  schedule itself (tests/test_config_explicit.py checks it)."""
  c = ml_collections.ConfigDict()
  c.task = "classification"
  c.seed = 0
  c.batch_size = 256             # global, over all hosts and devices
  c.num_steps = 1000             # or set num_epochs (> 0 wins)
  c.num_epochs = 0.0
  c.grad_accum_steps = 1
  c.mesh = ml_collections.ConfigDict({"data": -1, "fsdp": 1, "tensor": 1})
  # Logical axis name -> mesh axes ("" replicates, "data,fsdp" shards over both), as MaxText's
  # logical_axis_rules; e.g. --config.sharding_rules.mlp=fsdp. Start-up logs every parameter of at
  # least `replicated_report_min_size` elements that stays replicated because the mesh does not divide it.
  c.sharding_rules = ml_collections.ConfigDict(sharding.rules_to_config())
  c.replicated_report_min_size = 2 ** 20
  c.log_every = 50
  c.eval_every = 0               # 0: only at the end
  # Named evaluations besides data.eval_split's, as big_vision's (core/evals.py), e.g.
  # evals.knn = dict(type="knn", split="test", every=100): metrics eval/knn/... every 100 steps.
  c.evals = ml_collections.ConfigDict()
  c.checkpoint_every = 500
  c.keep_checkpoints = 3
  c.keep_every = 0               # also keep every K-th step's checkpoint (0: off)
  c.async_checkpoint = True
  c.init_from = ""               # params checkpoint (tools/convert_weights.py) to start from
  c.init_skip = ("^head/",)      # regexes of params not taken from init_from when their shapes differ
  # Resuming with another value of a key that changes the data order or the meaning of a step
  # (core/run_config.py: RESUME_KEYS) stops the run, unless the key is named here (comma-separated,
  # e.g. "batch_size,data.data_dir"; a section name such as "schedule" names all its keys).
  c.allow_config_change = ""
  # A step whose loss or gradient is NaN/Inf never changes the state. Then "stop" ends the run
  # naming the step and the metric; "rollback" restores the last checkpoint and skips that batch,
  # at most `max_rollbacks` times in a run.
  c.nonfinite = "stop"
  c.max_rollbacks = 3
  c.deterministic = False        # XLA's deterministic GPU ops (slower); recorded in config.json
  # Compute dtype of every model ("float32" or "bfloat16"); params stay float32, and softmax, norms,
  # losses and metrics are computed in float32 (core/precision.py).
  c.dtype = "float32"
  # Dense peak FLOP/s of one device for the MFU in the logs; 0: the table of known accelerators in
  # core/flops.py (no MFU on a device it does not know, CPUs included).
  c.peak_flops = 0.0
  # Memory one device may use for the train step, in GiB: a step whose compiled executable needs more
  # (XLA's memory analysis: arguments, outputs and temporaries) stops before training, naming both
  # numbers. 0: no budget of our own (a GPU or TPU's out-of-memory error still stops the run).
  c.memory_budget_gb = 0.0
  c.loss = "softmax"
  c.label_smoothing = 0.0
  # Weight EMA (DeiT, timm's ModelEmaV2): ema ← d·ema + (1 − d)·params after every step, float32,
  # checkpointed; the evaluation also runs on it (eval_ema/...). 0: off.
  c.ema_decay = 0.0
  # "uniform": keep the plain mean of the params after every step so far in the same place instead of an
  # EMA (Polyak / SWA averaging; torch's AveragedModel, which TS2Vec evaluates). Needs ema_decay = 0.
  c.weight_average = "ema"
  c.data_threads = 2
  c.optimizer = ml_collections.ConfigDict(dict(
      name="adamw", lr=1e-3, b1=0.9, b2=0.999, eps=1e-8, momentum=0.9, nesterov=False, weight_decay=1e-4,
      trust_coefficient=0.001, clip_grad_norm=0.0, layer_decay=1.0,
      wd_exclude=(r"(^|/)bias$", r"(^|/)scale$", r"pos_embed", r"cls_token"), freeze=(), lr_multipliers=()))
  c.schedule = ml_collections.ConfigDict(dict(
      name="cosine", warmup_steps=0, end_lr_ratio=0.0, boundaries=(0.5, 0.75), decay_factor=0.1,
      total_steps=0, step_offset=0))  # a run that continues another's schedule: see core/optim.py
  c.data = ml_collections.ConfigDict(dict(
      name="digits", data_dir=ml_collections.FieldReference(None, field_type=str), train_split="train",
      eval_split="test", image_size=8, augment="none", max_shift=1,
      affine_degrees=10.0, affine_scale=(0.9, 1.1), affine_translate=0.1,
      randaugment="", random_erasing=0.0, pca_lighting=0.0,  # training only; see data/pipeline.image_preprocess
      # None: the model name's preprocessing (models.preprocessing; see image_preprocessing below).
      crop_pct=ml_collections.FieldReference(None, field_type=float),
      mean=ml_collections.FieldReference(None, field_type=tuple),
      std=ml_collections.FieldReference(None, field_type=tuple),
      train_fraction=1.0))  # train on a fixed subset of the train split (data/sources.py: Subset)
  # Fault injection, to test the recovery paths: SIGTERM to this process after step k (-1: every
  # process, else only that process index), NaN losses on the batches at these data positions, and
  # kill_at="<phase>:<n>[:<ms>]": SIGKILL this process <ms> milliseconds (default 0) after it reaches
  # <phase> for the n-th time; phases: startup, step, save, eval, summary (core/loop.py: KillPoint).
  c.debug = ml_collections.ConfigDict(dict(sigterm_at_step=0, sigterm_process=-1, nan_at_positions=(),
                                           kill_at=""))
  return c


def synthetic_smoke(config, image_size: int, *, steps: int = 6, warmup_steps: int = 2, checkpoint_every: int = 3):
  """The tests' smoke run of a paper config (tests/test_configs.py): generated images stand in for the
  dataset, so it runs offline; batch 16, `steps` steps, no evaluation during training. The config shrinks
  its model itself."""
  config.data.name, config.data.data_dir = "synthetic", None
  config.data.train_split, config.data.eval_split = "train", "test"
  config.data.image_size = image_size
  config.batch_size = 16
  config.num_epochs = 0.0
  config.num_steps = steps
  config.schedule.warmup_steps = warmup_steps
  config.data_threads = 2
  config.log_every = 2
  config.eval_every = 0
  config.checkpoint_every = checkpoint_every
  return config


def phase_sections(config, **phases) -> ml_collections.ConfigDict:
  """`config.phases` of a task with optimizer phases (core/optim.py: Phase): for each phase name a dict
  {"optimizer": {...}, "schedule": {...}} of overrides of `config.optimizer` / `config.schedule`, e.g.
  phase_sections(c, discriminator={"optimizer": {"lr": 2e-4, "b1": 0.5}}, generator={...})."""
  out = ml_collections.ConfigDict()
  for name, overrides in phases.items():
    unknown = set(overrides) - {"optimizer", "schedule"}
    if unknown:
      raise ConfigError(f"phase {name!r}: unknown sections {sorted(unknown)}; give optimizer and schedule")
    section = ml_collections.ConfigDict()
    for key in ("optimizer", "schedule"):
      section[key] = ml_collections.ConfigDict(config[key].to_dict())
      section[key].update(overrides.get(key, {}))
    out[name] = section
  return out


def image_preprocessing(config) -> tuple[tuple[float, ...], tuple[float, ...], float]:
  """(mean, std, crop_pct) of a run's images: `data.mean`, `data.std` and `data.crop_pct` where the
  config sets them, else the preprocessing registered with `model.name` (what its checkpoint was
  trained with: models.preprocessing), else (0.5,), (0.5,) and 0.875 (a name without one)."""
  from papers_jax import models
  d, model = config.data, config.get("model") or {}
  default = models.preprocessing(model["name"]) if model.get("name") else None
  if default is None:
    default = models.Preprocessing(0, (0.5,), (0.5,), 0.875)
  mean = default.mean if d.get("mean") is None else tuple(d.mean)
  std = default.std if d.get("std") is None else tuple(d.std)
  crop_pct = default.crop_pct if d.get("crop_pct") is None else float(d.crop_pct)
  channels = model.get("in_chans")
  for key, value in (("mean", mean), ("std", std)):
    if d.get(key) is None and channels and len(value) not in (1, channels):
      raise ConfigError(f"model {model['name']!r} normalises {len(value)} channels but model.in_chans={channels}; "
                        f"set data.mean and data.std for your images")
  return mean, std, crop_pct


def resolve_image_preprocessing(config) -> None:
  """Writes `image_preprocessing(config)` into `data.mean`, `data.std`, `data.crop_pct`, so that the run
  (and its config.json) holds the values it uses."""
  if "data" in config and "mean" in config.data:
    config.data.mean, config.data.std, config.data.crop_pct = image_preprocessing(config)


def total_steps(config, num_train_examples: int) -> int:
  if config.num_epochs > 0:
    steps = max(1, int(config.num_epochs * num_train_examples // config.batch_size))
    if steps > 2**31 - 1:  # the step counter is int32
      raise ConfigError(f"num_epochs={config.num_epochs} gives {steps} steps of batch_size {config.batch_size}, more "
                        f"than the {2**31 - 1} a run can count; lower num_epochs")
    return steps
  return int(config.num_steps)


# Allowed values of the numeric settings, as intervals over dotted keys. The patterns are fnmatch
# patterns and the first one that matches a key decides; "a | [b, c)" allows a or the interval. A
# tuple is checked element by element. Besides, every float anywhere in the config must be finite.
# Tasks check their own sections with tables of their own (e.g. tasks/ssl.py RANGES).
RANGES = (
    ("seed", "[0, 4294967295]"),
    ("batch_size", "[1, 1048576]"),
    ("num_steps", "[0, 2147483647]"),             # the step counter is int32
    ("num_epochs", "[0, 1000000]"),
    ("grad_accum_steps", "[1, inf)"),
    ("mesh.*", "-1 | [1, inf)"),
    ("log_every", "[1, inf)"),
    ("eval_every", "[0, inf)"),
    ("checkpoint_every", "[1, inf)"),
    ("keep_checkpoints", "[1, inf)"),
    ("keep_every", "[0, inf)"),
    ("max_rollbacks", "[0, inf)"),
    ("label_smoothing", "[0, 1)"),
    ("ema_decay", "[0, 1)"),
    ("data_threads", "[0, 256]"),
    ("optimizer.lr", "(0, 100]"),
    ("optimizer.b1", "[0, 1)"),
    ("optimizer.b2", "[0, 1)"),
    ("optimizer.eps", "(0, 1]"),
    ("optimizer.momentum", "[0, 1)"),
    ("optimizer.weight_decay", "[0, 10]"),
    ("optimizer.trust_coefficient", "(0, 100]"),
    ("optimizer.clip_grad_norm", "[0, inf)"),     # 0: off
    ("optimizer.layer_decay", "(0, 1]"),          # 1: off
    ("schedule.warmup_steps", "[0, inf)"),        # and below the number of steps (core/optim.py)
    ("schedule.end_lr_ratio", "[0, 1]"),
    ("schedule.boundaries", "(0, 1)"),            # fractions of training
    ("schedule.decay_factor", "(0, 1]"),
    ("data.image_size", "[1, 16384]"),
    ("data.max_shift", "[0, 16384]"),
    ("data.crop_pct", "(0, 1]"),
    ("data.affine_degrees", "[0, 180]"),
    ("data.affine_scale", "(0, 10]"),
    ("data.affine_translate", "[0, 1]"),
    ("data.mean", "[0, 1]"),                      # of pixels scaled to [0, 1]
    ("data.std", "(0, 10]"),
    ("data.train_fraction", "(0, 1]"),
    ("memory_budget_gb", "[0, inf)"),
    ("debug.sigterm_at_step", "[0, inf)"),
    ("debug.sigterm_process", "-1 | [0, inf)"),
    ("debug.nan_at_positions", "[0, inf)"),
    ("mixup.*_alpha", "[0, 100]"),
    ("mixup.*prob", "[0, 1]"),
    # The model's settings, by kind of setting.
    ("model.*drop*", "[0, 1)"),
    ("model.mask_ratio", "[0, 1)"),
    ("model.num_classes", "[0, 1000000]"),        # 0: no head
    ("model.vocab_size", "[0, 10000000]"),        # 0: the tokenizer's
    ("model.frozen_blocks", "[0, 1024]"),
    ("model.*mlp_ratio", "(0, 64]"),
    ("model.*init_std", "[0, 10]"),
    ("model.in_chans", "[1, 64]"),
    ("model.*depth*", "[1, 1024]"),
    ("model.*layers", "[1, 1024]"),
    ("model.num_blocks", "[1, 1024]"),
    ("model.*heads", "[1, 1024]"),
    ("model.*_size", "[1, 1048576]"),             # img_size, patch_size, window_size, hidden_size, ...
    ("model.*dim", "[1, 1048576]"),
    ("model.*width", "[1, 1048576]"),
    ("model.d_*", "[1, 1048576]"),
    ("model.*length", "[1, 1048576]"),
    ("model.max_position_embeddings", "[1, 1048576]"),
)


def _interval(spec: str):
  """'[0, 1)' → a predicate and the spec; '-1 | [1, inf)' → either of the two."""
  parts = []
  for part in (p.strip() for p in spec.split("|")):
    m = re.fullmatch(r"([\[(])\s*(\S+)\s*,\s*(\S+)\s*([\])])", part)
    if not m:
      value = float(part)
      parts.append(lambda x, v=value: x == v)
      continue
    lo, hi = float(m.group(2)), float(m.group(3))
    lo_ok = (lambda x, lo=lo: x >= lo) if m.group(1) == "[" else (lambda x, lo=lo: x > lo)
    hi_ok = (lambda x, hi=hi: x <= hi) if m.group(4) == "]" else (lambda x, hi=hi: x < hi)
    parts.append(lambda x, a=lo_ok, b=hi_ok: a(x) and b(x))
  return lambda x: any(p(x) for p in parts)


def _leaves(config, prefix=""):
  for key, value in config.items():
    if isinstance(value, (dict, ml_collections.ConfigDict)):
      yield from _leaves(value, f"{prefix}{key}.")
    else:
      yield f"{prefix}{key}", value


def _numbers(value):
  """The numbers in a setting: itself, or the elements of a tuple; bools and strings are not numbers."""
  values = value if isinstance(value, (tuple, list)) else (value,)
  return [v for v in values if isinstance(v, (int, float)) and not isinstance(v, bool)]


def check_ranges(config, ranges, prefix: str = "") -> None:
  """Raises a ConfigError naming the first setting of `config` outside its range in `ranges`, or
  the first float that is NaN or infinite. `prefix` is the keys' path ("ssl." for config.ssl)."""
  for key, value in _leaves(config, prefix):
    numbers = _numbers(value)
    if any(isinstance(x, float) and not math.isfinite(x) for x in numbers):
      raise ConfigError(f"{key}={value!r} is not a finite number; set --config.{key} to a number")
    for pattern, spec in ranges:
      if fnmatch.fnmatchcase(key, prefix + pattern):
        allowed = _interval(spec)
        if not all(allowed(x) for x in numbers):
          raise ConfigError(f"{key}={value!r} is out of range; it must be in {spec}")
        break


def check_choices(config, choices) -> None:
  """Raises a ConfigError naming the first setting whose value is not among its `choices`
  ({dotted key: allowed values}); keys the config lacks are skipped."""
  for key, allowed in choices.items():
    node = config
    for name in key.split("."):
      node = node.get(name) if hasattr(node, "get") else None
    if node is not None and node not in allowed:
      raise ConfigError(f"{key}={node!r}; choose one of {tuple(allowed)}")


def keeps_weight_average(config) -> bool:
  """Whether the train step keeps `extra["ema_params"]`: a weight EMA or the uniform average."""
  return bool(config.ema_decay) or config.get("weight_average", "ema") == "uniform"


def validate(config, *, data_parallel: int, num_processes: int) -> None:
  """Checks that need no data or devices beyond their counts; errors name the fix."""
  check_ranges(config, RANGES)
  if config.get("weight_average", "ema") == "uniform" and config.ema_decay:
    raise ConfigError(f"weight_average='uniform' keeps the plain mean of the weights, which has no decay; set "
                      f"ema_decay=0 (it is {config.ema_decay}) or weight_average='ema'")
  b = config.batch_size
  if b <= 0:
    raise ConfigError(f"batch_size must be positive, got {b}")
  if config.grad_accum_steps < 1:
    raise ConfigError(f"grad_accum_steps must be >= 1, got {config.grad_accum_steps}")
  if b % config.grad_accum_steps:
    raise ConfigError(f"batch_size {b} is not divisible by grad_accum_steps {config.grad_accum_steps}")
  micro = b // config.grad_accum_steps
  if micro % data_parallel:
    raise ConfigError(
        f"the global batch {b} (micro-batch {micro} with grad_accum_steps={config.grad_accum_steps}) is not "
        f"divisible by the data-parallel size {data_parallel} (mesh data × fsdp); use a batch_size that is a "
        f"multiple of {data_parallel * config.grad_accum_steps}, or change --config.mesh.")
  if b % num_processes:
    raise ConfigError(f"batch_size {b} is not divisible by the {num_processes} processes")
  if config.nonfinite not in NONFINITE_POLICIES:
    raise ConfigError(f"nonfinite={config.nonfinite!r}; choose one of {NONFINITE_POLICIES}")
  if config.num_steps <= 0 and config.num_epochs <= 0:
    raise ConfigError("set num_steps or num_epochs to a positive number")
