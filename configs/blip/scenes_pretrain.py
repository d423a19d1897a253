"""BLIP pre-training on the generated VQA scenes (data/vqa_scenes.py): ITC + ITM + LM, jointly, one step.

  python -m papers_jax.main --config configs/blip/scenes_pretrain.py --workdir runs/blip_pretrain

Then CapFilt on its checkpoint and a second pre-training on the bootstrapped captions, one command
(tools/blip_capfilt.py, configs/blip/scenes_capfilt.py), or VQA as generation (configs/blip/scenes_vqa.py).
Model: `blip_tiny` (models/blip.py): a 64-wide, 2-layer ViT on 64×64 scenes in 8×8 patches (64 patches +
[CLS]) and 64-wide, 2-layer text layers (shared by the encoder and the decoder but for self-attention),
captions of at most 24 WordPiece tokens (the tokenizer trained on the training captions and questions).
Evaluation captions the first `caption_images` test scenes by beam search after the prompt
"from left to right:" and scores BLEU-4 and CIDEr-D against all of each scene's captions, beside the
nearest-training-image and most-frequent-caption baselines; then retrieval R@1/5/10 over the first 100 test scenes
and all of their captions by ITC, and its top 16 re-ranked by ITM (+ ITC, BLIP's evaluation), beside chance and
the nearest-caption baseline (tasks/albef.py's protocol). docs/blip.md gives the numbers.

The paper's recipe (BLIP, §4.1): ViT-B/16 from ImageNet weights and BERT-base, 224×224 random crops and RandAugment,
AdamW lr 2e-4 (warm-up) with cosine decay, weight decay 0.05, batch 2,880, 20 epochs over 14M (or 129M)
image-text pairs, ITC queue of 57,600, momentum 0.995, α = 0.4, label smoothing 0.1.

Departures from the paper (a CPU demo):
  - a 64-wide, 2-layer ViT and text stack (BLIP: ViT-B/16 + BERT-base), trained from random weights, dropout 0
    (BLIP's text layers use 0.1);
  - generated scenes instead of COCO, VG, CC, SBU and LAION; their captions are clean, so CapFilt has no web noise
    to remove;
  - images normalised with the scenes' own per-channel mean and std (vqa_scenes.MEAN / STD; BLIP: CLIP's): the
    scenes are dark (mean 0.11, std 0.15), so with 0.5 / 0.5 the background is a constant of about −0.8 on every
    input of a patch, which swamped the patch projection of BEiT-3's demo (docs/beit3.md); 0.5 / 0.5 was used
    here until 2026-12-07 (docs/blip.md gives the runs with each);
  - lr 1e-3, warm-up 10% then linear decay (BLIP: 2e-4 to 3e-4, cosine), weight decay 0.05 but not on biases or
    LayerNorm gains, batch 32 for `steps` steps (500: 2.7 epochs), no image augmentation (BLIP: random crops and
    RandAugment);
  - the cross-attention's query, key, value and output kernels start at std 0.125 (1/√64), the rest of the text
    side at BERT's 0.02 (BLIP starts from BERT-base, whose trained features give the attention word-dependent
    logits): at 0.02 and width 64 the cross-attention logits are about 0.03, every word takes the same mean of the
    image, and ITM had no caption × image interaction to learn from; the larger value and output (since
    2026-12-07, as ALBEF's demo) let ITM overfit sooner (tools/blip_itm_overfit.py; docs/blip.md);
  - the ITM head reads the mean of the fused tokens (`itm_pool="mean"`), not the [ENC] output: the encoder's
    self-attention, trained by ITC on the mean of the tokens, never learnt to bring the caption to the [ENC] token,
    whose ITM log-odds then did not depend on the caption at all (docs/blip.md);
  - loss = ITC + 3·ITM + LM (BLIP: equal weights): with weight 1 the ITM loss stayed near its prior for 400 steps
    and ranked the own image first for 54% of the test pairs at step 200, with 3 for 65% (docs/blip.md);
  - ITC projects the mean of the tokens (text: the real ones), not the [CLS] (`itc_pool="mean"`, as ALBEF's demo):
    from random weights the text [CLS] features all pointed one way (norm of their mean 0.98), which made one image
    the nearest to most captions and text→image retrieval fall below the nearest-caption baseline;
  - ITC contrasts the global batch with the momentum features of the same batch; BLIP also keeps a 57,600-entry
    queue of momentum features; momentum 0.99 (BLIP: 0.995, whose ~140-step half-life is a third of this run);
  - ITM negatives are never texts equal to the positive's (the scenes' captions repeat, e.g. counts), nor pairs
    whose count or relation caption holds for the other scene (`itm_known_matches`; "there are two shapes and one
    digit." fits about 13% of scenes); BLIP's pre-training excludes only the pair itself;
  - captions are generated with max length 32 (BLIP: 20; a four-object listing here is 22 tokens), the beam
    score is GNMT's length penalty with α = 1 (HF's generate divides by the length), and generation starts from
    the prompt "from left to right:" (BLIP's captioner uses "a picture of");
  - no gradient clipping.
`smoke`: width 32, 1 layer, 4 steps (the tests'), with the options above.
"""

from papers_jax.core.config import base_config, parse_arg
from papers_jax.data import vqa_scenes
from papers_jax.tasks import blip


def get_config(arg=None):
  args = parse_arg(arg, smoke=False, steps=500)
  c = base_config()
  c.task = "blip"
  c.blip = blip.default_config(objective="pretrain", max_text_len=24, caption_prompt="from left to right:",
                               caption_images=200, max_caption_len=32, retrieval_images=100, rerank_k=16,
                               momentum=0.99, itm_known_matches=True, itm_weight=3.0)
  c.model = dict(name="blip_tiny", cross_attention_qk_std=0.125, cross_attention_vo_std=0.125, itc_pool="mean",
                 itm_pool="mean")
  c.data.name = "vqa_scenes"
  c.data.train_split, c.data.eval_split = "train", "test"
  c.data.image_size = 64
  c.data.mean, c.data.std = vqa_scenes.MEAN, vqa_scenes.STD
  c.batch_size = 32
  c.num_steps = args.steps
  c.optimizer.update(name="adamw", lr=1e-3, b1=0.9, b2=0.999, eps=1e-8, weight_decay=0.05, clip_grad_norm=0.0,
                     wd_exclude=(r"(^|/)bias$", r"(^|/)scale$", r"^temp$"))
  c.schedule.update(name="linear", warmup_steps=c.num_steps // 10)
  c.log_every = 50
  c.eval_every = c.num_steps
  c.checkpoint_every = c.num_steps
  if args.smoke:
    c.model.update(vision_width=32, vision_depth=1, vision_heads=2, hidden_size=32, num_layers=1, num_heads=2,
                   intermediate_size=64, embed_dim=16, img_size=64, patch_size=16)
    c.blip.caption_images = 4
    c.blip.generate_batch = 4
    c.blip.update(retrieval_images=8, rerank_k=4)
    c.batch_size = 16
    c.num_steps = 4
    c.schedule.warmup_steps = 1
    c.log_every, c.eval_every, c.checkpoint_every = 2, 0, 4
  return c.lock()
