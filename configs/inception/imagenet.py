"""Inception-v3 (Szegedy et al. 2016) on ImageNet-1k at 299 px: the paper's recipe.

  python -m papers_jax.main --config configs/inception/imagenet.py --workdir runs/inception_v3_i1k

The recipe (§8): RMSProp with decay 0.9 and ε = 1.0, lr 0.045 decayed every two epochs by 0.94, gradient
clipping at 2.0, batch 32 on each of 50 replicas (1,600), 100 epochs; label smoothing ε = 0.1 (§7); BatchNorm
in the auxiliary classifier (Inception-v3 = v2 + RMSProp + label smoothing + factorised 7×7 + BN-auxiliary,
Table 3); the aux loss in training only.

Paper (ILSVRC-2012 val, single model, single crop): 21.2% top-1 / 5.6% top-5 error (Table 3: 22.0%/6.1%
in an earlier row; the 21.2/5.6 are the final network's). Not reproduced here. 5.7 GMAC per 299 px image.
Data: `tfds build imagenet2012 --file_format=array_record`. `smoke`: a few steps on the bundled digits at the
architecture's minimum size (75 px), without the aux head, which needs ≥ 299 px.

Departures from the paper:
  - Synchronous training on one global batch of 1,600 (the paper's 50 replicas ran asynchronously) with lr
    0.045 and the paper's schedule counted in steps of that batch; weight decay 4e-5 (TF-slim's; the paper
    gives none).
  - The aux loss weight 0.4 (TF-slim's and torchvision's references; the paper gives none).
  - The layout is the released TF model (torchvision / timm `inception_v3`), with a 5×5 branch in the 35×35
    modules where Table 1 / Fig. 5 factorise it into 3×3s.
  - Augmentation: random-resized crops (8%–100%) and flips; one centre crop (87.5%) at evaluation.
  - Set explicitly, overriding the base config: weight decay on every parameter, no warmup.
"""

from papers_jax.core.config import base_config, parse_arg

EPOCHS, BATCH = 100, 1600


def get_config(arg=None):
  args = parse_arg(arg, smoke=False)
  c = base_config()
  c.model = dict(name="inception_v3", num_classes=1000, img_size=299)
  c.aux_loss_weight = 0.4
  c.label_smoothing = 0.1
  c.data.name = "tfds:imagenet2012"
  c.data.train_split = "train"
  c.data.eval_split = "validation"
  c.data.image_size = 299
  c.data.augment = "inception"
  c.data.crop_pct = 0.875
  c.data.mean = (0.5, 0.5, 0.5)  # the TF model's (x − 0.5) / 0.5
  c.data.std = (0.5, 0.5, 0.5)
  c.batch_size = BATCH
  c.num_steps = EPOCHS * 1_281_167 // BATCH
  c.optimizer.update(name="rmsprop", lr=0.045, momentum=0.9, eps=1.0, weight_decay=4e-5, wd_exclude=(),
                     clip_grad_norm=2.0)
  c.optimizer.decay = 0.9
  c.schedule.update(name="exponential", decay_every=2 / EPOCHS, decay_factor=0.94, warmup_steps=0)
  c.data_threads = 16
  c.log_every = 100
  c.eval_every = 5_000
  c.checkpoint_every = 2_000
  if args.smoke:
    c.model.update(num_classes=10, in_chans=1, img_size=75, aux_logits=False)
    c.aux_loss_weight = 0.0
    c.data.name = "digits"
    c.data.eval_split = "test"
    c.data.image_size = 75
    c.data.augment = "none"
    c.data.mean, c.data.std = (0.5,), (0.5,)
    c.batch_size = 8
    c.num_steps = 2
    c.data_threads = 2
    c.log_every = 1
    c.eval_every = 0
    c.checkpoint_every = 2
  return c.lock()
