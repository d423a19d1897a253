"""ViT on scikit-learn's bundled digits: the default experiment (`make demo`).

  python -m papers_jax.main --config configs/vit/digits.py --workdir runs/vit_digits

8×8 grayscale digits, 1,437 for training and a fixed, stratified 360 held out for testing
(never trained on). The digits are upsampled (bilinear) to 16×16 and cut into 4×4 patches, so
the small ViT (width 64, depth 4) still sees 16 tokens + class token; training uses random affine
warps (±10°, scale 0.9–1.1, ±10% shift), AdamW at lr 4e-3 and 450 steps of batch 256
(≈ 80 epochs, 115k examples).

Measured on a 2-core CPU (AMD EPYC VM), nearly idle: ≈ 2.5 minutes for the whole command
(~20-25 s of start-up and compilation, ~950-1150 examples/s), eval/accuracy 99.7% (seed 0),
99.4% (seeds 1 and 2). Without the 16×16 upsampling (8×8, 2×2 patches) the same recipe gets ~97%.
Evaluations: the test split every 75 steps (`eval/...`), and every 150 the train split
(`eval/train/...`, the generalisation gap) and a k-NN of the pre-logits features (`eval/knn/...`).
`smoke` shrinks it to seconds for the test suite.

Departures from the paper (a CPU demo, not one of its experiments):
- A 4-layer, 64-wide ViT on 16×16 digits instead of ViT-B/L/H on ImageNet / JFT-300M.
- AdamW lr 4e-3, weight decay 0.05 (the paper: 3e-3 and 0.3 at batch 4096), 30 warm-up steps then
  cosine; global-norm clipping at 1 as the paper; weight decay not on biases, norm gains, pos_embed
  or cls_token.
- Label smoothing 0.1, drop path 0.1 and random affine warps (the paper: dropout 0.1, Inception crops).
"""

from papers_jax.core.config import base_config, parse_arg


def get_config(arg=None):
  args = parse_arg(arg, smoke=False)
  c = base_config()
  c.model = dict(name="vit_tiny_patch16_224", img_size=16, patch_size=4, in_chans=1, num_classes=10,
                 embed_dim=64, depth=4, num_heads=4, mlp_ratio=2.0, drop_path_rate=0.1)
  c.data.name = "digits"
  c.data.image_size = 16           # bilinear 2x upsampling: same 16 tokens, smoother affine warps
  c.data.augment = "affine"
  c.data.affine_degrees = 10.0
  c.data.affine_scale = (0.9, 1.1)
  c.data.affine_translate = 0.1
  c.data.mean = (0.5,)
  c.data.std = (0.5,)
  c.batch_size = 256
  c.num_steps = 450
  c.optimizer.update(name="adamw", lr=4e-3, b1=0.9, b2=0.999, weight_decay=0.05, clip_grad_norm=1.0,
                     wd_exclude=(r"(^|/)bias$", r"(^|/)scale$", r"pos_embed", r"cls_token"))
  c.schedule.update(name="cosine", warmup_steps=30, end_lr_ratio=0.0)
  c.label_smoothing = 0.1
  c.log_every = 50
  c.eval_every = 75               # 360 test images: well under a second each time
  # Named evaluations besides the test split's (core/evals.py): the train split's accuracy (the
  # generalisation gap) and a k-NN of the pre-logits features, as eval/train/... and eval/knn/...
  c.evals.train = dict(type="task", split="train", every=150)
  c.evals.knn = dict(type="knn", split="test", every=150, k=(20,))
  c.checkpoint_every = 150
  if args.smoke:
    c.model.update(embed_dim=32, depth=2, num_heads=2)
    c.batch_size = 32
    c.num_steps = 20
    c.optimizer.lr = 2e-3  # Adam turns the (theoretically zero) key-bias gradient's noise into updates ∝ lr
    c.schedule.warmup_steps = 2
    c.log_every = 5
    c.eval_every = 0
    c.evals = {}  # the test suite's many smoke runs go without them (configs/vit/imagenet.py's runs one)
    c.checkpoint_every = 10
  return c.lock()
