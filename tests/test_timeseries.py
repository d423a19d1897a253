"""Time-series data and the forecast task: the generated ETT-like set's structure, chronological splits with
train-only standardisation, windows, the CSV and .ts readers, the bundled series, the naive baselines and
DLinear/NLinear against numpy, and a short DLinear run that beats the seasonal-naive forecast."""

import ml_collections
import numpy as np
import pytest
from flax import nnx

from conftest import load_config
from papers_jax.core import loop
from papers_jax.data import timeseries as ts
from papers_jax.errors import ConfigError, DataError
from papers_jax.models import dlinear
from papers_jax.tasks import forecast


def data(**kw):
  return ml_collections.ConfigDict(dict(name="ett_like", layout="ett_hour", path="") | kw)


# ------------------------------------------------------------------------------ the generated set


def test_ett_like_is_fixed_and_has_its_lags():
  values = ts.generate_ett_like()
  assert values.shape == (14400, 7) and values.dtype == np.float32 and np.isfinite(values).all()
  np.testing.assert_array_equal(values, ts.generate_ett_like.__wrapped__())  # same seed, same array
  d = np.diff(values, axis=0)  # differences: the lags stand out from the shared trend
  names = list(ts.ETT_NAMES)
  for follower, (leader, lag) in ts.ETT_LIKE_STRUCTURE["lags"].items():
    a, b = d[:, names.index(leader)], d[:, names.index(follower)]
    corr = [np.corrcoef(a[:len(a) - 12], b[k:len(b) - 12 + k])[0, 1] for k in range(12)]
    assert int(np.argmax(corr)) == lag, (follower, np.round(corr, 3))


def test_splits_are_chronological_and_standardised_on_train_only():
  borders = ts.split_borders(14400, "ett_hour")
  assert borders == {"train": (0, 8640), "val": (8640, 11520), "test": (11520, 14400)}  # 12 / 4 / 4 months
  assert ts.split_borders(1000, "ratio") == {"train": (0, 700), "val": (700, 800), "test": (800, 1000)}
  with pytest.raises(DataError, match="20 months"):
    ts.split_borders(1000, "ett_hour")
  train, test = (ts.forecast_source(data(), s, 96, 24) for s in ("train", "test"))
  np.testing.assert_allclose(train.values[:8640].mean(0), 0, atol=1e-4)
  np.testing.assert_allclose(train.values[:8640].std(0), 1, atol=1e-4)
  raw = ts.generate_ett_like()
  np.testing.assert_allclose(test.values, (raw - raw[:8640].mean(0)) / raw[:8640].std(0), atol=1e-4)
  # Windows: train from t = L; test's futures inside its rows, its first past reaching into val.
  assert (train.starts[0], train.starts[-1], len(train)) == (96, 8640 - 24, 8640 - 24 - 96 + 1)
  assert (test.starts[0], test.starts[-1]) == (11520, 14400 - 24)
  w = test[0]
  np.testing.assert_array_equal(w["past"], test.values[11520 - 96:11520])
  np.testing.assert_array_equal(w["future"], test.values[11520:11544])
  with pytest.raises(DataError, match="holds no window"):
    ts.forecast_source(data(), "test", 96, 3000)


def test_csv_reader_gives_the_papers_splits(tmp_path):
  """An ETTh1-layout file (date column + channels) reads into the same windows as the array it holds."""
  raw = ts.generate_ett_like()[:, :3]
  path = tmp_path / "ETTh1.csv"
  dates = np.datetime64("2016-07-01T00:00") + np.arange(len(raw)).astype("timedelta64[h]")
  lines = ["date,HUFL,HULL,OT"] + [f"{str(d).replace('T', ' ')},{a!r},{b!r},{c!r}" for d, (a, b, c) in
                                   zip(dates, raw.tolist())]
  path.write_text("\n".join(lines) + "\n")
  c = load_config("patchtst/etth1.py", f"path={path}")
  assert (c.data.name, c.data.layout) == ("csv", "ett_hour")
  source = ts.forecast_source(c.data, "val", 336, 96)
  assert source.channel_names == ("HUFL", "HULL", "OT") and source.num_channels == 3
  want = (raw - raw[:8640].mean(0)) / raw[:8640].std(0)
  np.testing.assert_allclose(source[0]["future"], want[8640:8736], atol=1e-5)
  with pytest.raises(DataError, match="does not exist"):
    ts.forecast_source(data(name="csv", path=str(tmp_path / "missing.csv")), "train", 8, 4)


def test_statsmodels_series_are_read_offline():
  co2, names, period = ts.load_series("statsmodels:co2")
  assert co2.shape == (2284, 1) and names == ("co2",) and period == 52
  assert np.isfinite(co2).all()  # the 59 missing weeks interpolated
  macro, names, _ = ts.load_series("statsmodels:macrodata")
  assert macro.shape == (203, 12) and "realgdp" in names
  with pytest.raises(DataError, match="unknown statsmodels series"):
    ts.load_series("statsmodels:nope")


def test_ts_reader(tmp_path):
  path = tmp_path / "Tiny_TRAIN.ts"
  path.write_text("# comment\n@problemName Tiny\n@univariate false\n@classLabel true b a\n@data\n"
                  "1,2,3:4,5,6:a\n7,8:9,10:b\n")
  x, y, classes = ts.read_ts(str(path))
  assert classes == ("b", "a") and y.tolist() == [1, 0]
  np.testing.assert_array_equal(x[0], [[1, 2, 3], [4, 5, 6]])
  np.testing.assert_array_equal(x[1, :, :2], [[7, 8], [9, 10]])
  assert np.isnan(x[1, :, 2]).all()  # unequal lengths: NaN at the end
  for name, shape, classes in (("GunPoint", (50, 1, 150), 2), ("BasicMotions", (40, 6, 100), 4)):
    x, y, names = ts.ucr_uea(name, "train")
    assert x.shape == shape and len(names) == classes and set(y) == set(range(classes))
  x, _, _ = ts.ucr_uea("JapaneseVowels", "test")
  assert x.shape[:2] == (370, 12) and np.isnan(x).any()
  with pytest.raises(DataError, match="not bundled"):
    ts.ucr_uea("NoSuchSet", "train")


# ------------------------------------------------------------------------------ baselines and models


def test_naive_baselines_match_numpy():
  rng = np.random.RandomState(0)
  past = rng.randn(2, 10, 3).astype(np.float32)
  got = np.asarray(forecast.seasonal_naive(past, 7, 4))
  want = np.stack([past[:, 10 - 4 + (h % 4)] for h in range(7)], axis=1)
  np.testing.assert_array_equal(got, want)
  mse, mae = forecast.window_errors(np.broadcast_to(past[:, -1:], (2, 7, 3)), want)
  err = past[:, -1:] - want
  np.testing.assert_allclose(np.asarray(mse), (err ** 2).mean((1, 2)), rtol=1e-6)
  np.testing.assert_allclose(np.asarray(mae), np.abs(err).mean((1, 2)), rtol=1e-6)


def test_dlinear_decomposition_and_nlinear_match_numpy():
  rng = np.random.RandomState(0)
  x = rng.randn(2, 30, 3).astype(np.float32)
  padded = np.concatenate([np.repeat(x[:, :1], 12, 1), x, np.repeat(x[:, -1:], 12, 1)], 1)
  want = np.stack([padded[:, i:i + 25].mean(1) for i in range(30)], 1)
  np.testing.assert_allclose(np.asarray(dlinear.moving_average(x, 25)), want, atol=1e-5)
  model = dlinear.DLinear(context_length=30, prediction_length=5, num_channels=3, rngs=nnx.Rngs(params=0))
  w_s, b_s = np.asarray(model.seasonal.kernel[...]), np.asarray(model.seasonal.bias[...])
  w_t, b_t = np.asarray(model.trend.kernel[...]), np.asarray(model.trend.bias[...])
  ref = np.einsum("blc,lh->bhc", x - want, w_s) + b_s[:, None] + np.einsum("blc,lh->bhc", want, w_t) + b_t[:, None]
  np.testing.assert_allclose(np.asarray(model(x)), ref, atol=1e-4)
  nlin = dlinear.NLinear(context_length=30, prediction_length=5, num_channels=3, individual=True,
                         rngs=nnx.Rngs(params=0))
  np.testing.assert_allclose(np.asarray(nlin(x + 5.0)), np.asarray(nlin(x)) + 5.0, atol=1e-4)  # level-free
  with pytest.raises(ConfigError, match="odd kernel"):
    dlinear.DLinear(kernel_size=24, rngs=nnx.Rngs(params=0))


def test_nlinear_run_beats_the_naive_forecasts(tmp_path):
  """A short NLinear run through the trainer; its test MSE is below the seasonal-naive one and half the
  last-value one reported beside it (the same windows)."""
  c = load_config("dlinear/ett_like.py", "model=nlinear,lookback=48,horizon=24,steps=150").unlock()
  c.log_every, c.checkpoint_every = 50, 150
  summary = loop.train(c.lock(), str(tmp_path / "run"))
  assert summary["eval/count"] == 2880 - 24 + 1
  assert summary["eval/mse"] < 0.9 * summary["eval/seasonal_naive_mse"]
  assert summary["eval/mse"] < 0.5 * summary["eval/last_value_mse"]


def test_forecast_config_errors():
  with pytest.raises(ConfigError, match="data="):
    load_config("dlinear/ett_like.py", "data=nope")
  c = load_config("dlinear/ett_like.py", "smoke").unlock()
  c.forecast.season = 100  # longer than the look-back
  task = forecast.ForecastTask(c.lock())
  with pytest.raises(ConfigError, match="season"):
    task.period
