"""The degradation experiment (He et al. 2016, Fig. 1 and Fig. 6) on scikit-learn's bundled digits.

  PYTHONPATH=. python tools/resnet_degradation.py        # all four nets, curves in docs/, table printed
  python -m papers_jax.main --config configs/resnet/digits.py:variant=56,plain --workdir runs/plain56_digits

The paper's CIFAR-10 networks (6n+2 layers, widths 16/32/64, option-A shortcuts; `variant` is the
depth, `plain` drops the shortcuts) and its CIFAR recipe (SGD 0.1 with momentum 0.9, weight decay
1e-4 on every weight, lr ÷10 at 50% and 75% of training, no clipping), shrunk to what a shared
2-core CPU finishes: the 1,437 training digits (8×8 grey) upsampled to 16×16, batch 64, 300 steps.
The paper's claim under test: a deeper plain net has a higher *training* error than a shallower one,
while the deeper residual net has a lower or equal one. Measured numbers: README "ResNet".
`smoke` shrinks it to a few steps (n=1).

Departures from the paper (CIFAR-10, §4.2):
  - Data: 1,437 bundled 8×8 digits (upsampled bilinearly to 16×16, one channel, normalised by
    0.5/0.5), not 50k 32×32 CIFAR-10 images; no augmentation (the experiment is about fitting the
    training set); the test error is on the fixed 360 held-out digits.
  - Batch 64 (paper 128), 300 steps with lr ÷10 at steps 150 and 225 (paper 64k steps, ÷10 at
    32k and 48k): the CPU budget. BatchNorm statistics over the whole batch of 64.
  - He-normal init over the fan-out; BatchNorm momentum 0.1 and eps 1e-5 (torch's).
  - Set explicitly, overriding the base config: no gradient clipping (base: 1.0), weight decay on
    every parameter including BatchNorm's scale and bias (base: excluded), no label smoothing.
"""

from papers_jax.core.config import base_config, parse_arg

DEPTHS = (20, 32, 44, 56, 110)


def get_config(arg=None):
  args = parse_arg(arg, variant=20, plain=False, smoke=False)
  if args.variant not in DEPTHS:
    raise ValueError(f"unknown variant {args.variant!r}; choose a depth from {list(DEPTHS)}")
  c = base_config()
  kind = "plain" if args.plain else "resnet"
  c.model = dict(name=f"{kind}{args.variant}_cifar", num_classes=10, in_chans=1, img_size=16)
  c.data.name = "digits"
  c.data.image_size = 16
  c.data.augment = "none"
  c.data.mean = (0.5,)
  c.data.std = (0.5,)
  c.batch_size = 64
  c.num_steps = 300
  c.optimizer.update(name="sgd", lr=0.1, momentum=0.9, nesterov=False, weight_decay=1e-4, wd_exclude=(),
                     clip_grad_norm=0.0, layer_decay=1.0)
  c.schedule.update(name="step", boundaries=(0.5, 0.75), decay_factor=0.1, warmup_steps=0, warmup_shape="linear",
                    warmup_lr_ratio=0.1)
  c.label_smoothing = 0.0
  c.log_every = 10
  c.eval_every = 100
  c.checkpoint_every = 300
  c.async_checkpoint = False
  if args.smoke:
    c.model.update(layers=(1, 1, 1))
    c.batch_size = 32
    c.num_steps = 6
    c.log_every = 2
    c.eval_every = 0
    c.checkpoint_every = 3
  return c.lock()
