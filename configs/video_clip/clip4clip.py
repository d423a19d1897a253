"""CLIP4Clip (Luo et al., 2022) text-video retrieval on the generated moving-shape clips: a CPU demo.

  python -m papers_jax.main --config configs/video_clip/clip4clip.py:temporal=transformer --workdir runs/c4c_transf

`temporal` picks the similarity calculator (§3.2): mean (parameter-free mean pooling, "meanP"),
transformer (frame positions + a transformer, "seqTransf"), lstm ("seqLSTM"), tight (a joint transformer
over the caption token and the frames with a matching head, "tightTransf"), and single_frame (the
middle frame only: a CLIP that cannot see motion, the baseline). Data (data/clips.py): 8 frames of
32×32, one coloured shape doing one of 12 motions; captions name the shape and the motion ("a triangle
moving left.", data/clips.py's SHAPE_MOTION_TEMPLATES, a random one of four per training clip, the first
at evaluation): 48 captions, so a batch of 32 holds several clips of one shape that only their motion
tells apart (with the colour in the captions too, 192 captions, a first 600-step run learned colour and
shape and not motion: motion accuracy 8.8%, chance 8.3%). 4,800 training clips, 480 test clips never
trained on. The symmetric InfoNCE over the batch (objectives/video_text.py). Evaluation
(tasks/video_clip.py): text→video and video→text recall@1/5/10 over the 480 test clips and their distinct
captions (a caption matches every clip of its shape and motion), beside the chance recall of those ids;
motion_top1, each clip against the 12 captions of its shape (chance 1/12), and motion_reversal_top1,
against its own motion's caption and the reversed motion's (chance 1/2). Reversed motions (left/right,
growing/shrinking, clockwise/anticlockwise, opposite diagonals) show the same set of frames in opposite
orders, so single_frame and mean score 1/2 there by construction.

Towers: a ViT of width 64, depth 3, 4 heads on 8×8 patches of each frame; a causal text Transformer of
width 64, depth 2, context 16; joint space 64. The seqTransf / tight transformers: 2 layers of width 64,
4 heads. Batch 32 clips (256 frames), AdamW lr 1e-3 (β2 0.98, weight decay 0.2), 30 warm-up steps then
cosine, 400 steps. `smoke`: one block per tower, width 32, batch 16, 30 steps, 64 eval clips.

Departures from the paper:
- CLIP is not pre-trained: both towers start from random weights and learn with the calculator, on
  generated clips and a word-level tokenizer (the paper: OpenAI's ViT-B/32 CLIP, MSR-VTT and others,
  OpenAI's BPE); tiny towers; 8 frames of 32×32 (the paper: 12 frames at 224 sampled at 1 fps).
- One learning rate for everything (the paper: 1e-7 for CLIP's weights, 1e-4 for the new modules);
  batch 32 (the paper: 128); 400 steps. Captions generated from templates (the paper: MSR-VTT's written ones).
- The seqTransf / tight transformers have 2 layers of width 64 (the paper: 4 layers of width 512 on
  ViT-B/32; the registered clip4clip_* names have those); no video masks (every clip has all its
  frames); no DSL or other test-time re-ranking.
- Inherited from the base config: no gradient clipping, no weight EMA, float32.
"""

from papers_jax.core.config import base_config, parse_arg
from papers_jax.data import clips
from papers_jax.errors import ConfigError
from papers_jax.tasks.video_clip import default_config as video_clip_defaults

NAMES = {"single_frame": "clip4clip_meanp_vit_base_patch32", "mean": "clip4clip_meanp_vit_base_patch32",
         "transformer": "clip4clip_seqtransf_vit_base_patch32", "lstm": "clip4clip_seqlstm_vit_base_patch32",
         "tight": "clip4clip_tight_vit_base_patch32"}


def get_config(arg=None):
  args = parse_arg(arg, temporal="transformer", smoke=False)
  if args.temporal not in NAMES:
    raise ConfigError(f"temporal must be one of {tuple(NAMES)}, got {args.temporal!r}")
  c = base_config()
  c.task = "video_clip"
  c.model = dict(name=NAMES[args.temporal], temporal=args.temporal, embed_dim=64, img_size=32, patch_size=8,
                 vision_width=64, vision_layers=3, vision_heads=4, vision_mlp_ratio=2.0, text_width=64,
                 text_layers=2, text_heads=4, text_mlp_ratio=2.0, context_length=16, temporal_layers=2,
                 temporal_heads=4, temporal_mlp_ratio=2.0, max_frames=16)
  c.video_clip = video_clip_defaults(method="clip4clip", caption_templates=clips.SHAPE_MOTION_TEMPLATES,
                                     retrieval_ks=(1, 5, 10))
  c.data.name = "moving_shapes"
  c.data.image_size = 32
  c.data.mean = (0.5, 0.5, 0.5)
  c.data.std = (0.5, 0.5, 0.5)
  c.batch_size = 32
  c.num_steps = 400
  c.optimizer.update(name="adamw", lr=1e-3, b1=0.9, b2=0.98, eps=1e-6, weight_decay=0.2, clip_grad_norm=0.0)
  c.optimizer.wd_exclude = (r"(^|/)bias$", r"(^|/)scale$", r"pos_embed", r"type_embed", r"cls_token", "logit_scale")
  c.schedule.update(name="cosine", warmup_steps=30, end_lr_ratio=0.0)
  c.log_every = 50
  c.eval_every = 200
  c.checkpoint_every = 200
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
