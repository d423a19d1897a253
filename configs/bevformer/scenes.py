"""BEVFormer on the generated multi-camera scenes (data/bev_scenes.py): the CPU demo and smoke test.

  python -m papers_jax.main --config configs/bevformer/scenes.py --workdir runs/bevformer_scenes
  python -m papers_jax.main --config configs/bevformer/scenes.py:temporal=False --workdir runs/bevformer_static

Model: `bevformer_sim` (models/bevformer.py): BEVFormer's encoder (temporal self-attention to the aligned
previous BEV, spatial cross-attention from 4 pillar points into the hit views, FFN) and decoder head with
box refinement, small: 4 cameras of 32×32, a 3-stage conv stem of 16/32/64 channels (2 levels: strides 4, 8),
d 64, 4 heads, FFN 128, a 16×16 BEV over ±16 m (2 m cells), 2 encoder layers, 3 decoder layers, 24 queries,
3 classes, code size 8 (no velocity). `temporal=False` is the ablation without history.
Loss and matching: the official (focal 2.0 with α 0.25 γ 2, L1 0.25 on the box code; costs 2.0 / 0.25).
Evaluation: nuScenes-style BEV mAP (0.5/1/2/4 m) on the 300 test scenes, beside an image-blind prior.

Departures from the paper (and the official base config):
- Simulated data: 4 cameras (nuScenes: 6 of 1600×900), 3 classes (10), static objects, no velocity
  (code size 8, not 10), a BEV range of ±16 m (±51.2 m) on a 16×16 grid (200×200).
- A tiny conv stem trained from scratch with Deformable DETR's 1×1-conv + GroupNorm projection, in place of
  ResNet101-DCN (ImageNet/FCOS3D-pretrained) + FPN; 2 feature levels (4).
- d 64, 4 heads, FFN 128, 2 encoder and 3 decoder layers, 24 queries (d 256, 8 heads, FFN 512, 6 and 6, 900).
- One history frame (the official trains with a queue of 3 previous frames, picked at random in a 4-frame
  window); the history frame's CAN-bus input is zero; the CAN-bus vector holds only (dx, dy, dyaw).
- Alignment of the previous BEV by one bilinear warp of the grid for translation and rotation (the official
  code rotates the BEV map and shifts TSA's reference points instead).
- AdamW lr 1e-3 (2e-4), weight decay 1e-4 (0.01), batch 8 (8 GPUs × 1, as the official), cosine with 100 warm-up
  steps (500), `steps` steps (24 epochs of nuScenes), gradient clipping 35 as the official; dropout 0 (0.1).
- No data augmentation (the official: photometric distortion only); no grid mask.
"""

from papers_jax.core.config import base_config, parse_arg
from papers_jax.data import bev_scenes
from papers_jax.tasks.bev_detection import default_config as bev_defaults


def get_config(arg=None):
  args = parse_arg(arg, steps=300, temporal=True, smoke=False)
  c = base_config()
  c.task = "bev_detection"
  c.data.name = "bev_scenes"
  c.data.train_split, c.data.eval_split = "train", "test"
  c.data.image_size = bev_scenes.IMAGE
  c.data.mean, c.data.std = bev_scenes.MEAN, bev_scenes.STD
  c.model = dict(name="bevformer_sim", temporal=args.temporal, dropout=0.0)
  c.bev_detection = bev_defaults(max_detections=50)
  c.batch_size = 8
  c.num_epochs = 0
  c.num_steps = args.steps
  c.optimizer.update(name="adamw", lr=1e-3, weight_decay=1e-4, clip_grad_norm=35.0,
                     wd_exclude=(r"(^|/)bias$", r"(^|/)scale$"))
  c.schedule.update(name="cosine", warmup_steps=100)
  c.log_every = 25
  c.eval_every = max(1, c.num_steps // 2)
  c.checkpoint_every = c.num_steps
  if args.smoke:
    c.batch_size = 8
    c.num_steps = 2
    c.schedule.warmup_steps = 1
    c.log_every = 1
    c.eval_every = 0
    c.checkpoint_every = 2
  return c.lock()
