"""Dual-ViT on scikit-learn's bundled digits, on a CPU.

  python -m papers_jax.main --config configs/dualvit/digits.py --workdir runs/dualvit_digits

configs/vit/digits.py's data and recipe (8×8 digits upsampled to 16×16, random affine warps, AdamW lr 4e-3, wd
0.05, label smoothing 0.1, 450 steps of batch 256) with a narrow Dual-ViT (models/dualvit.py): stem width 8, stage
widths 16 / 32 / 48 / 64 with 1 / 2 / 2 / 4 heads, one block per stage, MLP ratios 4 / 4 / 3 / 2; the 16×16 input
gives a 4×4 stride-4 map whose 2×2 pool makes 4 semantic tokens; no token-labeling head. Measured numbers beside
the ViT of configs/vit/digits.py: docs/vision_variants.md ("Dual-ViT").

Departures from the paper (a CPU demo, not one of its experiments):
- Those of configs/vit/digits.py's recipe, which this config loads: a small model on 8×8 digits instead of
  ImageNet at 224²; AdamW lr 4e-3 at batch 256, 30 warm-up steps then cosine, global-norm clipping at 1, weight
  decay 0.05 not on biases and norm gains, label smoothing 0.1 and random affine warps. The official ImageNet
  recipe (the paper's text was not in the search index; from the released code, classification/train.sh,
  main.py and configs/dualvit/dualvit_s.py): 310 epochs at batch 128 on each of 8 GPUs, AdamW (ε 1e-8, weight
  decay 0.05) at lr 5e-4 × 1024/512 = 1e-3, 5 warm-up epochs from 1e-6 then cosine to 1e-5, RandAugment
  (rand-m9-mstd0.5-inc1), colour jitter 0.4, random erasing 0.25, token labeling (dense weight 0.5, mixup and
  CutMix switched off with it), drop path 0.15 for S, no gradient clipping, evaluation crops at 0.96.
- No token labeling (no dense targets from an annotator here): the plain class head, and no drop path.
- The narrow layout above, a 2×2 semantic pool on the 4×4 map (the paper: 7×7 on 56×56, 64 tokens) and one block
  per stage (the paper's S: 3 / 4 / 6 / 3).
"""

import os

from papers_jax.core.config import load, parse_arg


def get_config(arg=None):
  args = parse_arg(arg, smoke=False)
  vit = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "vit", "digits.py")
  c = load(vit + (":smoke" if args.smoke else "")).unlock()
  c.model = dict(name="dualvit_s", img_size=16, in_chans=1, num_classes=10, stem_width=8, dims=(16, 32, 48, 64),
                 num_heads=(1, 2, 2, 4), mlp_ratios=(4, 4, 3, 2), depths=(1, 1, 1, 1), semantic_pool=2,
                 token_label=False)
  c.optimizer.wd_exclude = (r"(^|/)bias$", r"(^|/)scale$", r"queries")
  if args.smoke:
    c.model.update(dims=(8, 16, 16, 32), num_heads=(1, 1, 2, 2))
  return c.lock()
