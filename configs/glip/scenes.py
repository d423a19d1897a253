"""GLIP on the generated image-text scenes: trained on phrase grounding, evaluated as a detector with a prompt of
class names it never saw as a prompt (zero-shot transfer from grounding to detection).

  python -m papers_jax.main --config configs/glip/scenes.py --workdir runs/glip_scenes
  python -m papers_jax.main --config configs/glip/scenes.py:fusion=False --workdir runs/glip_scenes_nofusion

Model (`glip_tiny_scenes`, models/glip.py): a 2-convolution stem to a 16×16 map (stride 4) of width 64, a BERT
text encoder (width 64, 2 layers, 4 heads, a 21-word vocabulary of the scenes' words), 2 deep-fusion layers
(X-MHA, 4 heads in 128 dimensions, layer scale 1/2; then a BERT layer on the text and a DyHead module on the
image), the dot-product token head and ATSS's box and centerness heads (one 16-pixel anchor per cell).
`fusion=False` is GLIP-T (A)'s ablation: no X-MHA and no extra BERT layers (the prompt only scores the
regions at the end). Data: the 6,000 training scenes of data/vqa_scenes.py, each prompt the phrases of the
scene's objects ("red circle. blue 7.") shuffled among random absent colour-kind phrases (8 in all);
`prompt=detection` trains on the class-name prompt instead (the supervised reference). Evaluation: on the
500 test scenes, COCO mAP with the prompt "circle. square. triangle. 0. ... 9." (`det_`) and with the prompt of
all 52 colour-kind phrases (`pair_`).

Measured (seed 0, on a shared 2-core CPU at load 15-30; docs/clip_family.md): at step 1,000 with the class-name
prompt AP 0.635 / AP50 0.786 on the 500 test scenes, against 0.0003 / 0.0013 for image-blind boxes; with the 52
phrases AP 0.567. `fusion=False`: AP 0.686 / AP50 0.841, 52 phrases AP 0.574 (deep fusion does not help here).

Departures from the paper (GLIP-T: Swin-T + BERT-base + 6 DyHead / fusion layers, on Objects365, GoldG and
Cap4M at 800-1333 pixels):
- Tiny towers trained from scratch (no ImageNet Swin-T, no pretrained BERT); one feature level from a conv stem
  instead of Swin-T + FPN's 5; the DyHead module is its scale-aware attention on one level (no deformable
  convolution, no DyReLU, no spatial or cross-level attention); 2 fusion layers instead of 6, X-MHA of 4 heads
  in 128 dimensions instead of 8 in 2048.
- A word-level vocabulary of the scenes' 17 words (+ [PAD], [CLS], [SEP], ".") instead of BERT's WordPiece.
- Grounding data: templated object phrases with 4-6 random negative phrases per prompt (the paper samples
  negative class names for detection data and uses captions for grounding data); no captions, no pseudo
  labels, no detection data mixed in (the point of the demo is the transfer).
- One 16-pixel anchor per cell (ATSS: 8 × stride); box coding in continuous pixels (no "+1").
- The X-MHA update is added to the un-normalised features as the paper's equations (the official code adds it
  to the layer-normed ones).
- AdamW lr 1e-3 for every parameter (the paper: 1e-4, language tower 1e-5), weight decay 1e-4 not on biases
  and gains, batch 32, cosine with 100 warm-up steps (the paper: steps at 67% and 89% of 30 epochs, 2,000
  warm-up iterations), gradient clipping at 1.0 as the paper, no EMA, no augmentation (multi-scale training
  and flips in the paper; flipping would mirror the digits).
"""

from papers_jax.core.config import base_config, parse_arg
from papers_jax.data import vqa_scenes
from papers_jax.tasks.glip import default_config as glip_defaults


def get_config(arg=None):
  args = parse_arg(arg, fusion=True, prompt="grounding", steps=1000, smoke=False)
  c = base_config()
  c.task = "glip"
  c.data.name = "vqa_scenes"
  c.data.train_split, c.data.eval_split = "train", "test"
  c.data.image_size = 64
  c.data.mean, c.data.std = vqa_scenes.MEAN, vqa_scenes.STD  # the scenes are dark
  c.model = dict(name="glip_tiny_scenes", fusion=args.fusion, max_text_len=160)
  c.glip = glip_defaults(train_prompt=args.prompt)
  c.batch_size = 32
  c.num_steps = args.steps
  c.optimizer.update(name="adamw", lr=1e-3, weight_decay=1e-4, clip_grad_norm=1.0,
                     wd_exclude=(r"(^|/)bias$", r"(^|/)scale$", r"bias_lang", r"bias0", r"log_scale", r"gamma_"))
  c.schedule.update(name="cosine", warmup_steps=100)
  c.log_every = 50
  c.eval_every = c.num_steps // 2
  c.checkpoint_every = c.num_steps
  if args.smoke:
    c.model.update(channels=32, stem_channels=(16, 32), text_width=32, text_mlp=64, text_layers=1, embed_dim=32,
                   num_convs=1)
    c.glip.update(eval_scenes=16, vis_examples=2)
    c.batch_size = 8
    c.num_steps = 4
    c.schedule.warmup_steps = 1
    c.log_every = 2
    c.eval_every = 0
    c.checkpoint_every = 4
  return c.lock()
