"""LSeg on the generated scenes: per-pixel embeddings against a frozen CLIP's label embeddings, tested on
labels never seen in training.

  python -m papers_jax.main --config configs/clip/scenes.py --workdir runs/clip_scenes     # the text tower
  python -m papers_jax.main --config configs/lseg/scenes.py --workdir runs/lseg_scenes \\
      --config.lseg.clip_run=runs/clip_scenes

Pixels are labelled with their object's (colour, kind) pair ("red circle", "blue 7"; 52 pairs) or
background; the 13 held-out pairs (data/vqa_scenes.py `held_out_pair`) are never labelled in training
(tasks/lseg.py). Label prompts "a {}." (background: "no objects.") go through the text tower of the
CLIP run, frozen. Model: `lseg_vit_tiny` (models/lseg.py): a CLIP-style ViT of width 64, depth 4 on
8×8 patches, a DPT-style decoder reading all four blocks, here narrower than the variant's (reassemble
widths 16, 32, 32, 32; 16 features; 0.15 GFLOP per image forward against 0.28), 64-d pixel embeddings,
two bottleneck spatial-regularisation blocks. AdamW, lr 1e-3, cosine, batch 16, 300 steps. Evaluation:
eval/miou over the 500 test scenes and all 53 classes, eval/miou_seen, eval/miou_unseen (the held-out
pairs), eval/colour_miou (background + 4 colours, never a training label set) beside
eval/colour_miou_all_background.

An earlier session's run (the variant's 32-feature decoder, batch 32, 400 steps) was measured only at step 94
(1.7 images/s on a 2-core CPU at load 23-34): mIoU 0.0170 (all background 0.0173), zero-shot colour mIoU 0.177
(all background 0.183). This session's run of this config: docs/clip_family.md.

Departures from the paper (a CPU demo, not one of its experiments):
- A tiny ViT trained from scratch with CLIP's parts (the paper: DPT's ViT-L/16 initialised from
  ViT / DeiT weights) and a 64-d text space from configs/clip/scenes.py (CLIP ViT-B/32's 512-d).
- DPT's decoder scaled down (16 features instead of 256, reassemble widths 16, 32, 32, 32 instead of 256, 512,
  1024, 1024), reading blocks 0-3 of 4 (5, 11, 17, 23 of 24);
  the last upsampling is to the input size (8 × the patch grid is already the input here).
- The temperature is learned as CLIP's (initial 1/0.07); no augmentation; no "other" class name
  (background is the prompt "no objects.", words the scenes' tokenizer knows).
- Batch 16 for 300 steps (4,800 scenes, under one pass over the 6,000), to finish on a shared CPU.
- AdamW lr 1e-3, weight decay 0.01 not on biases, norm gains, position / class embeddings or the temperature,
  gradients clipped to norm 1.0 (the paper trains with SGD and a polynomial schedule).
"""

from papers_jax.core.config import base_config, parse_arg
from papers_jax.data import vqa_scenes
from papers_jax.tasks.lseg import default_config as lseg_defaults
from papers_jax.tasks.segmentation import default_config as segmentation_defaults


def get_config(arg=None):
  args = parse_arg(arg, smoke=False)
  c = base_config()
  c.task = "lseg"
  # A narrower decoder than lseg_vit_tiny's (16 features, reassemble widths 16, 32, 32, 32): 0.15 GFLOP per image
  # forward instead of 0.28, so that the demo finishes on a loaded CPU.
  c.model = dict(name="lseg_vit_tiny", embed_dim=64, features=16, reassemble=(16, 32, 32, 32))
  c.lseg = lseg_defaults(clip_run="runs/clip_scenes")
  c.segmentation = segmentation_defaults(flip=False)
  c.data.name = "vqa_scenes"
  c.data.train_split = "train"
  c.data.eval_split = "test"
  c.data.image_size = 64
  c.data.mean = vqa_scenes.MEAN  # the scenes are dark (mean 0.11): 0.5 / 0.5 hides the objects
  c.data.std = vqa_scenes.STD
  c.batch_size = 16
  c.num_steps = 300
  c.optimizer.update(name="adamw", lr=1e-3, b1=0.9, b2=0.999, weight_decay=0.01, clip_grad_norm=1.0,
                     wd_exclude=(r"(^|/)bias$", r"(^|/)scale$", r"pos_embed", r"cls_token", "logit_scale"))
  c.schedule.update(name="cosine", warmup_steps=20, end_lr_ratio=0.0)
  c.log_every = 25
  c.eval_every = 150
  c.checkpoint_every = 150
  if args.smoke:
    c.model.update(width=32, depth=4, num_heads=2, reassemble=(16, 16, 16, 16), features=16)
    c.batch_size = 8
    c.num_steps = 2
    c.lseg.colour_eval_scenes = 8
    c.schedule.warmup_steps = 1
    c.eval_every = 0
    c.checkpoint_every = 2
  return c.lock()
