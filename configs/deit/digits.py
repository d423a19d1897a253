"""DeiT's distillation through attention on scikit-learn's bundled digits: a small ViT with a distillation
token learns from a ResNet teacher trained here (Touvron et al. 2021, §4).

  python -m papers_jax.main --config configs/resnet/digits.py:variant=20 --workdir runs/resnet20_digits
  python -m papers_jax.main --config configs/deit/digits.py:kind=hard \\
      --config.distillation.teacher=runs/resnet20_digits/checkpoints/300/state --workdir runs/deit_digits_hard
  python -m papers_jax.main --config configs/deit/digits.py:kind=none --workdir runs/deit_digits_none

`kind`: "hard" (the paper's best: the distillation head learns the teacher's argmax, α = ½), "soft" (KL at
τ = 3 with λ = 0.1, as the paper) or "none" (the default, which needs no teacher: the same student and recipe
with the mean of its two heads trained on the labels, the baseline). The teacher is configs/resnet/digits.py's
ResNet-20 (its run's checkpoint, which this config's `teacher_model` must match); it sees the student's
augmented 16×16 images. The student is configs/vit/digits.py's ViT (width 64, depth 4, 4×4 patches) plus the
distillation token and head, trained for `steps` (default 150, a third of configs/vit/digits.py's 450:
distillation matters most when the student's own data or schedule is short). Results: docs/vision_variants.md.
`smoke` shrinks it to seconds.

Departures from the paper:
- Those of configs/vit/digits.py's recipe, which this config loads: a small ViT on 16×16 digits instead
  of DeiT-Ti/S/B on ImageNet; AdamW lr 4e-3 at batch 256 (DeiT: 5e-4 × batch / 512), weight decay 0.05,
  30 warm-up steps then cosine; global-norm clipping at 1 (DeiT: none); label smoothing 0.1 and drop path
  0.1 as DeiT; random affine warps instead of RandAugment, mixup, cutmix, random erasing and repeated
  augmentation; no weight EMA.
- The teacher is a ResNet-20 trained on the same 1,437 digits (the paper: a RegNetY-16GF trained on
  ImageNet), and the student trains for 150 steps, not 300 epochs.
- "none" keeps the distillation token, where DeiT without distillation has no such token.
"""

import os

from papers_jax.core.config import load, parse_arg

TEACHER = dict(name="resnet20_cifar", in_chans=1, img_size=16)  # configs/resnet/digits.py:variant=20


def get_config(arg=None):
  args = parse_arg(arg, kind="none", steps=150, smoke=False)
  if args.kind not in ("hard", "soft", "none"):
    raise ValueError(f"kind={args.kind!r}; choose hard, soft or none")
  vit = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "vit", "digits.py")
  c = load(vit + (":smoke" if args.smoke else "")).unlock()
  c.model.name = "deit_tiny_distilled_patch16_224"
  if not args.smoke:
    c.num_steps = args.steps
    c.eval_every = c.checkpoint_every = 50
    c.evals = {}
  c.optimizer.wd_exclude = tuple(c.optimizer.wd_exclude) + (r"dist_token",)
  if args.kind == "hard":
    c.distillation = dict(kind="hard", teacher="", teacher_model=TEACHER, alpha=0.5, tau=1.0)
  elif args.kind == "soft":
    c.distillation = dict(kind="soft", teacher="", teacher_model=TEACHER, alpha=0.1, tau=3.0)
  else:
    c.distillation = dict(kind="", teacher="", teacher_model=TEACHER, alpha=0.5, tau=1.0)
  if args.smoke:
    c.distillation.teacher_model = dict(TEACHER, layers=(1, 1, 1))  # configs/resnet/digits.py:smoke's
  return c.lock()
