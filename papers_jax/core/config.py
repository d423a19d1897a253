"""Shared config pieces: trainer defaults, `key=value` argument parsing, validation.

Experiment files in configs/<family>/<name>.py call `base_config()`, fill in the experiment and
return `config.lock()`-ed dicts, so a misspelt `--config.key` fails instead of being ignored.
"""

import importlib.util
import os

import ml_collections

from papers_jax.errors import ConfigError


def load(spec: str) -> ml_collections.ConfigDict:
  """'configs/vit/imagenet.py:variant=B/16' → that file's `get_config("variant=B/16")`, as `--config` loads it."""
  path, _, arg = spec.partition(":")
  if not os.path.isfile(path):
    raise ConfigError(f"config file {path} does not exist")
  module_spec = importlib.util.spec_from_file_location(f"config_{abs(hash(os.path.abspath(path)))}", path)
  module = importlib.util.module_from_spec(module_spec)
  module_spec.loader.exec_module(module)
  if not hasattr(module, "get_config"):
    raise ConfigError(f"config file {path} has no get_config()")
  return module.get_config(arg or None)


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
  """Trainer defaults shared by every experiment."""
  c = ml_collections.ConfigDict()
  c.task = "classification"
  c.seed = 0
  c.batch_size = 256             # global, over all hosts and devices
  c.num_steps = 1000             # or set num_epochs (> 0 wins)
  c.num_epochs = 0.0
  c.grad_accum_steps = 1
  c.mesh = ml_collections.ConfigDict({"data": -1, "fsdp": 1, "tensor": 1})
  c.log_every = 50
  c.eval_every = 0               # 0: only at the end
  c.checkpoint_every = 500
  c.keep_checkpoints = 3
  c.keep_every = 0               # also keep every K-th step's checkpoint (0: off)
  c.async_checkpoint = True
  c.init_from = ""               # params checkpoint (tools/convert_weights.py) to start from
  c.init_skip = ("^head/",)      # regexes of params not taken from init_from when their shapes differ
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
  c.loss = "softmax"
  c.label_smoothing = 0.0
  c.data_threads = 2
  c.optimizer = ml_collections.ConfigDict(dict(
      name="adamw", lr=1e-3, b1=0.9, b2=0.999, eps=1e-8, momentum=0.9, nesterov=False, weight_decay=1e-4,
      trust_coefficient=0.001, clip_grad_norm=1.0, layer_decay=1.0,
      wd_exclude=(r"(^|/)bias$", r"(^|/)scale$", r"pos_embed", r"cls_token"), freeze=()))
  c.schedule = ml_collections.ConfigDict(dict(
      name="cosine", warmup_steps=0, end_lr_ratio=0.0, boundaries=(0.5, 0.75), decay_factor=0.1))
  c.data = ml_collections.ConfigDict(dict(
      name="digits", data_dir=ml_collections.FieldReference(None, field_type=str), train_split="train",
      eval_split="test", image_size=8, augment="none", max_shift=1, crop_pct=0.875,
      affine_degrees=10.0, affine_scale=(0.9, 1.1), affine_translate=0.1,
      mean=(0.5,), std=(0.5,)))
  # Fault injection, to test the recovery paths: SIGTERM to this process after step k (-1: every
  # process, else only that process index) and NaN losses on the batches at these data positions.
  c.debug = ml_collections.ConfigDict(dict(sigterm_at_step=0, sigterm_process=-1, nan_at_positions=()))
  return c


def total_steps(config, num_train_examples: int) -> int:
  if config.num_epochs > 0:
    return max(1, int(config.num_epochs * num_train_examples // config.batch_size))
  return int(config.num_steps)


def validate(config, *, data_parallel: int, num_processes: int) -> None:
  """Checks that need no data or devices beyond their counts; errors name the fix."""
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
