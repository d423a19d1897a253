"""Axial-ResNet on scikit-learn's bundled digits, on a CPU.

  python -m papers_jax.main --config configs/axial/digits.py --workdir runs/axial_digits
  PYTHONPATH=. python tools/attention_resnets_digits.py      # with the SASA net and the conv twin; a table

configs/vit/digits.py's data and recipe (8×8 digits upsampled to 16×16, random affine warps, AdamW lr 4e-3,
wd 0.05, label smoothing 0.1, 450 steps of batch 256) with a two-stage Axial-ResNet (width multiplier 0.25): a
3×3/1 conv stem of width 16, one axial block per stage (32 and 64 planes, 64 and 128 out as
configs/sasa/digits.py's networks, the second at stride 2), each a height-axis then a width-axis
position-sensitive attention over the whole 16 (then 8) pixels, 4 heads. `smoke` shrinks it to seconds.
Measured numbers: docs/vision_variants.md.

Departures from the paper (a CPU demo, not one of its experiments):
- Those of configs/vit/digits.py's recipe, which this config loads: a small model on 8×8 digits instead of
  ImageNet; AdamW lr 4e-3 at batch 256, 30 warm-up steps then cosine, global-norm clipping at 1, weight decay
  0.05 not on biases and norm gains (the paper: SGD with Nesterov momentum as the authors' code, lr 0.05 at
  batch 128 per 4 GPUs, cosine); label smoothing 0.1 and random affine warps.
- Two stages of one block each at s = 0.25, 4 heads, and the 3×3/1 conv stem ("cifar", not in the paper)
  instead of the 7×7/2 conv stem: 16×16 inputs.
"""

import os

from papers_jax.core.config import load, parse_arg


def get_config(arg=None):
  args = parse_arg(arg, smoke=False)
  vit = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "vit", "digits.py")
  c = load(vit + (":smoke" if args.smoke else "")).unlock()
  c.model = dict(name="axial_resnet26_s", img_size=16, in_chans=1, num_classes=10, layers=(1, 1),
                 width_multiplier=0.25, num_heads=4, stem="cifar")
  c.optimizer.wd_exclude = (r"(^|/)bias$", r"(^|/)scale$")
  if args.smoke:
    c.model.update(width_multiplier=0.125, layers=(1,), num_heads=2)
  return c.lock()
