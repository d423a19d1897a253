"""MixNet-S/M/L (Tan & Le, BMVC 2019) on ImageNet-1k: the MnasNet recipe the paper follows.

  python -m papers_jax.main --config configs/mixnet/imagenet.py:variant=s --workdir runs/mixnet_s_i1k

`variant`: s, m or l (timm's `mixnet_s` / `mixnet_m` / `mixnet_l`). The recipe (§5, "same settings as
MnasNet"): RMSProp with decay 0.9 and momentum 0.9, BatchNorm momentum 0.99, weight decay 1e-5, lr 0.256 for a
batch of 4K rising linearly over the first 5 epochs, then × 0.97 every 2.4 epochs, 350 epochs, 224 px.

Paper (ImageNet top-1): MixNet-S 75.8%, MixNet-M 77.0%, MixNet-L 78.9% (Table 2). Not reproduced here.
Data: `tfds build imagenet2012 --file_format=array_record`. `smoke`: MixNet-S for a few steps on the
bundled digits at 32 px, offline.

Departures from the paper:
  - BatchNorm is torch's (momentum 0.1, i.e. TF's 0.9, and eps 1e-5) as timm builds these nets, not TF's 0.99
    and 1e-3; synchronous over the whole global batch.
  - RMSProp's ε = 1e-3 inside the square root (TF's default; the paper does not give it); weight decay added
    to the gradient as L2, on every parameter.
  - No AutoAugment, dropout or stochastic depth (the MnasNet recipe has dropout 0.2 before the classifier
    in some releases; timm's mixnet_s/m/l have none by default). Inception-style random-resized crops with
    flips; one centre crop at evaluation.
  - Set explicitly, overriding the base config: no gradient clipping, no label smoothing.
"""

from papers_jax.core.config import base_config, parse_arg

EPOCHS, BATCH = 350, 4096


def get_config(arg=None):
  args = parse_arg(arg, variant="s", smoke=False)
  if args.variant not in ("s", "m", "l"):
    raise ValueError(f"unknown variant {args.variant!r}; choose s, m or l")
  c = base_config()
  c.model = dict(name=f"mixnet_{args.variant}", num_classes=1000, img_size=224)
  c.data.name = "tfds:imagenet2012"
  c.data.train_split = "train"
  c.data.eval_split = "validation"
  c.data.image_size = 224
  c.data.augment = "inception"
  c.data.crop_pct = 0.875
  c.data.mean = (0.485, 0.456, 0.406)
  c.data.std = (0.229, 0.224, 0.225)
  c.batch_size = BATCH
  steps_per_epoch = 1_281_167 // BATCH
  c.num_steps = EPOCHS * steps_per_epoch
  c.optimizer.update(name="rmsprop", lr=0.256, momentum=0.9, eps=1e-3, weight_decay=1e-5, wd_exclude=(),
                     clip_grad_norm=0.0)
  c.optimizer.decay = 0.9
  c.schedule.update(name="exponential", decay_every=2.4 / EPOCHS, decay_factor=0.97,
                    warmup_steps=5 * steps_per_epoch)
  c.label_smoothing = 0.0
  c.data_threads = 16
  c.log_every = 100
  c.eval_every = 5_000
  c.checkpoint_every = 2_000
  if args.smoke:
    c.model.update(num_classes=10, in_chans=1, img_size=32)
    c.data.name = "digits"
    c.data.eval_split = "test"
    c.data.image_size = 32
    c.data.augment = "none"
    c.data.mean, c.data.std = (0.5,), (0.5,)
    c.batch_size = 8
    c.num_steps = 2
    c.schedule.warmup_steps = 0
    c.data_threads = 2
    c.log_every = 1
    c.eval_every = 0
    c.checkpoint_every = 2
  return c.lock()
