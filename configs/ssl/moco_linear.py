"""MoCo's linear classification protocol (He et al. 2020, §4.1; the reference's main_lincls.py): a
linear classifier on the frozen features of a pre-trained encoder.

  python -m papers_jax.main --config configs/ssl/moco_linear.py --workdir runs/moco_v2_linear \
      --config.init_from=runs/moco_v2/checkpoints/<step>/state
  python -m papers_jax.main --config configs/ssl/moco_linear.py:digits --workdir runs/moco_v2_digits_linear \
      --config.init_from=runs/moco_v2_digits/checkpoints/300/state

The encoder is the online (query) backbone of an SSL run (`init_prefix="backbone/"`: its params and
its BatchNorm running statistics, `init_model_state`); a ResNet-50's `fc` (a ViT's `head`) is new.
The encoder is frozen through the optimizer (`optimizer.freeze`: optax.multi_transform with
set_to_zero, so it gets no update and keeps no optimizer state), and the whole model runs as in
evaluation while the classifier trains (`train_in_eval_mode`: the reference's `model.eval()`, so
BatchNorm uses the pre-trained running statistics and never changes them). SGD lr 30, momentum 0.9,
no weight decay, batch 256, 100 epochs with the lr ÷10 at epochs 60 and 80; RandomResizedCrop(224)
+ horizontal flip for training, resize 256 + centre crop 224 for evaluation. Paper: 60.6% (MoCo v1),
67.5% (MoCo v2, 200 epochs) ImageNet top-1 for ResNet-50; not reproduced here.

`digits`: the protocol on the SSL demos' encoder (configs/ssl/moco_v2.py:digits and the other
`digits` recipes build the same ViT; for MoCo v3's add `--config.model.pos_embed=sincos`), the
digits' 360 held-out images for evaluation. `smoke` runs it in seconds from a random encoder.
Precision: the ImageNet protocol computes in bfloat16 (float32 params); `digits` and `smoke` run float32.

Departures from the paper:
- The classifier keeps the model's own init (ResNet: torch's uniform; ViT: zeros), not N(0, 0.01²)
  with zero bias; the frozen encoder still gets a backward pass (its gradients are dropped by the
  optimizer), which costs compute but changes nothing.
- `digits`: no crop or flip (an 8×8 digit is not flip-symmetric and a random-resized crop of it shows
  little), a ViT instead of a ResNet-50; 100 epochs of the 1,437 training digits are 561 steps.
"""

from papers_jax.core.config import base_config, parse_arg

IMAGENET_TRAIN = 1_281_167
# The encoder of the digits recipes (tasks/ssl/recipe.py).
DIGITS_VIT = dict(name="vit_tiny_patch16_224", img_size=16, patch_size=4, in_chans=1, embed_dim=64, depth=4,
                  num_heads=4, mlp_ratio=2.0, global_pool="avg")


def get_config(arg=None):
  args = parse_arg(arg, digits=False, smoke=False)
  c = base_config()
  c.task = "classification"
  c.dtype = "bfloat16"  # compute; params stay float32
  c.model = dict(name="resnet50", num_classes=1000)
  c.init_prefix = "backbone/"
  c.init_model_state = True
  c.init_skip = (r"^fc/", r"^head/")
  c.train_in_eval_mode = True
  c.data.name = "tfds:imagenet2012"
  c.data.train_split, c.data.eval_split = "train", "validation"
  c.data.image_size = 224
  c.data.augment = "inception"
  c.data.crop_pct = 224 / 256
  c.data.mean, c.data.std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
  c.batch_size = 256
  c.num_epochs = 100.0
  c.label_smoothing = 0.0
  c.optimizer.update(name="sgd", lr=30.0, momentum=0.9, nesterov=False, weight_decay=0.0, wd_exclude=(),
                     clip_grad_norm=0.0, layer_decay=1.0, freeze=(r"^(?!fc/|head/)",))
  c.schedule.update(name="step", warmup_steps=0, boundaries=(0.6, 0.8), decay_factor=0.1)
  c.log_every, c.eval_every, c.checkpoint_every = 100, 5_000, 5_000
  if args.digits or args.smoke:
    c.dtype = "float32"
    c.model = dict(DIGITS_VIT, num_classes=10)
    c.data.name = "digits"
    c.data.train_split, c.data.eval_split = "train", "test"
    c.data.image_size = 16
    c.data.augment = "none"
    c.data.mean, c.data.std = (0.5,), (0.5,)
    c.log_every, c.eval_every, c.checkpoint_every = 50, 200, 500
  if args.smoke:
    c.model.update(embed_dim=32, depth=2, num_heads=2)
    c.batch_size = 32
    c.num_epochs, c.num_steps = 0.0, 4
    c.log_every, c.eval_every, c.checkpoint_every = 2, 0, 4
  return c.lock()
