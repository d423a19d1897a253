"""DCGAN on scikit-learn's bundled digits upsampled to 16×16: the GAN demo.

  python -m papers_jax.main --config configs/gan/dcgan_digits.py --workdir runs/dcgan_digits

The 1,437 training digits (8×8, bilinear to 16×16, grey) train `dcgan_16` (G: z 100 → 4×4×64 → 8×8×32 →
16×16×1; D mirrored, 32/64 channels) with two optimizer phases per step (tasks/gan.py): the discriminator,
then the generator with the non-saturating loss, each with Adam lr 2e-4, β1 = 0.5, β2 = 0.999, no weight
decay, constant schedule, batch 64, 2,000 steps (~90 epochs). At each evaluation, 300 samples from fixed noise
are scored with the digits FID against the train split, beside the Gaussian-noise baseline and the held-out
test split (tasks/gan.py), and a grid of the first 64 goes to <workdir>/samples/. Measured on the 2-core CPU
under a load of ~25 (other jobs): 605 s for the whole run, 195–315 examples/s; docs/generative.md has the
samples, the phases' metrics and the FID.

Departures from the paper (DCGAN's recipe on LSUN / ImageNet / faces at 64×64, batch 128):
- 16×16 one-channel digits (two stages fewer than the paper's 64×64; 16 px keeps the demo to minutes on a
  2-core CPU), half-width networks (g_width = d_width = 32 against the paper's 64), batch 64, 2,000 steps.
- Each phase's section (config.phases.discriminator / .generator) copies config.optimizer / config.schedule,
  set here; the base config's label smoothing does not apply to this task.
"""

from papers_jax.core.config import base_config, parse_arg, phase_sections

ADAM = {"name": "adam", "lr": 2e-4, "b1": 0.5, "b2": 0.999, "weight_decay": 0.0, "clip_grad_norm": 0.0,
        "wd_exclude": ()}


def get_config(arg=None):
  args = parse_arg(arg, smoke=False)
  c = base_config()
  c.task = "gan"
  c.model = dict(name="dcgan_16", z_dim=100, in_chans=1, g_width=32, d_width=32)
  c.gan = dict(generator_loss="non_saturating", vis_examples=64, sample_seed=0, fid_samples=300)
  c.data.name = "digits"
  c.data.image_size = 16
  c.data.augment = "none"
  c.data.mean = (0.5,)
  c.data.std = (0.5,)
  c.batch_size = 64
  c.num_steps = 2000
  # Both phases copy config.optimizer / config.schedule (core/config.py: phase_sections); each may then differ.
  c.optimizer.update(ADAM)
  c.schedule.update(name="constant", warmup_steps=0)
  c.phases = phase_sections(c, discriminator={}, generator={})
  c.log_every = 100
  c.eval_every = 500
  c.checkpoint_every = 500
  if args.smoke:
    c.model.update(z_dim=16, g_width=8, d_width=8)
    c.gan.update(vis_examples=4, fid_samples=0)
    c.batch_size = 16
    c.num_steps = 4
    c.log_every = 2
    c.checkpoint_every = 2
  return c.lock()
