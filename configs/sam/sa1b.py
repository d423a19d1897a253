"""SAM on SA-1B (Kirillov et al. 2023, §3, §4 and appendix A "Training algorithm" / "Training recipe"):
the paper's recipe, for a dataset the user prepares.

  python -m papers_jax.main --config configs/sam/sa1b.py --workdir runs/sam_vit_h_sa1b \
      --config.data.data_dir=<sa1b_coco>   # <dir>/annotations/instances_train.json, <dir>/train/<file_name>
  python -m papers_jax.main --config configs/sam/sa1b.py:model=sam_vit_b ...

SA-1B is not bundled and nothing downloads: convert its per-image JSON (RLE masks) to a COCO-format
"instances" file with polygon segmentations (data/scenes.py: CocoSource reads polygons; one category), images
resized so that the longer side is 1024. Model: `sam_vit_h` (or sam_vit_b / sam_vit_l; models/sam.py) at
1024 px, 16×16 patches, 14×14 windows, the neck to 256 channels, 256-d prompts, a 2-layer two-way decoder.
Task (tasks/promptable_segmentation.py): 11 rounds per instance, the first a box (with noise: σ = 10% of
the side, at most 20 px) or a foreground point with equal probability, then points from the error region
with the previous mask logits as the mask prompt, 2 of the rounds without a new point; focal 20 : dice 1,
IoU MSE 1, the minimum loss over the 3 masks for the ambiguous first prompt; up to 64 masks per image
(the paper: per GPU); no augmentation.
Optimiser: AdamW (β 0.9, 0.999), lr 8e-4 after a 250-iteration linear warm-up, ×0.1 at 60k and 86,666 of
90k iterations, weight decay 0.1, layer-wise lr decay 0.8 (ViT-H), batch 256 images.

Departures from the paper:
  - Initialisation: random unless `init_from` gives a params checkpoint (e.g. a converted MAE ViT-H encoder
    or HF's `facebook/sam-vit-huge` via convert/hf_sam.py); the paper starts the image encoder from MAE.
  - No drop path (paper: 0.4 for ViT-H): models/sam.py has none.
  - ViT-B / ViT-L take ViT-H's layer decay 0.8 (the paper tunes its regularisation per size).
  - Data: masks are read as COCO polygons (the conversion from SA-1B's RLE is the user's); images resized to
    1024² squares (data.image_size), not padded from the longer side as the reference preprocessing.
  - Mask prompts for the first round are never given (as the paper); evaluation uses the deterministic
    protocol of the task (farthest-from-boundary clicks), not the paper's 23-dataset suite.
  - Set explicitly, overriding the base config: weight decay on every parameter except biases, LayerNorm
    gains and the position embedding (the paper does not say), no gradient clipping (base: off).
`smoke` trains configs/sam/scenes.py's smoke model for a few steps on the bundled shape scenes, offline.
"""

import os

from papers_jax.core.config import base_config, load, parse_arg
from papers_jax.models.sam import PIXEL_MEAN, PIXEL_STD
from papers_jax.tasks.promptable_segmentation import default_config

LAYER_DECAY = {"sam_vit_b": 0.8, "sam_vit_l": 0.8, "sam_vit_h": 0.8}  # ViT-H's for all


def get_config(arg=None):
  args = parse_arg(arg, model="sam_vit_h", smoke=False)
  if args.model not in LAYER_DECAY:
    raise ValueError(f"model={args.model!r}; SAM's image encoders are {sorted(LAYER_DECAY)}")
  c = base_config()
  c.task = "promptable_segmentation"
  c.model = dict(name=args.model)
  c.data.name = "coco"
  c.data.train_split, c.data.eval_split = "train", "val"
  c.data.image_size = 1024
  c.data.mean, c.data.std = PIXEL_MEAN, PIXEL_STD
  c.promptable_segmentation = default_config(max_prompts=64, rounds=11, eval_rounds=11, mask_only_rounds=2,
                                             box_noise=0.1, box_noise_max=20.0, flip_prob=0.0)
  c.batch_size = 256
  c.num_steps = 90_000
  c.optimizer.update(name="adamw", lr=8e-4, b1=0.9, b2=0.999, weight_decay=0.1, clip_grad_norm=0.0,
                     layer_decay=LAYER_DECAY[args.model], wd_exclude=(r"(^|/)bias$", r"(^|/)scale$", r"pos_embed"))
  c.schedule.update(name="step", warmup_steps=250, boundaries=(60_000 / 90_000, 86_666 / 90_000), decay_factor=0.1)
  c.eval_every = 10_000
  c.checkpoint_every = 2_000
  if args.smoke:
    scenes = load(os.path.join(os.path.dirname(os.path.abspath(__file__)), "scenes.py") + ":smoke=true")
    for key in ("model", "data", "promptable_segmentation", "batch_size", "num_steps"):
      c[key] = scenes[key]
    c.schedule.update(boundaries=(0.5, 0.75), warmup_steps=1)
    c.eval_every, c.checkpoint_every, c.log_every = 0, scenes.checkpoint_every, 1
  return c.lock()
