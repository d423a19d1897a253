"""The VAE of Kingma & Welling (2014) on binarised MNIST (Fig. 2's MNIST runs).

  tfds build mnist --file_format=array_record   # once, where TFDS can download
  python -m papers_jax.main --config configs/vae/mnist.py --workdir runs/vae_mnist

The paper's model (App. C): an MLP encoder and decoder with one hidden layer of 500 tanh units, a Bernoulli
decoder, a Gaussian q(z|x) with a diagonal covariance, latent dimension 20 (Fig. 2 shows 3 to 200), one
sample of z per image (L = 1), mini-batches of 100. The evaluation reports the test ELBO and the
importance-weighted NLL bound with k = 100 (Burda et al., 2016; not in this paper) in nats per image and bits
per dimension. `smoke` runs the digits demo's tiny network on bundled digits, offline.

Departures from the paper:
- Adam lr 1e-3 instead of Adagrad with a global stepsize from {0.01, 0.02, 0.1}; no weight prior (the
  paper's "small weight decay" corresponding to N(0, I) on the weights).
- A fixed binarisation (pixels above ½) instead of the paper's unstated one; 1,000,000 steps (10^8 training
  images seen, Fig. 2's x-axis end).
- Inherited from the base config and replaced: the cosine schedule (constant here), weight decay (0).
"""

from papers_jax.core.config import base_config, parse_arg


def get_config(arg=None):
  args = parse_arg(arg, smoke=False)
  c = base_config()
  c.task = "vae"
  c.model = dict(name="vae_mlp", likelihood="bernoulli", img_size=28, in_chans=1, latent_dim=20, hidden=500)
  c.vae = dict(binarize_threshold=0.5, eval_k=100, eval_seed=0, vis_examples=16)
  c.data.name = "tfds:mnist"
  c.data.train_split = "train"
  c.data.eval_split = "test"
  c.data.image_size = 28
  c.data.augment = "none"
  c.data.mean = (0.5,)
  c.data.std = (0.5,)
  c.batch_size = 100
  c.num_steps = 1_000_000
  c.optimizer.update(name="adam", lr=1e-3, b1=0.9, b2=0.999, weight_decay=0.0, clip_grad_norm=0.0, wd_exclude=())
  c.schedule.update(name="constant", warmup_steps=0)
  c.log_every = 1000
  c.eval_every = 50_000
  c.checkpoint_every = 50_000
  if args.smoke:  # the digits demo's smoke run (configs/vae/digits.py): bundled data, offline
    c.model.update(latent_dim=4, hidden=16, img_size=32)
    c.data.name = "digits"
    c.data.image_size = 32
    c.vae.update(eval_k=4, vis_examples=4)
    c.batch_size = 16
    c.num_steps = 4
    c.log_every = 2
    c.eval_every = 0
    c.checkpoint_every = 2
  return c.lock()
