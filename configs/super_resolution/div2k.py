"""The papers' SR recipes on DIV2K / DF2K (DAT, ICCV 2023; ATD, CVPR 2024; SwinIR, ICCVW 2021), evaluated on
Set5 (or any of Set14 / BSD100 / Urban100 / Manga109 unpacked the same way).

  <data_dir>/train/HR/*.png                 DIV2K_train_HR (800 images), or DF2K (DIV2K + Flickr2K, 3,450)
  <data_dir>/train/LR_bicubic/X2/*x2.png    optional: the dataset's own LR images (else MATLAB bicubic here)
  <data_dir>/Set5/HR/*.png (+ LR_bicubic/X2/)
  python -m papers_jax.main --config configs/super_resolution/div2k.py:variant=dat,scale=2 \
      --config.data.data_dir=/data/DF2K --workdir runs/dat_x2

Variants (models/dat.py, atd.py, swinir.py) and their official option files' recipes, all with the L1 loss,
HR patches of 64·scale (LR 64×64) unless noted, random flips and rotations, batch 32 unless noted:
  dat_s, dat, dat_2, dat_light   DF2K; Adam lr 2e-4, β (0.9, 0.99); 500k iterations, lr halved at 250k,
                                 400k, 450k, 475k
  atd                            DF2K; AdamW lr 2e-4, β (0.9, 0.9), no weight decay; 300k iterations, 10k
                                 warm-up, halved at 250k; weight EMA 0.999
  atd_light                      DIV2K; AdamW lr 5e-4, β (0.9, 0.9); 500k, 20k warm-up, halved at 250k,
                                 400k, 450k, 475k, 490k; EMA 0.999
  swinir_classical               DIV2K; LR patches 48×48; Adam lr 2e-4, β (0.9, 0.999); 500k iterations, lr halved
                                 at 250k, 400k, 450k, 475k; EMA 0.999 (KAIR's train_swinir_sr_classical.json)
  swinir_light                   the same with batch 64 and LR patches 64×64 (train_swinir_sr_lightweight.json)
The papers' Set5 / Set14 / BSD100 / Urban100 / Manga109 PSNR and SSIM (Y) are in their tables; none is reproduced
here (no GPU cluster, no DIV2K offline). A run takes days on 4–8 GPUs. `smoke` trains a tiny model on the
bundled photographs instead.

Departures from the papers:
  - ×3 and ×4: the papers fine-tune from the ×2 model (ATD: from the ×2 model's weights, with a shorter
    schedule); here every scale starts from scratch (set `init_from` to the ×2 run to fine-tune).
  - Evaluation on the central crop of each test image of the training patches' size, not the whole image (the
    batches have one shape).
  - The warm-up is linear from 0 (BasicSR's GradualWarmup is linear too; its starting point differs).
"""

from papers_jax.core.config import base_config, parse_arg
from papers_jax.errors import ConfigError
from papers_jax.tasks.super_resolution import default_config

DAT_RECIPE = dict(optimizer=dict(name="adam", lr=2e-4, b1=0.9, b2=0.99), steps=500_000, warmup=0,
                  boundaries=(0.5, 0.8, 0.9, 0.95), ema=0.0, data="DF2K")
RECIPES = {
    "dat_s": DAT_RECIPE, "dat": DAT_RECIPE, "dat_2": DAT_RECIPE, "dat_light": DAT_RECIPE,
    "atd": dict(optimizer=dict(name="adamw", lr=2e-4, b1=0.9, b2=0.9), steps=300_000, warmup=10_000,
                boundaries=(250 / 300,), ema=0.999, data="DF2K"),
    "atd_light": dict(optimizer=dict(name="adamw", lr=5e-4, b1=0.9, b2=0.9), steps=500_000, warmup=20_000,
                      boundaries=(0.5, 0.8, 0.9, 0.95, 0.98), ema=0.999, data="DIV2K"),
    # KAIR's option files for SwinIR (Adam's betas are KAIR's default, (0.9, 0.999)).
  "swinir_classical": DAT_RECIPE | dict(optimizer=dict(name="adam", lr=2e-4, b1=0.9, b2=0.999), ema=0.999,
                                        data="DIV2K", lr_patch=48),
  "swinir_light": DAT_RECIPE | dict(optimizer=dict(name="adam", lr=2e-4, b1=0.9, b2=0.999), ema=0.999,
                                    data="DIV2K", batch=64),
}


def get_config(arg=None):
  args = parse_arg(arg, variant="dat", scale=2, smoke=False)
  if args.variant not in RECIPES:
    raise ConfigError(f"variant={args.variant!r}; choose from {sorted(RECIPES)}")
  recipe = RECIPES[args.variant]
  c = base_config()
  c.task = "super_resolution"
  lr_patch = recipe.get("lr_patch", 64)
  c.super_resolution = default_config(scale=args.scale, hr_crop=lr_patch * args.scale, augment=True)
  c.data.name = "sr_folder"
  c.data.train_split = "train"
  c.data.eval_split = "Set5"
  c.data.image_size = lr_patch * args.scale
  c.model = dict(name=args.variant)
  c.batch_size = recipe.get("batch", 32)
  c.num_steps = recipe["steps"]
  c.optimizer.update(eps=1e-8, weight_decay=0.0, clip_grad_norm=0.0, wd_exclude=(), **recipe["optimizer"])
  c.schedule.update(name="step", boundaries=recipe["boundaries"], decay_factor=0.5, warmup_steps=recipe["warmup"])
  c.ema_decay = recipe["ema"]
  c.log_every = 100
  c.eval_every = 5000
  c.checkpoint_every = 5000
  if args.smoke:  # the bundled photographs and a tiny model: runs offline
    c.data.update(name="photo_crops", crop=48, crops_per_photo=8, channels=3, image_size=48)
    c.data.train_split, c.data.eval_split = "train", "test"
    c.super_resolution.hr_crop = 48 if args.scale in (2, 3, 4) and 48 % args.scale == 0 else 16 * args.scale
    small = dict(embed_dim=32, depths=(2,), num_heads=(2,))
    if args.variant.startswith("atd"):
      small |= dict(window_size=8, category_size=32, num_tokens=8)
    if args.variant.startswith("dat"):
      small |= dict(split_size=(4, 8))
    c.model.update(small)
    c.batch_size = 8
    c.num_steps = 2
    c.schedule.update(warmup_steps=0, boundaries=(0.5,))
    c.log_every = 2
    c.eval_every = 0
    c.checkpoint_every = 2
  return c.lock()
