"""ResNet and plain nets on ImageNet-1k (He et al. 2016, §3.4): the paper's recipe.

  python -m papers_jax.main --config configs/resnet/imagenet.py:variant=50 --workdir runs/resnet50_i1k
  python -m papers_jax.main --config configs/resnet/imagenet.py:variant=34,plain --workdir runs/plain34_i1k
  python -m papers_jax.main --config configs/resnet/imagenet.py:variant=34,shortcut=A --workdir runs/resnet34a_i1k

`variant`: 18, 34, 50, 101, 152; `plain` (18 or 34) drops every shortcut (Table 2, Fig. 4);
`shortcut`: A (zero-padded identity), B (projection where the shape changes; the paper's choice for
50/101/152 and the default here), C (projection everywhere) — Table 3 compares them on ResNet-34.
The recipe: SGD with momentum 0.9, weight decay 1e-4, batch 256, lr 0.1 divided by 10 "when the
error plateaus", up to 60×10^4 iterations, BatchNorm after every conv, no dropout, He init.

Paper (ImageNet val, 10-crop top-1 error): plain-18 27.94%, plain-34 28.54%, ResNet-18 27.88%,
ResNet-34 (A) 25.03% (Table 2); ResNet-34 A/B/C 25.03/24.52/24.19%, ResNet-50 22.85%, ResNet-101
21.75%, ResNet-152 21.43% (Table 3). Not reproduced here. Hardware: 8 GPUs or a TPU slice;
ResNet-50 costs 3 × 4.1 GMAC × 2 × 256 × 600k ≈ 3.8 × 10^18 FLOPs (measure with tools/benchmark.py).
Data: `tfds build imagenet2012 --file_format=array_record` with the ImageNet tars in
<data_dir>/downloads/manual/. `smoke` trains a tiny net for a few steps on the bundled digits, offline.

Departures from the paper:
  - Schedule: lr ÷10 at fixed steps, 25%, 50% and 75% of 600k iterations (≈ epochs 30, 60, 90 of
    120), not by hand when the validation error plateaus.
  - Augmentation: Inception-style random-resized crops (8%–100% area) at 224 with flips, not the
    paper's scale augmentation (shorter side resized to a random size in [256, 480], then a random
    224 crop) with per-pixel mean subtraction and AlexNet's PCA colour augmentation. Inputs are
    normalised by ImageNet's per-channel mean and std.
  - Evaluation: one centre crop (224 of 256), not 10-crop or the fully convolutional multi-scale test.
  - ResNet-50/101/152 are timm's "v1.5" (the stride-2 on the bottleneck's 3×3, not its first 1×1):
    4.1 GMAC for ResNet-50 against the paper's 3.8.
  - BatchNorm statistics over the whole global batch of 256 (the paper does not state its per-GPU
    split); momentum 0.1, eps 1e-5 (torch's). He-normal init over the fan-out; the residual branches'
    last BN starts at 1 as in the paper (`zero_init_last=False`, timm's default is 0).
  - Set explicitly, overriding the base config: no gradient clipping (base: 1.0), weight decay on
    every parameter including BatchNorm's scale and bias (base: excluded), no label smoothing, no warmup.
"""

from papers_jax.core.config import base_config, parse_arg

DEPTHS = (18, 34, 50, 101, 152)


def get_config(arg=None):
  args = parse_arg(arg, variant=50, plain=False, shortcut="B", smoke=False)
  if args.variant not in DEPTHS:
    raise ValueError(f"unknown variant {args.variant!r}; choose a depth from {list(DEPTHS)}")
  if args.plain and args.variant not in (18, 34):
    raise ValueError(f"the paper's plain nets are 18 and 34 layers deep, not {args.variant}")
  if args.shortcut not in ("A", "B", "C"):
    raise ValueError(f"shortcut={args.shortcut!r}; choose A, B or C")
  c = base_config()
  name = f"plain{args.variant}" if args.plain else f"resnet{args.variant}"
  c.model = dict(name=name, num_classes=1000, img_size=224, shortcut=args.shortcut, zero_init_last=False)
  c.data.name = "tfds:imagenet2012"
  c.data.train_split = "train"
  c.data.eval_split = "validation"
  c.data.image_size = 224
  c.data.augment = "inception"
  c.data.crop_pct = 0.875  # mean and std: the model name's (ImageNet's)
  c.batch_size = 256
  c.num_steps = 600_000
  c.optimizer.update(name="sgd", lr=0.1, momentum=0.9, nesterov=False, weight_decay=1e-4, wd_exclude=(),
                     clip_grad_norm=0.0, layer_decay=1.0)
  c.schedule.update(name="step", boundaries=(0.25, 0.5, 0.75), decay_factor=0.1, warmup_steps=0)
  c.label_smoothing = 0.0
  c.data_threads = 16
  c.log_every = 100
  c.eval_every = 10_000
  c.checkpoint_every = 5_000
  c.keep_every = 100_000
  if args.smoke:
    c.model.update(num_classes=10, in_chans=1, img_size=32, width=8, layers=(1, 1, 1, 1))
    c.data.name = "digits"
    c.data.eval_split = "test"
    c.data.image_size = 32
    c.data.augment = "none"
    c.data.mean, c.data.std = (0.5,), (0.5,)
    c.batch_size = 16
    c.num_steps = 6
    c.data_threads = 2
    c.log_every = 2
    c.eval_every = 0
    c.checkpoint_every = 3
  return c.lock()
