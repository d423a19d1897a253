"""PoolFormer on scikit-learn's bundled digits: pooling as the token mixer, on a CPU.

  python -m papers_jax.main --config configs/poolformer/digits.py --workdir runs/poolformer_digits

configs/vit/digits.py's data and recipe (8×8 digits upsampled to 16×16 here 32×32, random affine warps,
AdamW lr 4e-3, wd 0.05, label smoothing 0.1, drop path 0.1, 450 steps of batch 256) with a two-stage
PoolFormer: the 7×7/4 stem gives an 8×8 map of width 32 (2 blocks), a 3×3/2 embedding a 4×4 map of width
64 (2 blocks); one-group GroupNorm, 3×3 average pooling minus the input, MLP ratio 4, layer scale 1e-5,
the official head (GroupNorm over the map, then the spatial mean). `smoke` shrinks it to seconds.

Departures from the paper (a CPU demo, not one of its experiments):
- Those of configs/vit/digits.py's recipe, which this config loads: a small model on 8×8 digits instead of
  ImageNet; AdamW lr 4e-3 at batch 256 (the paper: 4e-3 at 4096), 30 warm-up steps then cosine; global-norm
  clipping at 1 (the paper: none); weight decay 0.05 not on biases, norm gains and layer scales; label
  smoothing 0.1 as the paper, random affine warps instead of its RandAugment, mixup, cutmix and erasing.
- Two stages (widths 32 and 64) instead of four; images 32×32, upsampled from 8×8.
"""

import os

from papers_jax.core.config import load, parse_arg


def get_config(arg=None):
  args = parse_arg(arg, smoke=False)
  vit = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "vit", "digits.py")
  c = load(vit + (":smoke" if args.smoke else "")).unlock()
  c.model = dict(name="poolformer_s12", img_size=32, in_chans=1, num_classes=10, depths=(2, 2), dims=(32, 64),
                 drop_path_rate=0.1)
  c.data.image_size = 32
  c.optimizer.wd_exclude = (r"(^|/)bias$", r"(^|/)scale$")
  if args.smoke:
    c.model.update(depths=(1, 1), dims=(8, 16))
  return c.lock()
