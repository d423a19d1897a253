"""MAE on scikit-learn's bundled digits: the embedded demo (tools/mae_demo.py runs every stage).

  python -m papers_jax.main --config configs/mae/digits.py:stage=pretrain --workdir runs/mae_digits/pretrain
  python -m papers_jax.main --config configs/mae/digits.py:stage=finetune --workdir runs/mae_digits/finetune \
      --config.init_from=runs/mae_digits/pretrain/checkpoints/<step>/state
  python -m papers_jax.main --config configs/mae/digits.py:stage=scratch --workdir runs/mae_digits/scratch

The 8×8 digits are upsampled to 16×16 and cut into 4×4 patches (16 patches; mask ratio 0.75 keeps 4).
Encoder: the small ViT of configs/vit/digits.py (width 64, depth 4, 4 heads, MLP ratio 2); decoder
2 blocks × 64 wide. Pre-training: AdamW β = (0.9, 0.95), wd 0.05, norm_pix_loss, random affine warps
(digits are too small for 0.2-area crops and are not flip-symmetric). Fine-tuning: global average
pooling + fc_norm, layer-wise lr decay 0.75, drop path 0.1, label smoothing 0.1 (no mixup at this
size). `scratch` trains the same ViT from random init with configs/vit/digits.py's recipe.
Pre-training evaluates the encoder's features (`config.evals`, core/evals.py) with a weighted k-NN
(k = 20, 200) at the middle and the end, and with a linear probe at the end.
Measured numbers: docs/mae_digits.md. `smoke` shrinks any stage to seconds.

Departures from the paper (a CPU demo, not one of its experiments):
- A 4-layer, 64-wide encoder and a 2-block decoder on 16×16 digits with 4×4 patches, instead of
  ViT-B/L/H on ImageNet; random affine warps instead of RandomResizedCrop + flip.
- Pre-training lr 1.5e-3, 10% warm-up, no gradient clipping; weight decay not on biases, norm gains,
  pos_embed or cls_token (the reference decays the class and mask tokens).
- Fine-tuning without mixup / cutmix / RandAugment / random erasing; `scratch` trains without
  clipping (configs/vit/digits.py clips at 1).
"""

from papers_jax.core.config import base_config, parse_arg
from papers_jax.tasks.mae import ENCODER_INIT_SKIP
from papers_jax.tasks.mae import default_config as mae_defaults

ENCODER = dict(img_size=16, patch_size=4, in_chans=1, embed_dim=64, depth=4, num_heads=4, mlp_ratio=2.0)
STAGES = ("pretrain", "finetune", "scratch")


def get_config(arg=None):
  args = parse_arg(arg, stage="pretrain", steps=0, mask_ratio=0.75, smoke=False)
  if args.stage not in STAGES:
    raise ValueError(f"unknown stage {args.stage!r}; choose from {STAGES}")
  c = base_config()
  c.data.name = "digits"
  c.data.image_size = 16
  c.data.augment = "affine"
  c.data.mean = (0.5,)
  c.data.std = (0.5,)
  c.batch_size = 256
  c.optimizer.update(name="adamw", weight_decay=0.05, clip_grad_norm=0.0, wd_exclude=(r"(^|/)bias$", r"(^|/)scale$", r"pos_embed", r"cls_token"))
  c.log_every = 50
  if args.stage == "pretrain":
    c.task = "mae"
    c.model = dict(name="mae_vit_base_patch16", **ENCODER, decoder_embed_dim=64, decoder_depth=2,
                   decoder_num_heads=4, mask_ratio=args.mask_ratio)
    c.mae = mae_defaults(norm_pix_loss=True, vis_examples=10)
    # The encoder's features through a k-NN and a linear probe (core/evals.py), at the middle and the end.
    c.evals.knn = dict(type="knn", split="test", every=(args.steps or 800) // 2, k=(20, 200))
    c.evals.linear_probe = dict(type="linear_probe", split="test", every=0)
    c.num_steps = args.steps or 800
    c.optimizer.update(lr=1.5e-4 * 256 / 256 * 10, b1=0.9, b2=0.95)
    c.schedule.update(name="cosine", warmup_steps=c.num_steps // 10)
    c.eval_every = c.num_steps // 2
  else:
    c.model = dict(name="vit_tiny_patch16_224", **ENCODER, num_classes=10, global_pool="avg", drop_path_rate=0.1,
                   pos_embed_init="sincos")
    c.label_smoothing = 0.1
    c.eval_every = 0
    if args.stage == "finetune":
      c.init_skip = ENCODER_INIT_SKIP + (r"^norm/",)
      c.num_steps = args.steps or 250
      c.optimizer.update(lr=2e-3, layer_decay=0.75)
      c.schedule.update(name="cosine", warmup_steps=c.num_steps // 10)
    else:  # configs/vit/digits.py's recipe
      c.num_steps = args.steps or 450
      c.optimizer.update(lr=4e-3)
      c.schedule.update(name="cosine", warmup_steps=30)
  c.checkpoint_every = c.num_steps
  if args.smoke:
    c.batch_size = 32
    c.num_steps = 4
    c.schedule.warmup_steps = 1
    c.log_every = 2
    c.eval_every = 0
    c.checkpoint_every = 4
    if args.stage == "pretrain":
      c.model.update(embed_dim=32, depth=1, num_heads=2, decoder_embed_dim=16, decoder_depth=1, decoder_num_heads=2)
      c.mae.update(vis_examples=4)
      c.evals.knn.update(every=0, k=(5,), max_train=64, batch=64)
      c.evals.linear_probe.update(max_train=64, batch=64)
  return c.lock()
