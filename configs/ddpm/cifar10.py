"""DDPM on CIFAR-10 (Ho et al. 2020, §4 and Appendix B): the paper's unconditional CIFAR-10 model.

  tfds build cifar10 --file_format=array_record        # once, where there is network access
  python -m papers_jax.main --config configs/ddpm/cifar10.py --workdir runs/ddpm_cifar10

The 35.7M-parameter UNet (`ddpm_cifar10`: base width 128, multipliers (1, 2, 2, 2), two residual blocks
per level, self-attention at 16×16, dropout 0.1), T = 1000 with β linear from 1e-4 to 0.02, L_simple;
Adam lr 2e-4 with a 5000-step linear warm-up, batch 128, 800k steps, gradient clipping at 1, random
horizontal flips, weight EMA 0.9999 used for sampling; ancestral sampling with σ²_t = β_t. The paper
reports FID 3.17 and Inception score 9.46 (50k samples, Inception-v3), which this codebase cannot
measure (no pretrained Inception here; evaluators/fid.py's FID is for the digits only). The paper trained
on a TPU v3-8 (21 steps/s); on one GPU expect days. `smoke` runs a tiny UNet on generated images.

Departures from the paper:
- No FID / Inception score during training (eval/loss and the EMA's sample grids instead).
- bfloat16 is not used: the paper trained in float32, and so does this config (config.dtype).
"""

from papers_jax.core.config import base_config, parse_arg
from papers_jax.tasks.diffusion import default_config as diffusion_defaults


def get_config(arg=None):
  args = parse_arg(arg, smoke=False)
  c = base_config()
  c.task = "diffusion"
  c.data.name = "tfds:cifar10"
  c.data.train_split = "train"
  c.data.eval_split = "test"
  c.data.image_size = 32
  c.data.augment = "flip"
  c.data.mean = (0.5, 0.5, 0.5)
  c.data.std = (0.5, 0.5, 0.5)  # images in [-1, 1]
  c.model = dict(name="ddpm_cifar10", dropout=0.1)
  c.diffusion = diffusion_defaults(sampler="ancestral", variance="beta", grid_samples=64, fid_samples=0,
                                   sample_batch=64)
  c.batch_size = 128
  c.num_steps = 800_000
  c.optimizer.update(name="adam", lr=2e-4, b1=0.9, b2=0.999, eps=1e-8, weight_decay=0.0, clip_grad_norm=1.0,
                     wd_exclude=())
  c.schedule.update(name="constant", warmup_steps=5000)
  c.ema_decay = 0.9999
  c.log_every = 100
  c.eval_every = 50_000
  c.checkpoint_every = 10_000
  if args.smoke:  # generated images stand in for the dataset: runs offline
    c.data.name, c.data.data_dir = "synthetic", None
    # One level (attention at it): every block type but the resampling, which the digits smoke run covers.
    c.model.update(ch=8, ch_mult=(1,), num_res_blocks=1, attn_levels=(0,), num_groups=4)
    c.diffusion.update(num_timesteps=10, grid_samples=4, sample_batch=4)
    c.batch_size = 16
    c.num_steps = 4
    c.schedule.warmup_steps = 1
    c.log_every = 2
    c.eval_every = 0
    c.checkpoint_every = 4
  return c.lock()
