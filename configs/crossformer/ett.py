"""Crossformer (Zhang & Yan 2023) on ETTh1, the official ETTh1 script's setting; needs the user's ETTh1.csv.

  python -m papers_jax.main --config configs/crossformer/ett.py:path=/data/ETTh1.csv,horizon=24 \
      --workdir runs/crossformer_etth1_24

Data: ETTh1.csv (not downloaded), all 7 channels, split 12 / 4 / 4 months (the official data_split for
ETTh1), standardised with the train months' statistics. Model (models/crossformer.py, "crossformer") as
scripts/ETTh1.sh for H = 24 and 48: look-back 168, segments of 6, merging window 2, c = 10 routers,
d_model 256, 4 heads, MLP 512, 3 encoder blocks (4 decoder layers), dropout 0.2. For H = 168, 336 and 720
the script uses look-back 720 and segments of 24 at lr 1e-5 (`lookback=720,seg_len=24,lr=1e-5`).
Adam lr 1e-4, batch 32, 20 epochs, the lr halved after every epoch ("type1"), MSE loss. `smoke` runs the
same program shrunk on the generated ETT-like set.

Departures from the paper:
- No early stopping on the validation loss (patience 3 in the official code); the last epoch is evaluated.
- Every test window counts; the train windows are reshuffled each epoch by the project's pipeline.
"""

from papers_jax.core.config import base_config, parse_arg
from papers_jax.tasks import forecast

BATCH, EPOCHS = 32, 20


def get_config(arg=None):
  args = parse_arg(arg, path="", horizon=24, lookback=168, seg_len=6, lr=1e-4, smoke=False)
  c = base_config()
  c.task = "forecast"
  forecast.set_data(c, "csv", args.path)
  c.forecast = forecast.default_config(objective="forecast", lookback=args.lookback, horizon=args.horizon)
  c.model = dict(name="crossformer", seg_len=args.seg_len)
  c.batch_size = BATCH
  c.num_epochs = float(EPOCHS)
  c.optimizer.update(name="adam", lr=args.lr, clip_grad_norm=0.0, weight_decay=0.0, wd_exclude=())
  c.schedule.update(name="exponential", warmup_steps=0)
  c.schedule.decay_every, c.schedule.decay_factor = 1.0 / EPOCHS, 0.5  # "type1": halved every epoch
  c.evals.val = dict(type="task", split="val", every=0)
  c.log_every = 100
  c.eval_every = 0
  c.checkpoint_every = 1000
  if args.smoke:
    forecast.smoke(c)
    c.model.update(seg_len=4, d_model=16, num_heads=2, d_ff=32, num_routers=2, encoder_layers=2)
  return c.lock()
