"""AlexNet on ImageNet-1k (Krizhevsky et al. 2012): the paper's network and recipe.

  python -m papers_jax.main --config configs/alexnet/imagenet.py --workdir runs/alexnet_i1k
  python -m papers_jax.main --config configs/alexnet/imagenet.py:variant=torchvision --workdir runs/alexnet_tv

`variant`: paper (`alexnet_paper`: LRN, the two-GPU groups, N(0, 0.01) init with biases 1 in conv2/4/5 and
FC1/FC2) or torchvision (`alexnet`, the single-tower network torchvision ships). The recipe (§5): SGD with
batch 128, momentum 0.9, weight decay 5e-4, lr 0.01 divided by 10 when the validation error stopped
improving (three times), about 90 epochs over the 1.2M images; dropout 0.5 in FC1 and FC2; random 224 crops
of 256 × 256 images with horizontal flips and PCA lighting noise (α ~ N(0, 0.1)).

Paper (ILSVRC-2012 val): top-1 / top-5 error 40.7% / 18.2% for one net (Table 2); 5–6 days on two GTX 580.
Not reproduced here. Hardware: one GPU; 3 × 0.72 GMAC × 2 × 128 per step (models.forward_flops).
Data: `tfds build imagenet2012 --file_format=array_record`. `smoke`: a narrow AlexNet for a few steps on the
bundled digits (1 channel, so no PCA lighting), offline.

Departures from the paper:
  - Schedule: lr ÷10 at fixed steps, 1/3 and 2/3 and 8/9 of 90 epochs (epochs 30, 60 and 80), not by hand
    when the validation error plateaus (core/optim.py has no reduce-on-plateau schedule).
  - Crops: Inception-style random-resized crops (8%–100% area) at 224 with flips, not random 224 crops of a
    256 × 256 image (shorter side to 256, centre crop); inputs normalised by ImageNet's mean and std, not
    only the mean image subtracted. Evaluation: one centre crop, not the average over 10 crops.
  - conv1 has padding 2 on 224 px inputs (55 × 55 maps as in Fig. 2; the paper's 224 without padding does
    not give 55). An adaptive 6 × 6 average pool before FC1 (the identity at 224).
  - Set explicitly, overriding the base config: weight decay on every parameter (base: biases and scales
    excluded), no gradient clipping, no label smoothing, no warmup.
"""

from papers_jax.core.config import base_config, parse_arg

NAMES = {"paper": "alexnet_paper", "torchvision": "alexnet"}
EPOCHS, TRAIN_IMAGES = 90, 1_281_167


def get_config(arg=None):
  args = parse_arg(arg, variant="paper", smoke=False)
  if args.variant not in NAMES:
    raise ValueError(f"unknown variant {args.variant!r}; choose from {sorted(NAMES)}")
  c = base_config()
  c.model = dict(name=NAMES[args.variant], num_classes=1000, img_size=224)
  c.data.name = "tfds:imagenet2012"
  c.data.train_split = "train"
  c.data.eval_split = "validation"
  c.data.image_size = 224
  c.data.augment = "inception"
  c.data.crop_pct = 0.875
  c.data.pca_lighting = 0.1
  c.data.mean = (0.485, 0.456, 0.406)
  c.data.std = (0.229, 0.224, 0.225)
  c.batch_size = 128
  c.num_steps = EPOCHS * TRAIN_IMAGES // 128
  c.optimizer.update(name="sgd", lr=0.01, momentum=0.9, nesterov=False, weight_decay=5e-4, wd_exclude=(),
                     clip_grad_norm=0.0)
  c.schedule.update(name="step", boundaries=(30 / 90, 60 / 90, 80 / 90), decay_factor=0.1, warmup_steps=0)
  c.label_smoothing = 0.0
  c.data_threads = 16
  c.log_every = 100
  c.eval_every = 10_000
  c.checkpoint_every = 5_000
  if args.smoke:
    c.model.update(num_classes=10, in_chans=1, img_size=64, channels=(8, 16, 16, 16, 16), fc_features=32)
    c.data.name = "digits"
    c.data.eval_split = "test"
    c.data.image_size = 64
    c.data.augment = "none"
    c.data.pca_lighting = 0.0
    c.data.mean, c.data.std = (0.5,), (0.5,)
    c.batch_size = 16
    c.num_steps = 4
    c.data_threads = 2
    c.log_every = 2
    c.eval_every = 0
    c.checkpoint_every = 2
  return c.lock()
