"""MLP-Mixer on scikit-learn's bundled digits: token- and channel-mixing MLPs on a CPU.

  python -m papers_jax.main --config configs/mixer/digits.py --workdir runs/mixer_digits

configs/vit/digits.py's data and recipe (8×8 digits upsampled to 16×16, random affine warps,
AdamW lr 4e-3, wd 0.05, label smoothing 0.1, 450 steps of batch 256) with a small Mixer: 4×4
patches (16 tokens), width 64, 4 blocks, token-mixing width 32 and channel-mixing width 256
(the paper's ratios 0.5 and 4), no position embedding.
Not measured yet (the shared 2-core machine was under a load average of 15+ when this was
written); record the accuracy and time of the command above here.
`smoke` shrinks it to seconds for the test suite.

Departures from the paper (a CPU demo, not one of its experiments):
- A 4-block, 64-wide Mixer on 16×16 digits instead of Mixer-B/L on ImageNet / JFT-300M.
- AdamW lr 4e-3, weight decay 0.05 (not on biases or norm gains), 30 warm-up steps then cosine (the
  paper: linear decay), global-norm clipping at 1 as the paper; label smoothing 0.1, drop path 0.1
  and random affine warps instead of the paper's Inception crops, RandAugment and mixup.
"""

from papers_jax.core.config import base_config, parse_arg


def get_config(arg=None):
  args = parse_arg(arg, smoke=False)
  c = base_config()
  c.model = dict(name="mixer_s16_224", img_size=16, patch_size=4, in_chans=1, num_classes=10, embed_dim=64,
                 num_blocks=4, drop_path_rate=0.1)
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
                     wd_exclude=(r"(^|/)bias$", r"(^|/)scale$"))
  c.schedule.update(name="cosine", warmup_steps=30, end_lr_ratio=0.0)
  c.label_smoothing = 0.1
  c.log_every = 50
  c.eval_every = 75
  c.checkpoint_every = 150
  if args.smoke:
    c.model.update(embed_dim=32, num_blocks=2)
    c.batch_size = 32
    c.num_steps = 20
    c.optimizer.lr = 2e-3
    c.schedule.warmup_steps = 2
    c.log_every = 5
    c.eval_every = 0
    c.checkpoint_every = 10
  return c.lock()
