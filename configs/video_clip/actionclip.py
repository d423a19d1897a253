"""ActionCLIP (Wang et al., 2021) action recognition as video-text matching on the moving-shape clips: a CPU demo.

  python -m papers_jax.main --config configs/video_clip/actionclip.py:mode=zero_shot --workdir runs/actionclip_zs

Each training clip is paired with its class name (the motion: "moving left", "growing", "rotating
clockwise", ...; data/clips.py) in one of eight prompt templates ("a video of a shape {}.", ...); the
batch's clips of one class are all positives, and the loss is the KL divergence to the soft targets
softmax(10·[same class]) in both directions (objectives/video_text.py). Video encoder: each frame through
the image tower, then the fusion (`fusion`): transformer (frame positions, a transformer, its output
added back, the mean: the paper's "Transf", HF X-CLIP's MIT), mean ("meanP"), or single_frame (the
middle frame only: the baseline that cannot see motion).

Modes (`mode`, the paper's §4.4): supervised (all 4,800 training clips, 12 classes), few_shot (`shots`
clips per class), zero_shot (the classes 3, 4, 7, "moving down", "moving up and left", "moving down and
right", are held out of training; their words all occur in the seen class names). Evaluation on the
480 test clips (tasks/video_clip.py): each clip against every class's prompts through two templates never
used in training, the prompt features averaged: eval/top1 over the 12 classes; in zero_shot mode also
eval/unseen_top1 (held-out clips among the 3 held-out classes), eval/seen_top1, and eval/chance_*.

`classes=shape_motion` (compositional zero-shot): a clip's class is its shape and motion, 48 classes named
"triangle moving left"; with mode=zero_shot eight pairs are held out (HELD_OUT_PAIRS: each shape with two of
the motions left, up, growing, clockwise, each of those motions with two shapes), so every held-out pair's
shape and motion are each trained with other partners and its name is composed of trained words. The motion
classes above cannot be zero-shot here: a held-out motion's name puts trained words in an order no clip was
ever matched with ("moving down" from "moving up" and "moving down and left"), and nothing tells the text
tower where that lands. Prompts: PAIR_TEMPLATES in training, PAIR_HELD_OUT_TEMPLATES in evaluation; besides
eval/unseen_top1 (chance 1/8), eval/unseen_shape_top1 and eval/unseen_motion_top1 say which half of the pair
the prediction gets right, and eval/shape_only_unseen_top1 is what reading the shape alone scores (1/2).
Measured (600 steps from random weights, seed 0, shared 2-core CPU at load ~30, 12 minutes; docs/clip_family.md):
held-out pairs 35.3% (chance 12.5%; single frame 28.2%), the pair's shape right 60.0%, its motion 42.4%.

`init=<run>` starts from a configs/video_clip/clip4clip.py:temporal=transformer run (the paper's "pre-train,
prompt, fine-tune"): its params (the fusion transformer from its seqTransf transformer; `init_skip` drops it
for fusion=mean / single_frame), its tokenizer, prompts made of its vocabulary ("a video of {}.", ...;
held out: "a clip of {}.", "the clip is {}."), 16 frame positions as that run, 300 steps. That run's
captions named every motion, the held-out ones included: "zero-shot" here means no labelled clip of
those classes in ActionCLIP's training, as with the paper's CLIP, not motions never described.
From scratch, 600 steps stayed on the collapsed plateau (loss ≈ 2.05, top-1 at chance at step 300).

Towers as configs/video_clip/clip4clip.py (a ViT of width 64, depth 3 on 8×8 patches of 32×32 frames; a
text Transformer of width 64, depth 2; joint space 64); the fusion transformer: 2 layers of width 64,
4 heads, 8 frame positions. Batch 32 clips, AdamW lr 1e-3 (β2 0.98, weight decay 0.2), 30 warm-up steps
then cosine, 600 steps (few_shot: 300). `smoke`: one block per tower, width 32, batch 16, 30 steps.

Departures from the paper:
- No OpenAI CLIP (the paper's "pre-train, prompt, fine-tune" starts from it): random towers, or with `init`
  a CLIP4Clip run on the same generated clips; a word-level tokenizer; tiny towers; 8 frames of 32×32
  (the paper: 8 or 16 frames at 224, Kinetics-400, ViT-B/32 or B/16).
- The fusion transformer has 2 layers of width 64 (the paper: 6 layers of width 512; the registered
  actionclip_transf_vit_base_patch32 has those); no pre-network or in-network prompts (the shift modules).
- Evaluation averages the prompts' text features (CLIP's ensembling, evaluators/zero_shot.py); the
  reference averages the softmaxed similarities over the prompts. One view per clip (no multi-view testing).
- Batch 32, lr 1e-3 for every weight (the paper: 5e-6 for CLIP, 10× for the fusion), 600 steps (300 with
  `init`); few-shot and zero-shot on this generated data, not HMDB-51/UCF-101.
- `classes=shape_motion` is this demo's: the paper's classes are actions and its zero-shot split holds out
  whole classes (half of HMDB-51's or UCF-101's), whose names OpenAI's CLIP already knows from web text.
- Inherited from the base config: no gradient clipping, no weight EMA, float32.
"""

from papers_jax.core.config import base_config, parse_arg
from papers_jax.errors import ConfigError
from papers_jax.tasks.video_clip import MODES
from papers_jax.tasks.video_clip import default_config as video_clip_defaults

# Each shape with two of four motions on different axes (left, up, growing, clockwise), each motion with two
# shapes: class shape · 12 + motion (data/clips.py LABELS["shape_motion"]).
_AXES = (0, 2, 8, 10)
HELD_OUT_PAIRS = tuple(sorted(s * 12 + _AXES[(s + k) % 4] for s in range(4) for k in range(2)))
PAIR_TEMPLATES = ("{}.", "a video of a {}.", "a clip of a {}.", "a {}.", "there is a {}.", "the video shows a {}.",
                  "a clip that shows a {}.", "this is a {}.")
PAIR_HELD_OUT_TEMPLATES = ("a video that shows a {}.", "there is a clip of a {}.")
NAMES = {"single_frame": "actionclip_meanp_vit_base_patch32", "mean": "actionclip_meanp_vit_base_patch32",
         "transformer": "actionclip_transf_vit_base_patch32"}


def get_config(arg=None):
  args = parse_arg(arg, mode="supervised", fusion="transformer", classes="motion", shots=8, init="", init_step=400,
                   smoke=False)
  if args.fusion not in NAMES:
    raise ConfigError(f"fusion must be one of {tuple(NAMES)}, got {args.fusion!r}")
  if args.mode not in MODES:
    raise ConfigError(f"mode must be one of {MODES}, got {args.mode!r}")
  c = base_config()
  c.task = "video_clip"
  c.model = dict(name=NAMES[args.fusion], temporal=args.fusion, embed_dim=64, img_size=32, patch_size=8,
                 vision_width=64, vision_layers=3, vision_heads=4, vision_mlp_ratio=2.0, text_width=64,
                 text_layers=2, text_heads=4, text_mlp_ratio=2.0, context_length=16, temporal_layers=2,
                 temporal_heads=4, temporal_mlp_ratio=2.0, max_frames=8)
  c.video_clip = video_clip_defaults(method="actionclip", mode=args.mode, shots=args.shots, classes=args.classes)
  if args.classes == "shape_motion":  # compositional zero-shot (docstring): held-out shape-motion pairs
    c.video_clip.update(held_out_classes=HELD_OUT_PAIRS, train_templates=PAIR_TEMPLATES,
                        eval_templates=PAIR_HELD_OUT_TEMPLATES)
  c.data.name = "moving_shapes"
  c.data.image_size = 32
  c.data.mean = (0.5, 0.5, 0.5)
  c.data.std = (0.5, 0.5, 0.5)
  c.batch_size = 32
  c.num_steps = 300 if args.mode == "few_shot" else 600
  c.optimizer.update(name="adamw", lr=1e-3, b1=0.9, b2=0.98, eps=1e-6, weight_decay=0.2, clip_grad_norm=0.0)
  c.optimizer.wd_exclude = (r"(^|/)bias$", r"(^|/)scale$", r"pos_embed", r"cls_token", "logit_scale")
  c.schedule.update(name="cosine", warmup_steps=30, end_lr_ratio=0.0)
  c.log_every = 50
  c.eval_every = 300
  c.checkpoint_every = 300
  if args.init:  # "pre-train, prompt, fine-tune": start from a CLIP4Clip run of configs/video_clip/clip4clip.py
    c.init_from = f"{args.init}/checkpoints/{args.init_step}/state"
    c.init_skip = ("^temporal_transformer/",) if args.fusion != "transformer" else ()
    c.video_clip.tokenizer = f"{args.init}/tokenizer.json"  # its vocabulary: prompts made of its words
    c.video_clip.train_templates = ("{}.", "a video of {}.", "the video is {}.")
    c.video_clip.eval_templates = ("a clip of {}.", "the clip is {}.")
    c.model.max_frames = 16  # as the CLIP4Clip run's
    c.num_steps = 300
    c.eval_every = 150
    c.checkpoint_every = 150
  if args.smoke:
    c.model.update(embed_dim=32, vision_width=32, vision_layers=1, vision_heads=2, text_width=32, text_layers=1,
                   text_heads=2, temporal_layers=1, temporal_heads=2)
    c.batch_size = 16
    c.num_steps = 30
    c.schedule.warmup_steps = 2
    c.video_clip.max_eval_videos = 64
    c.video_clip.feature_batch = 32
    c.log_every = 10
    c.eval_every = 0
    c.checkpoint_every = 30
  return c.lock()
