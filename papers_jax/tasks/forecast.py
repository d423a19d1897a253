"""Time-series forecasting (`config.task = "forecast"`): PatchTST, DLinear, NLinear and the naive baselines.

Data (data/timeseries.py): windows of look-back L = `forecast.lookback` and horizon H = `forecast.horizon`
from a chronologically split series, each channel standardised with the train split's statistics
(`data.name`, `data.layout`, `data.path`). A batch holds `past` (batch, L, C) and `future` (batch, H, C).
The model takes `past` and returns (batch, H, C); the model's `context_length`, `prediction_length` and
`num_channels` come from the data, not from `config.model`.

`forecast.objective`:
  "forecast"      the MSE between the forecast and `future` (every paper's training loss). Evaluation:
                  MSE and MAE over every window of the split (stride 1, none dropped), on the
                  standardised scale, as the papers report them; beside the model's, the same metrics of
                  two forecasts that need no training, computed on the same windows:
                    last_value      every future step is the window's last value;
                    seasonal_naive  step h is the value one season earlier, past[L − m + (h mod m)],
                                    m = `forecast.season` (0: the series' own period: 24 for hourly
                                    data, 52 for the weekly co2, ...).
  "masked_patch"  PatchTST's self-supervised pre-training (models/patchtst.py PatchTSTForPretraining):
                  the MSE over the masked patches of the RevIN-normalised window; evaluation reports the
                  same loss with masks drawn from a fixed key.
"""

import functools

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from flax import nnx

from papers_jax import models
from papers_jax.core import precision
from papers_jax.core.state import merge_model
from papers_jax.data import timeseries
from papers_jax.errors import ConfigError
from papers_jax.models.patchtst import masked_patch_mse

OBJECTIVES = ("forecast", "masked_patch")
EVAL_MASK_SEED = 0

# Allowed values of config.forecast's numbers (core/config.py check_ranges).
RANGES = (
    ("lookback", "[1, 1048576]"),
    ("horizon", "[1, 1048576]"),
    ("season", "[0, 1048576]"),
)


def default_config(**overrides) -> ml_collections.ConfigDict:
  """`config.forecast`, the fields this task reads."""
  return ml_collections.ConfigDict(dict(objective="forecast", lookback=336, horizon=96, season=0) | overrides)


# The offline series a config's `data=` argument names: (data.name, data.layout, the look-back its configs use).
# ett_like: 96 hours (4 days; the CPU budget of docs/timeseries.md, the papers use 336 or 512). co2 is weekly:
# 104 weeks (two years); its 2,284 weeks give 1,598 train rows under "ratio".
DATASETS = {
    "ett_like": ("ett_like", "ett_hour", 96),
    "co2": ("statsmodels:co2", "ratio", 104),
    "elec_equip": ("statsmodels:elec_equip", "ratio", 36),
    "sunspots": ("statsmodels:sunspots", "ratio", 44),
    "macrodata": ("statsmodels:macrodata", "ratio", 24),
}


def set_data(c, data: str, path: str = "") -> int:
  """Fills `config.data` for a `DATASETS` name, or for "csv" with `path` (layout "ett_hour" for ETTh*.csv,
  "ett_minute" for ETTm*.csv, "ratio" otherwise); returns the look-back the name's configs use (0 for csv)."""
  if data == "csv":
    base = path.rsplit("/", 1)[-1].lower()
    layout = "ett_hour" if base.startswith("etth") else "ett_minute" if base.startswith("ettm") else "ratio"
    name, lookback = "csv", 0
  elif data in DATASETS:
    name, layout, lookback = DATASETS[data]
  else:
    raise ConfigError(f"data={data!r}; choose one of {sorted(DATASETS) + ['csv']}")
  c.data.name, c.data.layout, c.data.path = name, layout, path
  c.data.train_split, c.data.eval_split = "train", "test"
  return lookback


def smoke(c) -> None:
  """Seconds on CPU: the generated set, L = 32, H = 8, a few steps; the model shrunk where it is PatchTST."""
  c.data.update(name="ett_like", layout="ett_hour", path="")
  c.forecast.update(lookback=32, horizon=8)
  if c.model.name.startswith("patchtst"):
    c.model.update(num_layers=1, num_heads=2, d_model=8, d_ff=16)
  c.batch_size, c.num_steps, c.num_epochs = 16, 4, 0.0
  c.schedule.warmup_steps = 0
  c.mesh.update(data=-1, fsdp=1, tensor=1)
  c.log_every, c.eval_every, c.checkpoint_every = 2, 0, 4
  c.evals = ml_collections.ConfigDict()


def seasonal_naive(past, horizon: int, period: int):
  """(batch, H, C): future step h is past[L − m + (h mod m)]."""
  idx = past.shape[1] - period + np.arange(horizon) % period
  return past[:, idx]


def window_errors(pred, future):
  """Per-window (MSE, MAE) over (H, C), float32."""
  err = pred.astype(jnp.float32) - future.astype(jnp.float32)
  return jnp.square(err).mean((1, 2)), jnp.abs(err).mean((1, 2))


class ForecastTask:
  """Model + loss + evaluation for `config.task = "forecast"`."""

  def __init__(self, config):
    self.config = config
    self.forecast = config.forecast
    if self.forecast.objective not in OBJECTIVES:
      raise ConfigError(f"forecast.objective={self.forecast.objective!r}; choose one of {OBJECTIVES}")
    self.objective = self.forecast.objective
    self.lookback, self.horizon = int(self.forecast.lookback), int(self.forecast.horizon)

  # ------------------------------------------------------------------ data
  @functools.lru_cache(maxsize=4)
  def source(self, split: str):
    return timeseries.forecast_source(self.config.data, split, self.lookback, self.horizon)

  @functools.cached_property
  def period(self) -> int:
    period = int(self.forecast.season) or self.source(self.config.data.train_split).period
    if period > self.lookback:
      raise ConfigError(f"the seasonal-naive baseline needs a season ({period}) no longer than forecast.lookback="
                        f"{self.lookback}; set forecast.season")
    return period

  def preprocess(self, train: bool):
    return lambda example, rng: example

  def build_model(self, rngs: nnx.Rngs) -> nnx.Module:
    name, kwargs = precision.model_kwargs(self.config)
    channels = self.source(self.config.data.train_split).num_channels
    return models.create(name, rngs=rngs, **kwargs | dict(
        context_length=self.lookback, prediction_length=self.horizon, num_channels=channels))

  # ------------------------------------------------------------------ train and evaluate
  def make_loss_fn(self, graphdef):
    def loss_fn(params, model_state, batch, rng):
      model = merge_model(graphdef, params, model_state)
      mask_key, dropout_key = jax.random.split(rng)
      rngs = nnx.Rngs(dropout=dropout_key)
      if self.objective == "masked_patch":
        pred, target, mask = model(batch["past"], rng=mask_key, train=True, rngs=rngs)
        loss, metrics = masked_patch_mse(pred, target, mask), {}
      else:
        mse, mae = window_errors(model(batch["past"], train=True, rngs=rngs), batch["future"])
        loss, metrics = mse.mean(), {"mae": mae.mean()}
      new_model_state = nnx.to_pure_dict(nnx.state(model, nnx.Not(nnx.Param)))
      return loss, (metrics, new_model_state)
    return loss_fn

  def make_eval_fn(self, graphdef):
    period = self.period if self.objective == "forecast" else 1

    def eval_fn(params, model_state, batch):
      model = merge_model(graphdef, params, model_state)
      valid = batch["mask"].astype(jnp.float32)
      past, future = batch["past"], batch["future"]
      if self.objective == "masked_patch":
        pred, target, mask = model(past, rng=jax.random.key(EVAL_MASK_SEED), train=False)
        masked = mask.astype(jnp.float32) * valid[:, None, None]
        per_patch = jnp.square(pred.astype(jnp.float32) - target.astype(jnp.float32)).mean(-1)
        return {"loss": (per_patch * masked).sum(), "count": valid.sum(), "counts": {"loss": masked.sum()}}
      sums = {}
      forecasts = {"": model(past, train=False),
                   "last_value_": jnp.broadcast_to(past[:, -1:], future.shape),
                   "seasonal_naive_": seasonal_naive(past, future.shape[1], period)}
      for prefix, pred in forecasts.items():
        mse, mae = window_errors(pred, future)
        sums[prefix + "mse"], sums[prefix + "mae"] = (mse * valid).sum(), (mae * valid).sum()
      sums["loss"] = sums["mse"]
      sums["count"] = valid.sum()
      return sums
    return eval_fn
