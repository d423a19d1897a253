"""DDPM on scikit-learn's bundled digits, upsampled to 16×16: the CPU demo (tens of minutes on 2 CPU cores;
docs/diffusion.md gives the measured times).

  python -m papers_jax.main --config configs/ddpm/digits.py --workdir runs/ddpm_digits

A small UNet of the paper's design (models/ddpm_unet.py: base width 16, levels 16/8 px with widths
16/32, one residual block per level, self-attention at 8×8, dropout 0.1) learns ε-prediction with the
paper's schedule (T = 1000, β linear 1e-4 → 0.02) and L_simple. At the end, 300 samples from the weight
EMA (DDIM, 50 steps) are scored with the digits FID (evaluators/fid.py) against the train split, next to
the Gaussian-noise baseline and the held-out test split; a grid of 64 goes to samples/ and TensorBoard.
Measured numbers: docs/diffusion.md. `smoke` shrinks it to seconds; `sampler=ancestral` samples with all
1000 steps of Algorithm 2 instead.

Departures from the paper (a CPU demo, not one of its experiments):
- A tiny UNet (the paper's CIFAR-10 network has 35.7M parameters) with two levels, GroupNorm over 4
  groups (32 in the paper: these layers have 16–64 channels) and one residual block per level (two).
- 16×16 single-channel digits instead of CIFAR-10, no random flips (digits are not flip-symmetric).
- Adam lr 1e-3 (paper 2e-4), batch 32 (paper 128), 5000 steps with a 100-step warm-up (paper 800k and
  5000), weight EMA 0.995 (paper 0.9999, too slow an average for 5000 steps); gradient clipping at 1 and
  no weight decay as the paper.
- Samples for the FID come from DDIM with 50 steps (η = 0), not from the 1000-step ancestral sampler,
  to keep the evaluation at minutes on a CPU.
"""

from papers_jax.core.config import base_config, parse_arg
from papers_jax.tasks.diffusion import default_config as diffusion_defaults


def get_config(arg=None):
  args = parse_arg(arg, smoke=False, steps=0, sampler="ddim")
  c = base_config()
  c.task = "diffusion"
  c.data.name = "digits"
  c.data.image_size = 16
  c.data.augment = "none"
  c.data.mean = (0.5,)
  c.data.std = (0.5,)  # images in [-1, 1], as the paper's
  c.model = dict(name="ddpm_cifar10", in_chans=1, ch=16, ch_mult=(1, 2), num_res_blocks=1, attn_levels=(1,),
                 num_groups=4, dropout=0.1)
  c.diffusion = diffusion_defaults(sampler=args.sampler, ddim_steps=50, grid_samples=64, fid_samples=300,
                                   sample_batch=300)
  c.batch_size = 32
  c.num_steps = args.steps or 5000
  c.optimizer.update(name="adam", lr=1e-3, b1=0.9, b2=0.999, eps=1e-8, weight_decay=0.0, clip_grad_norm=1.0,
                     wd_exclude=())
  c.schedule.update(name="constant", warmup_steps=100)
  c.ema_decay = 0.995
  c.log_every = 100
  c.eval_every = 0
  c.checkpoint_every = 500
  if args.smoke:
    c.model.update(ch=8, ch_mult=(1, 2), num_groups=4)
    c.diffusion.update(num_timesteps=20, ddim_steps=4, grid_samples=4, fid_samples=0, sample_batch=8)
    c.batch_size = 16
    c.num_steps = 4
    c.schedule.warmup_steps = 1
    c.log_every = 2
    c.checkpoint_every = 4
  return c.lock()
