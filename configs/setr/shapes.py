"""SETR (models/setr.py) at toy size on the generated shape scenes of configs/danet/shapes.py, which this
config loads (data, batch 32, 600 steps, flips, evaluation: mIoU against the majority class).

  python -m papers_jax.main --config configs/setr/shapes.py:decoder=pup --workdir runs/setr_pup_shapes
  python -m papers_jax.main --config configs/setr/shapes.py:decoder=naive --workdir runs/setr_naive_shapes
  python -m papers_jax.main --config configs/setr/shapes.py:decoder=mla --workdir runs/setr_mla_shapes

The encoder is a 4-block ViT of width 64 (4 heads, MLP ratio 2) over 8×8 patches of the 64×64 scenes (an 8×8
grid of tokens); the decoders are the paper's three at 32 channels (MLA: 32 and 16), with its auxiliary
heads at weight 0.4 (Naïve: blocks 2 and 3; PUP: blocks 2, 3, 4; MLA: its four streams). Measured numbers:
docs/segmentation.md.

Departures from the paper (Cityscapes / ADE20K, ViT-L/16 pre-trained on ImageNet-21k, 768 / 512 crops):
  - Data: generated 64×64 shape scenes (five classes), not Cityscapes; no random rescaling or cropping.
  - Network: a 4-block, 64-wide ViT over 8×8 patches trained from scratch (the paper: ViT-L/16, 24 blocks,
    pre-trained; its randomly initialised SETR-PUP lost 36 mIoU points on Cityscapes); decoder widths 32
    (paper 256) and MLA 32 / 16 (paper 256 / 128); auxiliary heads at blocks 2-4 of 4 instead of 10, 15, 20
    (and 24) of 24. PUP's four ×2 upsamplings reach 2× the input at 8×8 patches; the logits are resized
    (bilinear) back to 64×64.
  - Optimiser: AdamW (lr 1e-3, weight decay 0.05 off biases, norms and position embeddings, 50 warmup
    steps, poly decay with power 0.9, gradient clipping at 1.0) instead of the paper's SGD (lr 0.01,
    momentum 0.9, weight decay 0, poly, the head at 10× lr), which suits a pre-trained encoder; batch 32
    (paper 8 or 16), 600 steps (paper 40k-160k).
  - Inherited from configs/danet/shapes.py: no label smoothing.
`smoke` shrinks it to a few steps.
"""

import os

from papers_jax.core.config import load, parse_arg
from papers_jax.errors import ConfigError


def get_config(arg=None):
  args = parse_arg(arg, decoder="pup", smoke=False)
  if args.decoder not in ("naive", "pup", "mla"):
    raise ConfigError(f"decoder must be naive, pup or mla, got {args.decoder!r}")
  base = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "danet", "shapes.py")
  c = load(base + (":smoke" if args.smoke else "")).unlock()
  size = c.data.image_size
  c.model = dict(name=f"setr_{args.decoder}_vit_tiny", num_classes=5, img_size=size)
  c.segmentation.aux_loss_weight = 0.4
  c.optimizer.update(name="adamw", lr=1e-3, b1=0.9, b2=0.999, weight_decay=0.05, clip_grad_norm=1.0,
                     wd_exclude=(r"(^|/)bias$", r"(^|/)scale$", r"pos_embed"))
  c.schedule.update(name="poly", power=0.9, warmup_steps=0 if args.smoke else 50)
  return c.lock()
