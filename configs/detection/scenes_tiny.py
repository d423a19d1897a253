"""A small set-prediction detector on the generated scenes: the detection task's CPU demo and smoke test.

  python -m papers_jax.main --config configs/detection/scenes_tiny.py --workdir runs/det_shapes
  python -m papers_jax.main --config configs/detection/scenes_tiny.py:data=digits_scenes --workdir runs/det_digits

Model: `query_detector_tiny` (models/query_detector.py; not a paper's model): a 3-stage strided conv stem
to 8×8 tokens, 2 decoder layers of 12 learned queries, width 64, DETR's softmax head and output form.
Loss: DETR's set loss as in the paper (matching costs 1/5/2, loss weights 1/5/2, no-object weight
0.1, auxiliary losses at both decoder layers). Data: 64×64 scenes of up to 6 shapes (4 classes) or
up to 5 digits (10 classes), horizontal flips. Evaluation: COCO box mAP on the 250 test scenes and
a PNG of predictions (<workdir>/detections/). `smoke` shrinks it to a few steps.

Departures from the paper (DETR's recipe; configs for the DETR model itself come with it):
- A tiny conv stem trained from scratch instead of an ImageNet ResNet-50, 12 queries instead of 100,
  2 decoder layers and no encoder.
- AdamW lr 1e-3 (DETR: 1e-4, backbone 1e-5) with a cosine schedule and 100 warm-up steps
  (DETR: a step drop at 2/3 of training), batch 32 (DETR: 64), clipping at 0.1 as DETR, weight decay 1e-4
  as DETR (not on biases and norm gains).
- Flips only: no multi-scale resize or random crops (64×64 scenes).
"""

from papers_jax.core.config import base_config, parse_arg
from papers_jax.tasks.detection import default_config as detection_defaults


def get_config(arg=None):
  args = parse_arg(arg, data="shapes_scenes", steps=3000, smoke=False)
  c = base_config()
  c.task = "detection"
  c.data.name = args.data
  c.data.image_size = 64
  c.data.mean, c.data.std = (0.5, 0.5, 0.5), (0.5, 0.5, 0.5)
  c.model = dict(name="query_detector_tiny", num_queries=12, depth=2, width=64)
  c.detection = detection_defaults(max_boxes=6 if args.data == "shapes_scenes" else 5, flip_prob=0.5,
                                   vis_examples=8, vis_score=0.5)
  c.batch_size = 32
  c.num_steps = args.steps
  c.optimizer.update(name="adamw", lr=1e-3, weight_decay=1e-4, clip_grad_norm=0.1,
                     wd_exclude=(r"(^|/)bias$", r"(^|/)scale$"))
  c.schedule.update(name="cosine", warmup_steps=100)
  c.log_every = 50
  c.eval_every = c.num_steps // 2
  c.checkpoint_every = c.num_steps
  if args.smoke:
    c.batch_size = 16
    c.num_steps = 6
    c.schedule.warmup_steps = 1
    c.log_every = 1
    c.eval_every = 0
    c.checkpoint_every = 6
  return c.lock()
