"""The semi-supervised hybrid loss (SLOTS: "Semi-Supervised End-To-End Contrastive Learning for Time Series
Classification", Cai et al., 2023) on a UCR/UEA set with a labelled fraction (`ts_repr.method = "hybrid"`).

  python -m papers_jax.main --config configs/slots/ucr.py:data=GunPoint,labels=0.1 --workdir runs/slots_gunpoint_10

One loss, end to end from scratch: NT-Xent between two augmented views of every series (labelled or not),
supervised contrastive over the labelled series' views, and the cross-entropy of a linear head on the
labelled ones, weights 1 : 1 : 1 (tasks/ts_representation.py). The head's test accuracy is eval/accuracy;
the SVM and linear probe of TS2Vec's protocol are reported too, fitted on the labelled series.

Departures from the paper (its code is not available here, so some are choices where it is silent):
- The encoder is TS2Vec's dilated CNN (configs/ts2vec/ucr.py: hidden 64, 10 blocks, 320 dimensions; no
  timestamp masking), with a two-layer projection to 128 dimensions for the contrastive terms.
- The views: Gaussian jitter σ = 0.03 then per-channel scaling by N(1, 0.1²) (the usual weak time-domain
  augmentations); temperature 0.2 for both contrastive terms.
- AdamW lr 1e-3 with weight decay 0.01, batch 8, 200 steps, as TS2Vec's runs here, for a like-for-like table.
- Inherited from configs/ts2vec/ucr.py, which this config loads: each channel standardised with the train
  split's statistics, and the SVM protocol's cross-validation in one process.
"""

import os

from papers_jax.core.config import load, parse_arg


def get_config(arg=None):
  args = parse_arg(arg, data="GunPoint", path="", labels=0.1, steps=200, smoke=False)
  base = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "ts2vec", "ucr.py")
  c = load(f"{base}:data={args.data},path={args.path},steps={args.steps}" + (",smoke" if args.smoke else ""))
  c = c.unlock()
  c.ts_repr.update(method="hybrid", label_fraction=args.labels)
  c.model.update(name="ts2vec_classifier", mask_mode="all_true", projection_dims=128 if not args.smoke else 8)
  c.weight_average = "ema"
  return c.lock()
