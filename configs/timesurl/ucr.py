"""TimesURL (Liu & Chen, AAAI 2024) on a UCR/UEA classification set, with TS2Vec's SVM evaluation protocol.

  python -m papers_jax.main --config configs/timesurl/ucr.py:data=GunPoint --workdir runs/timesurl_gunpoint

TS2Vec's encoder (hidden 64, 10 dilated residual blocks, 320 dimensions) and crops, plus the paper's three
pieces (objectives/timesurl.py): FTAug (TS2Vec's random cropping, and frequency mixing of the second
context: each frequency component taken from another series of the batch with probability 0.5), DualCon
(the hierarchical contrastive loss with instance-wise and temporal Universums, λ = 0.2, instance share
α = 0.8, temperature 1) and time reconstruction (3 masked segments of 5 % of the length per series and
channel, reconstructed by the head Linear(320, 1280)-ReLU-Linear(1280, C)), in the official code's loss
weights: 0.01 · DualCon + reconstruction (the mean of the two contexts' masked MSE). The official code's
training settings: batch 8 (fewer when the train split is smaller), AdamW lr 1e-4 with weight decay 5e-4,
a cosine schedule, 200 iterations when the train split holds at most 100,000 values (600 otherwise), no
timestamp masking of TS2Vec's kind (the reconstruction's masks take its place), and the uniform average of
the weights evaluated. The evaluation and its baselines are configs/ts2vec/ucr.py's (which this config
loads): the RBF-SVM on max-pooled representations, a linear probe, the SVM on the raw series and on the
untrained encoder. `labels=` < 1 fits the protocols on that stratified fraction of the labels.

Departures from the paper:
- The settings above are the official code's defaults (github.com/Alrash/TimesURL: train.py `--lmd 0.01`,
  `--temp 1.0`, `--lr 0.0001`, `--segment_num 3`, `--mask_ratio_per_seg 0.05`; losses.py α = 0.8 and the
  mix 0.2); the paper does not list its loss weights or these values.
- Frequency mixing uses the real FFT of the whole (windowed) series before cropping, so the mixed series
  stays real. The official code mixes the cropped context's complex FFT under a random mask that is not
  conjugate-symmetric (and spares the components whose sort index is ≤ 2), then takes the modulus of the
  inverse FFT, which makes the series non-negative.
- The official data collator also splits each series into two subsets of timestamps by sampling density
  (an irregular-sampling step the paper does not describe); each series is used whole here.
- The cosine schedule runs over steps (the official: over epochs).
- Inherited from configs/ts2vec/ucr.py: every set standardised per channel with the train split's
  statistics (the official code leaves the z-normalised UCR sets as they are), and the SVM's
  cross-validation in one process.
"""

import os

from papers_jax.core.config import load, parse_arg
from papers_jax.objectives import timesurl


def get_config(arg=None):
  args = parse_arg(arg, data="GunPoint", path="", labels=1.0, steps=0, smoke=False)
  base = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "ts2vec", "ucr.py")
  c = load(f"{base}:data={args.data},path={args.path},labels={args.labels},steps={args.steps}"
           + (",smoke" if args.smoke else ""))
  c = c.unlock()
  timesurl.configure(c)
  return c.lock()
