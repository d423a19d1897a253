"""PointCLIP on generated point clouds of six parametric shapes, with the scenes CLIP frozen.

  python -m papers_jax.main --config configs/clip/scenes.py --workdir runs/clip_scenes     # the CLIP
  python -m papers_jax.main --config configs/pointclip/shapes.py --workdir runs/pointclip_adapter \\
      --config.pointclip.clip_run=runs/clip_scenes
  # the supervised baseline on the same frozen features: a linear classifier (16 shots, or every training cloud)
  python -m papers_jax.main --config configs/pointclip/shapes.py:head=linear --workdir runs/pointclip_linear \\
      --config.pointclip.clip_run=runs/clip_scenes
  python -m papers_jax.main --config configs/pointclip/shapes.py:head=linear,shots=0 \\
      --workdir runs/pointclip_linear_all \\
      --config.pointclip.clip_run=runs/clip_scenes

Data (data/point_clouds.py): cube, sphere, cylinder, cone, pyramid, torus; 1,024 points per cloud; 16 training
clouds per class (the paper's 16-shot), the 300 test clouds (50 per class). Each cloud becomes six depth
maps of 64×64 (front, right, back, left, top, bottom; perspective, the nearest point's depth per pixel,
2×2 pixels per point), normalised with the CLIP run's mean / std (the scenes') and read by its image tower
(configs/clip/scenes.py: a ViT of width 64, depth 4, 8×8 patches; 64-d joint space). Prompts: the
paper's template "point cloud depth map of a {}." with the classes' view words ("square", "circle",
"square and a circle", "triangle and a circle", "triangle and a square", "0": data/point_clouds.py);
zero-shot with equal view weights and with view weights searched on the 16 shots. Few-shot: the
inter-view adapter (C = 64, M = 6: 54,022 parameters; at the paper's RN50 width, C = 1,024, 13,643,782),
residual ratio 0.6, fusion ratios 0.5, dropout 0.075, DGCNN's smoothed cross-entropy (eps 0.2).
AdamW lr 1e-3, weight decay 1e-4, cosine, batch 32, 300 steps (100 epochs of the 96 shots).

The projection's focal length is 0.5: each view shows the shape 13-18 pixels across, the size of the scenes'
objects the CLIP was trained on (11-16 pixels).

Measured on the 300 test clouds (seed 0, shared 2-core CPU at load 20-30; docs/clip_family.md), with the scenes
CLIP normalised with the scenes' mean / std: zero-shot 34.7% (chance 16.7%), 38.3% with view weights searched
on the shots; nearest class mean of the shots 88.7%. Earlier, with focal 1.5 (views about 45 pixels across)
and a CLIP normalised with 0.5 / 0.5: zero-shot 16.7% (every cloud got one class), 16-shot adapter 79.3%,
linear classifier 74.3% (16 shots) / 72.7% (all 600 clouds), nearest class mean of the shots 84.0%.

Departures from the paper (a CPU demo, not one of its experiments):
- Generated clouds of six shapes instead of ModelNet40 / ScanObjectNN; the CLIP is the tiny scenes CLIP
  (images of coloured 2-D shapes and digits, word-level captions), not OpenAI's RN50 / ViT-B: it never saw a
  depth map, a grey image or the words "point cloud depth map" (its tokenizer maps them to [UNK]) nor the
  classes' names, so the class texts are the 2-D outlines its captions name.
- Depth maps 64×64 (the CLIP's input; the paper 224×224 from its projection's upsampling); the camera
  distance, focal length (0.5, so that the views match the size of the CLIP's training objects) and 2×2 splat
  are this demo's choices; the nearest point per pixel.
- One prompt template for zero-shot and few-shot (the reference's few-shot code prompts "point cloud of a big {}.").
- The zero-shot view weights are searched on the 16 training shots over {0, 0.25, ..., 1}^6 (the paper
  tunes them per dataset); the optimizer (AdamW, lr 1e-3, 300 steps) is this demo's.
"""

from papers_jax.core.config import base_config, parse_arg
from papers_jax.data import vqa_scenes
from papers_jax.tasks.pointclip import default_config as pointclip_defaults

# The scenes CLIP's architecture (configs/clip/scenes.py): the frozen checkpoint is read strictly.
SCENES_CLIP = dict(name="clip_vit_base_patch32", embed_dim=64, img_size=64, patch_size=8, in_chans=3,
                   vision_width=64, vision_layers=4, vision_heads=4, vision_mlp_ratio=2.0, text_width=64,
                   text_layers=2, text_heads=4, text_mlp_ratio=2.0, context_length=24)


def get_config(arg=None):
  args = parse_arg(arg, head="adapter", shots=16, smoke=False)
  c = base_config()
  c.task = "pointclip"
  c.model = dict(SCENES_CLIP)
  # focal 0.5: the shapes' views are 13-18 pixels across, the size of the scenes' objects (11-16) the CLIP read
  c.pointclip = pointclip_defaults(clip_run="runs/clip_scenes", head=args.head, shots=args.shots, focal=0.5)
  c.data.name = "point_clouds"
  c.data.train_split = "train"
  c.data.eval_split = "test"
  c.data.image_size = 64
  c.data.mean = vqa_scenes.MEAN  # the scenes are dark (mean 0.11): 0.5 / 0.5 hides the objects
  c.data.std = vqa_scenes.STD
  c.batch_size = 32
  c.num_steps = 300
  c.optimizer.update(name="adamw", lr=1e-3, b1=0.9, b2=0.999, weight_decay=1e-4, clip_grad_norm=0.0,
                     wd_exclude=(r"(^|/)bias$", r"(^|/)scale$", r"fusion_ratio"))
  c.schedule.update(name="cosine", warmup_steps=10, end_lr_ratio=0.0)
  c.log_every = 50
  c.eval_every = 300
  c.checkpoint_every = 300
  if args.smoke:
    c.model.update(embed_dim=32, vision_width=32, vision_layers=1, vision_heads=2, text_width=32, text_layers=1,
                   text_heads=2)
    c.pointclip.update(clip_run="", num_points=128, shots=2, train_per_class=2, test_per_class=2)
    c.batch_size = 8
    c.num_steps = 2
    c.schedule.warmup_steps = 1
    c.log_every = 1
    c.eval_every = 0
    c.checkpoint_every = 2
  return c.lock()
