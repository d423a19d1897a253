"""DeiT on ImageNet-1k: the paper's recipe (Touvron et al. 2021, §5-6, Table 9), with or without distillation.

  python -m papers_jax.main --config configs/deit/imagenet.py:variant=B,kind=hard \\
      --config.distillation.teacher=<teacher params checkpoint> --workdir runs/deit_b_distilled
  python -m papers_jax.main --config configs/deit/imagenet.py:variant=S,kind=none --workdir runs/deit_s

AdamW (0.9, 0.999), lr 5e-4 × batch / 512, weight decay 0.05 (not on biases, norm gains, position
embeddings and the class / distillation tokens), 300 epochs with 5 linear warm-up epochs then cosine to
1e-5; label smoothing 0.1; stochastic depth 0.1; RandAugment (m9, std 0.5), mixup 0.8 / cutmix 1.0 (switch
0.5), random erasing 0.25; no dropout; no gradient clipping; weight EMA 0.99996 (the official code keeps one
for evaluation); 224×224 Inception crops with flips, ImageNet mean/std, evaluation at crop 0.875.
`kind`: "hard" (the paper's DeiT⚗, α = ½), "soft" (τ = 3, λ = 0.1) or "none" (DeiT without distillation:
the plain ViT of the same width, `vit_{tiny,small,base}_patch16_224`).
Paper: DeiT-Ti/S/B 72.2 / 79.8 / 81.8% top-1; with hard distillation from RegNetY-16GF 74.5 / 81.2 / 83.4%
(Table 5, 300 epochs); not reproduced here. Hardware and time: the paper trains DeiT-B on one 8-GPU node in
about 3 days (53 h for 300 epochs); measure throughput with tools/benchmark.py first.
Data: `tfds build imagenet2012 --file_format=array_record` with the ImageNet tars in
<data_dir>/downloads/manual/. `smoke` shrinks everything to seconds on generated images, without a teacher
(the distillation path's smoke run is configs/deit/digits.py's, in tests/test_deit.py).
Precision: bfloat16 compute with float32 params, softmax, norms and losses (the official code: float16
autocast); `--config.dtype=float32` for full precision.

Departures from the paper:
- The teacher: the paper's RegNetY-16GF is not in this codebase. `teacher_model` defaults to ResNet-152
  (models/resnet.py; timm's `resnet152` weights convert with tools/convert_weights.py); any classifier here
  with ImageNet's 1000 classes and the student's input normalisation can be the teacher (the paper's
  teacher sees the student's images at 224 as here).
- No repeated augmentation (3 repeats per batch in the paper): the input pipeline does not implement it.
- The cosine decays per step (timm's scheduler in the official code steps per epoch); warm-up from 0, not 1e-6.
- The Inception crop, RandAugment and random erasing are this codebase's, not compared pixel for pixel
  with timm's pipeline.
"""

from papers_jax.core.config import base_config, parse_arg, synthetic_smoke

IMAGENET_TRAIN = 1_281_167
VARIANTS = {"Ti": "tiny", "S": "small", "B": "base"}
TEACHER = dict(name="resnet152")


def get_config(arg=None):
  args = parse_arg(arg, variant="B", kind="hard", batch=1024, smoke=False)
  if args.variant not in VARIANTS:
    raise ValueError(f"unknown variant {args.variant!r}; choose from {sorted(VARIANTS)}")
  if args.kind not in ("hard", "soft", "none"):
    raise ValueError(f"kind={args.kind!r}; choose hard, soft or none")
  width = VARIANTS[args.variant]
  c = base_config()
  c.dtype = "bfloat16"  # compute; params stay float32
  name = f"deit_{width}_distilled_patch16_224" if args.kind != "none" else f"vit_{width}_patch16_224"
  c.model = dict(name=name, num_classes=1000, drop_path_rate=0.1)
  c.data.name = "tfds:imagenet2012"
  c.data.train_split = "train"
  c.data.eval_split = "validation"
  c.data.image_size = 224
  c.data.augment = "inception"
  c.data.mean, c.data.std, c.data.crop_pct = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225), 0.875
  c.data.randaugment = "rand-m9-mstd0.5-inc1"
  c.data.random_erasing = 0.25
  c.batch_size = args.batch
  c.num_epochs = 300.0
  lr = 5e-4 * args.batch / 512
  c.optimizer.update(name="adamw", lr=lr, b1=0.9, b2=0.999, weight_decay=0.05, clip_grad_norm=0.0,
                     wd_exclude=(r"(^|/)bias$", r"(^|/)scale$", r"pos_embed", r"cls_token", r"dist_token"))
  c.schedule.update(name="cosine", warmup_steps=5 * IMAGENET_TRAIN // args.batch, end_lr_ratio=1e-5 / lr)
  c.label_smoothing = 0.1
  c.mixup = dict(mixup_alpha=0.8, cutmix_alpha=1.0, switch_prob=0.5, prob=1.0)
  c.ema_decay = 0.99996
  if args.kind == "hard":
    c.distillation = dict(kind="hard", teacher="", teacher_model=TEACHER, alpha=0.5, tau=1.0)
  elif args.kind == "soft":
    c.distillation = dict(kind="soft", teacher="", teacher_model=TEACHER, alpha=0.1, tau=3.0)
  c.mesh.update(data=-1, fsdp=1, tensor=1)
  c.data_threads = 16
  c.log_every = 100
  c.eval_every = 5_000
  c.checkpoint_every = 2_000
  c.keep_every = 50_000
  if args.smoke:  # generated images stand in for the dataset: runs offline, without a teacher
    synthetic_smoke(c, 32)
    c.data.randaugment = ""
    c.model.update(img_size=32, patch_size=8, embed_dim=32, depth=2, num_heads=2, num_classes=10)
    c.distillation = {}
  return c.lock()
