"""Image GPT (Chen et al., ICML 2020) on scikit-learn's digits: autoregressive or BERT pixel modelling.

  python -m papers_jax.main --config configs/igpt/digits.py --workdir runs/igpt_digits
  python -m papers_jax.main --config configs/igpt/digits.py:objective=bert --workdir runs/igpt_bert_digits

The digits at their own 8×8 resolution (the paper, too, models downsampled images: 32² to 64²), each pixel
one of 8 grey levels of a k-means palette fitted on the training pixels (the paper's 9-bit palette gives 3
bits to each of three channels; one grey channel gets the same 3 bits), read as a 64-pixel sequence in
raster order. The model: GPT blocks with iGPT's RMS norms and quick GELU, 4 layers of width 64, 4 heads,
MLP ratio 2 (the encoder size of configs/mae/digits.py). `objective=autoregressive`: next-pixel
prediction after an SOS token; `objective=bert`: 15% of the pixels masked, bidirectional. Evaluations:
configs/mae/digits.py's k-NN at the middle and linear probe at the end, on the paper's probe feature, the
RMS-normalised output of the middle block (block 2 of 4) averaged over the positions. The optimiser,
schedule, batch and augmentation are configs/mae/digits.py's pre-training, which this config loads
(tools/mim_demo.py compares the methods; results in docs/mim_digits.md). `smoke` shrinks it to seconds.

Departures from the paper:
- 8 grey levels of 8×8 digits instead of a 512-colour palette of 32²-64² ImageNet images; a 4-layer,
  64-wide model (iGPT-S: 24 layers, 512 wide); the probe layer is the middle block instead of the best one
  searched over layers.
- Those of configs/mae/digits.py's pre-training: AdamW β = (0.9, 0.95), lr 1.5e-3 with 10% warm-up and
  cosine decay over 800 steps of batch 256, weight decay 0.05 not on biases, norm gains, embeddings or the
  [MASK] embedding (the paper: Adam β2 = 0.95 without weight decay, 1M steps of batch 128 for iGPT-S);
  random affine warps (the paper: random crops and flips).
"""

import os

from papers_jax.core.config import load, parse_arg
from papers_jax.tasks.igpt import default_config as igpt_defaults


def get_config(arg=None):
  args = parse_arg(arg, smoke=False, steps=0, objective="autoregressive")
  mae = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "mae", "digits.py")
  c = load(f"{mae}:stage=pretrain" + (f",steps={args.steps}" if args.steps else "") + (",smoke" if args.smoke else ""))
  c = c.unlock()
  c.task = "igpt"
  c.data.image_size = 8
  c.model = dict(name="igpt_small", embed_dim=c.model.embed_dim, depth=c.model.depth, num_heads=c.model.num_heads,
                 mlp_ratio=c.model.mlp_ratio)
  del c["mae"]
  c.igpt = igpt_defaults(objective=args.objective, num_clusters=8)
  c.optimizer.wd_exclude = (r"(^|/)bias$", r"(^|/)scale$", r"token_embed", r"pos_embed", r"mask_token")
  return c.lock()
