"""The one training loop every task runs.

  1. Validate: config, mesh, dataset, init checkpoint (before anything is written to the workdir).
  2. Set up: workdir, config.json with the environment, sharded train state, auto-resume.
  3. Train: jitted donated steps; metrics fetched only every `log_every` steps.
  4. Evaluate, checkpoint, and finally write summary.json.
"""

import contextlib
import json
import logging
import os
import platform
import signal
import socket
import subprocess
import sys
import threading
import time

import jax
import numpy as np
from flax import nnx

from papers_jax import tasks
from papers_jax.core import checkpoint as ckpt_lib
from papers_jax.core import config as config_lib
from papers_jax.core import evals as evals_lib
from papers_jax.core import metrics as metrics_lib
from papers_jax.core import flops as flops_lib, host, optim, platform_setup, run_config, sharding, step as step_lib
from papers_jax.core.preemption import PreemptionWatch
from papers_jax.core.state import TrainState, abstract_model, abstract_state, add_weight_ema, create_train_state
from papers_jax.data import pipeline
from papers_jax.data.sources import Subset, get_source
from papers_jax.errors import (CheckpointError, ConfigError, DataError, ResourceError, TrainingError, UserError,
                               WorkdirError)

log = logging.getLogger(__name__)


def environment(mesh, config=None) -> dict:
  """What reproducing a run needs: seed, versions, devices, mesh, processes, XLA flags, code revision."""
  import flax
  import jaxlib
  import optax
  import orbax.checkpoint
  return {
      "seed": None if config is None else config.seed,
      "deterministic": None if config is None else config.deterministic,
      "python": platform.python_version(), "jax": jax.__version__, "jaxlib": jaxlib.__version__,
      "flax": flax.__version__, "optax": optax.__version__, "orbax_checkpoint": orbax.checkpoint.__version__,
      "numpy": np.__version__, "backend": jax.default_backend(), "device_kind": jax.devices()[0].device_kind,
      "num_devices": jax.device_count(), "num_local_devices": jax.local_device_count(),
      "num_processes": jax.process_count(), "hostname": socket.gethostname(), "host_cpu": host.host_cpu(),
      **platform_setup.describe(),
      "mesh": dict(mesh.shape), "xla_flags": os.environ.get("XLA_FLAGS", ""),
      "jax_env": {k: v for k, v in os.environ.items() if k.startswith(("JAX_", "XLA_", "SLURM_JOB", "TPU_"))},
      "argv": sys.argv, "git_revision": _git_revision(),
  }


def _git_revision() -> str | None:
  root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
  try:
    out = subprocess.run(["git", "-C", root, "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5)
    dirty = subprocess.run(["git", "-C", root, "status", "--porcelain", "--untracked-files=no"],
                           capture_output=True, text=True, timeout=5).stdout.strip()
  except (OSError, subprocess.SubprocessError):
    return None
  return (out.stdout.strip() + ("+dirty" if dirty else "")) if out.returncode == 0 else None


def preprocess_fn(config, task, train: bool):
  """The per-example host preprocessing of a run: the task's own, else the standard image pipeline."""
  if hasattr(task, "preprocess"):
    return task.preprocess(train)
  return pipeline.config_image_preprocess(config, train)


class KillPoint:
  """`debug.kill_at="<phase>:<n>[:<ms>]"`: SIGKILL this process <ms> after it reaches <phase> the n-th time.

  The fault-injection tests kill runs at chosen points of start-up, steps, saves, evaluations and the
  summary, and check that the same command then resumes to exactly the result of an uninterrupted run.
  """

  PHASES = ("startup", "step", "save", "eval", "summary")

  def __init__(self, spec: str):
    self.phase, self.count = None, 0
    if spec:
      parts = spec.split(":")
      if len(parts) not in (2, 3) or parts[0] not in self.PHASES or not all(p.isdigit() for p in parts[1:]):
        raise UserError(f"debug.kill_at={spec!r}; give <phase>:<n>[:<ms>] with a phase of {self.PHASES}")
      self.phase, self.n, self.delay_s = parts[0], int(parts[1]), int((parts + ["0"])[2]) / 1000

  def reached(self, phase: str) -> None:
    if phase != self.phase:
      return
    self.count += 1
    if self.count == self.n:
      kill = lambda: os.kill(os.getpid(), signal.SIGKILL)
      if self.delay_s:
        threading.Timer(self.delay_s, kill).start()
      else:
        kill()


def check_config(config, devices=None):
  """The checks of a config that need neither data nor a model (ranges, mesh, batch, the task's own
  section); returns (mesh, task)."""
  config_lib.check_ranges(config, config_lib.RANGES)  # first: the mesh sizes among them
  config_lib.check_choices(config, {
      "task": tasks.TASKS, "nonfinite": config_lib.NONFINITE_POLICIES, "loss": ("softmax", "sigmoid"),
      "optimizer.name": optim.OPTIMIZERS, "schedule.name": optim.SCHEDULES,
      "dtype": ("float32", "bfloat16"), "weight_average": ("ema", "uniform")})  # no float16 (see DESIGN.md)
  config_lib.resolve_image_preprocessing(config)  # data.mean / std / crop_pct: the config's or the model's
  mesh = sharding.make_mesh(dict(config.mesh), devices)
  rules = sharding.rules_from_config(config.sharding_rules)
  config_lib.validate(config, data_parallel=sharding.data_parallel_size(mesh, rules),
                      num_processes=jax.process_count())
  task = tasks.get_task(config)
  if getattr(task, "phases", None):
    optim.check_phase_config(config, task.phases)
  elif config.get("phases"):
    raise ConfigError(f"config.phases is set but task {config.task!r} trains with one optimizer (config.optimizer)")
  evals_lib.from_config(config, task)
  return mesh, task


class Trainer:
  """Holds what one run needs; `run()` trains to the end and returns the summary dict."""

  kill_point = KillPoint("")  # run() sets the config's

  def __init__(self, config, workdir: str, *, devices=None):
    # ---------------------------------------------------------------- 1. validate
    self.config = config
    self.workdir = os.path.abspath(workdir)
    self.rules = sharding.rules_from_config(config.sharding_rules)
    self.mesh, self.task = check_config(config, devices)
    self.train_source = self._source(config.data.train_split)
    self.evals = evals_lib.from_config(config, self.task)  # data.eval_split's, then config.evals (core/evals.py)
    self.eval_sources = self._eval_sources()
    self.eval_source = self.eval_sources.get(config.data.eval_split)  # the unnamed evaluation's
    self._check_data()
    self.num_steps = config_lib.total_steps(config, len(self.train_source))
    self.task.num_steps = self.num_steps  # for tasks whose schedules depend on it (EMA momentum)
    self.is_main = jax.process_index() == 0
    with sharding.use_mesh(self.mesh, self.rules):
      self.state, self.shardings, self.graphdef, self.tx = create_train_state(
          self.task.build_model, self._make_tx, self.mesh, self.rules, config.seed)
    self.replicated = sharding.replicated_report(abstract_model(self.task.build_model)[1], self.mesh, self.rules,
                                                 min_size=config.replicated_report_min_size)
    if self.replicated and self.is_main:
      log.warning("%s", sharding.format_replicated_report(self.replicated))
    if config.init_from:
      from papers_jax.convert import init_model_state_from_checkpoint, init_params_from_checkpoint
      prefix = config.get("init_prefix", "")
      try:
        params, report = init_params_from_checkpoint(config.init_from, self.state.params,
                                                     skip=tuple(config.init_skip), prefix=prefix)
      except CheckpointError as e:
        raise CheckpointError(f"init_from={config.init_from!r}: {e}") from e
      self.state = self.state.replace(params=params)
      log.info("init_from %s:\n%s", config.init_from, report)
      if config.get("init_model_state", False):  # e.g. a frozen encoder's BatchNorm running statistics
        model_state, loaded = init_model_state_from_checkpoint(config.init_from, self.state.model_state,
                                                               prefix=prefix)
        self.state = self.state.replace(model_state=model_state)
        log.info("init_from %s: %d model-state entries loaded", config.init_from, len(loaded))
    for prefix, path in getattr(self.task, "frozen_checkpoints", lambda: {})().items():  # e.g. DeiT's teacher
      from papers_jax.convert import init_frozen_from_checkpoint
      self.state = self.state.replace(model_state=init_frozen_from_checkpoint(path, self.state.model_state, prefix))
      log.info("frozen module %s: loaded from %s", prefix, path)
    if config_lib.keeps_weight_average(config):  # after init_from: the average starts at the loaded weights
      self.state, self.shardings = add_weight_ema(self.state, self.shardings)
    self.train_step = step_lib.jit_train_step(
        step_lib.make_train_step(self.task.make_loss_fn(self.graphdef), self.tx, self.schedule,
                                 grad_accum_steps=config.grad_accum_steps,
                                 post_update=getattr(self.task, "post_update", None), ema_decay=config.ema_decay,
                                 uniform_average=config.get("weight_average", "ema") == "uniform"),
        self.shardings, self.mesh, self.rules)
    self.eval_step = step_lib.jit_eval_step(self.task.make_eval_fn(self.graphdef), self.shardings, self.mesh,
                                            self.rules)
    self._check_batch_shapes()

  def _check_data(self):
    """Data against the config: a classifier head for every class of the data."""
    config = self.config
    head = getattr(self.task, "num_classes", None)
    classes = getattr(self.train_source, "num_classes", None)
    if head and classes and classes > head:
      raise DataError(f"the data {config.data.name!r} has {classes} classes but the model's head has "
                      f"model.num_classes={head}; labels {head}..{classes - 1} would be out of range. Set "
                      f"--config.model.num_classes={classes}, or train on a subset of the classes.")

  def _check_batch_shapes(self):
    """Traces the train step on the shapes of this config's batches (nothing runs), so that data that
    does not fit the model, e.g. data.image_size against model.img_size, stops here, before anything is
    written. The trace is cached: the first real step does not trace again."""
    example = self._preprocess(train=True)(dict(self.train_source[0]), np.random.default_rng(0))
    example["index"] = np.int32(0)
    batch_sharding = sharding.batch_sharding(self.mesh, self.rules)
    batch = {k: jax.ShapeDtypeStruct((self.config.batch_size,) + np.shape(v), np.asarray(v).dtype,
                                     sharding=batch_sharding) for k, v in example.items()}
    shapes = {k: v.shape[1:] for k, v in batch.items()}
    try:
      with sharding.use_mesh(self.mesh, self.rules):
        traced = self.train_step.trace(abstract_state(self.shardings, self.state), batch)
    except (ValueError, TypeError) as e:
      if isinstance(e, UserError):
        raise
      raise ConfigError(f"the model {self.config.model.get('name')!r} cannot take this config's examples "
                        f"(shapes {shapes}): {e}. Check data.image_size (and the crop sizes) against the "
                        "model's settings, e.g. model.img_size.") from e
    if self.config.get("memory_budget_gb", 0.0) > 0:
      t_compile = time.time()
      with sharding.use_mesh(self.mesh, self.rules):
        compiled = traced.lower().compile()  # cached: training's compile below takes no time
      self.precompile_s = time.time() - t_compile
      self._check_memory(compiled)

  def _check_memory(self, compiled):
    """Stops a train step that needs more memory per device than `memory_budget_gb`."""
    stats = compiled.memory_analysis()
    if stats is None:  # a backend without memory analysis: nothing to check against
      log.warning("memory_budget_gb is set but this backend reports no memory analysis; not checked")
      return
    needed = (stats.argument_size_in_bytes + stats.output_size_in_bytes - stats.alias_size_in_bytes
              + stats.temp_size_in_bytes)
    budget = self.config.memory_budget_gb * 2 ** 30
    if needed > budget:
      gib = lambda b: f"{b / 2 ** 30:.3g} GiB" if b >= 2 ** 30 else f"{b / 2 ** 20:.3g} MiB"  # noqa: E731
      raise ResourceError(
          f"out of memory: the train step needs {gib(needed)} per device (arguments "
          f"{gib(stats.argument_size_in_bytes)}, outputs {gib(stats.output_size_in_bytes)}, of which "
          f"{gib(stats.alias_size_in_bytes)} reuse the arguments' buffers, temporaries "
          f"{gib(stats.temp_size_in_bytes)}), more than memory_budget_gb="
          f"{self.config.memory_budget_gb:g}. Lower batch_size, raise grad_accum_steps, shard over more devices "
          "(mesh.fsdp), use a smaller model, or raise the budget.")

  def _eval_sources(self) -> dict:
    """{split: source} of every split an evaluation reads; a named evaluation's bad split is a ConfigError."""
    out = {self.config.data.train_split: self.train_source}
    for spec in self.evals:
      for split in (spec.split, spec.train_split):
        if split and split not in out:
          try:
            out[split] = self._source(split)
          except DataError as e:
            if not spec.name:
              raise
            raise ConfigError(f"evals.{spec.name}: the split {split!r} cannot be read: {e}") from e
    return out

  def _source(self, split: str):
    """The task's own source (text tasks build theirs with a tokenizer), else the image sources; the
    train split cut to `data.train_fraction`."""
    source = self.task.source(split) if hasattr(self.task, "source") else get_source(self.config.data, split)
    fraction = self.config.data.get("train_fraction", 1.0)
    if split == self.config.data.train_split and fraction < 1.0:
      source = Subset(source, fraction)
    return source

  def _make_tx(self, params):
    if getattr(self.task, "phases", None):  # one optimizer per phase (core/optim.py: Phase)
      tx = optim.make_phased_optimizer(self.config, self.task.phases, params, self.num_steps)
      self.schedule = tx.schedules[tx.phases[0].name]
      return tx
    tx, self.schedule = optim.make_optimizer(self.config.optimizer, self.config.schedule, params, self.num_steps)
    return tx

  def _preprocess(self, train: bool):
    return preprocess_fn(self.config, self.task, train)

  # ------------------------------------------------------------------ evaluation
  def eval_step_metrics(self, state, source) -> dict:
    """The eval step's sums of `state` over `source`, as averages (unprefixed, with `count`)."""
    sums = None
    batches = pipeline.eval_batches(source, self._preprocess(train=False),
                                    global_batch=self.config.batch_size // self.config.grad_accum_steps,
                                    process_index=jax.process_index(), process_count=jax.process_count())
    with sharding.use_mesh(self.mesh, self.rules):
      for local in batches:
        out = self.eval_step(state, sharding.global_batch(local, self.mesh, self.rules))
        sums = out if sums is None else jax.tree.map(np.add, sums, out)
    sums = jax.tree.map(lambda x: float(np.asarray(x)), sums)
    count = sums.pop("count")
    counts = sums.pop("counts", {})  # metrics averaged over something else (BERT's NSP: over examples)
    return {k: v / counts.get(k, count) for k, v in sums.items()} | {"count": count}

  def run_eval(self, spec, step: int, writer=None) -> dict:
    """One evaluation (core/evals.py) of the current state; its metrics under its prefix."""
    self.kill_point.reached("eval")
    source = self.eval_sources[spec.split]
    if spec.type == "task":
      metrics = self.eval_step_metrics(self.state, source)
      if hasattr(self.task, "after_eval"):  # task-specific evaluators, images, health checks
        metrics |= self.task.after_eval(self, step, writer, source, metrics) or {}
      out = {spec.prefix + k: v for k, v in metrics.items()}
      if "ema_params" in self.state.extra:  # config.ema_decay: the eval step on the weight EMA too
        ema = self.eval_step_metrics(self.state.replace(params=self.state.extra["ema_params"]), source)
        out |= {spec.ema_prefix + k: v for k, v in ema.items()}
      return out
    features_fn, preprocess = self.task.features(self)
    with sharding.use_mesh(self.mesh, self.rules):
      metrics = evals_lib.feature_metrics(spec, features_fn, self.eval_sources[spec.train_split], source, preprocess)
    return {spec.prefix + k: v for k, v in metrics.items()}

  def evaluate(self, step: int | None = None, writer=None, *, due=lambda spec: True) -> dict:
    """Every evaluation of the run for which `due(spec)`, each written as its own row when `writer`."""
    step = int(jax.device_get(self.state.step)) if step is None else step
    out = {}
    for spec in self.evals:
      if due(spec):
        metrics = self.run_eval(spec, step, writer)
        if writer is not None:
          writer.write(step, metrics)
        out |= metrics
    return out

  def _logged_evals(self, step: int) -> dict:
    """The evaluation metrics that metrics.jsonl holds for `step`."""
    rows = metrics_lib.read_rows(os.path.join(self.workdir, "metrics.jsonl"))
    return {k: v for r in rows if r["step"] == step for k, v in r.items() if k.startswith(("eval/", "eval_ema/"))}

  # ------------------------------------------------------------------ checkpoints
  def _resume(self, checkpointer) -> int | None:
    """Restores the newest readable checkpoint; returns its step, or None when there is none."""
    restored = checkpointer.restore_latest(abstract_state(self.shardings, self.state))
    if restored is None:
      return None
    self.state, meta = restored
    step = int(meta["step"])
    self.data_position = int(meta.get("data_position", step * self.config.batch_size))
    self.skipped = sorted(set(self.skipped) | set(meta.get("skipped_positions", [])))
    self.rollbacks = max(self.rollbacks, int(meta.get("rollbacks", 0)))
    return step

  def _save(self, checkpointer, step: int, *, force: bool = False):
    self.kill_point.reached("save")
    checkpointer.save(step, self.state, {"step": step, "data_position": self.data_position,
                                         "skipped_positions": self.skipped, "rollbacks": self.rollbacks},
                      force=force)

  # ------------------------------------------------------------------ main loop
  def run(self) -> dict:
    config = self.config
    self.kill_point = KillPoint(config.debug.kill_at)
    self.kill_point.reached("startup")
    run_config.allowed_changes(config)
    with _workdir_errors(self.workdir):
      os.makedirs(self.workdir, exist_ok=True)
      checkpointer = ckpt_lib.Checkpointer(os.path.join(self.workdir, "checkpoints"),
                                           max_to_keep=config.keep_checkpoints, keep_every=config.keep_every,
                                           async_save=config.async_checkpoint)
    self.data_position, self.skipped, self.rollbacks = 0, [], 0
    self.train_time, self.timed_steps, self.eval_metrics = 0.0, 0, {}
    try:
      if checkpointer.latest_step() is not None:  # a resume: the data order must go on as it was
        run_config.check_resume(config, self.workdir, checkpointer.latest_step())
      resumed_from = self._resume(checkpointer)
      if resumed_from is None and config.nonfinite == "rollback":
        self._save(checkpointer, 0, force=True)  # a rollback needs a good state to return to
    except UserError:
      checkpointer.close()
      raise
    start_step = resumed_from or 0
    if resumed_from is not None:
      log.info("resumed from %s at step %d", checkpointer.directory, start_step)
    if self.is_main:
      with _workdir_errors(self.workdir, checkpointer):
        run_config.write(self.workdir, {"config": config.to_dict(), "environment": environment(self.mesh, config),
                                        "num_steps": self.num_steps, "resumed_from": resumed_from},
                         metrics_lib.write_json_atomic)
        if hasattr(self.task, "save_assets"):  # what reading the run's outputs needs, e.g. its tokenizer
          self.task.save_assets(self.workdir)
    writer = metrics_lib.MetricWriter(self.workdir, enabled=self.is_main, resume_step=resumed_from)
    watch = PreemptionWatch()
    t_start = time.time()
    try:
      if resumed_from and resumed_from < self.num_steps:  # a preemption stop skipped the evaluations due then
        logged = self._logged_evals(resumed_from)
        self.eval_metrics = logged | self.evaluate(resumed_from, writer, due=lambda spec: (
            spec.due(resumed_from, last=False) and not any(spec.owns(k) for k in logged)))
      while True:
        try:
          preempted_at = self._train(start_step, checkpointer, writer, watch)
          break
        except _NonFinite as bad:
          start_step = self._roll_back(bad, checkpointer, writer)
      checkpointer.wait()
    finally:
      watch.close()
      checkpointer.close()
      writer.close()

    summary = {
        "steps": int(jax.device_get(self.state.step)), "num_steps": self.num_steps, "batch_size": config.batch_size,
        "wall_time_s": time.time() - t_start, "resumed_from": resumed_from,
        "examples_per_s": self.timed_steps * config.batch_size / self.train_time if self.train_time else None,
        "rollbacks": self.rollbacks, **self.eval_metrics, **self._accounting_summary(),
    }
    if preempted_at is not None:  # not finished: no summary.json; the same command resumes
      return summary | {"preempted_at": preempted_at}
    if start_step == self.num_steps:  # resumed after the last step (killed before summary.json)
      summary |= self._final_eval()
    last_row = self._last_metrics()
    if last_row:
      summary["train/loss"] = last_row.get("loss")
    self.kill_point.reached("summary")
    if self.is_main:
      metrics_lib.write_json_atomic(os.path.join(self.workdir, "summary.json"), summary)
    return summary

  def _train(self, start_step: int, checkpointer, writer, watch) -> int | None:
    """Trains from `start_step` to the end; returns the step of a preemption stop, else None."""
    config = self.config
    starts = pipeline.batch_starts(self.data_position, self.num_steps - start_step, config.batch_size, self.skipped)
    batches = pipeline.train_batches(
        self.train_source, self._preprocess(train=True), global_batch=config.batch_size, seed=config.seed,
        starts=starts, process_index=jax.process_index(), process_count=jax.process_count(),
        num_threads=config.data_threads, nan_at_positions=tuple(config.debug.nan_at_positions))
    progress = metrics_lib.Progress(self.num_steps, start_step, enabled=self.is_main)
    counts = self._count_flops()
    t_window, window_start = time.time(), start_step
    compile_s = None  # reported in the first row after compiling
    pending = []  # (step, batch start, metrics) since the last log row; fetched lazily
    try:
      # Implicit host<->device copies raise in the steady state (a numpy array or a Python number into a
      # jitted function, `float(x[0])`, ...); the batch put, the metrics fetch (jax.device_get), the
      # evaluations and the checkpoint saves are the transfers the loop means.
      with sharding.use_mesh(self.mesh, self.rules), jax.transfer_guard("disallow"):
        for step, batch_start in zip(range(start_step + 1, self.num_steps + 1), starts):
          self.kill_point.reached("step")
          with jax.transfer_guard("allow"):  # the batch put; with several processes JAX counts it as implicit
            batch = sharding.global_batch(next(batches), self.mesh, self.rules)
          if getattr(self, "compile_s", None) is None:
            # Compiled ahead of time (the jit call below reuses the executable), so that no throughput
            # includes compilation: its time is logged once, on its own.
            t_compile = time.time()
            self.train_step.lower(self.state, batch).compile()
            self.compile_s = compile_s = time.time() - t_compile + getattr(self, "precompile_s", 0.0)
            log.info("compiled the train step in %.1f s", compile_s)
            t_window = time.time()
          self.state, step_metrics = self.train_step(self.state, batch)
          pending.append((step, batch_start, step_metrics))
          self.data_position = batch_start + config.batch_size
          if step == config.debug.sigterm_at_step and config.debug.sigterm_process in (-1, jax.process_index()):
            os.kill(os.getpid(), signal.SIGTERM)
          preempted = watch.reached(step)
          last = step == self.num_steps
          save = step % config.checkpoint_every == 0 or last or preempted
          if step % config.log_every == 0 or last or save:
            pending = self._check_finite(pending)  # the loop's only host sync; never save a bad step
          if step % config.log_every == 0 or last:
            elapsed = time.time() - t_window
            self.train_time += elapsed
            self.timed_steps += step - window_start
            row = self._log_row(pending, (step - window_start) / max(elapsed, 1e-9), step, counts)
            if compile_s is not None:
              row["compile_s"], compile_s = self.compile_s, None
            writer.write(step, row)
            progress.update(step, step - window_start, row)
            pending, t_window, window_start = [], time.time(), step
          t_aside = time.time()  # evaluation and checkpointing are not training: no window counts them
          with jax.transfer_guard("allow"):  # host code that means its transfers (evaluators, orbax)
            if not preempted or last:  # a preemption stop leaves the evaluations to the resumed run
              self.eval_metrics |= self.evaluate(step, writer, due=lambda spec: spec.due(step, last))
            if save:
              self._save(checkpointer, step, force=last or preempted)
          t_window += time.time() - t_aside
          if preempted and not last:
            checkpointer.wait()
            log.warning("preempted: saved the checkpoint of step %d in %s; run the same command to resume",
                        step, checkpointer.directory)
            return step
    finally:
      progress.close()
    return None

  # ------------------------------------------------------------------ logs and compute accounting
  def _count_flops(self) -> dict:
    """Params (all, and non-embedding: models.embedding_params), analytic forward FLOPs per example
    (None without a counter) and the devices' peak."""
    if not hasattr(self, "_counts"):
      model = nnx.eval_shape(lambda: self.task.build_model(nnx.Rngs(params=0)))
      peak, source = flops_lib.run_peak(self.config)
      counts = flops_lib.model_counts(model, self.task)
      self._counts = {"params": int(sum(np.prod(p.shape) for p in jax.tree.leaves(self.state.params))),
                      "non_embedding_params": counts["non_embedding_params"],
                      "forward_flops": counts["forward_flops_per_example"], "peak": peak, "peak_source": source,
                      "tokens_per_example": (self.task.tokens_per_example()
                                             if hasattr(self.task, "tokens_per_example") else None)}
    return self._counts

  def _log_row(self, pending, steps_per_s: float, step: int, counts: dict) -> dict:
    """The window's mean metrics; `lr` the one of the logged step (its update's, schedule(step - 1))."""
    row = {k: float(np.mean([m[k] for _, _, m in pending])) for k in pending[-1][2] if k != "lr"}
    row["lr"] = float(pending[-1][2]["lr"])
    row["throughput"] = steps_per_s * self.config.batch_size  # examples/s
    if counts["tokens_per_example"]:
      row["tokens_per_s"] = row["throughput"] * counts["tokens_per_example"]
    if counts["forward_flops"]:
      train_flops = flops_lib.train_flops(counts["forward_flops"], self.config.batch_size)  # per step
      row["flops"] = step * train_flops  # cumulative training FLOPs
      if counts["peak"]:
        row["mfu"] = steps_per_s * train_flops / counts["peak"]
    return row

  def _accounting_summary(self) -> dict:
    counts = self._count_flops()
    forward = counts["forward_flops"]
    steps = int(jax.device_get(self.state.step))
    return {"params": counts["params"], "non_embedding_params": counts["non_embedding_params"],
            "forward_flops_per_example": forward, "train_flops_per_example": flops_lib.train_flops(forward, 1),
            "train_flops": flops_lib.train_flops(forward, self.config.batch_size * steps),
            "flops_convention": flops_lib.CONVENTION, "examples_seen": steps * self.config.batch_size,
            "tokens_seen": (steps * self.config.batch_size * counts["tokens_per_example"]
                            if counts["tokens_per_example"] else None),
            "compile_s": getattr(self, "compile_s", None), "peak_flops": counts["peak"],
            "peak_source": counts["peak_source"], "dtype": self.config.get("dtype", "float32")}

  # ------------------------------------------------------------------ non-finite steps
  def _check_finite(self, pending):
    fetched = [(step, start, jax.device_get(m)) for step, start, m in pending]
    for step, start, m in fetched:
      if m["nonfinite"]:
        raise _NonFinite(step, start, float(m["loss"]), float(m["grad_norm"]))
    return fetched

  def _roll_back(self, bad, checkpointer, writer) -> int:
    config = self.config
    if config.nonfinite == "stop" or self.rollbacks >= config.max_rollbacks:
      why = (f"after {self.rollbacks} rollbacks (max_rollbacks={config.max_rollbacks})"
             if config.nonfinite == "rollback" else "(nonfinite=stop)")
      raise TrainingError(
          f"step {bad.step} had a non-finite {bad.metric} (loss={bad.loss}, grad_norm={bad.grad_norm}) on the batch "
          f"at data position {bad.start}; its update was not applied and the run stops {why}. The checkpoints "
          f"in {checkpointer.directory} hold only steps before it. Lower the learning rate, enable "
          "optimizer.clip_grad_norm, check the data, or set nonfinite=rollback to skip such batches.")
    checkpointer.wait()
    self.skipped = sorted(set(self.skipped) | {bad.start})
    self.rollbacks += 1
    start_step = self._resume(checkpointer)
    writer.truncate(start_step)
    log.warning("step %d had a non-finite %s: rolled back to step %d, skipping the batch at data position %d "
                "(rollback %d of at most %d)", bad.step, bad.metric, start_step, bad.start, self.rollbacks,
                config.max_rollbacks)
    return start_step

  def _final_eval(self) -> dict:
    """The last step's evaluations: as logged before its checkpoint, else evaluated again."""
    logged = self._logged_evals(self.num_steps)
    return logged | self.evaluate(self.num_steps, due=lambda spec: not any(spec.owns(k) for k in logged))

  def _last_metrics(self) -> dict:
    rows = [r for r in metrics_lib.read_rows(os.path.join(self.workdir, "metrics.jsonl")) if "loss" in r]
    return rows[-1] if rows else {}


@contextlib.contextmanager
def _workdir_errors(workdir: str, checkpointer=None):
  """A workdir that cannot be written (read-only, full disk, a file in the way) as one WorkdirError."""
  try:
    yield
  except OSError as e:
    if checkpointer is not None:
      checkpointer.close()
    where = e.filename or workdir
    raise WorkdirError(f"cannot write {where}: {e.strerror or e}. Give a --workdir on a writable disk with free "
                       "space, or free some space.") from e


class _NonFinite(Exception):
  def __init__(self, step: int, start: int, loss: float, grad_norm: float):
    super().__init__(step)
    self.step, self.start, self.loss, self.grad_norm = step, start, loss, grad_norm
    self.metric = "loss" if not np.isfinite(loss) else "gradient"


def train(config, workdir: str, *, devices=None) -> dict:
  return Trainer(config, workdir, devices=devices).run()
