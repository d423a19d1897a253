"""TS2Vec's forecasting protocol (Yue et al., 2022, §4.2; the official tasks/forecasting.py): the representation
of a series' last observed timestamp, computed causally, is regressed onto the next H values of every channel
by ridge regression, α chosen on the validation split.

  causal_windows  the windows that end at each row with `context` rows before it (NaN before the series'
                  start), the input of the sliding causal encoding (the official `encode(causal=True,
                  sliding_length=1, sliding_padding=200)`);
  fit_ridge       the ridge solution with an unpenalised intercept, as sklearn's Ridge;
  select_ridge    the official fit_ridge: every α of `ALPHAS` fitted on train, the one with the least
                  validation RMSE + MAE kept.
"""

import numpy as np

ALPHAS = (0.1, 0.2, 0.5, 1, 2, 5, 10, 20, 50, 100, 200, 500, 1000)


def causal_windows(values: np.ndarray, rows: np.ndarray, context: int) -> np.ndarray:
  """(len(rows), context + 1, C): values[r − context … r] for each row r, NaN where r − context < 0."""
  padded = np.concatenate([np.full((context, values.shape[1]), np.nan, values.dtype), values])
  return padded[np.asarray(rows)[:, None] + np.arange(context + 1)[None]]


def _centre(x, y):
  x_mean, y_mean = x.mean(0), y.mean(0)
  return x - x_mean, y - y_mean, x_mean, y_mean


def fit_ridge(x: np.ndarray, y: np.ndarray, alpha: float) -> tuple[np.ndarray, np.ndarray]:
  """(weights (D, K), intercept (K,)) minimising ‖y − x·w − b‖² + α‖w‖² (b not penalised)."""
  x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
  xc, yc, x_mean, y_mean = _centre(x, y)
  w = np.linalg.solve(xc.T @ xc + alpha * np.eye(x.shape[1]), xc.T @ yc)
  return w, y_mean - x_mean @ w


def select_ridge(train_x, train_y, val_x, val_y, alphas=ALPHAS):
  """(α, weights, intercept, {α: validation RMSE + MAE}): the official selection. One eigendecomposition of
  the centred Gram matrix serves every α."""
  x, y = np.asarray(train_x, np.float64), np.asarray(train_y, np.float64)
  xc, yc, x_mean, y_mean = _centre(x, y)
  eigval, eigvec = np.linalg.eigh(xc.T @ xc)
  projected = eigvec.T @ (xc.T @ yc)
  val_x, val_y = np.asarray(val_x, np.float64), np.asarray(val_y, np.float64)
  scores, fits = {}, {}
  for alpha in alphas:
    w = eigvec @ (projected / (eigval + alpha)[:, None])
    b = y_mean - x_mean @ w
    err = val_x @ w + b - val_y
    scores[alpha] = float(np.sqrt(np.mean(err ** 2)) + np.mean(np.abs(err)))
    fits[alpha] = (w, b)
  best = min(alphas, key=lambda a: scores[a])  # the first of equal scores, as np.argmin
  return best, *fits[best], scores
