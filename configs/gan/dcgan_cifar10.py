"""DCGAN (Radford et al., 2016) on CIFAR-10 at 32×32, with the paper's training recipe.

  tfds build cifar10 --file_format=array_record   # once, where TFDS can download
  python -m papers_jax.main --config configs/gan/dcgan_cifar10.py --workdir runs/dcgan_cifar10

The paper's recipe (§4): Adam lr 2e-4, β1 = 0.5 for both networks, mini-batches of 128, weights from
N(0, 0.02), LeakyReLU 0.2 in D, BatchNorm in both nets but G's output and D's input, images scaled to
[−1, 1] (tanh); the non-saturating generator loss. One discriminator step, then one generator step, per
batch (tasks/gan.py). Hardware: one GPU; the paper reports no CIFAR-10 sample-quality number (it uses
CIFAR-10 to evaluate an ImageNet-trained D's features). `smoke` runs the digits demo's tiny network on
bundled digits at 32×32, offline.

Departures from the paper:
- `dcgan_32`: the 64×64 architecture with one stage fewer (G: z 100 → 4×4×256 → 8×8×128 → 16×16×64 →
  32×32×3; D: 64, 128, 256 channels); the paper trains at 64×64 (LSUN, ImageNet-1k, faces), which is
  `model.name = "dcgan_64"` with data.image_size = 64.
- 25 epochs (PyTorch's DCGAN example; the paper gives no epoch count for CIFAR-10), constant lr.
- No bias in the convolutions and BatchNorm scales from N(1, 0.02), as the authors' code.
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
  c.model = dict(name="dcgan_32", z_dim=100, in_chans=3, g_width=64, d_width=64)
  c.gan = dict(generator_loss="non_saturating", vis_examples=64, sample_seed=0)
  c.data.name = "tfds:cifar10"
  c.data.train_split = "train"
  c.data.eval_split = "test"
  c.data.image_size = 32
  c.data.augment = "none"
  c.data.mean = (0.5, 0.5, 0.5)
  c.data.std = (0.5, 0.5, 0.5)
  c.batch_size = 128
  c.num_epochs = 25.0
  # Both phases copy config.optimizer / config.schedule (core/config.py: phase_sections); each may then differ.
  c.optimizer.update(ADAM)
  c.schedule.update(name="constant", warmup_steps=0)
  c.phases = phase_sections(c, discriminator={}, generator={})
  c.log_every = 100
  c.eval_every = 2000
  c.checkpoint_every = 2000
  if args.smoke:  # the digits demo's smoke run (configs/gan/dcgan_digits.py): bundled data, offline
    c.model.update(z_dim=16, g_width=8, d_width=8, in_chans=1)
    c.data.name = "digits"
    c.data.mean, c.data.std = (0.5,), (0.5,)
    c.gan.vis_examples = 4
    c.batch_size = 16
    c.num_epochs = 0.0
    c.num_steps = 4
    c.log_every = 2
    c.eval_every = 0
    c.checkpoint_every = 2
  return c.lock()
