"""Stand-alone self-attention ResNet on scikit-learn's bundled digits, and its convolutional twin, on a CPU.

  python -m papers_jax.main --config configs/sasa/digits.py --workdir runs/sasa_digits
  python -m papers_jax.main --config configs/sasa/digits.py:conv=True --workdir runs/sasa_digits_conv
  PYTHONPATH=. python tools/attention_resnets_digits.py      # this, the conv twin and Axial-ResNet; a table

configs/vit/digits.py's data and recipe (8×8 digits upsampled to 16×16, random affine warps, AdamW lr 4e-3,
wd 0.05, label smoothing 0.1, 450 steps of batch 256) with a two-stage bottleneck network: a 3×3/1 conv stem
of width 16, one bottleneck per stage (16 and 32 planes, 64 and 128 out, the second at stride 2), whose
spatial layer is the paper's 7×7 local self-attention (4 heads of 4 dimensions, split row / column relative
embeddings, then a 2×2 average pool in the strided block). `conv=True` builds the same network with the
ResNet 3×3 convolution in place of the attention (models/resnet.py): the baseline of the same layout.
`smoke` shrinks it to seconds. Measured numbers: docs/vision_variants.md.

Departures from the paper (a CPU demo, not one of its experiments):
- Those of configs/vit/digits.py's recipe, which this config loads: a small model on 8×8 digits instead of
  ImageNet; AdamW lr 4e-3 at batch 256, 30 warm-up steps then cosine, global-norm clipping at 1, weight decay
  0.05 not on biases and norm gains (the paper trains on ImageNet with its own SGD schedule); label smoothing
  0.1 and random affine warps; no drop path (this backbone has none).
- Two stages of one bottleneck each, widths 16 / 32, 4 heads, and the 3×3/1 conv stem ("cifar", not in the
  paper) instead of the attention or 7×7/2 conv stem: 16×16 inputs.
"""

import os

from papers_jax.core.config import load, parse_arg


def get_config(arg=None):
  args = parse_arg(arg, conv=False, smoke=False)
  vit = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "vit", "digits.py")
  c = load(vit + (":smoke" if args.smoke else "")).unlock()
  common = dict(img_size=16, in_chans=1, num_classes=10, layers=(1, 1), width=16, stem="cifar")
  if args.conv:
    c.model = dict(name="resnet50", block="bottleneck", **common)
  else:
    c.model = dict(name="sasa_resnet26", kernel_size=7, num_heads=4, **common)
  c.optimizer.wd_exclude = (r"(^|/)bias$", r"(^|/)scale$")
  if args.smoke:
    c.model.update(width=8, layers=(1,))
    if not args.conv:
      c.model.update(num_heads=2, kernel_size=3)
  return c.lock()
