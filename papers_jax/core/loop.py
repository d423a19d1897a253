"""The one training loop every task runs.

  1. Validate: config, mesh, dataset, init checkpoint (before anything is written to the workdir).
  2. Set up: workdir, config.json with the environment, sharded train state, auto-resume.
  3. Train: jitted donated steps; metrics fetched only every `log_every` steps.
  4. Evaluate, checkpoint, and finally write summary.json.
"""

import json
import logging
import os
import platform
import sys
import time

import jax
import numpy as np

from papers_jax import tasks
from papers_jax.core import checkpoint as ckpt_lib
from papers_jax.core import config as config_lib
from papers_jax.core import metrics as metrics_lib
from papers_jax.core import optim, sharding, step as step_lib
from papers_jax.core.state import TrainState, abstract_state, create_train_state
from papers_jax.data import pipeline
from papers_jax.data.sources import get_source
from papers_jax.errors import UserError

log = logging.getLogger(__name__)


def environment(mesh) -> dict:
  """Versions, devices, mesh and XLA flags, saved with every run."""
  import flax
  import optax
  import orbax.checkpoint
  return {
      "python": platform.python_version(), "jax": jax.__version__, "flax": flax.__version__,
      "optax": optax.__version__, "orbax_checkpoint": orbax.checkpoint.__version__,
      "backend": jax.default_backend(), "device_kind": jax.devices()[0].device_kind,
      "num_devices": jax.device_count(), "num_processes": jax.process_count(),
      "mesh": dict(mesh.shape), "xla_flags": os.environ.get("XLA_FLAGS", ""),
  }


class Trainer:
  """Holds what one run needs; `run()` trains to the end and returns the summary dict."""

  def __init__(self, config, workdir: str, *, devices=None):
    # ---------------------------------------------------------------- 1. validate
    self.config = config
    self.workdir = os.path.abspath(workdir)
    self.mesh = sharding.make_mesh(dict(config.mesh), devices)
    self.rules = sharding.DEFAULT_RULES
    config_lib.validate(config, data_parallel=sharding.data_parallel_size(self.mesh, self.rules),
                        num_processes=jax.process_count())
    self.task = tasks.get_task(config)
    self.train_source = get_source(config.data, config.data.train_split)
    self.eval_source = get_source(config.data, config.data.eval_split) if config.data.eval_split else None
    self.num_steps = config_lib.total_steps(config, len(self.train_source))
    self.is_main = jax.process_index() == 0
    with sharding.use_mesh(self.mesh, self.rules):
      self.state, self.shardings, self.graphdef, self.tx = create_train_state(
          self.task.build_model, self._make_tx, self.mesh, self.rules, config.seed)
    if config.init_from:
      from papers_jax.convert import init_params_from_checkpoint
      params, report = init_params_from_checkpoint(config.init_from, self.state.params,
                                                   skip=tuple(config.init_skip))
      self.state = self.state.replace(params=params)
      log.info("init_from %s:\n%s", config.init_from, report)
    self.train_step = step_lib.jit_train_step(
        step_lib.make_train_step(self.task.make_loss_fn(self.graphdef), self.tx, self.schedule,
                                 grad_accum_steps=config.grad_accum_steps),
        self.shardings, self.mesh, self.rules)
    self.eval_step = step_lib.jit_eval_step(self.task.make_eval_fn(self.graphdef), self.shardings, self.mesh,
                                            self.rules)

  def _make_tx(self, params):
    tx, self.schedule = optim.make_optimizer(self.config.optimizer, self.config.schedule, params, self.num_steps)
    return tx

  def _preprocess(self, train: bool):
    if hasattr(self.task, "preprocess"):  # a task with its own per-example pipeline
      return self.task.preprocess(train)
    d = self.config.data
    return pipeline.image_preprocess(d.augment, d.image_size, train=train, max_shift=d.max_shift,
                                     crop_pct=d.crop_pct, affine_degrees=d.affine_degrees,
                                     affine_scale=tuple(d.affine_scale), affine_translate=d.affine_translate)

  # ------------------------------------------------------------------ evaluation
  def evaluate(self) -> dict:
    if self.eval_source is None:
      return {}
    sums = None
    batches = pipeline.eval_batches(self.eval_source, self._preprocess(train=False),
                                    global_batch=self.config.batch_size // self.config.grad_accum_steps,
                                    process_index=jax.process_index(), process_count=jax.process_count())
    with sharding.use_mesh(self.mesh, self.rules):
      for local in batches:
        out = self.eval_step(self.state, sharding.global_batch(local, self.mesh, self.rules))
        sums = out if sums is None else jax.tree.map(np.add, sums, out)
    sums = jax.tree.map(lambda x: float(np.asarray(x)), sums)
    count = sums.pop("count")
    return {f"eval/{k}": v / count for k, v in sums.items()} | {"eval/count": count}

  # ------------------------------------------------------------------ main loop
  def run(self) -> dict:
    config = self.config
    os.makedirs(self.workdir, exist_ok=True)
    checkpointer = ckpt_lib.Checkpointer(os.path.join(self.workdir, "checkpoints"),
                                         max_to_keep=config.keep_checkpoints, keep_every=config.keep_every,
                                         async_save=config.async_checkpoint)
    start_step = 0
    latest = checkpointer.latest_step()
    if latest is not None:
      try:
        self.state, meta = checkpointer.restore(latest, abstract_state(self.shardings, self.state))
      except UserError:
        checkpointer.close()
        raise
      start_step = int(meta["step"])
      log.info("resumed from %s at step %d", checkpointer.directory, start_step)
    if self.is_main:
      metrics_lib.write_json_atomic(os.path.join(self.workdir, "config.json"),
                                    {"config": config.to_dict(), "environment": environment(self.mesh),
                                     "num_steps": self.num_steps, "resumed_from": start_step or None})
    writer = metrics_lib.MetricWriter(self.workdir, enabled=self.is_main,
                                      resume_step=start_step if latest is not None else None)
    progress = metrics_lib.Progress(self.num_steps, start_step, enabled=self.is_main)
    batches = pipeline.train_batches(
        self.train_source, self._preprocess(train=True), global_batch=config.batch_size, seed=config.seed,
        start_step=start_step, num_steps=self.num_steps, process_index=jax.process_index(),
        process_count=jax.process_count(), num_threads=config.data_threads)

    t_start = time.time()
    t_window, window_start = time.time(), start_step
    pending, eval_metrics, nonfinite_run, step = [], {}, 0, start_step
    train_time, timed_steps = 0.0, 0
    try:
      with sharding.use_mesh(self.mesh, self.rules):
        for step in range(start_step + 1, self.num_steps + 1):
          local = next(batches)
          self.state, step_metrics = self.train_step(self.state, sharding.global_batch(local, self.mesh, self.rules))
          pending.append(step_metrics)
          last = step == self.num_steps
          if step % config.log_every == 0 or last:
            fetched = jax.device_get(pending)  # the only host sync of the loop
            pending = []
            for m in fetched:
              nonfinite_run = nonfinite_run + 1 if m["nonfinite"] else 0
              if nonfinite_run >= config.max_nonfinite:
                raise FloatingPointError(
                    f"{nonfinite_run} consecutive steps up to step {step} had a non-finite loss or gradient "
                    f"(loss={m['loss']}, grad_norm={m['grad_norm']}); their updates were skipped. Lower the "
                    "learning rate, enable optimizer.clip_grad_norm, or check the data.")
            elapsed = time.time() - t_window
            if window_start > start_step:  # the first window includes compilation
              train_time += elapsed
              timed_steps += step - window_start
            row = {k: float(np.mean([m[k] for m in fetched])) for k in fetched[-1]}
            row["throughput"] = (step - window_start) * config.batch_size / max(elapsed, 1e-9)
            writer.write(step, row)
            progress.update(step, step - window_start, row)
            t_window, window_start = time.time(), step
          if (config.eval_every and step % config.eval_every == 0) or last:
            eval_metrics = self.evaluate()
            if hasattr(self.task, "after_eval"):  # task-specific evaluators, images, health checks
              eval_metrics |= self.task.after_eval(self, step, writer) or {}
            writer.write(step, eval_metrics)
          if step % config.checkpoint_every == 0 or last:
            checkpointer.save(step, self.state, {"step": step, "data_position": step * config.batch_size},
                              force=last)
      checkpointer.wait()
    finally:
      progress.close()
      checkpointer.close()
      writer.close()

    summary = {
        "steps": int(jax.device_get(self.state.step)), "num_steps": self.num_steps, "batch_size": config.batch_size,
        "wall_time_s": time.time() - t_start, "resumed_from": start_step or None,
        "examples_per_s": timed_steps * config.batch_size / train_time if train_time else None,
        **eval_metrics,
    }
    last_row = self._last_metrics()
    if last_row:
      summary["train/loss"] = last_row.get("loss")
    if self.is_main:
      metrics_lib.write_json_atomic(os.path.join(self.workdir, "summary.json"), summary)
    return summary

  def _last_metrics(self) -> dict:
    path = os.path.join(self.workdir, "metrics.jsonl")
    if not os.path.exists(path):
      return {}
    rows = [json.loads(l) for l in open(path) if l.strip()]
    rows = [r for r in rows if "loss" in r]
    return rows[-1] if rows else {}


def train(config, workdir: str, *, devices=None) -> dict:
  return Trainer(config, workdir, devices=devices).run()
