"""CLIP pre-training with the paper's recipe (Radford et al. 2021, §2.5, Tables 18-20).

  python -m papers_jax.main --config configs/clip/paper.py:variant=B/16 --workdir runs/clip_b16 \\
      --config.data.data_dir=/data/laion400m --config.clip.tokenizer=/data/clip/tokenizer.json
  python -m papers_jax.main --config configs/clip/paper.py:variant=B/32,data=coco --workdir runs/clip_coco \\
      --config.clip.tokenizer=/data/clip/tokenizer.json

Recipe: global batch 32,768 (every example's 32,767 others are its negatives: N² − N ≈ 1.07e9 negative
pairs per step, gathered over all devices), 32 epochs, AdamW with decoupled weight decay 0.2 (not on
gains, biases, the embeddings' positions or the temperature), β1 0.9 and β2 0.98, ε 1e-6 for the
ViTs (0.999 and 1e-8 for the ResNets), lr 5e-4 (4e-4 for L/14), 2,000 warm-up steps then cosine decay
to 0, no gradient clipping; the temperature is learned from 1/0.07 and clipped at 100. Images: 224 px,
the shorter side resized and a random square crop (the paper's only augmentation), OpenAI's
normalisation; captions: 77 tokens of OpenAI's 49,408-token BPE. Compute in bfloat16 with float32 params
(`config.dtype`; the paper: mixed precision); `smoke` keeps bfloat16. The paper trained on WIT, 400M
pairs that were never released; its largest ViT took 12 days on 256 V100s. Its headline: 76.2%
zero-shot ImageNet top-1 (ViT-L/14 at 336 px). Not reproduced here.

Data (`data=`):
  folder (default)  an image-text folder in img2dataset's `files` layout, <data_dir>/train/**/<id>.jpg
                    + <id>.txt, e.g. LAION-400M, the open replication of WIT: `img2dataset --url_list
                    <laion400m parquet files> --input_format parquet --url_col URL --caption_col TEXT
                    --output_format files --output_folder <data_dir>/train --image_size 256
                    --resize_mode keep_ratio`, then `--config.data.data_dir=<data_dir>`.
  coco              TFDS coco_captions (118k images, 5 captions each; a small stand-in, far from the
                    paper's scale), retrieval on the 5k Karpathy test images:
                    `tfds build coco_captions --file_format=array_record`.
Tokenizer: `--config.clip.tokenizer=` the tokenizer.json of HF's openai/clip-vit-base-patch32 (OpenAI's
BPE), fetched once beforehand; nothing is downloaded at run time.
Zero-shot ImageNet as the paper evaluates it: `--config.clip.zero_shot_data=tfds:imagenet2012
--config.clip.zero_shot_class_names=<file: the 1,000 class names, one per line>`; the prompts are
`clip.eval_templates` (the paper's "a photo of a {}." and the 7-template ensemble of OpenAI's
prompt-engineering notebook), ensembled.
`smoke` keeps the recipe (optimizer, schedule, loss, towers' kinds) on the bundled digits captions
with tiny towers, for the test suite.

Departures from the paper:
- Data: WIT was never released; LAION-400M (an image-text folder) or COCO captions stand in.
- Weight decay is kept off the position and class embeddings as well as biases, gains and the
  temperature (the paper: "all weights that are not gains or biases").
- Random square crop and resize are this codebase's, not compared pixel for pixel with OpenAI's.
"""

from papers_jax.core.config import base_config, parse_arg
from papers_jax.data import captions
from papers_jax.tasks.clip import default_config as clip_defaults

VARIANTS = {"RN50": "clip_rn50", "B/32": "clip_vit_base_patch32", "B/16": "clip_vit_base_patch16",
            "L/14": "clip_vit_large_patch14"}
LR = {"RN50": 5e-4, "B/32": 5e-4, "B/16": 5e-4, "L/14": 4e-4}
DATA = ("folder", "coco")


def get_config(arg=None):
  args = parse_arg(arg, variant="B/16", data="folder", batch=32768, epochs=32, smoke=False)
  if args.variant not in VARIANTS:
    raise ValueError(f"unknown variant {args.variant!r}; choose from {sorted(VARIANTS)}")
  if args.data not in DATA:
    raise ValueError(f"unknown data {args.data!r}; choose from {DATA}")
  resnet = args.variant.startswith("RN")
  c = base_config()
  c.dtype = "bfloat16"  # compute; params stay float32
  c.task = "clip"
  c.model = dict(name=VARIANTS[args.variant], vocab_size=49408)
  c.clip = clip_defaults(eval_templates=captions.PAPER_TEMPLATES + captions.IMAGENET_TEMPLATES_7)
  if args.data == "folder":
    c.data.name = "captions_folder"
    c.data.train_split, c.data.eval_split = "train", ""
  else:
    c.data.name = "tfds:coco_captions"
    c.clip.text_key = "captions/text"
    c.data.train_split, c.data.eval_split = "train", "test"
  c.data.image_size = 224
  c.data.augment = "clip"
  # mean, std and crop_pct: the model name's (OpenAI's)
  c.batch_size = args.batch
  c.num_epochs = float(args.epochs)
  c.optimizer.update(name="adamw", lr=LR[args.variant], b1=0.9, b2=0.999 if resnet else 0.98,
                     eps=1e-8 if resnet else 1e-6, weight_decay=0.2, clip_grad_norm=0.0)
  c.optimizer.wd_exclude = (r"(^|/)bias$", r"(^|/)scale$", r"pos_embed", r"cls_token", "logit_scale")
  c.schedule.update(name="cosine", warmup_steps=2000, end_lr_ratio=0.0)
  c.mesh.update(data=-1, fsdp=1, tensor=1)
  c.data_threads = 16
  c.log_every = 100
  c.eval_every = 10_000
  c.checkpoint_every = 2_000
  c.keep_every = 50_000
  if args.smoke:
    tiny = dict(embed_dim=32, img_size=16, in_chans=1, text_layers=1, text_width=32, text_heads=2,
                context_length=16)
    if resnet:
      tiny |= dict(img_size=32, vision_layers=(1, 1, 1, 1), vision_width=8, vision_heads=2)
    else:
      tiny |= dict(patch_size=4, vision_width=32, vision_layers=1, vision_heads=2)
    c.model.update(vocab_size=64, **tiny)
    c.clip = clip_defaults(train_templates=captions.DIGIT_TRAIN_TEMPLATES,
                           eval_templates=captions.DIGIT_HELD_OUT_TEMPLATES, feature_batch=64)
    c.data.name, c.data.data_dir = "digits", None
    c.data.train_split, c.data.eval_split = "train", "test"
    c.data.image_size = tiny["img_size"]
    c.data.mean, c.data.std = (0.5,), (0.5,)
    c.batch_size = 32
    c.num_epochs = 0.0
    c.num_steps = 4
    c.schedule.warmup_steps = 1
    c.data_threads = 2
    c.log_every = 2
    c.eval_every = 0
    c.checkpoint_every = 4
  return c.lock()
