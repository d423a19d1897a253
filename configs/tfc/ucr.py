"""TF-C (Zhang et al., NeurIPS 2022) pre-trained on a UCR/UEA set, evaluated with TS2Vec's protocols
(`ts_repr.method = "tfc"`).

  python -m papers_jax.main --config configs/tfc/ucr.py:data=GunPoint --workdir runs/tfc_gunpoint

The official code's convolutional model (models/tfc.py): a time-domain and a frequency-domain encoder of three
conv blocks each (32, 64, 128 channels), each with a projector (256, 128) into the shared time-frequency space;
the representation is [z_time, z_freq] (256 dimensions). The loss (objectives/tfc.py): NT-Xent within each
domain (τ = 0.2, cosine similarity) and the consistency triplet loss with margin δ = 1, weighted
λ (L_T + L_F) + (1 − λ) L_C with λ = 0.2; the time views drawn from a bank of jitter, scaling and permutation
(up to 5 segments), the frequency views with 10% of the components removed and 10% raised by up to 0.1 of the
largest amplitude. Adam lr 3e-4, β = (0.9, 0.99). Evaluated as configs/ts2vec/ucr.py: an RBF-SVM and a linear
probe on the representations, beside the SVM on the raw series and on the untrained encoders. `smoke` runs
it for a few steps.

Departures from the paper:
- Pre-trained and evaluated on the same set (the paper pre-trains on one set and fine-tunes on another), and
  evaluated by TS2Vec's frozen-representation protocols, not by fine-tuning with a classifier head, so that the
  numbers sit beside TS2Vec's in docs/ts_representation.md.
- The kernel of the first block is 8 with stride 1 (the official Epilepsy / Gesture settings, for these short
  series; the SleepEEG pre-training configuration has 25 and 3), dropout 0.35.
- Batch 32 (fewer when the train split is smaller; the official 128), 200 steps instead of 40 epochs.
- Jitter σ = 0.2 and scaling σ = 0.2 about 1 (the official configurations vary from 0.001 to 2, and its
  scaling draws factors about 2); one augmentation of the bank per series (the official pre-training uses
  jitter alone; its bank function keeps only the first augmentation's rows). The frequency view applies the
  removal and then the addition, where the official code adds the two perturbed spectra; the added
  amplitude is relative to each series' largest component, not the whole tensor's.
- Plain NT-Xent (the paper's), where the official code adds a poly-loss term; no L2 penalty (the official
  Adam has weight_decay 3e-4).
- Inherited from configs/ts2vec/ucr.py, which this config loads: each channel standardised with the train
  split's statistics, and the SVM's cross-validation in one process.
"""

import os

from papers_jax.core.config import load, parse_arg


def get_config(arg=None):
  args = parse_arg(arg, data="GunPoint", path="", labels=1.0, steps=200, smoke=False)
  base = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "ts2vec", "ucr.py")
  c = load(f"{base}:data={args.data},path={args.path},labels={args.labels},steps={args.steps}"
           + (",smoke" if args.smoke else ""))
  c = c.unlock()
  c.ts_repr.update(method="tfc", jitter=0.2, scaling=0.2, temperature=0.2, max_segments=5, freq_ratio=0.1,
                   freq_alpha=0.1, margin=1.0, tfc_lambda=0.2)
  c.model = dict(name="tfc", kernel_size=8, stride=1, final_out_channels=128, dropout=0.35, projection_dims=128)
  c.optimizer.update(name="adam", lr=3e-4, b1=0.9, b2=0.99, weight_decay=0.0)
  c.weight_average = "ema"
  if args.smoke:
    c.model.update(final_out_channels=8, projection_dims=8)
  else:
    from papers_jax.tasks.ts_representation import TSRepresentationTask
    c.batch_size = min(32, len(TSRepresentationTask(c).source("train")))
  return c.lock()
