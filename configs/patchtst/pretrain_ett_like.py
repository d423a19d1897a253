"""PatchTST's self-supervised pre-training (Nie et al. 2023, §3.2) on the generated ETT-like set, offline.

  python -m papers_jax.main --config configs/patchtst/pretrain_ett_like.py --workdir runs/patchtst_pretrain_ett_like

Masked-patch reconstruction: non-overlapping patches (P = S = 12, no padding), 40 % of each channel's patches
replaced by zeros, MSE on the masked patches of the RevIN-normalised window (tasks/forecast.py,
objective "masked_patch"); evaluation reports that loss on the test windows with masks from a fixed key.
Model: the paper's pre-training encoder (3 layers, 16 heads, D = 128, F = 512, dropout 0.2, BatchNorm,
residual attention) on look-back 96 (8 patches; the paper: 512, 42 patches). Adam lr 1e-4 (the paper's),
batch 64, 1,000 steps, cosine. The encoder (`encoder/...`) loads into a PatchTST with the same patching for
fine-tuning or linear probing (`init_from`, `init_skip=("^head/",)`). `smoke` shrinks it to seconds.

Departures from the paper:
- Generated data and look-back 96 instead of 512 on ETT/Weather/Electricity/Traffic.
- 1,000 steps with a cosine decay instead of 100 epochs with the one-cycle schedule.
"""

from papers_jax.core.config import base_config, parse_arg
from papers_jax.tasks import forecast


def get_config(arg=None):
  args = parse_arg(arg, data="ett_like", lookback=0, steps=1000, smoke=False)
  c = base_config()
  c.task = "forecast"
  lookback = forecast.set_data(c, args.data)
  c.forecast = forecast.default_config(objective="masked_patch", lookback=args.lookback or lookback, horizon=1)
  c.model = dict(name="patchtst_pretrain")
  c.batch_size = 64
  c.num_steps = args.steps
  c.optimizer.update(name="adam", lr=1e-4, clip_grad_norm=0.0, weight_decay=0.0, wd_exclude=())
  c.schedule.update(name="cosine", warmup_steps=0)
  c.log_every = 100
  c.eval_every = 0
  c.checkpoint_every = 500
  if args.smoke:
    forecast.smoke(c)
  return c.lock()
