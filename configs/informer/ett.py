"""Informer (Zhou et al. 2021) on ETTh1, the paper's multivariate setting; needs the user's ETTh1.csv.

  python -m papers_jax.main --config configs/informer/ett.py:path=/data/ETTh1.csv,horizon=24 \
      --workdir runs/informer_etth1_24

Data: ETTh1.csv of the ETDataset (date + HUFL, HULL, MUFL, MULL, LUFL, LULL, OT; not downloaded), all 7
channels ("features M"), split 12 / 4 / 4 months, standardised with the train months' statistics; look-back
L = 96, horizon `horizon=` 24, 48, 168, 336 or 720 (Table 2). Another ETT file works too (ETTm*: the 15-minute
split, picked by the file name). Model (models/informer.py, "informer"): d_model 512, 8 heads, 2 encoder
layers with self-attention distilling, 1 decoder layer, feed-forward 2048, GELU, ProbSparse attention with
c = 5, dropout 0.05, a start token of the last 48 steps. Adam lr 1e-4, batch 32, 6 epochs, the lr halved
after every epoch (the official "type1" schedule), MSE loss. `smoke` runs the same program shrunk on the
generated ETT-like set (no file needed).

Departures from the paper:
- No time-feature embedding: the forecast task carries no time stamps (the paper embeds hour, weekday, day
  and day of year with "timeF"); the model supports them (`num_time_features`, tests/test_informer.py).
- No early stopping on the validation loss (the paper's patience is 3 epochs); the last epoch is evaluated.
- Every test window counts (the official loader drops the last incomplete batch); the train windows are
  reshuffled each epoch by the project's pipeline.
- The "Informer stack" variant (3 + 1 encoders on halved inputs) is not built; this is the 2-layer encoder.
"""

from papers_jax.core.config import base_config, parse_arg
from papers_jax.tasks import forecast

LOOKBACK, LABEL, BATCH, EPOCHS = 96, 48, 32, 6


def get_config(arg=None):
  args = parse_arg(arg, path="", horizon=24, smoke=False)
  c = base_config()
  c.task = "forecast"
  forecast.set_data(c, "csv", args.path)
  c.forecast = forecast.default_config(objective="forecast", lookback=LOOKBACK, horizon=args.horizon)
  c.model = dict(name="informer", label_length=LABEL)
  c.batch_size = BATCH
  c.num_epochs = float(EPOCHS)
  c.optimizer.update(name="adam", lr=1e-4, clip_grad_norm=0.0, weight_decay=0.0, wd_exclude=())
  c.schedule.update(name="exponential", warmup_steps=0)
  c.schedule.decay_every, c.schedule.decay_factor = 1.0 / EPOCHS, 0.5  # "type1": halved every epoch
  c.evals.val = dict(type="task", split="val", every=0)
  c.log_every = 100
  c.eval_every = 0
  c.checkpoint_every = 1000
  if args.smoke:
    forecast.smoke(c)
    c.model.update(label_length=16, d_model=16, num_heads=2, d_ff=32)
  return c.lock()
