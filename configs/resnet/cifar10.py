"""ResNet and plain nets on CIFAR-10 (He et al. 2016, §4.2): the paper's recipe.

  python -m papers_jax.main --config configs/resnet/cifar10.py:variant=20 --workdir runs/resnet20_cifar10
  python -m papers_jax.main --config configs/resnet/cifar10.py:variant=56,plain --workdir runs/plain56_cifar10

`variant` is the depth 6n+2 (20, 32, 44, 56, 110); `plain` drops every shortcut (Fig. 6 left).
The networks of §4.2 (`resnet{20,32,44,56,110}_cifar`, 0.27M/0.46M/0.66M/0.85M/1.7M parameters):
a 3×3 conv with 16 filters, 3 stages of n basic blocks at widths 16/32/64, option-A (zero-padded,
subsampled identity) shortcuts, global average pooling, a 10-way classifier. The recipe: SGD with
momentum 0.9 and weight decay 1e-4 on every weight, batch 128 over two GPUs (BatchNorm statistics per
64 images here too, `bn_group_size=64`), lr 0.1 divided by 10 at 32k and 48k iterations, 64k
iterations, no dropout, He init; 4-pixel zero padding, a random 32×32 crop and a horizontal flip;
the 50k training images, tested on the 10k test images. ResNet-110 first trains at lr 0.01 for 400
iterations (the paper: until the training error is below 80%, "about 400 iterations"), then 0.1.

Paper (Table 6, test error): ResNet-20 8.75%, ResNet-32 7.51%, ResNet-44 7.17%, ResNet-56 6.97%,
ResNet-110 6.43% (best of 5 runs; 6.61 ± 0.16 mean ± std). The plain nets appear only in Fig. 6:
the deeper they are, the higher their training error. Not reproduced here yet. Hardware: one GPU;
ResNet-110 costs 3 × 0.25 GMAC × 128 × 64k ≈ 1.2 × 10^16 FLOPs (measure with tools/benchmark.py).
Data: `tfds build cifar10 --file_format=array_record`. `smoke` trains a tiny net (n=1) for a few
steps on scikit-learn's bundled digits at 32×32, offline.

Departures from the paper:
  - Inputs are normalised by the per-channel mean and std of CIFAR-10, not by subtracting the
    per-pixel mean image.
  - He-normal init over the fan-out (torch's `kaiming_normal_(mode="fan_out")`); the paper cites
    He et al. 2015 without naming the fan. The classifier uses torch's default uniform init.
  - BatchNorm: momentum 0.1 and eps 1e-5 (torch's); the paper does not state them.
  - No 45k/5k validation split: the paper used one only to choose the schedule.
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
  c.model = dict(name=f"{kind}{args.variant}_cifar", num_classes=10, img_size=32, bn_group_size=64)
  c.data.name = "tfds:cifar10"
  c.data.train_split = "train"
  c.data.eval_split = "test"
  c.data.image_size = 32
  c.data.augment = "cifar"  # pad 4, random 32×32 crop, horizontal flip
  c.data.mean = (0.4914, 0.4822, 0.4465)
  c.data.std = (0.2470, 0.2435, 0.2616)
  c.batch_size = 128
  c.num_steps = 64_000
  c.optimizer.update(name="sgd", lr=0.1, momentum=0.9, nesterov=False, weight_decay=1e-4, wd_exclude=(),
                     clip_grad_norm=0.0, layer_decay=1.0)
  c.schedule.update(name="step", boundaries=(0.5, 0.75), decay_factor=0.1, warmup_steps=0)  # ÷10 at 32k, 48k
  if args.variant == 110:
    c.schedule.update(warmup_steps=400, warmup_shape="constant", warmup_lr_ratio=0.1)  # lr 0.01, then 0.1
  c.label_smoothing = 0.0
  c.log_every = 100
  c.eval_every = 4_000
  c.checkpoint_every = 4_000
  if args.smoke:
    c.model.update(layers=(1, 1, 1), in_chans=1, bn_group_size=None)
    c.data.name = "digits"
    c.data.mean, c.data.std = (0.5,), (0.5,)
    c.batch_size = 32
    c.num_steps = 6
    c.schedule.warmup_steps = min(c.schedule.warmup_steps, 2)
    c.log_every = 2
    c.eval_every = 0
    c.checkpoint_every = 3
  return c.lock()
