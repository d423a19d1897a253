"""YOLOv1 on the bundled generated shapes scenes: a CPU demo of the YOLOv1 loss, decoding and evaluation.

  python -m papers_jax.main --config configs/yolo/scenes.py --workdir runs/yolo_scenes
  PYTHONPATH=$PWD python tools/detection_baseline.py --data shapes_scenes --boxes 12   # the image-blind baseline

Loads configs/yolo/voc.py and overrides it. Model: `yolov1_tiny` (models/yolo.py): 6 convolutions of 16–128
channels with BatchNorm and leaky ReLU, four 2×2 max pools (64×64 → 4×4), a 256-wide FC layer with dropout
0.5 and the 7×7×(2·5 + 4) output; 0.98M parameters. The paper's loss (λcoord 5, λnoobj 0.5), its
augmentation (jitter 0.2, exposure and saturation 1.5, flips) and its decoding (class-specific confidence,
per-class NMS at IoU 0.5). Evaluation: COCO box mAP on the 250 test scenes and a PNG of predictions
(<workdir>/detections/).

Departures from the paper (and from configs/yolo/voc.py):
  - The model: the small network above with BatchNorm (YOLOv2's) instead of the 24-convolution network, 64×64
    inputs instead of 448×448, C = 4 shape classes; no pretraining (as voc.py).
  - Optimiser: AdamW, lr 1e-3 with 100 warm-up steps and a cosine decay, weight decay 5e-4 (not on biases
    and BatchNorm scales), batch 32, 1000 steps (16 epochs of the 2000 training scenes), instead of SGD with
    momentum at 1e-2 / 1e-3 / 1e-4 and batch 64 for 135 epochs.
  - Those of voc.py on augmentation and evaluation.
"""

import os

from papers_jax.core.config import load, parse_arg
from papers_jax.tasks import detection


def get_config(arg=None):
  args = parse_arg(arg, steps=1000, smoke=False)
  c = load(os.path.join(os.path.dirname(os.path.abspath(__file__)), "voc.py"))
  c.model = dict(name="yolov1_tiny", grid_size=7, boxes_per_cell=2, drop_rate=0.5, img_size=64)
  c.optimizer.update(name="adamw", lr=1e-3, weight_decay=5e-4, wd_exclude=(r"(^|/)bias$", r"(^|/)scale$"))
  detection.shapes_scenes_demo(c, image_size=64, steps=args.steps, vis_score=0.2, batch_size=32, smoke=args.smoke)
  return c
