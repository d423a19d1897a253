"""Scaling-law fits (papers_jax/scaling.py) recover known parameters from synthetic data."""

import numpy as np
import pytest

from papers_jax import scaling

# Hoffmann et al.'s fitted values, as a realistic truth to recover.
TRUE = scaling.Chinchilla(E=1.69, A=406.4, B=410.7, alpha=0.34, beta=0.28)


def _within(got, want, rel=0.05):
  return abs(got - want) <= rel * abs(want)


def test_chinchilla_fit_recovers_alpha_beta_and_e_and_the_bootstrap_covers_them():
  rng = np.random.default_rng(0)
  N = np.repeat(np.logspace(5, 8, 6), 5)
  D = np.tile(np.logspace(6, 9, 5), 6)
  L = TRUE(N, D) * np.exp(rng.normal(0.0, 0.005, N.shape))
  fit = scaling.chinchilla(N, D, L)
  for name in ("E", "alpha", "beta"):
    assert _within(fit.params()[name], TRUE.params()[name]), (name, fit)
  intervals = scaling.bootstrap(scaling.chinchilla, (N, D, L), start=fit, samples=60)
  for name in ("E", "alpha", "beta"):
    low, high = intervals[name]
    assert low <= TRUE.params()[name] <= high, (name, intervals[name])
  # The compute-optimal split spends C = 6·N·D, and its exponents are β/(α+β) and α/(α+β).
  C = np.array([1e18, 1e20])
  n_opt, d_opt = scaling.frontier(fit, C)
  np.testing.assert_allclose(6 * n_opt * d_opt, C, rtol=1e-9)
  slope = np.log(n_opt[1] / n_opt[0]) / np.log(C[1] / C[0])
  assert slope == pytest.approx(fit.beta / (fit.alpha + fit.beta), rel=1e-9)
  # And no other split of the same compute has a lower predicted loss.
  for scale in (0.5, 2.0):
    assert fit(n_opt * scale, d_opt / scale).min() > fit(n_opt, d_opt).min() - 1e-12


def test_power_law_fit_recovers_e_and_alpha():
  rng = np.random.default_rng(1)
  truth = scaling.PowerLaw(E=2.0, A=50.0, alpha=0.15)
  C = np.logspace(10, 16, 12)
  L = truth(C) * np.exp(rng.normal(0.0, 0.003, C.shape))
  fit = scaling.power_law(C, L)
  assert _within(fit.E, truth.E) and _within(fit.alpha, truth.alpha), fit
  intervals = scaling.bootstrap(scaling.power_law, (C, L), start=fit, samples=60)
  assert intervals["E"][0] <= truth.E <= intervals["E"][1]
  assert intervals["alpha"][0] <= truth.alpha <= intervals["alpha"][1]


def test_fits_reject_too_few_or_bad_points():
  with pytest.raises(ValueError, match="at least 3"):
    scaling.power_law([1.0, 2.0], [3.0, 2.0])
  with pytest.raises(ValueError, match="positive"):
    scaling.chinchilla([1, 2, 3, 4, 5, 6], [1, 2, 3, 4, 5, 6], [1, 2, -3, 4, 5, 6])


def test_the_fit_tool_writes_its_fits_and_plots(tmp_path):
  import importlib.util
  import json
  import os

  from conftest import ROOT
  spec = importlib.util.spec_from_file_location("scaling_tool", os.path.join(ROOT, "tools", "scaling.py"))
  tool = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(tool)
  rng = np.random.default_rng(2)
  N = np.repeat(np.logspace(5, 7, 4), 4)
  D = np.tile(np.logspace(6, 8, 4), 4)
  rows = [{"params": n, "examples_seen": d, "train_flops": 6 * n * d,
           "train/loss": float(TRUE(n, d) * np.exp(rng.normal(0, 0.005)))} for n, d in zip(N, D)]
  (tmp_path / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
  out = tmp_path / "fit"
  assert tool.main(["fit", str(tmp_path / "results.jsonl"), "--out", str(out), "--bootstrap", "5"]) == 0
  result = json.load(open(out / "fit.json"))
  assert result["points"] == 16 and _within(result["chinchilla"]["alpha"], TRUE.alpha, rel=0.1)
  assert {"loss_vs_compute.png", "isoflop.png", "residuals.png"} <= set(os.listdir(out))
  # plot: a metric over one swept value, a line and a table row per value of another; repeats averaged.
  rows = [{"config": c, "data.train_fraction": f, "seed": s, "eval/accuracy": acc + 0.01 * s}
          for c, base in (("vit", 0.5), ("resnet", 0.7)) for f in (0.1, 1.0) for s in (0, 1)
          for acc in [base + 0.2 * f]]
  (tmp_path / "data.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
  png = tmp_path / "plots" / "acc.png"
  assert tool.main(["plot", str(tmp_path / "data.jsonl"), "--x", "data.train_fraction", "--y", "eval/accuracy",
                    "--group", "config", "--out", str(png)]) == 0
  table = (tmp_path / "plots" / "acc.md").read_text()
  assert png.exists() and "| config \\ data.train_fraction | 0.1 | 1.0 |" in table
  assert "| resnet | 0.725 ± 0.005 (2) | 0.905 ± 0.005 (2) |" in table and "| vit | 0.525 ± 0.005 (2) |" in table
