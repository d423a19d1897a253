"""DLinear / NLinear on ETTh1 (Zeng et al. 2023, Table 2), the official recipe; needs the user's ETTh1.csv.

  python -m papers_jax.main --config configs/dlinear/etth1.py:path=/data/ETTh1.csv,horizon=96 --workdir runs/dlinear_etth1_96
  python -m papers_jax.main --config configs/dlinear/etth1.py:path=/data/ETTh1.csv,model=nlinear --workdir runs/nlinear_etth1_96

Data: ETTh1.csv (date column + 7 channels; not downloaded), all channels, split 12 / 4 / 4 months, standardised
with the train months' statistics; look-back L = 336, horizon `horizon=` 96, 192, 336 or 720. Other files of
the ETT / Weather / Electricity layout work too (data/timeseries.py). Model `model=dlinear` (moving average
25) or `nlinear`, shared by the channels. Adam lr 0.005, batch 32, 10 epochs with the lr halved every epoch
(the official ETTh1 script and its "type1" schedule). The paper reports DLinear MSE / MAE 0.375 / 0.399 at
H = 96 (PatchTST's Table 3 quotes the same). `smoke` runs it shrunk on the generated ETT-like set.

Departures from the paper:
- No early stopping on the validation loss (official patience 3); the last epoch's model is evaluated.
- Every test window counts; some releases of the official loaders drop the last incomplete test batch.
"""

from papers_jax.core.config import base_config, parse_arg
from papers_jax.tasks import forecast

LOOKBACK, EPOCHS = 336, 10


def get_config(arg=None):
  args = parse_arg(arg, path="", model="dlinear", horizon=96, smoke=False)
  c = base_config()
  c.task = "forecast"
  forecast.set_data(c, "csv", args.path)
  c.forecast = forecast.default_config(objective="forecast", lookback=LOOKBACK, horizon=args.horizon)
  c.model = dict(name=args.model)
  c.batch_size = 32
  c.num_epochs = float(EPOCHS)
  c.optimizer.update(name="adam", lr=0.005, clip_grad_norm=0.0, weight_decay=0.0, wd_exclude=())
  c.schedule.update(name="exponential", warmup_steps=0)
  c.schedule.decay_every, c.schedule.decay_factor = 1.0 / EPOCHS, 0.5  # "type1": halved every epoch
  c.evals.val = dict(type="task", split="val", every=0)
  c.log_every = 100
  c.eval_every = 0
  c.checkpoint_every = 1000
  if args.smoke:
    forecast.smoke(c)
  return c.lock()
