"""COMET (Wang et al., NeurIPS 2023) on a UCR/UEA set, which has no patients or trials: the sample and
observation levels only (`ts_repr.method = "comet"`), evaluated as TS2Vec.

  python -m papers_jax.main --config configs/comet/ucr.py:data=GunPoint --workdir runs/comet_gunpoint

The encoder of configs/comet/ecg_like.py (TS2Vec's dilated CNN, 320 dimensions), two passes of the whole
series with continuous spans masked for each of the two levels, weighted ½ and ½, hierarchical over the
max-pooled scales; batch 8, AdamW lr 1e-3, 200 steps, the uniform weight average evaluated, as TS2Vec's runs.

Departures from the paper:
- No patient or trial level (the sets carry no such ids), so this is COMET's sample and observation contrast
  alone: TS2Vec's instance and temporal terms on masked passes of the whole series, without TS2Vec's crops.
  The weights ½, ½ instead of the paper's four-level ones.
- lr 1e-3 (the official PTB setting: 1e-4), batch 8 (256), 200 steps (100 epochs), like TS2Vec's runs here.
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
  c.ts_repr.update(method="comet", comet_factors=(0.0, 0.0, 0.5, 0.5),
                   comet_masks=("all_true", "all_true", "continuous", "continuous"))
  c.model.update(name="comet")
  c.model.update(mask_mode="all_true")  # the task passes each pass's mask
  return c.lock()
