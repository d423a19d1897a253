"""ViLD on the generated scenes: open-vocabulary detection of kinds never labelled in training.

  python -m papers_jax.main --config configs/clip/scenes.py --workdir runs/clip_scenes     # the frozen CLIP
  python -m papers_jax.main --config configs/vild/scenes.py --workdir runs/vild_scenes \\
      --config.vild.clip_run=runs/clip_scenes

Data: data/vqa_scenes.py's detection view (64×64 scenes, 2-4 objects of 13 kinds: 3 shapes and 10 digits, in 4
colours). Novel classes, never labelled in training: triangle, 4 and 8 (chosen before any result); the other 10
kinds are the base classes. Model: `vild_detector_tiny` (models/vild.py): a 6-convolution backbone (stride 4,
width 64, GroupNorm), an RPN with three square anchors (10, 14, 18 px) per cell, 32 proposals, RoIAlign to 4×4,
a 2-layer 256-wide box head, a class-agnostic box regressor and ViLD-ensemble's text and image projections into
the CLIP's 64-d space. Loss: RPN + box regression + ViLD-text (τ = 0.01) + 0.5 · ViLD-image (L1 to the frozen
CLIP's embeddings of 1× and 1.5× crops of up to 8 precomputed proposals per scene of the first 2000 training
scenes). AdamW, lr 1e-3, cosine, batch 32, 400 steps. Evaluation (tasks/vild.py): COCO box AP on the 500 test
scenes over novel, base and all classes for ViLD-ensemble (λ = 2/3), each head alone, a closed-vocabulary
classifier of the base classes, and the frozen CLIP on the RPN's cropped proposals.

Departures from the paper (a CPU demo, not one of its experiments; τ, the image weight, λ and the paper-side
numbers below checked against the authors' released configs, as the paper's text was not at hand:
docs/clip_family.md, ViLD):
- A tiny detector trained from scratch: single-scale features from a 6-convolution backbone instead of a ResNet
  with FPN (the paper: Mask R-CNN, ResNet-50 + FPN, trained from scratch with large-scale jitter for 180k
  iterations); no mask head (box AP only); 32 proposals per image (the paper: 1000); no RoI sampling (every
  proposal and ground-truth box trains the RoI head, in place of 512 RoIs at 1:3 foreground); the RPN's loss
  averages positives and negatives separately instead of sampling 256 anchors; no augmentation.
- The distillation proposals are the connected bright regions of each training image (found without labels;
  the paper precomputes the top 300 proposals of an RPN trained on the base classes), at most 8 per scene, for
  the first 2000 of the 6000 training scenes only (the paper: every training image).
- Crops stay at their place and scale on the scenes' dark noise canvas (`vild.crop_mode="in_place"`; the paper
  resizes them to CLIP's input, `crop_mode="resize"`, which this CLIP reads as "square" whatever the object).
- The frozen CLIP is the scenes CLIP (configs/clip/scenes.py: a 64-d ViT of width 64, depth 4, on 8×8 patches,
  trained on the scenes' captions), not OpenAI's ViT-B/32.
- Class prompts: the CLIP's caption templates × the four colour words, averaged (the paper: its prompt ensemble
  of CLIP's ImageNet templates); the background embedding is learned as in the paper.
- Base/novel split by kind on the bundled scenes (the paper: LVIS frequent + common vs rare); AdamW lr 1e-3,
  cosine, gradients clipped at 1.0 (the paper: SGD with momentum, lr 0.32, batch 256); from the base config:
  float32, no weight EMA, seed 0.
"""

from papers_jax.core.config import base_config, parse_arg
from papers_jax.data import vqa_scenes
from papers_jax.tasks.vild import default_config as vild_defaults

# configs/clip/scenes.py's phrasings of one object, which its training captions contain.
OBJECT_TEMPLATES = ("a {}.", "from left to right: a {}.", "from top to bottom: a {}.")


def get_config(arg=None):
  args = parse_arg(arg, smoke=False, steps=400)
  c = base_config()
  c.task = "vild"
  c.model = dict(name="vild_detector_tiny")
  # Distillation targets for the first 2000 of the 6000 training scenes (the CLIP's crops of all would take
  # ~4 CPU-minutes before training on the shared CPU); the others train ViLD-text and the detector only.
  c.vild = vild_defaults(clip_run="", templates=OBJECT_TEMPLATES, distill_scenes=2000)
  c.data.name = "vqa_scenes"
  c.data.train_split = "train"
  c.data.eval_split = "test"
  c.data.image_size = 64
  c.data.mean = vqa_scenes.MEAN  # the scenes are dark (mean 0.11): 0.5 / 0.5 hides the objects
  c.data.std = vqa_scenes.STD
  c.batch_size = 32
  c.num_steps = args.steps
  c.optimizer.update(name="adamw", lr=1e-3, b1=0.9, b2=0.999, weight_decay=1e-4, clip_grad_norm=1.0,
                     wd_exclude=(r"(^|/)bias$", r"(^|/)scale$", "background"))
  c.schedule.update(name="cosine", warmup_steps=50, end_lr_ratio=0.0)
  c.log_every = 50
  c.eval_every = args.steps
  c.checkpoint_every = args.steps
  if args.smoke:
    c.model.update(widths=(16, 16, 16, 16), strides=(2, 1, 2, 1), head_width=32, num_proposals=8, pre_nms=32)
    c.vild.update(distill_scenes=16, num_distill=4, clip_baseline=False)
    c.batch_size = 8
    c.num_steps = 2
    c.schedule.warmup_steps = 1
    c.log_every = 1
    c.eval_every = 0
    c.checkpoint_every = 2
  return c.lock()
