"""DPT (models/dpt.py) at toy size on the generated shape scenes of configs/danet/shapes.py, which this
config loads (data, batch 32, 600 steps, flips, evaluation: mIoU against the majority class).

  python -m papers_jax.main --config configs/dpt/shapes.py --workdir runs/dpt_shapes

The encoder is the same 4-block ViT of width 64 over 8×8 patches as configs/setr/shapes.py (plus the class
token DPT's readout needs), read at all four blocks; reassemble widths 16, 32, 64, 64 and 16 fusion
features; the segmentation head and the auxiliary head (weight 0.4, as HF's DPTForSemanticSegmentation).
The decoder's and heads' convolutions start from N(0, 0.02) as HF's DPT initialises them (`decoder_init_std`):
with the project's He-normal default the untrained decoder's logits are of order 10^6 and a 300-step run
stayed at the majority class (docs/segmentation.md).
Measured numbers: docs/segmentation.md.

Departures from the paper (ADE20K, DPT-Hybrid / DPT-Large pre-trained on ImageNet, 480×480 crops):
  - Data: generated 64×64 shape scenes (five classes), not ADE20K; no random rescaling or cropping.
  - Network: a 4-block, 64-wide ViT over 8×8 patches trained from scratch (the paper: ViT-L/16 or
    ViT-B/16 with a ResNet-50 stem, pre-trained), hooks at every block, 16 fusion features (paper 256).
    The head's logits come out at 2× the input at 8×8 patches and are resized (bilinear) back to 64×64.
  - Optimiser: AdamW (lr 1e-3, weight decay 0.05 off biases, norms, position embeddings and the class
    token, 50 warmup steps, poly decay with power 0.9, gradient clipping at 1.0) instead of the paper's
    SGD (momentum 0.9, lr 0.002, poly, the head at 10× lr); batch 32 (paper 48), 600 steps (paper 240 epochs).
  - Inherited from configs/danet/shapes.py: no label smoothing.
`smoke` shrinks it to a few steps.
"""

import os

from papers_jax.core.config import load, parse_arg


def get_config(arg=None):
  args = parse_arg(arg, smoke=False)
  base = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "setr", "shapes.py")
  c = load(base + (":smoke=true" if args.smoke else "")).unlock()
  c.model = dict(name="dpt_vit_tiny", num_classes=5, img_size=c.data.image_size, decoder_init_std=0.02)
  c.optimizer.wd_exclude = (r"(^|/)bias$", r"(^|/)scale$", r"pos_embed", r"cls_token")
  return c.lock()
