"""PatchTST/42 (Nie et al. 2023) on the generated ETT-like set or a statsmodels series, offline.

  python -m papers_jax.main --config configs/patchtst/ett_like.py:horizon=96 --workdir runs/patchtst_ett_like_96
  python -m papers_jax.main --config configs/patchtst/ett_like.py:data=co2,horizon=24 --workdir runs/patchtst_co2_24

Data (data/timeseries.py): `data=ett_like` (default; 7 hourly channels with known trend, daily and weekly
cycles, cross-channel lags and AR(1) noise; split 12/4/4 months as ETTh1) with look-back L = 96, or a
statsmodels series, `data=co2` (weekly, L = 104), elec_equip, sunspots, macrodata (70/10/20 %);
`lookback=` overrides L. Horizon `horizon=` (24, 48, 96 in docs/timeseries.md). Every run also reports
the last-value and seasonal-naive forecasts of the same test windows (eval/last_value_mse, ...);
configs/dlinear/ett_like.py gives DLinear and NLinear.
Model: PatchTST with the paper's small size for small data (3 layers, 4 heads, D = 16, F = 128, dropout
0.3, the sizes of its ETTh1 runs), patches 16 / stride 8 with end padding (12 patches at L = 96, 42 at the
paper's 336), BatchNorm, residual attention, RevIN, the flatten head. Adam, lr 1e-3 cosine to 0, batch 64,
800 steps (`steps=`). `smoke` shrinks it to seconds.

Departures from the paper (an offline demo on small data, not one of its experiments):
- Generated or statsmodels data instead of ETT/Weather/Electricity (configs/patchtst/etth1.py runs ETTh1).
- Look-back 96 (ett_like) or 104 (co2) instead of 336/512, to fit the CPU budget of docs/timeseries.md.
- 800 steps of batch 64 with lr 1e-3 and a cosine decay, instead of 100 epochs of batch 128 at lr 1e-4
  with early stopping on the validation loss (patience 100 epochs) and ×0.9 decay per epoch after 3.
- The test metrics of the last step are reported (no early stopping on the val split).
"""

from papers_jax.core.config import base_config, parse_arg
from papers_jax.tasks import forecast


def get_config(arg=None):
  args = parse_arg(arg, data="ett_like", horizon=96, lookback=0, steps=800, smoke=False)
  c = base_config()
  c.task = "forecast"
  lookback = forecast.set_data(c, args.data)
  c.forecast = forecast.default_config(objective="forecast", lookback=args.lookback or lookback,
                                       horizon=args.horizon)
  c.model = dict(name="patchtst_42_small")
  c.batch_size = 64
  c.num_steps = args.steps
  c.optimizer.update(name="adam", lr=1e-3, clip_grad_norm=0.0, weight_decay=0.0, wd_exclude=())
  c.schedule.update(name="cosine", warmup_steps=0)
  c.log_every = 100
  c.eval_every = 0
  c.checkpoint_every = 500
  if args.smoke:
    forecast.smoke(c)
  return c.lock()
