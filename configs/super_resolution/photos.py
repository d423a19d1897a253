"""×2 super-resolution on textured crops of the bundled scikit-image photographs (offline; CPU, tens of minutes):
a tiny SwinIR, DAT or ATD against bicubic upscaling.

  python -m papers_jax.main --config configs/super_resolution/photos.py:model=swinir --workdir runs/sr_swinir
  python -m papers_jax.main --config configs/super_resolution/photos.py:model=dat --workdir runs/sr_dat
  python -m papers_jax.main --config configs/super_resolution/photos.py:model=atd --workdir runs/sr_atd

Data ("photo_crops", data/photos.py): 48×48 HR crops of the eight photographs at fixed positions, 256 per photo
from the left 80% of each (train) and 64 per photo from the right 20% (test), of which only the textured ones
are kept (`data.min_texture` = 2: the mean |difference| of neighbouring pixels of the crop's luma is at least
2 grey levels): 1,558 training and 365 test crops (the retina's test strip is all dark background and drops
out). The LR input is MATLAB's bicubic ×1/2 (24×24; data/super_resolution.py). Every evaluation reports PSNR /
SSIM on the Y channel with 2 border pixels cut, of the model and of MATLAB-bicubic upscaling of the same LR.

The models are the papers' architectures at demo size (sized for a shared, loaded 2-core CPU):
  swinir  swinir_light cut to width 32, two RSTBs of 2 Swin blocks, 2 heads, window 8
  dat     dat_light cut to width 32, two residual groups of 2 blocks (a DSTB, then a DCTB), 2 heads,
          windows 8 × 12 and 12 × 8 (24 = 2 · 12: no padding), "1conv"
  atd     atd_light cut to two groups of 2 layers at width 32, 2 heads, window 8, dictionaries of 16 tokens,
          categories of 64 tokens
Steps: `steps` (0: the model's default in STEPS, what fits about 25-60 minutes of a loaded CPU per model).
Measured numbers: docs/super_resolution.md.

Departures from the papers (their recipes: configs/super_resolution/div2k.py):
  - Data: 48×48 crops of eight bundled photographs (LR 24×24), not DIV2K's 800 2K images with 64×64 LR patches
    (SwinIR-light and DAT-light train on 64×64 LR patches too); flat crops dropped from both splits (above);
    evaluation on 48×48 test crops, not whole Set5 / Set14 / Urban100 images.
  - Global bicubic residual (`bicubic_residual=True`, the default here; `bicubic_residual=False` gives the
    papers' models): the model's output is added to the bicubic upscaling of its input and the last convolution
    of the reconstruction starts at zero, so the untrained model is bicubic (tasks/super_resolution.py). None of
    the three papers' code does this; it is VDSR's residual learning, for runs of a few thousand steps.
  - Models: the lightweight variants cut in width and depth (listed above), with smaller windows, dictionaries
    and categories for 24×24 inputs.
  - Recipe: Adam lr 5e-4, β (0.9, 0.99), cosine decay with 40 warm-up steps, batch 8, 500-2,000 steps (papers:
    Adam 2e-4 (AdamW 5e-4 for ATD-light), halved at 50/80/90/95% of 300k–500k iterations, batch 32; no
    weight EMA).
  - Set explicitly, overriding the base config: no weight decay (base: 1e-4), no gradient clipping.
`smoke` shrinks the model and the run to a few steps.
"""

from papers_jax.core.config import base_config, parse_arg
from papers_jax.tasks.super_resolution import default_config

MODELS = {
    "swinir": dict(name="swinir_light", embed_dim=32, depths=(2, 2), num_heads=(2, 2), window_size=8),
    "dat": dict(name="dat_light", embed_dim=32, depths=(2, 2), num_heads=(2, 2), split_size=(8, 12),
                resi_connection="1conv"),
    "atd": dict(name="atd_light", embed_dim=32, depths=(2, 2), num_heads=(2, 2), window_size=8, category_size=64,
                num_tokens=16),
}
MIN_TEXTURE = 2.0  # grey levels of mean |neighbour difference| of the HR crop's luma (data/photos.py `texture`)
STEPS = {"swinir": 2000, "dat": 500, "atd": 800}
SMOKE = {"swinir": dict(embed_dim=16, depths=(2,), num_heads=(2,)),
         "dat": dict(embed_dim=32, depths=(2,), num_heads=(2,)),
         "atd": dict(embed_dim=16, depths=(2,), num_heads=(2,), num_tokens=8)}


def get_config(arg=None):
  args = parse_arg(arg, model="swinir", smoke=False, bicubic_residual=True, steps=0)
  if args.model not in MODELS:
    from papers_jax.errors import ConfigError
    raise ConfigError(f"model={args.model!r}; choose from {sorted(MODELS)}")
  c = base_config()
  c.task = "super_resolution"
  c.super_resolution = default_config(scale=2, hr_crop=48, augment=True, bicubic_residual=args.bicubic_residual)
  c.data.name = "photo_crops"
  c.data.crop = 48
  c.data.crops_per_photo = 256
  c.data.min_texture = MIN_TEXTURE
  c.data.channels = 3
  c.data.image_size = 48
  c.model = dict(MODELS[args.model])
  c.batch_size = 8
  c.num_steps = args.steps or STEPS[args.model]
  c.optimizer.update(name="adam", lr=5e-4, b1=0.9, b2=0.99, eps=1e-8, weight_decay=0.0, clip_grad_norm=0.0,
                     wd_exclude=())
  c.schedule.update(name="cosine", warmup_steps=40)
  c.log_every = 20
  c.eval_every = 100
  c.checkpoint_every = 100
  c.async_checkpoint = False
  if args.smoke:
    c.model.update(SMOKE[args.model])
    c.data.crops_per_photo = 8
    c.batch_size = 8
    c.num_steps = 2
    c.schedule.warmup_steps = 0
    c.log_every = 2
    c.eval_every = 0
    c.checkpoint_every = 2
  return c.lock()
