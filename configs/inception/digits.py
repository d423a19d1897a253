"""Inception-v3 on scikit-learn's bundled digits, upsampled to 75 × 75 (the architecture's minimum size): a demo
that the network and its recipe train.

  python -m papers_jax.main --config configs/inception/digits.py --workdir runs/inception_v3_digits

The full Inception-v3 (`inception_v3`, 10 classes, one input channel) with label smoothing 0.1 on the
1,437 training digits; test accuracy on the 360 held-out digits. `optimizer=rmsprop` is the paper's optimiser
(RMSProp, decay 0.9, ε = 1.0, gradient clipping 2.0, lr 0.045 × 0.94 every 10% of training, weight decay
4e-5); the default is Adam (see below). Measured numbers: docs/cnn_classics.md. `smoke`: two steps.

Departures from the paper:
  - Data: 8×8 grey digits upsampled bilinearly to 75 × 75, not 299 px ImageNet crops; no augmentation.
  - No auxiliary classifier: it needs a 17 × 17 grid (299 px inputs); at 75 px Mixed_6e's map is 3 × 3.
  - Adam (lr 1e-4, no weight decay, no clipping, constant lr) by default, not the paper's RMSProp: with
    RMSProp (`optimizer=rmsprop`, 60 steps of batch 16) the training loss stayed at 7.0–7.5 and the test
    accuracy ended at 7.5% (test loss 43): the init's classifier (N(0, 0.1) over 2,048 features) starts with
    logits of several units and a gradient norm of about 6,000 (2,400 by step 60), which the clipping at 2.0
    scales down to almost nothing.
  - 300 steps of batch 16, about 3.3 epochs (the paper: batch 32 per replica over 100 epochs; here the
    shared 2-core CPU's budget); no warmup.
"""

from papers_jax.core.config import base_config, parse_arg


def get_config(arg=None):
  args = parse_arg(arg, optimizer="adam", smoke=False)
  if args.optimizer not in ("adam", "rmsprop"):
    raise ValueError(f"optimizer={args.optimizer!r}; choose adam (the demo's) or rmsprop (the paper's)")
  c = base_config()
  c.model = dict(name="inception_v3", num_classes=10, in_chans=1, img_size=75, aux_logits=False)
  c.label_smoothing = 0.1
  c.data.name = "digits"
  c.data.image_size = 75
  c.data.augment = "none"
  c.data.mean = (0.5,)
  c.data.std = (0.5,)
  c.batch_size = 16
  c.num_steps = 300
  if args.optimizer == "rmsprop":
    c.num_steps = 60
    c.optimizer.update(name="rmsprop", lr=0.045, momentum=0.9, eps=1.0, weight_decay=4e-5, wd_exclude=(),
                       clip_grad_norm=2.0)
    c.optimizer.decay = 0.9
    c.schedule.update(name="exponential", decay_every=0.1, decay_factor=0.94, warmup_steps=0)
  else:
    c.optimizer.update(name="adam", lr=1e-4, weight_decay=0.0, wd_exclude=(), clip_grad_norm=0.0)
    c.schedule.update(name="constant", warmup_steps=0)
  c.log_every = 10
  c.eval_every = 100
  c.checkpoint_every = 300
  c.async_checkpoint = False
  if args.smoke:
    c.batch_size = 8
    c.num_steps = 2
    c.log_every = 1
    c.eval_every = 0
    c.checkpoint_every = 2
  return c.lock()
