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

import os

from papers_jax.core.config import load, parse_arg


def get_config(arg=None):
  """configs/gan/dcgan_mnist.py (the same recipe and `smoke`) on 3-channel CIFAR-10."""
  args = parse_arg(arg, smoke=False)
  c = load(os.path.join(os.path.dirname(os.path.abspath(__file__)), "dcgan_mnist.py") + (":smoke" if args.smoke else ""))
  if args.smoke:
    return c
  c = c.unlock()
  c.model.in_chans = 3
  c.data.name = "tfds:cifar10"
  c.data.mean = (0.5, 0.5, 0.5)
  c.data.std = (0.5, 0.5, 0.5)
  return c.lock()
