"""TS2Vec (Yue et al., AAAI 2022) evaluated by its forecasting protocol: ridge regression from the causal
representation of the last observed row to the next H values, on the forecast task's series and windows.

  python -m papers_jax.main --config configs/ts2vec/forecast.py:data=<ett_like|co2> --workdir runs/ts2vec_fc_<data>

`data=` names a series of tasks/forecast.py's DATASETS (the generated ETT-like set, statsmodels' co2, ...), with
its splits, train-only standardisation and look-back; the test windows are those of the forecasting table of
docs/timeseries.md. One run evaluates H = 24, 48 and 96 (tasks/ts_repr_forecast.py). The encoder and
training are configs/ts2vec/ucr.py's: hidden 64, 10 dilated residual blocks, 320 dimensions, timestamp
masking, batch 8, AdamW lr 1e-3 (weight decay 0.01), 200 iterations (the train split holds at most 100,000
values), temporal_unit 0, α = ½, the uniform weight average evaluated. The protocol is the official one:
causal sliding encoding (each row's representation from the rows before it and itself), ridge α from
{0.1, …, 1000} by validation RMSE + MAE, the train rows without a full context dropped. The same protocol on
the untrained encoder is reported as a baseline.

Departures from the paper:
- The causal context is the forecast task's look-back (the row and the L − 1 rows before it: 96 rows on
  ETT-like, 104 on co2), so that the encoder sees exactly the past the forecasting baselines see; the
  official code uses 200 rows before it.
- The train split is cut into sections of at most `max_train_length` = 128 rows (the official: 3,000), so that a
  step fits the CPU budget of the docs (the sections are the batch's series, as the official cut).
- No time covariates (hour, weekday, ...) as extra input channels: the generated and statsmodels series carry
  no timestamps the task reads.
- The test windows are the forecast task's (the first forecast row at least one look-back into the series);
  the official takes every test row with H rows after it.
- Inherited from configs/ts2vec/ucr.py's settings: none of its data departures apply here; the SVM is not used.
"""

import ml_collections

from papers_jax.core.config import base_config, parse_arg
from papers_jax.tasks import forecast, ts_representation


def get_config(arg=None):
  args = parse_arg(arg, data="ett_like", path="", steps=200, smoke=False)
  c = base_config()
  c.task = "ts_repr_forecast"
  lookback = forecast.set_data(c, args.data, args.path)
  lookback = lookback or 96
  c.ts_repr = ts_representation.default_config(max_train_length=128, eval_batch=256)
  c.ts_repr.forecast = ml_collections.ConfigDict(dict(horizons=(24, 48, 96), context=lookback - 1,
                                                      lookback=lookback, random_baseline=True))
  c.model = dict(name="ts2vec", output_dims=320, hidden_dims=64, depth=10, mask_mode="binomial", dropout=0.1)
  c.batch_size, c.num_steps = 8, args.steps
  c.optimizer.update(name="adamw", lr=1e-3, weight_decay=0.01, wd_exclude=(), clip_grad_norm=0.0)
  c.schedule.update(name="constant", warmup_steps=0)
  c.weight_average = "uniform"
  c.mesh.update(data=-1, fsdp=1, tensor=1)
  c.log_every, c.eval_every, c.checkpoint_every = 20, 0, 100
  if args.smoke:
    c.model.update(output_dims=16, hidden_dims=8, depth=2)
    c.ts_repr.update(max_train_length=32, eval_batch=512)
    c.ts_repr.forecast.update(horizons=(8,), context=16)
    c.num_steps, c.log_every, c.checkpoint_every = 3, 1, 3
  return c.lock()
