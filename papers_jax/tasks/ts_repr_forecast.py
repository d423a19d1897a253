"""Time-series representations evaluated by forecasting (`config.task = "ts_repr_forecast"`): TS2Vec's
forecasting protocol on the forecast task's series.

Training is tasks/ts_representation.py's (`config.ts_repr`: methods "ts2vec" and "timesurl") on the train
rows of a forecasting series (data/timeseries.py, `data.name` / `data.layout` as tasks/forecast.py, each channel
standardised with the train split's statistics): as the official code, a train split longer than
`ts_repr.max_train_length` is cut into ⌊rows / max_train_length⌋ sections of equal length (the few rows
left over at the end dropped), and these sections are the series of the batches.

Evaluation (after the last step): every row of the whole standardised series is encoded causally, the
window of the `ts_repr.forecast.context` rows before it and the row itself (NaN before the start) through
the encoder, the last timestamp's representation kept (the uniform weight average where the config keeps
one). For each horizon H of `ts_repr.forecast.horizons`, on the forecast task's windows of look-back
`ts_repr.forecast.lookback` (tasks/forecast.py: the same splits, the same test windows): the representation
of the row before a window's first forecast row is the feature, the window's H × C future values the target;
the train windows whose feature row has less than `context` rows before it are dropped (the official
`drop=padding`). A ridge regression, α by validation RMSE + MAE over TS2Vec's grid
(evaluators/ridge_forecast.py), predicts the test windows:
  ridge/mse_<H>, ridge/mae_<H>, ridge/alpha_<H>     on the standardised scale, over every test window;
  baseline/ridge_random_mse_<H>, …_mae_<H>          the same protocol on the untrained encoder
                                                    (`ts_repr.forecast.random_baseline`).
"""

import functools

import jax
import numpy as np
from flax import nnx

from papers_jax.core import sharding
from papers_jax.core.state import merge_model
from papers_jax.data import timeseries
from papers_jax.evaluators import ridge_forecast
from papers_jax.tasks.ts_representation import TSRepresentationTask


class SectionSource:
  """`rows` (N, C) as ⌊N / max_length⌋ (at least 1) series of equal length: {"series", "label": 0}."""

  def __init__(self, rows: np.ndarray, max_length: int):
    sections = max(1, len(rows) // max_length)
    size = len(rows) // sections
    self.series = rows[:sections * size].reshape(sections, size, rows.shape[1])
    self.num_channels, self.length, self.padded_at_ends, self.num_classes = rows.shape[1], size, False, 1

  def __len__(self) -> int:
    return len(self.series)

  def __getitem__(self, i) -> dict:
    return {"series": self.series[i], "label": np.int32(0)}


class TSReprForecastTask(TSRepresentationTask):
  def __init__(self, config):
    super().__init__(config)
    self.forecast = self.cfg.forecast
    self._causal_jit = None

  @functools.lru_cache(maxsize=4)
  def source(self, split: str):
    windows = timeseries.forecast_source(self.config.data, split, 1, 1)
    first, end = timeseries.split_borders(len(windows.values), self.config.data.get("layout", "ratio"))[split]
    return SectionSource(windows.values[first:end], int(self.cfg.max_train_length))

  def encode_causal(self, trainer, params, model_state, values: np.ndarray) -> np.ndarray:
    """(rows, dims): each row's representation from the `context` rows before it and itself."""
    if self._causal_jit is None:
      graphdef = trainer.graphdef

      def apply(params, model_state, windows):
        return merge_model(graphdef, params, model_state)(windows)[:, -1]
      self._causal_jit = jax.jit(apply, out_shardings=sharding.replicated(trainer.mesh))
    size, context, out = int(self.cfg.eval_batch), int(self.forecast.context), []
    for begin in range(0, len(values), size):
      rows = np.arange(begin, min(begin + size, len(values)))
      windows = ridge_forecast.causal_windows(values, np.concatenate([rows, np.repeat(rows[-1:], size - len(rows))]),
                                              context)
      with sharding.use_mesh(trainer.mesh, trainer.rules):
        out.append(np.asarray(self._causal_jit(params, model_state, windows))[:len(rows)])
    return np.concatenate(out)

  def ridge_scores(self, reprs: np.ndarray) -> dict:
    """{mse_H, mae_H, alpha_H} of the protocol on the representations of every row."""
    out = {}
    for horizon in self.forecast.horizons:
      sets = {}
      for split in ("train", "val", "test"):
        windows = timeseries.forecast_source(self.config.data, split, int(self.forecast.lookback), int(horizon))
        starts = windows.starts
        if split == "train":  # only rows with a full context
          starts = starts[starts - 1 >= int(self.forecast.context)]
        future = np.stack([windows.values[t:t + horizon] for t in starts])
        sets[split] = (reprs[starts - 1], future.reshape(len(starts), -1))
      alpha, w, b, _ = ridge_forecast.select_ridge(*sets["train"], *sets["val"])
      err = sets["test"][0] @ w + b - sets["test"][1]
      out |= {f"mse_{horizon}": float(np.mean(err ** 2)), f"mae_{horizon}": float(np.mean(np.abs(err))),
              f"alpha_{horizon}": float(alpha)}
    return out

  def after_eval(self, trainer, step: int, writer, source, metrics) -> dict:
    values = timeseries.forecast_source(self.config.data, "train", 1, 1).values
    params = trainer.state.extra.get("ema_params", trainer.state.params)
    reprs = self.encode_causal(trainer, params, trainer.state.model_state, values)
    out = {f"ridge/{k}": v for k, v in self.ridge_scores(reprs).items()}
    if self.forecast.random_baseline:
      with sharding.use_mesh(trainer.mesh, trainer.rules):
        model = self.build_model(nnx.Rngs(params=self.config.seed))
      reprs = self.encode_causal(trainer, nnx.to_pure_dict(nnx.state(model, nnx.Param)),
                                 nnx.to_pure_dict(nnx.state(model, nnx.Not(nnx.Param))), values)
      out |= {f"baseline/ridge_random_{k}": v for k, v in self.ridge_scores(reprs).items() if not k.startswith("a")}
    return out
