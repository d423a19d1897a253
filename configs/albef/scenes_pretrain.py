"""ALBEF pre-training on the generated scenes (data/vqa_scenes.py): ITC with queues, ITM with hard negatives,
MLM, momentum distillation; retrieval R@1/5/10 with and without ITM re-ranking after the run.

  python -m papers_jax.main --config configs/albef/scenes_pretrain.py --workdir runs/albef_pretrain

Model: `albef_tiny` (models/albef.py): a 64-wide ViT of 3 blocks on 64×64 scenes in 8×8 patches (64 patches +
class token), 2 text layers and 2 fusion layers 64 wide with 4 heads, 64-d ITC features; captions of at most
24 WordPiece tokens (the tokenizer trained on the training captions and questions). Sized for a shared 2-core
CPU. Evaluation: on the 500 test scenes (their first captions) the losses and accuracies, then retrieval over
the first `retrieval_images` test scenes and all of their captions, against chance and the nearest-caption
baseline (tasks/albef.py). docs/vision_language.md gives the measured numbers.

The paper's recipe is configs/albef/paper.py.

Departures from the paper (a CPU demo):
  - the tiny model, trained from random weights (the paper starts from DeiT-B/16 and BERT-base);
  - generated 64 px scenes instead of the 4M (or 14M) web and in-domain pairs, no augmentation (the paper:
    random resized crops, horizontal flips, RandAugment; a flip would break the left/right captions);
  - images normalised with the scenes' own per-channel mean and std (vqa_scenes.MEAN / STD; the paper: CLIP's):
    the scenes are dark (mean 0.11, std 0.15), so with 0.5 / 0.5 the background is a constant of about −0.8 on
    every input of a patch, which swamped the patch projection of BEiT-3's demo (docs/beit3.md) and was used
    here until 2026-12-07 (docs/vision_language.md gives the runs with each);
  - the fusion layers' cross-attention kernels (query, key, value, output) initialised with std 0.125
    (1/√64) instead of BERT's 0.02 (`cross_init`; the paper starts the fusion from BERT-base and the image
    side from DeiT): at width 64, std 0.02 leaves the cross-attention uniform and adding about 1% to the
    text, so the ITM score had no caption × image interaction and stayed at chance (docs/vision_language.md);
  - ITC on the mean of the tokens (`itc_pool="mean"`), not the [CLS]: from random weights the [CLS] outputs
    barely differ between inputs, and a run with them kept ITC at chance for 450 steps (docs/vision_language.md);
  - batch 64 for `steps` steps (700 by default: 7.5 epochs of the 6,000 scenes), lr 1e-3 with warm-up over
    5% and cosine decay per step (the paper: lr 1e-4 with cosine decay per epoch over 30 epochs, warm-up
    from 1e-5 over 1,000 steps);
  - queues of 1,024 features (the paper: 65,536), momentum 0.99 (0.995), the distillation weight α = 0.4
    warmed up over the first epoch's 94 steps as the official code;
  - MLM with round(15%) of the caption's tokens, [SEP] never masked (the official code draws each token but
    [CLS] and padding with probability 0.15);
  - ITC negatives and ITM hard negatives span the global batch (the official code: one GPU's batch and the
    gathered queue); a hard negative is never a caption equal to the positive's (the count captions repeat,
    so an equal caption is a true match; the official code leaves out only the pair itself);
  - retrieval also reported as BLIP's evaluation ranks it (ITM + ITC similarity, eval/itm_itc_*);
  - no dropout (BERT's 0.1); weight decay 0.02 not applied to biases, LayerNorm gains and the temperature
    (as the official optimizer's filter);
  - no gradient clipping, float32.
`init`: the text side's initialisation std (BERT's 0.02; `init=0.125`, the ViT side's 1/√64, was tried for ITM and
left ITC worse: docs/vision_language.md). `cross_init`: the fusion's cross-attention init std (0.125; 0.02 is BERT's
and the demo's before 2026-12-07). `smoke`: width 32, one layer each, queue 32, 4 steps (the tests').
"""

from papers_jax.core.config import base_config, parse_arg
from papers_jax.data import vqa_scenes
from papers_jax.tasks import albef


def get_config(arg=None):
  args = parse_arg(arg, smoke=False, steps=700, init=0.02, cross_init=0.125)
  c = base_config()
  c.task = "albef"
  c.albef = albef.default_config(max_text_len=24, queue_size=1024, momentum=0.99, alpha_warmup_steps=94,
                                 retrieval_images=100, rerank_k=16)
  c.model = dict(name="albef_tiny", itc_pool="mean", initializer_range=args.init,
                 cross_initializer_range=args.cross_init)
  c.data.name = "vqa_scenes"
  c.data.train_split, c.data.eval_split = "train", "test"
  c.data.image_size = 64
  c.data.mean, c.data.std = vqa_scenes.MEAN, vqa_scenes.STD
  c.batch_size = 64
  c.num_steps = args.steps
  c.optimizer.update(name="adamw", lr=1e-3, b1=0.9, b2=0.999, eps=1e-8, weight_decay=0.02, clip_grad_norm=0.0,
                     wd_exclude=(r"(^|/)bias$", r"(^|/)scale$", r"^temp$"))
  c.schedule.update(name="cosine", warmup_steps=max(1, c.num_steps // 20))
  c.log_every = 50
  c.eval_every = c.num_steps
  c.checkpoint_every = c.num_steps
  if args.smoke:
    c.model.update(vision_width=32, vision_depth=1, vision_heads=2, hidden_size=32, text_layers=1, fusion_layers=1,
                   num_heads=2, intermediate_size=64, embed_dim=16, patch_size=16)
    c.albef.update(queue_size=32, retrieval_images=8, rerank_k=4, retrieval_batch=32, alpha_warmup_steps=2)
    c.batch_size = 16
    c.num_steps = 4
    c.schedule.warmup_steps = 1
    c.log_every, c.eval_every, c.checkpoint_every = 2, 0, 4
  return c.lock()
