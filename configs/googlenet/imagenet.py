"""GoogLeNet (Inception v1, Szegedy et al. 2015) on ImageNet-1k, with its two auxiliary classifiers.

  python -m papers_jax.main --config configs/googlenet/imagenet.py --workdir runs/googlenet_i1k
  python -m papers_jax.main --config configs/googlenet/imagenet.py:variant=torchvision --workdir runs/googlenet_tv

`variant`: paper (`googlenet_paper`: no BatchNorm, LRN, the 5×5 branches, dropout 0.4) or torchvision
(`googlenet`: BatchNorm, a 3×3 conv in the "5×5" branch). The recipe (§6): asynchronous SGD with momentum
0.9, the learning rate decreased by 4% every 8 epochs, the auxiliary losses added with weight 0.3 in training
(discarded at inference), Polyak averaging for the final model, crops of 8%–100% of the image area with
aspect ratios in [3/4, 4/3] and photometric distortions.

Paper (ILSVRC-2014): 10.07% top-5 error for one model with 1 crop (Table 5; 6.67% for the 7-model,
144-crop ensemble). Not reproduced here. 1.5 GMAC per 224 px image (models.forward_flops).
Data: `tfds build imagenet2012 --file_format=array_record`. `smoke`: a few steps on the bundled digits at
32 px, with torchvision's variant whatever `variant` says: its adaptive aux pool works at any size, the
paper's 5×5/3 pool needs 224 px.

Departures from the paper:
  - Optimiser: synchronous SGD with momentum 0.9 on a global batch of 256 at lr 0.1 with weight decay 1e-4
    (the paper's DistBelief ran asynchronous SGD and gives neither its batch, base lr nor weight decay); no
    Polyak averaging; lr × 0.96 every 8 epochs over 120 epochs (the paper does not give its length).
  - Augmentation: random-resized crops (8%–100% area, aspect 3/4–4/3) and flips; not the paper's photometric
    distortions nor its random interpolation methods. One centre crop at evaluation, not 144 crops.
  - Set explicitly, overriding the base config: weight decay on every parameter, no gradient clipping, no
    label smoothing, no warmup.
"""

from papers_jax.core.config import base_config, parse_arg

NAMES = {"paper": "googlenet_paper", "torchvision": "googlenet"}
EPOCHS = 120


def get_config(arg=None):
  args = parse_arg(arg, variant="paper", smoke=False)
  if args.variant not in NAMES:
    raise ValueError(f"unknown variant {args.variant!r}; choose from {sorted(NAMES)}")
  c = base_config()
  c.model = dict(name=NAMES[args.variant], num_classes=1000, img_size=224)
  c.aux_loss_weight = 0.3
  c.data.name = "tfds:imagenet2012"
  c.data.train_split = "train"
  c.data.eval_split = "validation"
  c.data.image_size = 224
  c.data.augment = "inception"
  c.data.crop_pct = 0.875
  c.data.mean = (0.485, 0.456, 0.406)
  c.data.std = (0.229, 0.224, 0.225)
  c.batch_size = 256
  c.num_steps = EPOCHS * 1_281_167 // 256
  c.optimizer.update(name="sgd", lr=0.1, momentum=0.9, nesterov=False, weight_decay=1e-4, wd_exclude=(),
                     clip_grad_norm=0.0)
  c.schedule.update(name="exponential", decay_every=8 / EPOCHS, decay_factor=0.96, warmup_steps=0)
  c.label_smoothing = 0.0
  c.data_threads = 16
  c.log_every = 100
  c.eval_every = 10_000
  c.checkpoint_every = 5_000
  if args.smoke:
    c.model.update(name=NAMES["torchvision"], num_classes=10, in_chans=1, img_size=32)
    c.data.name = "digits"
    c.data.eval_split = "test"
    c.data.image_size = 32
    c.data.augment = "none"
    c.data.mean, c.data.std = (0.5,), (0.5,)
    c.batch_size = 8
    c.num_steps = 2
    c.data_threads = 2
    c.log_every = 1
    c.eval_every = 0
    c.checkpoint_every = 2
  return c.lock()
