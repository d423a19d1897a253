"""DCGAN on scikit-learn's bundled digits at their native 8×8, scored at 16×16: the GAN demo.

  python -m papers_jax.main --config configs/gan/dcgan_digits.py --workdir runs/dcgan_digits

The 1,437 training digits (8×8, grey, scaled to [−1, 1]) train DCGAN at 8×8 (`dcgan_32` with img_size=8:
G: z 100 → 4×4×64 → 8×8×1 with tanh; D: 8×8×1 → 4×4×64 → logit; BatchNorm in G's hidden layer, none on G's
output or D's input layer, which is D's only hidden layer; ReLU / LeakyReLU 0.2; N(0, 0.02) init) with two
optimizer phases per step (tasks/gan.py): the discriminator, then the generator with the non-saturating loss,
each with Adam lr 2e-4, β1 = 0.5, β2 = 0.999, no weight decay, constant schedule, batch 64, 6,000 steps
(~270 epochs). Samples come from an EMA of the weights (decay 0.999; BatchNorm on the sample batch's own
statistics). At each evaluation, 300 samples from fixed noise are resized to 16×16 exactly as the data
pipeline resizes the real digits (bilinear) and scored with the digits FID against the 16×16 train split,
beside the Gaussian-noise baseline and the held-out test split: the protocol of the VAE, DDPM and VQ-VAE
demos. A grid of the first 64 goes to <workdir>/samples/. docs/generative.md has the runs and their numbers,
and why 8×8 and the EMA.

Departures from the paper (DCGAN's recipe on LSUN / ImageNet / faces at 64×64, batch 128):
- 8×8 one-channel digits (three stages fewer than the paper's 64×64: the digits' native size; at 16×16, the
  digits upsampled, the same recipe stayed above the Gaussian baseline, 13.09 at 2,000 steps), so each
  network has one hidden layer; 64 channels; batch 64; 6,000 steps.
- Samples from an exponential moving average of the weights (decay 0.999, core/step.py's weight EMA), not in
  the paper (Yazıcı et al., 2019): the raw generator's FID swings between 6.8 and 18.8 from one evaluation to
  the next of the same run, the EMA's stays at 6.4–6.9 after step 3,500. Training itself is unchanged.
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
  c.model = dict(name="dcgan_32", img_size=8, z_dim=100, in_chans=1, g_width=64, d_width=64)
  c.gan = dict(generator_loss="non_saturating", vis_examples=64, sample_seed=0, fid_samples=300, fid_image_size=16)
  c.data.name = "digits"
  c.data.image_size = 8
  c.data.augment = "none"
  c.data.mean = (0.5,)
  c.data.std = (0.5,)
  c.batch_size = 64
  c.num_steps = 6000
  c.ema_decay = 0.999
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
