"""DETR on the bundled generated shapes scenes: a CPU demo of the DETR model and its set loss, trained from scratch.

  python -m papers_jax.main --config configs/detr/scenes.py --workdir runs/detr_scenes
  PYTHONPATH=$PWD python tools/detection_baseline.py --data shapes_scenes --boxes 12   # the image-blind baseline

Loads configs/detr/coco.py and overrides it. Model: `detr_resnet50` shrunk: a 3-stage basic-block ResNet
(width 16, one block per stage, stride 16, trained BatchNorm) on 128×128 inputs (the 64×64 scenes resized)
→ 8×8 tokens, d_model 64, 4 heads, 2 encoder and 3 decoder layers, FFN 128, 12 queries, 4 classes + no-object.
The set loss is DETR's (matching costs 1/5/2, weights 1/5/2, no-object weight 0.1, auxiliary losses at every
decoder layer), AdamW with clipping at 0.1 and weight decay 1e-4 on every parameter as the paper.
Evaluation: COCO box mAP on the 250 test scenes and a PNG of predictions (<workdir>/detections/).

Departures from the paper (and from configs/detr/coco.py):
  - The model: a tiny 3-stage ResNet with trained BatchNorm from random init (the paper: an ImageNet ResNet-50
    with frozen BatchNorm), the small widths above, 12 queries instead of 100, dropout 0 instead of 0.1.
  - Data: the generated 64×64 shapes scenes resized to 128×128, flips only (no multi-scale resize or crops).
  - lr 1e-3 everywhere (the paper: 1e-4, backbone 1e-5) with 100 warm-up steps and a cosine decay (the paper:
    a step drop at 4/5), nothing frozen (the paper keeps the stem and layer1 fixed), batch 16 (the paper:
    64), 800 steps (6.4 epochs of the 2000 training scenes) instead of 500 epochs.
"""

import os

from papers_jax.core.config import load, parse_arg
from papers_jax.tasks import detection


def get_config(arg=None):
  args = parse_arg(arg, steps=800, smoke=False)
  c = load(os.path.join(os.path.dirname(os.path.abspath(__file__)), "coco.py"))
  c.model = dict(name="detr_resnet50", backbone_block="basic", backbone_layers=(1, 1, 1), backbone_width=16,
                 backbone_norm="batch", d_model=64, num_heads=4, encoder_layers=2, decoder_layers=3, ffn_dim=128,
                 num_queries=12, dropout=0.0)
  c.optimizer.update(lr=1e-3, lr_multipliers=(), freeze=())
  detection.shapes_scenes_demo(c, image_size=128, steps=args.steps, vis_score=0.5, batch_size=16, smoke=args.smoke)
  return c
