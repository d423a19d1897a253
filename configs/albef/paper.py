"""ALBEF pre-training with the paper's recipe (Li et al. 2021, §3.5; the official configs/Pretrain.yaml).

  python -m papers_jax.main --config configs/albef/paper.py --workdir runs/albef_base

Recipe: `albef_base` (ViT-B/16 at 256 px, BERT-base-uncased split 6 + 6 with cross-attention in the last
6, 256-d ITC features; models/albef.py), ITC + ITM + MLM (15%) with momentum distillation (α = 0.4, warmed
up over the first epoch), momentum 0.995, queues of 65,536 features, temperature learnt from 0.07; AdamW lr
1e-4, weight decay 0.02 (not on biases, LayerNorm gains and the temperature, as the official optimizer's
filter), cosine decay to 1e-5 over 30 epochs, global batch 512 (8 A100s × 64); captions of at most 30
tokens. Compute in bfloat16 with float32 params (the paper does not say; its code runs float32). The paper
pre-trains on 4M images (COCO, VG, CC3M, SBU; 5.1M pairs) or 14M (with CC12M), from DeiT-B/16 ImageNet-1k
and BERT-base weights, and reports e.g. Flickr30K zero-shot TR@1 90.5 / IR@1 76.8 (14M). Not reproduced here.

Departures from the paper:
  - data: this task reads the generated scenes (data/vqa_scenes.py: 6,000 training scenes, resized from 64 to
    256 px), not the web and in-domain pairs; no augmentation (the paper: random resized crops, horizontal
    flips and RandAugment);
  - random initialisation (no DeiT / BERT checkpoint is loaded here; the tokenizer is a WordPiece trained on
    the scenes' texts, so the vocabulary is not BERT's 30,522 tokens unless albef.tokenizer names BERT's);
  - warm-up: linear from 0 over 2,000 steps and per-step cosine decay (the official scheduler: from 1e-5 in
    steps of 100 iterations over 2,000 iterations, then cosine per epoch);
  - the temperature is clipped in the forward pass instead of clamped in place;
  - MLM masks round(15%) of the tokens but never [SEP] (the official code draws each token but [CLS] and
    padding with probability 0.15);
  - ITC negatives and ITM hard negatives span the global batch of 512 (the official code: each GPU's 64 and
    the gathered queue);
  - bfloat16 compute; no retrieval evaluation during pre-training (albef.retrieval_images = 0).
`smoke`: the tiny model of configs/albef/scenes_pretrain.py:smoke with this recipe, for the tests.
"""

import os

from papers_jax.core.config import base_config, load, parse_arg
from papers_jax.tasks import albef


def get_config(arg=None):
  args = parse_arg(arg, smoke=False)
  if args.smoke:
    here = os.path.dirname(os.path.abspath(__file__))
    c = load(os.path.join(here, "scenes_pretrain.py") + ":smoke").unlock()
    c.optimizer.update(lr=1e-4, weight_decay=0.02)
    c.albef.update(alpha=0.4, momentum=0.995)
    return c.lock()
  c = base_config()
  c.task = "albef"
  c.albef = albef.default_config(max_text_len=30, queue_size=65536, momentum=0.995, alpha=0.4, mlm_prob=0.15,
                                 max_predictions=8, alpha_warmup_steps=6000 // 512)
  c.model = dict(name="albef_base", vocab_size=30522)  # BERT-base-uncased's, whatever the tokenizer
  c.data.name = "vqa_scenes"
  c.data.train_split, c.data.eval_split = "train", "test"
  c.data.image_size = 256
  c.data.mean, c.data.std = albef.ALBEF_MEAN, albef.ALBEF_STD
  c.dtype = "bfloat16"
  c.batch_size = 512
  c.num_epochs = 30.0
  c.optimizer.update(name="adamw", lr=1e-4, b1=0.9, b2=0.999, eps=1e-8, weight_decay=0.02, clip_grad_norm=0.0,
                     wd_exclude=(r"(^|/)bias$", r"(^|/)scale$", r"^temp$"))
  c.schedule.update(name="cosine", warmup_steps=2000, end_lr_ratio=0.1)
  c.log_every = 100
  c.checkpoint_every = 2000
  return c.lock()
