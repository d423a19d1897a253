"""Deformable DETR on the bundled generated shapes scenes: a CPU demo of the model and its focal set loss, from scratch.

  python -m papers_jax.main --config configs/deformable_detr/scenes.py --workdir runs/ddetr_scenes
  PYTHONPATH=$PWD python tools/detection_baseline.py --data shapes_scenes --boxes 12   # the image-blind baseline

Loads configs/deformable_detr/coco.py (plain variant; `variant=box_refine` / `two_stage` as there) and
overrides it. Model: a 4-stage basic-block ResNet (width 16, one block per stage, trained BatchNorm) on
128×128 inputs (the 64×64 scenes resized): C3–C5 (16×16, 8×8, 4×4) and a stride-2 C6 (2×2), 4 levels × 4
sampling points, d_model 64, 4 heads, 2 encoder and 3 decoder layers, FFN 128, 12 queries, a sigmoid class
head over the 4 classes. The focal set loss (α 0.25, γ 2; class cost and weight 2, L1 5, GIoU 2; auxiliary
losses at every layer), AdamW with clipping at 0.1 and weight decay 1e-4 on every parameter as the paper. Evaluation: COCO box mAP on the 250
test scenes and a PNG of predictions (<workdir>/detections/).

Departures from the paper (and from configs/deformable_detr/coco.py):
  - The model: a tiny ResNet with trained BatchNorm from random init (the paper: an ImageNet ResNet-50 with
    frozen BatchNorm), the small widths above, 12 queries instead of 300, dropout 0 instead of 0.1.
  - Data: the generated 64×64 shapes scenes resized to 128×128, flips only (no multi-scale resize or crops).
  - lr 1e-3 everywhere (the paper: 2e-4, × 0.1 for the backbone and the offset / reference-point layers)
    with 100 warm-up steps and a cosine decay (the paper: a step drop at 4/5), nothing frozen, batch 16
    (the paper: 32), 600 steps (4.8 epochs of the 2000 training scenes) instead of 50 epochs.
"""

import os

from papers_jax.core.config import load, parse_arg
from papers_jax.tasks import detection


def get_config(arg=None):
  args = parse_arg(arg, variant="plain", steps=600, smoke=False)
  c = load(os.path.join(os.path.dirname(os.path.abspath(__file__)), "coco.py") + f":variant={args.variant}")
  c.model = dict(name=c.model.name, backbone_block="basic", backbone_layers=(1, 1, 1, 1), backbone_width=16,
                 backbone_norm="batch", d_model=64, num_heads=4, encoder_layers=2, decoder_layers=3, ffn_dim=128,
                 num_queries=12, two_stage_num_proposals=12, dropout=0.0)
  c.optimizer.update(lr=1e-3, lr_multipliers=(), freeze=())
  detection.shapes_scenes_demo(c, image_size=128, steps=args.steps, vis_score=0.3, batch_size=16, smoke=args.smoke)
  return c
