"""Linear probing of an MAE-pre-trained ViT on ImageNet-1k (He et al. 2022, Appendix A.2, Table 10).

  python -m papers_jax.main --config configs/mae/linprobe.py:variant=B/16 --workdir runs/mae_b16_lin \
      --config.init_from=runs/mae_b16/checkpoints/<step>/state

The whole encoder (final norm included) is frozen: `frozen_blocks = depth` stops its gradient, so with
no weight decay LARS leaves it unchanged;
the class token after the pre-trained final norm feeds BatchNorm without affine parameters
(eps 1e-6) and a linear head drawn from N(0, 0.01²). LARS (momentum 0.9, trust coefficient 1e-3,
no weight decay), lr = 0.1 × batch / 256 (6.4 at batch 16384), 10 warm-up epochs then cosine,
90 epochs, RandomResizedCrop + flip, no mixup or label smoothing.
Paper (1600-epoch pre-training): 68.0 / 75.8 / 76.6% top-1 (B / L / H); not reproduced here.
Data: tfds imagenet2012 (see configs/mae/pretrain.py). `smoke` shrinks everything to seconds, on generated images (no
dataset needed).
Precision: bfloat16 compute with float32 params and float32 softmax, norms and losses;
`--config.dtype=float32` for full precision. `smoke` keeps bfloat16.

Departures from the paper:
- The crop is this codebase's Inception crop (bilinear), not compared pixel for pixel with the
  reference's RandomResizedCrop (bicubic).
"""

from papers_jax.core.config import base_config, parse_arg, synthetic_smoke
from papers_jax.tasks.mae import ENCODER_INIT_SKIP

IMAGENET_TRAIN = 1_281_167
VARIANTS = {"B/16": ("vit_base_patch16_224", 12), "L/16": ("vit_large_patch16_224", 24),
            "H/14": ("vit_huge_patch14_224", 32)}


def get_config(arg=None):
  args = parse_arg(arg, variant="B/16", batch=16384, epochs=90, smoke=False)
  if args.variant not in VARIANTS:
    raise ValueError(f"unknown variant {args.variant!r}; choose from {sorted(VARIANTS)}")
  name, depth = VARIANTS[args.variant]
  c = base_config()
  c.dtype = "bfloat16"  # compute; params stay float32
  c.model = dict(name=name, num_classes=1000, global_pool="token", pos_embed_init="sincos", head_norm="batchnorm",
                 head_init_std=0.01, frozen_blocks=depth)
  c.init_skip = ENCODER_INIT_SKIP
  c.data.name = "tfds:imagenet2012"
  c.data.train_split = "train"
  c.data.eval_split = "validation"
  c.data.image_size = 224
  c.data.augment = "inception"
  c.data.crop_pct = 0.875  # the reference's 224 of 256
  c.data.mean = (0.485, 0.456, 0.406)  # the encoder's pre-training normalisation, not the ViT name's
  c.data.std = (0.229, 0.224, 0.225)
  c.batch_size = args.batch
  c.num_epochs = float(args.epochs)
  # No weight decay at all; the exclusions also keep biases out of LARS's trust ratio (the reference's LARS: ndim > 1).
  c.optimizer.wd_exclude = (r"(^|/)bias$", r"(^|/)scale$", r"pos_embed", r"cls_token")
  c.optimizer.update(name="lars", lr=0.1 * args.batch / 256, momentum=0.9, trust_coefficient=0.001,
                     weight_decay=0.0, clip_grad_norm=0.0)
  c.schedule.update(name="cosine", warmup_steps=10 * IMAGENET_TRAIN // args.batch, end_lr_ratio=0.0)
  c.mesh.update(data=-1, fsdp=1, tensor=1)
  c.data_threads = 16
  c.log_every = 20
  c.eval_every = 1_000
  c.checkpoint_every = 1_000
  if args.smoke:  # generated images stand in for the dataset: runs offline
    synthetic_smoke(c, 32, steps=4, warmup_steps=1, checkpoint_every=4)
    c.model.update(img_size=32, patch_size=8, embed_dim=32, depth=2, num_heads=2, num_classes=10, frozen_blocks=2)
  return c.lock()
