"""Semi-supervised evaluation of a TS2Vec encoder: fine-tuned with a linear head on a labelled fraction of
a UCR/UEA train split (`ts_repr.method = "finetune"`).

  python -m papers_jax.main --config configs/ts2vec/ucr.py:data=GunPoint --workdir runs/ts2vec_gunpoint
  python -m papers_jax.main --workdir runs/ts2vec_gunpoint_ft10 \
      --config configs/ts2vec/finetune.py:data=GunPoint,labels=0.1,init=runs/ts2vec_gunpoint/checkpoints/200/state

`labels=` is the labelled fraction (stratified, at least one series a class, a fixed seed); `init=` a TS2Vec
run's checkpoint (empty: the same network trained from scratch on the labels alone, the baseline). The
encoder of configs/ts2vec/ucr.py without timestamp masking, a linear head on its max-pooled output,
AdamW lr 1e-3 with weight decay 0.01, batch 8 (fewer when fewer series are labelled), 200 steps. The report
has the head's test accuracy (eval/accuracy) and, as for TS2Vec, the SVM and linear probe fitted on the
labelled series only. `smoke` runs it shrunk, on every label.

Departures from the paper: the TS2Vec paper evaluates classification only with the SVM on frozen
representations; this fine-tuning protocol (semi-supervised fine-tuning on a fraction of the labels, as TS-TCC
and TF-C report it) takes TS2Vec's optimiser settings, which no paper fixes for it. Inherited from
configs/ts2vec/ucr.py, which this config loads: every set standardised per channel with the train split's
statistics (the official code leaves the z-normalised UCR sets as they are), and the SVM's cross-validation
in one process.
"""

import os

from papers_jax.core.config import load, parse_arg


def get_config(arg=None):
  args = parse_arg(arg, data="GunPoint", path="", labels=0.1, init="", steps=200, smoke=False)
  base = os.path.join(os.path.dirname(os.path.abspath(__file__)), "ucr.py")
  c = load(f"{base}:data={args.data},path={args.path},steps={args.steps}" + (",smoke" if args.smoke else ""))
  c = c.unlock()
  c.ts_repr.update(method="finetune", label_fraction=1.0 if args.smoke else args.labels)  # smoke: a full batch
  c.model.update(name="ts2vec_classifier", mask_mode="all_true")
  c.init_from = args.init
  c.init_skip = (r"^head/", r"^projector/")
  c.weight_average = "ema"
  if not args.smoke:
    from papers_jax.tasks.ts_representation import TSRepresentationTask
    c.batch_size = min(8, len(TSRepresentationTask(c).source("train")))
  return c.lock()
