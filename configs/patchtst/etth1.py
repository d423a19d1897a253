"""PatchTST/42 on ETTh1 (Nie et al. 2023, Table 3), the paper's supervised recipe; needs the user's ETTh1.csv.

  python -m papers_jax.main --config configs/patchtst/etth1.py:path=/data/ETTh1.csv,horizon=96 --workdir runs/patchtst_etth1_96

Data: ETTh1.csv of the ETDataset (date column + HUFL, HULL, MUFL, MULL, LUFL, LULL, OT; not downloaded), all 7
channels ("features M"), split 12 / 4 / 4 months, standardised with the train months' statistics; look-back
L = 336, horizon `horizon=` 96, 192, 336 or 720. Another file of the same layout works too: ETTh2 (same
split), ETTm1/ETTm2 (15-minute split, picked by the file name) or Weather / Electricity (70/10/20 %).
Model: PatchTST/42 at the size the paper uses for ETTh1 (3 layers, 4 heads, D = 16, F = 128, dropout 0.3,
head dropout 0), patches 16 / stride 8 with end padding (42 patches), BatchNorm, residual attention, RevIN
without affine, the flatten head. Adam lr 1e-4, batch 128, 100 epochs; the lr is constant for 3 epochs,
then × 0.9 every epoch (the official code's "type3" schedule). The paper reports MSE / MAE 0.375 / 0.399 at
H = 96 (Table 3). `smoke` runs the same program shrunk on the generated ETT-like set (no file needed).

Departures from the paper:
- No early stopping on the validation loss (the official scripts' patience is 100 epochs, i.e. none in a
  100-epoch run); the last epoch's model is evaluated.
- Every test window counts; the official loaders drop the last incomplete batch of test windows.
- The train windows are reshuffled every epoch by the project's pipeline and an epoch is
  windows // 128 steps (the official loader drops the last incomplete batch too).
"""

from papers_jax.core.config import base_config, parse_arg
from papers_jax.tasks import forecast

LOOKBACK, BATCH, EPOCHS = 336, 128, 100


def get_config(arg=None):
  args = parse_arg(arg, path="", horizon=96, smoke=False)
  c = base_config()
  c.task = "forecast"
  forecast.set_data(c, "csv", args.path)
  c.forecast = forecast.default_config(objective="forecast", lookback=LOOKBACK, horizon=args.horizon)
  c.model = dict(name="patchtst_42_small", head_drop=0.0)
  c.batch_size = BATCH
  c.num_epochs = float(EPOCHS)
  steps_per_epoch = (12 * 30 * 24 - LOOKBACK - args.horizon + 1) // BATCH
  c.optimizer.update(name="adam", lr=1e-4, clip_grad_norm=0.0, weight_decay=0.0, wd_exclude=())
  c.schedule.update(name="exponential", warmup_steps=3 * steps_per_epoch)
  c.schedule.warmup_shape, c.schedule.warmup_lr_ratio = "constant", 1.0  # "type3": constant for 3 epochs
  c.schedule.decay_every, c.schedule.decay_factor = 1.0 / EPOCHS, 0.9    # then × 0.9 every epoch
  c.evals.val = dict(type="task", split="val", every=0)
  c.log_every = 100
  c.eval_every = 0
  c.checkpoint_every = 1000
  if args.smoke:
    forecast.smoke(c)
  return c.lock()
