"""A convolutional VAE with a Gaussian decoder on CIFAR-10, measured in bits per dimension.

  tfds build cifar10 --file_format=array_record   # once, where TFDS can download
  python -m papers_jax.main --config configs/vae/cifar10.py --workdir runs/vae_cifar10

Kingma & Welling's continuous-data model (App. C, Frey Face: a Gaussian p(x|z) with a per-pixel mean and
variance) on 32×32×3 images with `vae_conv` (stride-2 4×4 convolutions 32→16→8→4 with 64/128/256 channels,
latent 128): pixels dequantised with uniform noise and scaled to [0, 1], so the NLL in bits per dimension
(ln 256 per dimension added) compares with other likelihood models on CIFAR-10. Adam lr 1e-3, batch 128. The
test NLL is the importance-weighted bound with k = 100. `smoke` runs the digits demo's tiny conv network.

Departures from the paper (which has no CIFAR-10 experiment; this is its method on CIFAR-10):
- A convolutional encoder / decoder instead of the paper's one-hidden-layer MLPs; ReLU instead of tanh.
- Adam instead of Adagrad, no weight prior; 200 epochs, constant lr.
- Inherited from the base config and replaced: the cosine schedule (constant), weight decay (0).
"""

from papers_jax.core.config import base_config, parse_arg


def get_config(arg=None):
  args = parse_arg(arg, smoke=False)
  c = base_config()
  c.task = "vae"
  c.model = dict(name="vae_conv", likelihood="gaussian", img_size=32, in_chans=3, latent_dim=128,
                 widths=(64, 128, 256))
  c.vae = dict(binarize_threshold=0.5, eval_k=100, eval_seed=0, vis_examples=16)
  c.data.name = "tfds:cifar10"
  c.data.train_split = "train"
  c.data.eval_split = "test"
  c.data.image_size = 32
  c.data.augment = "none"
  c.data.mean = (0.5, 0.5, 0.5)
  c.data.std = (0.5, 0.5, 0.5)
  c.batch_size = 128
  c.num_epochs = 200.0
  c.optimizer.update(name="adam", lr=1e-3, b1=0.9, b2=0.999, weight_decay=0.0, clip_grad_norm=0.0, wd_exclude=())
  c.schedule.update(name="constant", warmup_steps=0)
  c.log_every = 100
  c.eval_every = 10_000
  c.checkpoint_every = 10_000
  if args.smoke:
    c.model.update(latent_dim=4, widths=(4, 8), in_chans=1)
    c.data.name = "digits"
    c.data.mean, c.data.std = (0.5,), (0.5,)
    c.vae.update(eval_k=4, vis_examples=4)
    c.batch_size = 16
    c.num_epochs = 0.0
    c.num_steps = 4
    c.log_every = 2
    c.eval_every = 0
    c.checkpoint_every = 2
  return c.lock()
