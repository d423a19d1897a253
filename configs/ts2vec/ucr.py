"""TS2Vec (Yue et al., AAAI 2022) on a UCR/UEA classification set, with its SVM evaluation protocol.

  python -m papers_jax.main --config configs/ts2vec/ucr.py:data=GunPoint --workdir runs/ts2vec_gunpoint

`data=` names a set bundled with sktime (GunPoint, ArrowHead, ItalyPowerDemand, BasicMotions, JapaneseVowels,
...), or any set of the archives in the `.ts` format with `path=<folder holding <name>_TRAIN.ts and _TEST.ts>`.
The paper's settings: the dilated-conv encoder with hidden width 64, 10 residual blocks and 320 output
dimensions; batch 8 (fewer when the train split is smaller), AdamW lr 0.001 with torch's default weight decay
0.01 on every parameter; 200 iterations when the train split holds at most 100,000 values, 600 otherwise;
crops up to 3,000 steps; temporal_unit 0, α = ½; the uniform average of the weights after every step is
what gets evaluated (`weight_average="uniform"`, the official AveragedModel); evaluation by an RBF-SVM on
the series' max-pooled representations (evaluators/svm.py). The report also has a linear probe, and the
SVM on the raw series and on an untrained encoder as baselines. `labels=` < 1 fits the protocols on that
stratified fraction of the train labels only (pre-training never sees labels). `smoke` runs a small encoder for
a few steps.

Departures from the paper:
- Each channel is standardised with the train split's statistics for every set. The official code does so
  for UEA sets, and leaves the UCR archive's univariate sets (already z-normalised per series) as they are,
  except a listed few that it standardises with one global mean and deviation.
- The SVM's cross-validation runs in one process (the official: 5 jobs); same grid and folds.
"""

from papers_jax.core.config import base_config, parse_arg
from papers_jax.data import timeseries
from papers_jax.tasks import ts_representation


def get_config(arg=None):
  args = parse_arg(arg, data="GunPoint", path="", labels=1.0, steps=0, smoke=False)
  c = base_config()
  c.task = "ts_representation"
  c.data.name, c.data.path = f"ucr_uea:{args.data}", args.path
  c.data.train_split, c.data.eval_split = "train", "test"
  c.ts_repr = ts_representation.default_config(label_fraction=args.labels)
  c.model = dict(name="ts2vec", output_dims=320, hidden_dims=64, depth=10, mask_mode="binomial", dropout=0.1)
  train = timeseries.ClassificationSource(c.data, "train") if not args.smoke else None
  size = train.series.size if train is not None else 0
  c.batch_size = min(8, len(train)) if train is not None else 8
  c.num_steps = args.steps or (200 if size <= 100_000 else 600)
  c.optimizer.update(name="adamw", lr=1e-3, weight_decay=0.01, wd_exclude=(), clip_grad_norm=0.0)
  c.schedule.update(name="constant", warmup_steps=0)
  c.weight_average = "uniform"
  c.mesh.update(data=-1, fsdp=1, tensor=1)
  c.log_every = 20
  c.eval_every = 0  # the SVM and the probes run once, after the last step
  c.checkpoint_every = 100
  if args.smoke:
    c.model.update(output_dims=16, hidden_dims=8, depth=2)
    c.batch_size, c.num_steps = 8, 3
    c.ts_repr.eval_batch = 64
    c.log_every, c.checkpoint_every = 1, 3
  return c.lock()
