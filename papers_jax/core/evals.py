"""Named evaluations (`config.evals`), as big_vision's: a run may evaluate several splits or protocols,
each on its own schedule and under its own name.

  config.evals.train = dict(type="task", split="train", every=150)     # eval/train/accuracy, ...
  config.evals.knn = dict(type="knn", split="test", every=0, k=(20,))  # eval/knn/knn_top1_k20

Every entry has a `type`, a `split` of `data.name` and `every` (steps between evaluations; 0: only
after the last step, which every evaluation runs at). Types:
  task          the task's own evaluation of `split`: its eval step's averages (loss, accuracy, ...)
                and its `after_eval` extras (SSL's k-NN monitor, MAE's pictures, CLIP's zero-shot,
                perplexity, BLEU);
  knn           weighted k-NN on the task's frozen features, `train_split` → `split`
                (evaluators/knn.py; options k, temperature, max_train, batch);
  linear_probe  softmax regression on the same features (evaluators/linear_probe.py; options max_train,
                batch).
`train_split` (knn, linear_probe) defaults to data.train_split.

The unnamed evaluation of `data.eval_split` every `eval_every` steps (when eval_split is set) is a
`task` evaluation like any other that logs under `eval/` instead of `eval/<name>/`.
"""

import dataclasses
import re

import numpy as np

from papers_jax.errors import ConfigError

TYPES = ("task", "knn", "linear_probe")
FEATURE_TYPES = ("knn", "linear_probe")
OPTIONS = {"task": (), "knn": ("train_split", "k", "temperature", "max_train", "batch"),
           "linear_probe": ("train_split", "max_train", "batch")}
DEFAULTS = {"k": (20,), "temperature": 0.07, "max_train": 0, "batch": 256}


@dataclasses.dataclass(frozen=True)
class Eval:
  name: str            # "" for the unnamed evaluation of data.eval_split
  type: str
  split: str
  every: int           # 0: only after the last step
  train_split: str = ""
  k: tuple = (20,)
  temperature: float = 0.07
  max_train: int = 0   # 0: the whole train split
  batch: int = 256     # images per feature-extraction call

  @property
  def prefix(self) -> str:
    return f"eval/{self.name}/" if self.name else "eval/"

  def due(self, step: int, last: bool) -> bool:
    return last or (self.every > 0 and step % self.every == 0)

  @property
  def ema_prefix(self) -> str:
    """Where a task evaluation logs its eval step on the weight EMA (config.ema_decay)."""
    return "eval_ema/" + self.prefix[len("eval/"):]

  def owns(self, key: str) -> bool:
    """Whether a metrics key is one of this evaluation's (its weight EMA's included)."""
    if key.startswith("eval_ema/"):
      key = "eval/" + key[len("eval_ema/"):]
    return key.startswith(self.prefix) and (bool(self.name) or "/" not in key[len(self.prefix):])


def from_config(config, task) -> list[Eval]:
  """The run's evaluations: the unnamed one of data.eval_split, then `config.evals` in name order.
  Raises a ConfigError naming the first bad entry (before anything is written)."""
  out = []
  if config.data.eval_split:
    out.append(Eval("", "task", config.data.eval_split, int(config.eval_every)))
  for name in sorted(config.get("evals") or {}):
    where = f"evals.{name}"
    if not hasattr(config.evals[name], "to_dict"):
      raise ConfigError(f"{where}={config.evals[name]!r}; give a dict(type=..., split=..., every=...)")
    entry = config.evals[name].to_dict()
    if not re.fullmatch(r"[a-z][a-z0-9_]*", name):
      raise ConfigError(f"{where}: name evaluations with lower-case letters, digits and '_' (they name metrics)")
    kind = entry.pop("type", None)
    if kind not in TYPES:
      raise ConfigError(f"{where}.type={kind!r}; choose one of {TYPES}")
    split = entry.pop("split", None)
    if not isinstance(split, str) or not split:
      raise ConfigError(f"{where}.split={split!r}; give the name of a split of data.name={config.data.name!r}")
    every = entry.pop("every", 0)
    if isinstance(every, bool) or not isinstance(every, int) or every < 0:
      raise ConfigError(f"{where}.every={every!r}; give a number of steps >= 0 (0: only after the last step)")
    unknown = sorted(set(entry) - set(OPTIONS[kind]))
    if unknown:
      raise ConfigError(f"{where} has {unknown}, which a {kind!r} evaluation does not take; it takes type, split, "
                        f"every{''.join(', ' + o for o in OPTIONS[kind])}")
    options = DEFAULTS | entry
    k = tuple(np.atleast_1d(options["k"]).tolist())
    if not k or not all(isinstance(x, int) and x >= 1 for x in k):
      raise ConfigError(f"{where}.k={options['k']!r}; give the neighbour counts as positive integers")
    if not float(options["temperature"]) > 0:
      raise ConfigError(f"{where}.temperature={options['temperature']!r}; it must be positive")
    if not isinstance(options["max_train"], int) or options["max_train"] < 0:
      raise ConfigError(f"{where}.max_train={options['max_train']!r}; give a number of examples >= 0 (0: all)")
    if not isinstance(options["batch"], int) or options["batch"] < 1:
      raise ConfigError(f"{where}.batch={options['batch']!r}; give a number of images >= 1")
    if kind in FEATURE_TYPES and not hasattr(task, "features"):
      raise ConfigError(f"{where}.type={kind!r} needs image features, which task={config.task!r} does not give; "
                        f"use type 'task'")
    out.append(Eval(name, kind, split, every, train_split=options.get("train_split") or config.data.train_split,
                    k=k, temperature=float(options["temperature"]), max_train=options["max_train"],
                    batch=options["batch"]))
  return out


def feature_metrics(spec: Eval, features_fn, train_source, source, preprocess) -> dict:
  """k-NN or linear-probe metrics (unprefixed) of the frozen features `features_fn(uint8 images)`."""
  from papers_jax.evaluators import features as features_lib, knn as knn_lib, linear_probe as linear_probe_lib
  train_x, train_y = features_lib.extract(features_fn, train_source, preprocess, batch_size=spec.batch,
                                          max_examples=spec.max_train or None)
  test_x, test_y = features_lib.extract(features_fn, source, preprocess, batch_size=spec.batch)
  if spec.type == "knn":
    return knn_lib.knn_accuracy(train_x, train_y, test_x, test_y, ks=spec.k, temperature=spec.temperature)
  return linear_probe_lib.fit_and_evaluate(train_x, train_y, test_x, test_y)
