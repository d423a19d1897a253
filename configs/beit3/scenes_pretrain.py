"""BEiT-3 masked data modelling on the generated scenes (data/vqa_scenes.py): images, captions and pairs.

  python -m papers_jax.main --config configs/beit3/tokenizer.py --workdir runs/beit3_tokenizer
  python -m papers_jax.main --config configs/beit3/scenes_pretrain.py --workdir runs/beit3_pretrain \\
      --config.beit3.visual_tokenizer=runs/beit3_tokenizer/checkpoints/1000/state

(tools/beit3_demo.py runs these and the NLVR fine-tuning, configs/beit3/nlvr.py, in one command.) Each step:
MIM on the image alone (40% of its patches masked block-wise, predicting the VQ-VAE's visual tokens), MLM on
a caption alone (15%), and both on the image-text pair (50% of the text, 40% of the patches) through the
vision-language experts of the top layer (tasks/beit3.py). Model: a Multiway Transformer (models/beit3.py)
96 wide, 4 layers (the top one with a vision-language expert), 4 heads, FFN 384, on 64×64 scenes in 16×16
patches and captions of at most 24 WordPiece tokens: sized for a shared, loaded 2-core CPU.

The paper's recipe (BEiT-3 giant, §3.1 as we read it): batches of 2,048 images, 2,048 texts and 2,048 pairs,
1M steps, AdamW (β2 0.98, ε 1e-6), peak lr 1e-3 with a 10k-step warm-up and cosine decay, weight decay 0.05,
stochastic depth 0.1, BEiT's augmentation (random resized crops, flips, colour jitter); visual tokens from BEiT
v2's tokenizer; ImageNet-21K, 160 GB of text and 21M image-text pairs.

Departures from the paper (a CPU demo):
  - the demo model above (40 layers, 1408 wide in the paper) and 3 vision-language layers → 1;
  - the visual tokenizer is a VQ-VAE with 64 codes trained on these scenes (configs/beit3/tokenizer.py), not
    BEiT v2's VQ-KD with 8,192 codes;
  - generated scenes and their captions instead of the paper's corpora; the text-only stream is the captions;
  - batch 32 of each stream, `steps` steps (250 by default: 8,000 scenes), lr 1e-3 with a 10% warm-up then linear decay,
    weight decay 0.05 (not on biases and LayerNorm gains), no gradient clipping;
  - images normalised with the scenes' own mean and std (data/vqa_scenes.py MEAN / STD), not 0.5 / 0.5;
  - no stochastic depth, dropout or augmentation; block masks of at least 2 patches (BEiT's 16 does not fit a
    4×4 grid); masked text tokens follow BERT (80% [MASK], 10% random, 10% kept; data/mlm.py);
  - the shared pre-attention and final LayerNorms of models/beit3.py (VLMo's layout), the attention
    projections shared as the paper says (the released code keeps one set per modality).
`smoke`: width 32, 2 layers, 4 steps, an untrained VQ-VAE as the tokenizer (the tests').
"""

from papers_jax.core.config import base_config, parse_arg
from papers_jax.data import vqa_scenes
from papers_jax.tasks import beit3


def get_config(arg=None):
  args = parse_arg(arg, smoke=False, steps=250)
  c = base_config()
  c.task = "beit3"
  c.beit3 = beit3.default_config(objective="pretrain")
  c.model = dict(name="beit3_base_patch16_224", hidden_size=96, depth=4, num_heads=4, mlp_dim=384, vl_layers=1,
                 img_size=64, patch_size=16)
  c.data.name = "vqa_scenes"
  c.data.train_split, c.data.eval_split = "train", "test"
  c.data.image_size = 64
  c.data.mean, c.data.std = vqa_scenes.MEAN, vqa_scenes.STD
  c.batch_size = 32
  c.num_steps = args.steps
  c.optimizer.update(name="adamw", lr=1e-3, b1=0.9, b2=0.98, eps=1e-6, weight_decay=0.05, clip_grad_norm=0.0,
                     wd_exclude=(r"(^|/)bias$", r"(^|/)scale$"))
  c.schedule.update(name="linear", warmup_steps=c.num_steps // 10)
  c.log_every = 50
  c.eval_every = c.num_steps
  c.checkpoint_every = c.num_steps
  if args.smoke:
    c.beit3.visual_tokenizer = "random"
    c.model.update(hidden_size=32, depth=2, num_heads=2, mlp_dim=64)
    c.batch_size = 16
    c.num_steps = 4
    c.schedule.warmup_steps = 1
    c.log_every, c.eval_every, c.checkpoint_every = 2, 0, 4
  return c.lock()
