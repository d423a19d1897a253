"""configs/crossformer/ett.py's Crossformer, shrunk, on the generated ETT-like set or a statsmodels series,
offline.

  python -m papers_jax.main --config configs/crossformer/ett_like.py:horizon=96 --workdir runs/crossformer_ett_like_96
  python -m papers_jax.main --config configs/crossformer/ett_like.py:data=co2,horizon=24 \
      --workdir runs/crossformer_co2_24

The data, look-back and windows of configs/patchtst/ett_like.py (`data=ett_like` L = 96, `data=co2` L = 104,
`horizon=`), so the numbers of docs/timeseries.md compare on the same test windows; each run also reports
the last-value and seasonal-naive forecasts. Segments of 6 (16 at L = 96; 104 is padded to 108, 18 segments).

Departures from the paper: those of configs/crossformer/ett.py, which this config loads, and: generated or
statsmodels data; look-back 96 / 104 instead of 168; d_model 64, 4 heads, MLP 128 instead of 256 / 4 / 512;
Adam lr 1e-3 with a cosine decay over 200 steps of batch 32 (6,400 windows, under one epoch) instead of
lr 1e-4 halved every epoch for 20 epochs (the CPU budget).
"""

import os

from papers_jax.core.config import load, parse_arg
from papers_jax.tasks import forecast


def get_config(arg=None):
  args = parse_arg(arg, data="ett_like", horizon=96, lookback=0, steps=200, smoke=False)
  c = load(os.path.join(os.path.dirname(os.path.abspath(__file__)), "ett.py") + f":horizon={args.horizon}")
  c = c.unlock()
  c.forecast.lookback = args.lookback or forecast.set_data(c, args.data)
  c.model.update(d_model=64, num_heads=4, d_ff=128)
  c.num_epochs, c.num_steps = 0.0, args.steps
  c.optimizer.lr = 1e-3
  c.schedule.update(name="cosine", warmup_steps=0)
  c.evals = type(c.evals)()
  if args.smoke:
    forecast.smoke(c)
    c.model.update(seg_len=4, d_model=16, num_heads=2, d_ff=32, num_routers=2, encoder_layers=2)
  return c.lock()
