"""Swin on scikit-learn's bundled digits: a small hierarchical model that trains on a CPU.

  python -m papers_jax.main --config configs/swin/digits.py --workdir runs/swin_digits

configs/vit/digits.py's data and recipe (8×8 digits upsampled to 16×16, random affine warps,
AdamW lr 4e-3, wd 0.05, label smoothing 0.1, 450 steps of batch 256) with a three-stage Swin:
2×2 patches (an 8×8 token grid), 4×4 windows (shift 2) and widths 32 / 64 / 128, so every
mechanism runs: W-MSA and SW-MSA with the shift mask at 8×8, patch merging to 4×4 (one window)
and 2×2 (one window smaller than M).
A partial run under a load average of 15+ reached loss 1.64 (from ln 10 ≈ 2.3) at step 50 at
35 examples/s; the full run's time and accuracy are not measured yet.
`smoke` shrinks it to seconds for the test suite.

Departures from the paper (a CPU demo, not one of its experiments):
- A three-stage, 32-wide Swin with 2×2 patches and 4×4 windows on 16×16 digits instead of Swin-T/S/B
  (4×4 patches, 7×7 windows) on ImageNet.
- AdamW lr 4e-3 (the paper: 1e-3 at batch 1024), weight decay 0.05 not on biases, norm gains or
  relative-position bias tables as the paper, 30 warm-up steps then cosine, global-norm clipping at
  1 (the paper: 5); label smoothing 0.1 as the paper, random affine warps instead of its Inception
  crops, RandAugment, mixup / cutmix and random erasing.
"""

from papers_jax.core.config import base_config, parse_arg


def get_config(arg=None):
  args = parse_arg(arg, smoke=False)
  c = base_config()
  c.model = dict(name="swin_tiny_patch4_window7_224", img_size=16, patch_size=2, in_chans=1, num_classes=10,
                 embed_dim=32, depths=(2, 2, 2), num_heads=(2, 4, 8), window_size=4, drop_path_rate=0.1)
  c.data.name = "digits"
  c.data.image_size = 16
  c.data.augment = "affine"
  c.data.affine_degrees = 10.0
  c.data.affine_scale = (0.9, 1.1)
  c.data.affine_translate = 0.1
  c.data.mean = (0.5,)
  c.data.std = (0.5,)
  c.batch_size = 256
  c.num_steps = 450
  c.optimizer.update(name="adamw", lr=4e-3, b1=0.9, b2=0.999, weight_decay=0.05, clip_grad_norm=1.0,
                     wd_exclude=(r"(^|/)bias$", r"(^|/)scale$", r"relative_position_bias_table"))
  c.schedule.update(name="cosine", warmup_steps=30, end_lr_ratio=0.0)
  c.label_smoothing = 0.1
  c.log_every = 50
  c.eval_every = 75
  c.checkpoint_every = 150
  if args.smoke:
    c.model.update(embed_dim=16, depths=(2, 1), num_heads=(1, 2))
    c.batch_size = 32
    c.num_steps = 20
    c.optimizer.lr = 2e-3
    c.schedule.warmup_steps = 2
    c.log_every = 5
    c.eval_every = 0
    c.checkpoint_every = 10
  return c.lock()
