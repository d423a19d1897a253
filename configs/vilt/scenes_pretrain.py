"""ViLT pre-training on the generated VQA scenes (data/vqa_scenes.py): MLM (whole-word) + ITM + word-patch alignment.

  python -m papers_jax.main --config configs/vilt/scenes_pretrain.py --workdir runs/vilt_pretrain

then VQA fine-tuning from its last checkpoint (configs/vilt/scenes_vqa.py). Model: ViLT (models/vilt.py)
of width 64, 3 layers, 4 heads, MLP 256, on 64×64 scenes in 16×16 patches (16 patches + class token) and
captions of at most 24 WordPiece tokens (the tokenizer trained on the training captions and questions):
sized for a 2-core CPU shared with other jobs (a 96-wide, 3-layer model on 8×8 patches ran at 8 examples/s
there).
Evaluation: also image↔text retrieval by the ITM score over the first 100 test scenes and all of their captions,
with chance and the nearest-caption baseline (tasks/vision_language.py). docs/vision_language.md gives the
measured numbers.

The paper's recipe (ViLT-B/32, §4): AdamW lr 1e-4, weight decay 0.01, warm-up over 10% of the steps then
linear decay to 0, batch 4,096, 100k or 200k steps, from ViT-B/32's ImageNet-21k weights; MLM, ITM (with
the word-patch alignment loss weighted 0.1), RandAugment without colour inversion and cutout.

Departures from the paper (a CPU demo):
  - a 64-wide, 3-layer model on 16×16 patches, trained from random weights (there is no ViT checkpoint of
    this size; a ViT params checkpoint loads with init_from and init_skip=models.vilt.VIT_INIT_SKIP);
  - generated scenes instead of COCO, VG, SBU and GCC;
  - lr 1e-3 and batch 32 for `steps` steps (1,000 by default: 32,000 captions, 5.3 epochs of the 6,000 scenes);
  - no dropout (the paper's ViT uses 0.1) and no RandAugment (vl.randaugment=""; the task's default is
    the paper's n=2, m=9 without colour inversion), because both slow a run this short;
  - ITM negatives come from the same batch, not from the whole dataset;
  - no gradient clipping; weight decay is not applied to biases or LayerNorm gains;
  - images normalised with the scenes' own per-channel mean and std (data/vqa_scenes.py MEAN / STD), not the
    official 0.5 / 0.5: the scenes are dark (mean about 0.11), so 0.5 / 0.5 makes the background a large
    constant on every input of a 16×16 patch, which drowned the objects (docs/beit3.md; the first ViLT demo
    did not use the image).
`smoke`: width 32, 1 layer, 4 steps (the tests').
"""

from papers_jax.core.config import base_config, parse_arg
from papers_jax.data import vqa_scenes
from papers_jax.tasks import vision_language


def get_config(arg=None):
  args = parse_arg(arg, smoke=False, steps=1000)
  c = base_config()
  c.task = "vision_language"
  c.vl = vision_language.default_config(objective="pretrain", retrieval_images=100, randaugment="")
  c.model = dict(name="vilt_b32", hidden_size=64, depth=3, num_heads=4, mlp_ratio=4.0, img_size=64, patch_size=16,
                 dropout_rate=0.0)
  c.data.name = "vqa_scenes"
  c.data.train_split, c.data.eval_split = "train", "test"
  c.data.image_size = 64
  c.data.mean, c.data.std = vqa_scenes.MEAN, vqa_scenes.STD
  c.batch_size = 32
  c.num_steps = args.steps
  c.optimizer.update(name="adamw", lr=1e-3, b1=0.9, b2=0.999, eps=1e-8, weight_decay=0.01, clip_grad_norm=0.0,
                     wd_exclude=(r"(^|/)bias$", r"(^|/)scale$"))
  c.schedule.update(name="linear", warmup_steps=c.num_steps // 10)
  c.log_every = 50
  c.eval_every = c.num_steps
  c.checkpoint_every = c.num_steps
  if args.smoke:
    c.model.update(hidden_size=32, depth=1, num_heads=2, mlp_ratio=2.0)
    c.vl.retrieval_images = 8
    c.vl.retrieval_batch = 64
    c.batch_size = 16
    c.num_steps = 4
    c.schedule.warmup_steps = 1
    c.log_every, c.eval_every, c.checkpoint_every = 2, 0, 4
  return c.lock()
