"""configs/informer/ett.py's Informer, shrunk, on the generated ETT-like set or a statsmodels series, offline.

  python -m papers_jax.main --config configs/informer/ett_like.py:horizon=96 --workdir runs/informer_ett_like_96
  python -m papers_jax.main --config configs/informer/ett_like.py:data=co2,horizon=24 --workdir runs/informer_co2_24

The data, look-back and windows of configs/patchtst/ett_like.py (`data=ett_like` L = 96, `data=co2` L = 104,
`horizon=`), so the numbers of docs/timeseries.md compare on the same test windows; each run also reports
the last-value and seasonal-naive forecasts. The start token is the last half of the look-back (48 steps of
96, as the paper; 52 of 104 for co2).

Departures from the paper: those of configs/informer/ett.py, which this config loads, and: generated or
statsmodels data; d_model 64, 4 heads, feed-forward 128 instead of 512 / 8 / 2048; Adam lr 1e-3 with a
cosine decay over 200 steps of batch 32 (6,400 windows, under one epoch) instead of lr 1e-4 halved every
epoch for 6 epochs (the CPU budget).
"""

import os

from papers_jax.core.config import load, parse_arg
from papers_jax.tasks import forecast


def get_config(arg=None):
  args = parse_arg(arg, data="ett_like", horizon=96, lookback=0, steps=200, smoke=False)
  c = load(os.path.join(os.path.dirname(os.path.abspath(__file__)), "ett.py") + f":horizon={args.horizon}")
  c = c.unlock()
  lookback = args.lookback or forecast.set_data(c, args.data)
  c.forecast.lookback = lookback
  c.model.update(label_length=lookback // 2, d_model=64, num_heads=4, d_ff=128)
  c.num_epochs, c.num_steps = 0.0, args.steps
  c.optimizer.lr = 1e-3
  c.schedule.update(name="cosine", warmup_steps=0)
  c.evals = type(c.evals)()
  if args.smoke:
    forecast.smoke(c)
    c.model.update(label_length=16, d_model=16, num_heads=2, d_ff=32)
  return c.lock()
