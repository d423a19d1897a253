"""TS2Vec's forecasting protocol (evaluators/ridge_forecast.py, tasks/ts_repr_forecast.py): the ridge solution
and its α selection against sklearn and the official fit_ridge, the causal windows, and the alignment of
features and targets with the forecast task's windows."""

import ml_collections
import numpy as np
import pytest

from papers_jax.data import timeseries
from papers_jax.evaluators import ridge_forecast


def _data(seed=0, n=300, d=12, k=5):
  rng = np.random.default_rng(seed)
  x = rng.normal(size=(n, d))
  y = x @ rng.normal(size=(d, k)) + 0.5 * rng.normal(size=(n, k)) + 3.0
  return x, y


def test_ridge_equals_sklearn_and_the_official_selection():
  from sklearn.linear_model import Ridge
  x, y = _data()
  for alpha in (0.1, 10.0, 1000.0):
    w, b = ridge_forecast.fit_ridge(x, y, alpha)
    ref = Ridge(alpha=alpha).fit(x, y)
    np.testing.assert_allclose(w, ref.coef_.T, rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(b, ref.intercept_, rtol=1e-6, atol=1e-9)
  # the selection (one eigendecomposition for the grid) against the official fit_ridge, which refits sklearn's
  vx, vy = _data(seed=1, n=100)
  vy = vy + np.random.default_rng(2).normal(size=vy.shape) * 3  # noisy validation: a large α wins
  alpha, w, b, scores = ridge_forecast.select_ridge(x, y, vx, vy)
  for a in ridge_forecast.ALPHAS:
    pred = Ridge(alpha=a).fit(x, y).predict(vx)
    np.testing.assert_allclose(scores[a], np.sqrt(((pred - vy) ** 2).mean()) + np.abs(pred - vy).mean(), rtol=1e-9)
  try:
    from ts2vec.tasks._eval_protocols import fit_ridge as official
  except ImportError:
    official = None
  if official is not None:
    ref = official(x, y, vx, vy)
    assert ref.alpha == alpha
    np.testing.assert_allclose(vx @ w + b, ref.predict(vx), rtol=1e-6, atol=1e-8)


def test_causal_windows_end_at_each_row():
  values = np.arange(20, dtype=np.float32).reshape(10, 2)
  windows = ridge_forecast.causal_windows(values, np.array([0, 3, 9]), 4)
  assert windows.shape == (3, 5, 2)
  assert np.isnan(windows[0, :4]).all() and (windows[0, 4] == values[0]).all()
  np.testing.assert_array_equal(windows[1, 1:], values[0:4])
  np.testing.assert_array_equal(windows[2], values[5:10])


def test_features_and_targets_align_with_the_forecast_windows():
  """With each row's "representation" the row itself, the protocol is a ridge regression from a window's last
  past row to its future: recomputed here from the forecast task's windows, with sklearn."""
  from sklearn.linear_model import Ridge
  from papers_jax.tasks.ts_repr_forecast import SectionSource, TSReprForecastTask
  data = ml_collections.ConfigDict(dict(name="statsmodels:co2", layout="ratio", path="", train_split="train",
                                        eval_split="test"))
  fc = ml_collections.ConfigDict(dict(horizons=(24,), context=103, lookback=104, random_baseline=False))
  config = ml_collections.ConfigDict(dict(data=data, ts_repr=dict(method="ts2vec", max_train_length=128,
                                                                  forecast=fc)))
  task = TSReprForecastTask(config)
  values = timeseries.forecast_source(data, "train", 1, 1).values
  got = task.ridge_scores(values)
  sets = {}
  for split in ("train", "val", "test"):
    src = timeseries.forecast_source(data, split, 104, 24)
    rows = [i for i in range(len(src)) if split != "train" or src.starts[i] - 1 >= 103]
    sets[split] = (np.stack([src[i]["past"][-1] for i in rows]), np.stack([src[i]["future"].ravel() for i in rows]))
  scores = {}
  for a in ridge_forecast.ALPHAS:
    pred = Ridge(alpha=a).fit(*sets["train"]).predict(sets["val"][0])
    scores[a] = np.sqrt(((pred - sets["val"][1]) ** 2).mean()) + np.abs(pred - sets["val"][1]).mean()
  best = min(ridge_forecast.ALPHAS, key=scores.get)
  err = Ridge(alpha=best).fit(*sets["train"]).predict(sets["test"][0]) - sets["test"][1]
  assert got["alpha_24"] == best
  np.testing.assert_allclose(got["mse_24"], (err ** 2).mean(), rtol=1e-6)
  np.testing.assert_allclose(got["mae_24"], np.abs(err).mean(), rtol=1e-6)
  sections = SectionSource(values[:1598], 128)  # co2's 1,598 train rows: 12 sections of 133
  assert len(sections) == 12 and sections[3]["series"].shape == (133, 1)
  np.testing.assert_array_equal(sections[1]["series"], values[133:266])
