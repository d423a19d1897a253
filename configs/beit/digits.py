"""BEiT v1 masked image modelling (Bao et al., ICLR 2022) on scikit-learn's digits, beside MAE's digits demo.

  python -m papers_jax.main --config configs/vqvae/digits.py:ema=1 --workdir runs/vqvae_digits
  python -m papers_jax.main --config configs/beit/digits.py --workdir runs/beit_digits \\
      --config.beit.tokenizer=runs/vqvae_digits/checkpoints/1500/state

The visual tokenizer is the VQ-VAE of configs/vqvae/digits.py (`ema=1`: 32 codes, EMA codebook), standing in
for DALL·E's dVAE: its two stride-2 convolutions give one code per 4×4 patch of the 16×16 digits, the patch
grid of the encoder. The encoder is configs/mae/digits.py's ViT (width 64, depth 4, 4 heads, MLP ratio 2)
with BEiT's blocks: a relative position table per block, layer-scale 0.1, a [MASK] embedding; about 40% of
the 16 patches (6) are masked block-wise (blocks of at least 2 patches) and their visual tokens predicted.
The optimiser, schedule, batch, augmentation and evaluations (k-NN at the middle, linear probe at the end) are
configs/mae/digits.py's pre-training, which this config loads, so that the two compare on equal terms
(tools/mim_demo.py runs both; results in docs/mim_digits.md). `smoke` shrinks it to seconds with an
untrained tokenizer.

Departures from the paper:
- A VQ-VAE with 32 codes on 16×16 digits instead of DALL·E's dVAE (8,192 codes on 112×112 images).
- Those of configs/mae/digits.py's pre-training: a 4-layer, 64-wide ViT on 16×16 digits with 4×4 patches
  instead of ViT-B/16 on ImageNet-1k at 224; AdamW β = (0.9, 0.95) (paper 0.999), lr 1.5e-3 with 10% warm-up
  and cosine decay over 800 steps of batch 256 (paper 800 epochs of batch 2,048), weight decay 0.05 not on
  biases, norms or tokens; random affine warps instead of random resized crops, flips and colour jitter.
- Minimum block of 2 patches (paper 16 of 196) and aspect ratios in [0.3, 1/0.3], on a 4×4 grid; the masks
  come from a bank of 4,096 drawn on the host (objectives/mim.py).
- A relative position table per block (the released pre-trained models share one across blocks,
  `rel_pos="shared"`); no drop path (paper 0.1).
"""

import os

from papers_jax.core.config import load, parse_arg
from papers_jax.tasks.beit import default_config as beit_defaults


def get_config(arg=None):
  args = parse_arg(arg, smoke=False, steps=0)
  mae = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "mae", "digits.py")
  c = load(f"{mae}:stage=pretrain" + (f",steps={args.steps}" if args.steps else "") + (",smoke" if args.smoke else ""))
  c = c.unlock()
  encoder = {k: c.model[k] for k in ("img_size", "patch_size", "in_chans", "embed_dim", "depth", "num_heads",
                                     "mlp_ratio")}
  c.task = "beit"
  c.model = dict(name="beit_mim_base_patch16_224", **encoder, rel_pos="layer", layer_scale=0.1)
  del c["mae"]
  c.beit = beit_defaults(block_min_patches=2)
  c.optimizer.wd_exclude = (r"(^|/)bias$", r"(^|/)scale$", r"cls_token", r"mask_token", r"gamma_\d",
                            r"relative_position_bias_table")
  if args.smoke:
    c.beit.update(tokenizer="random", mask_bank=64,
                  tokenizer_model=dict(name="vqvae", in_chans=1, hidden=8, res_hidden=4, num_codes=8, code_dim=4))
  return c.lock()
