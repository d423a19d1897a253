"""TimesURL (Liu & Chen, AAAI 2024) evaluated by TS2Vec's forecasting protocol (ridge regression on the causal
representation of the last observed row), on the forecast task's series and windows.

  python -m papers_jax.main --config configs/timesurl/forecast.py:data=<ett_like|co2> --workdir runs/timesurl_fc_<data>

configs/ts2vec/forecast.py (which this config loads: data, sections, protocol, baseline) with TimesURL's
network, losses and training settings (objectives/timesurl.configure; configs/timesurl/ucr.py describes them).

Departures from the paper: those of configs/timesurl/ucr.py (the official code's loss weights and settings, the
real-FFT frequency mixing of the whole window, no split of the series by sampling density, the cosine schedule
over steps) and, inherited from configs/ts2vec/forecast.py, the causal context of the look-back (official: 200
rows), the train split cut into sections of 128 rows (official: 3,000), no time covariates, and the forecast
task's test windows. The paper's forecasting
evaluation is also ridge regression on representations (it builds on TS2Vec's code).
"""

import os

from papers_jax.core.config import load, parse_arg
from papers_jax.objectives import timesurl


def get_config(arg=None):
  args = parse_arg(arg, data="ett_like", path="", steps=200, smoke=False)
  base = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "ts2vec", "forecast.py")
  c = load(f"{base}:data={args.data},path={args.path},steps={args.steps}" + (",smoke" if args.smoke else ""))
  c = c.unlock()
  timesurl.configure(c)
  return c.lock()
