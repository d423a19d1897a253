"""VQ-VAE on scikit-learn's bundled digits, upsampled to 16×16: the CPU demo.

  python -m papers_jax.main --config configs/vqvae/digits.py --workdir runs/vqvae_digits

The paper's image model (models/vqvae.py) at demo size: two 4×4 stride-2 convolutions to 4×4 latents,
64 hidden units, 32 codes of dimension 16, β = 0.25; `ema=1` uses the EMA codebook (γ = 0.99) with
dead-code restarts. Reconstructions go to reconstructions/ and TensorBoard; eval/perplexity and
eval/codebook_usage show how much of the codebook is used; eval/fid_reconstructions is the digits FID of the
test split's reconstructions, beside the Gaussian baseline; configs/vqvae/prior_digits.py trains the prior
over its codes that gives samples. `smoke` shrinks it to seconds.

Departures from the paper (a CPU demo, not one of its experiments):
- 16×16 digits instead of CIFAR-10 / ImageNet; 64 hidden units (paper 256), K = 32 codes (paper 512),
  D = 16; the decoder upsamples with nearest ×2 + 3×3 conv instead of transposed convolutions.
- Adam lr 1e-3 with batch 64 for 1500 steps (the paper: lr 2e-4, batch 128, 250k steps); no gradient
  clipping and no weight decay, as the paper.
"""

from papers_jax.core.config import base_config, parse_arg
from papers_jax.tasks.vqvae import default_config as vqvae_defaults


def get_config(arg=None):
  args = parse_arg(arg, smoke=False, ema=False, steps=0)
  c = base_config()
  c.task = "vqvae"
  c.data.name = "digits"
  c.data.image_size = 16
  c.data.augment = "none"
  c.data.mean = (0.5,)
  c.data.std = (0.5,)
  c.model = dict(name="vqvae", in_chans=1, hidden=64, res_hidden=32, num_codes=32, code_dim=16,
                 ema_decay=0.99 if args.ema else 0.0, restart_threshold=0.01 if args.ema else 0.0)
  c.vqvae = vqvae_defaults(vis_examples=10, fid=True)
  c.batch_size = 64
  c.num_steps = args.steps or 1500
  c.optimizer.update(name="adam", lr=1e-3, weight_decay=0.0, clip_grad_norm=0.0, wd_exclude=())
  c.schedule.update(name="constant", warmup_steps=0)
  c.log_every = 100
  c.eval_every = 0
  c.checkpoint_every = c.num_steps
  if args.smoke:
    c.model.update(hidden=8, res_hidden=4, num_codes=8, code_dim=4)
    c.vqvae.fid = False
    c.batch_size = 16
    c.num_steps = 4
    c.log_every = 2
    c.checkpoint_every = 4
  return c.lock()
