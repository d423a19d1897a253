"""DLinear / NLinear (Zeng et al. 2023) on the generated ETT-like set or a statsmodels series, offline.

  python -m papers_jax.main --config configs/dlinear/ett_like.py:horizon=96 --workdir runs/dlinear_ett_like_96
  python -m papers_jax.main --config configs/dlinear/ett_like.py:model=nlinear,data=co2,horizon=24 --workdir runs/nlinear_co2_24

The same data, look-back and windows as configs/patchtst/ett_like.py (`data=`, `horizon=`, `lookback=`), so
the numbers of docs/timeseries.md compare on the same test windows; every run also reports the last-value
and seasonal-naive forecasts. Model `model=dlinear` (moving-average kernel 25) or `model=nlinear`, one linear
layer per component shared by the channels (the paper's default, not "individual"). Adam, lr 0.005 and batch
32 (the official ETTh1 script's), cosine to 0 over 2,000 steps. `smoke` shrinks it to seconds.

Departures from the paper (an offline demo, not one of its experiments):
- Generated or statsmodels data and look-back 96 (ett_like) or 104 (co2) instead of 336 on ETT & co.
- 2,000 steps with a cosine decay instead of 10 epochs with the lr halved every epoch and early stopping
  on the validation loss (patience 3); the last step's test metrics are reported.
"""

from papers_jax.core.config import base_config, parse_arg
from papers_jax.tasks import forecast


def get_config(arg=None):
  args = parse_arg(arg, model="dlinear", data="ett_like", horizon=96, lookback=0, steps=2000, smoke=False)
  c = base_config()
  c.task = "forecast"
  lookback = forecast.set_data(c, args.data)
  c.forecast = forecast.default_config(objective="forecast", lookback=args.lookback or lookback,
                                       horizon=args.horizon)
  c.model = dict(name=args.model)
  c.batch_size = 32
  c.num_steps = args.steps
  c.optimizer.update(name="adam", lr=0.005, clip_grad_norm=0.0, weight_decay=0.0, wd_exclude=())
  c.schedule.update(name="cosine", warmup_steps=0)
  c.log_every = 200
  c.eval_every = 0
  c.checkpoint_every = 1000
  if args.smoke:
    forecast.smoke(c)
  return c.lock()
