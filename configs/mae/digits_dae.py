"""A denoising autoencoder on scikit-learn's digits (`config.task = "dae"`), the baseline the MAE paper sets
itself against: configs/mae/digits.py's pre-training, which this config loads, with no patch removed
(mask ratio 0) and a corrupted input instead: Gaussian noise (σ = 0.2 in the normalised space, where the
digits span [-1, 1]) on every pixel, then 25% of the pixels set to 0; the decoder reconstructs every patch
of the clean image (per-patch normalised pixels, MAE's target).

  python -m papers_jax.main --config configs/mae/digits_dae.py --workdir runs/dae_digits

tools/mim_demo.py compares it with MAE, BEiT and iGPT by linear probe (docs/mim_digits.md). `smoke` shrinks
it to seconds.

Departures from the paper (Vincent et al. 2008's DAE: a one-layer MLP autoencoder with masking noise):
- MAE's ViT encoder and decoder (configs/mae/digits.py: 4 layers of width 64, a 2-block decoder) on 16×16
  digits; Gaussian noise and pixel dropping together, at fixed rates chosen here, not tuned.
- Those of configs/mae/digits.py's pre-training: AdamW β = (0.9, 0.95), lr 1.5e-3, 10% warm-up, cosine
  decay over 800 steps of batch 256, weight decay 0.05 not on biases, norm gains, pos_embed or cls_token;
  random affine warps.
"""

import os

from papers_jax.core.config import load, parse_arg
from papers_jax.tasks.dae import default_config as dae_defaults


def get_config(arg=None):
  args = parse_arg(arg, smoke=False, steps=0)
  mae = os.path.join(os.path.dirname(os.path.abspath(__file__)), "digits.py")
  c = load(f"{mae}:stage=pretrain" + (f",steps={args.steps}" if args.steps else "") + (",smoke" if args.smoke else ""))
  c = c.unlock()
  c.task = "dae"
  c.model.mask_ratio = 0.0
  c.mae.vis_examples = 0
  c.dae = dae_defaults()
  return c.lock()
