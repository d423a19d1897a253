"""Scaling-law fits: loss against compute, and loss against parameters and data.

  power_law(C, L)        L(C) = E + A·C^(−α)
  chinchilla(N, D, L)    L(N, D) = E + A/N^α + B/D^β (Hoffmann et al. 2022, approach 3: Huber loss on
                         log L, L-BFGS from a grid of initialisations, the best fit kept)
  frontier(fit, C)       the compute-optimal N*(C), D*(C) under C = 6·N·D
  bootstrap(fn, ...)     percentile intervals of every fitted parameter over resampled points

The fits work in log space with E = exp(e), A = exp(a), B = exp(b), so every term stays positive.
"""

import dataclasses
import itertools

import numpy as np
from scipy import optimize, special

HUBER_DELTA = 1e-3  # Hoffmann et al.'s δ
# L-BFGS-B to convergence. With scipy's default tolerances (ftol 2.2e-9 relative to a Huber loss of ~1e-5) a
# bootstrap refit started from the full-data fit stops next to it, and the intervals came out several times too
# narrow (E: 1.706-1.750 against 1.624-1.787 converged, for a truth of 1.69; tests/test_scaling.py).
LBFGS_OPTIONS = {"ftol": 1e-15, "gtol": 1e-12, "maxiter": 5000}


def _huber(r, delta=HUBER_DELTA):
  a = np.abs(r)
  return np.where(a <= delta, 0.5 * r ** 2, delta * (a - 0.5 * delta))


@dataclasses.dataclass
class PowerLaw:
  E: float
  A: float
  alpha: float

  def __call__(self, C):
    return self.E + self.A * np.asarray(C, np.float64) ** -self.alpha

  def params(self) -> dict:
    return {"E": self.E, "A": self.A, "alpha": self.alpha}

  def init(self):
    """This fit as a starting point of `power_law` (e.g. for bootstrap refits)."""
    return (np.log(self.E), np.log(self.A), self.alpha)


@dataclasses.dataclass
class Chinchilla:
  E: float
  A: float
  B: float
  alpha: float
  beta: float

  def __call__(self, N, D):
    N, D = np.asarray(N, np.float64), np.asarray(D, np.float64)
    return self.E + self.A / N ** self.alpha + self.B / D ** self.beta

  def params(self) -> dict:
    return {"E": self.E, "A": self.A, "B": self.B, "alpha": self.alpha, "beta": self.beta}

  def init(self):
    """This fit as a starting point of `chinchilla` (e.g. for bootstrap refits)."""
    return (np.log(self.A), np.log(self.B), np.log(self.E), self.alpha, self.beta)


def _check(*arrays):
  arrays = [np.asarray(a, np.float64).ravel() for a in arrays]
  n = len(arrays[0])
  if any(len(a) != n for a in arrays) or any(not np.all(np.isfinite(a)) or np.any(a <= 0) for a in arrays):
    raise ValueError("fits need equally many finite, positive values of every column")
  return arrays


def _best_of_grid(objective, grid, keep: int = 8):
  """The `keep` grid points with the lowest objective: the starts worth an L-BFGS run."""
  points = [np.array(p, np.float64) for p in grid]
  values = np.array([objective(p)[0] for p in points])
  return [points[i] for i in np.argsort(values)[:keep]]


def power_law(C, L, *, inits=None) -> PowerLaw:
  """L(C) = E + A·C^(−α), by Huber loss on log L from a grid of initialisations."""
  C, L = _check(C, L)
  if len(C) < 3:
    raise ValueError(f"a power law with an irreducible term needs at least 3 points, got {len(C)}")
  logC, logL = np.log(C), np.log(L)

  def objective(p):
    e, a, alpha = p
    u = np.stack([np.full_like(logC, e), a - alpha * logC])
    pred = special.logsumexp(u, axis=0)
    w, psi = np.exp(u - pred), np.clip(pred - logL, -HUBER_DELTA, HUBER_DELTA)  # d pred / du, d huber / d r
    grad = np.array([np.sum(psi * w[0]), np.sum(psi * w[1]), -np.sum(psi * w[1] * logC)])
    return np.sum(_huber(pred - logL)), grad

  inits = inits or _best_of_grid(objective, itertools.product(
      np.log(L.min()) + np.array([-2.0, -1.0, -0.5, -0.2, -0.05]), np.arange(0.0, 30.0, 2.5), np.arange(0.05, 1.5, 0.05)))
  best = min((optimize.minimize(objective, np.array(p, np.float64), jac=True, method="L-BFGS-B",
                                options=LBFGS_OPTIONS) for p in inits),
             key=lambda r: r.fun)
  e, a, alpha = best.x
  return PowerLaw(E=float(np.exp(e)), A=float(np.exp(a)), alpha=float(alpha))


def chinchilla(N, D, L, *, inits=None) -> Chinchilla:
  """L(N, D) = E + A/N^α + B/D^β (approach 3): the best of L-BFGS fits from a grid of initialisations."""
  N, D, L = _check(N, D, L)
  if len(N) < 5:
    raise ValueError(f"the Chinchilla form has 5 parameters and needs more points than that, got {len(N)}")
  logN, logD, logL = np.log(N), np.log(D), np.log(L)

  def objective(p):
    a, b, e, alpha, beta = p
    u = np.stack([a - alpha * logN, b - beta * logD, np.full_like(logN, e)])
    pred = special.logsumexp(u, axis=0)
    w, psi = np.exp(u - pred), np.clip(pred - logL, -HUBER_DELTA, HUBER_DELTA)  # d pred / du, d huber / d r
    grad = np.array([np.sum(psi * w[0]), np.sum(psi * w[1]), np.sum(psi * w[2]),
                     -np.sum(psi * w[0] * logN), -np.sum(psi * w[1] * logD)])
    return np.sum(_huber(pred - logL)), grad

  # Hoffmann et al.'s grid of initialisations (α, β ∈ {0, 0.5, ..., 2}, e ∈ {−1, −0.5, ..., 1}, a, b ∈
  # {0, 5, ..., 25}); L-BFGS runs from the grid points with the lowest objective, not from all 4,500.
  inits = inits or _best_of_grid(objective, itertools.product(
      np.arange(0.0, 26.0, 5.0), np.arange(0.0, 26.0, 5.0), np.arange(-1.0, 1.01, 0.5), np.arange(0.0, 2.01, 0.5),
      np.arange(0.0, 2.01, 0.5)))
  best = min((optimize.minimize(objective, np.array(p, np.float64), jac=True, method="L-BFGS-B",
                                options=LBFGS_OPTIONS) for p in inits),
             key=lambda r: r.fun)
  a, b, e, alpha, beta = best.x
  return Chinchilla(E=float(np.exp(e)), A=float(np.exp(a)), B=float(np.exp(b)), alpha=float(alpha),
                    beta=float(beta))


def frontier(fit: Chinchilla, C, flops_per_param_token: float = 6.0):
  """(N*(C), D*(C)): the loss-minimising split of compute C = k·N·D (k = 6 for a transformer's training).

  Minimising A/N^α + B/D^β subject to N·D = C/k gives N* = G·(C/k)^(β/(α+β)), D* = (C/k)^(α/(α+β))/G,
  G = (αA / (βB))^(1/(α+β)).
  """
  C = np.asarray(C, np.float64) / flops_per_param_token
  s = fit.alpha + fit.beta
  G = (fit.alpha * fit.A / (fit.beta * fit.B)) ** (1.0 / s)
  return G * C ** (fit.beta / s), C ** (fit.alpha / s) / G


def bootstrap(fit_fn, columns, *, start=None, samples: int = 200, seed: int = 0, level: float = 0.95) -> dict:
  """{param: (low, high)}: percentile intervals of `fit_fn(*columns)` refitted on resampled rows.

  `start`, the fit on all rows, is each refit's initialisation (a grid search per resample is slow).
  """
  kwargs = {} if start is None else {"inits": [start.init()]}
  columns = [np.asarray(c, np.float64) for c in columns]
  rng = np.random.default_rng(seed)
  n = len(columns[0])
  fits = []
  for _ in range(samples):
    rows = rng.integers(0, n, n)
    if len(np.unique(rows)) < min(n, 5):
      continue  # too few distinct points to fit
    try:
      fits.append(fit_fn(*(c[rows] for c in columns), **kwargs).params())
    except ValueError:
      continue
  if not fits:
    raise ValueError("no bootstrap resample could be fitted")
  tail = 100 * (1 - level) / 2
  return {k: (float(np.percentile([f[k] for f in fits], tail)), float(np.percentile([f[k] for f in fits], 100 - tail)))
          for k in fits[0]}
