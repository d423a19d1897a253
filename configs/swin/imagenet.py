"""Swin Transformer on ImageNet-1k from scratch: the paper's recipe (Liu et al. 2021, §4.1, Appendix A2.1).

  python -m papers_jax.main --config configs/swin/imagenet.py:variant=T --workdir runs/swin_t_i1k
  python -m papers_jax.main --config configs/swin/imagenet.py:variant=B,batch=2048 --workdir runs/swin_b_i1k

AdamW (0.9, 0.999), lr 1e-3 at batch 1024 scaled linearly with `batch`, weight decay 0.05 (not on
biases, norms or relative-position bias tables), 300 epochs: 20 linear warm-up epochs, then cosine
decay to lr/100; gradient clipping at global norm 5; stochastic depth 0.2 / 0.3 / 0.5 (T / S / B),
rising linearly over the blocks; label smoothing 0.1; mixup 0.8 / cutmix 1.0; 224×224 Inception
crops with flips, ImageNet mean/std; no weight EMA (`ema_decay` 0: the paper drops DeiT's EMA, which
did not help). Not implemented here: RandAugment (9, 0.5) and random
erasing 0.25 of the reference recipe (expect a lower number without them).
Paper: 81.3 / 83.0 / 83.5% top-1 (T / S / B, 4.5 / 8.7 / 15.4 GFLOPs); not reproduced here yet.
Hardware and time: the paper trains on 8 GPUs. Training costs 3 × forward FLOPs × 1.28M × 300
≈ 0.5 / 1.0 / 1.8 × 10^19 FLOPs (T / S / B); at a sustained 10k images/s (one 8-GPU node, bf16,
if the input pipeline keeps up) T takes about 11 hours; measure with tools/benchmark.py first.
Data: `tfds build imagenet2012 --file_format=array_record` with the ImageNet tars in
<data_dir>/downloads/manual/. `smoke` shrinks everything to seconds, on generated images (no
dataset needed).
Precision: bfloat16 compute with float32 params and float32 softmax, norms and losses (the reference
trains with float16 autocast); `--config.dtype=float32` for full precision. `smoke` keeps bfloat16.

Departures from the paper:
- No RandAugment (9, 0.5) and no random erasing 0.25 (above).
- The Inception crop is this codebase's, not compared pixel for pixel with the reference's.
"""

from papers_jax.core.config import base_config, parse_arg, synthetic_smoke

IMAGENET_TRAIN = 1_281_167
# variant → (timm name, drop path)
VARIANTS = {"T": ("swin_tiny_patch4_window7_224", 0.2), "S": ("swin_small_patch4_window7_224", 0.3),
            "B": ("swin_base_patch4_window7_224", 0.5)}


def get_config(arg=None):
  args = parse_arg(arg, variant="T", batch=1024, smoke=False)
  if args.variant not in VARIANTS:
    raise ValueError(f"unknown variant {args.variant!r}; choose from {sorted(VARIANTS)}")
  name, drop_path = VARIANTS[args.variant]
  c = base_config()
  c.dtype = "bfloat16"  # compute; params stay float32
  c.model = dict(name=name, num_classes=1000, drop_path_rate=drop_path)
  c.data.name = "tfds:imagenet2012"
  c.data.train_split = "train"
  c.data.eval_split = "validation"
  c.data.image_size = 224
  c.data.augment = "inception"
  c.data.crop_pct = 0.875  # the paper's 224 of 256; mean and std: the model name's (ImageNet's)
  c.batch_size = args.batch
  c.num_epochs = 300.0
  lr = 1e-3 * args.batch / 1024
  c.optimizer.update(name="adamw", lr=lr, b1=0.9, b2=0.999, weight_decay=0.05, clip_grad_norm=5.0,
                     wd_exclude=(r"(^|/)bias$", r"(^|/)scale$", r"relative_position_bias_table"))
  c.schedule.update(name="cosine", warmup_steps=20 * IMAGENET_TRAIN // args.batch, end_lr_ratio=0.01)
  c.label_smoothing = 0.1
  c.mixup = dict(mixup_alpha=0.8, cutmix_alpha=1.0, switch_prob=0.5, prob=1.0)
  c.mesh.update(data=-1, fsdp=1, tensor=1)
  c.data_threads = 16
  c.log_every = 100
  c.eval_every = 5_000
  c.checkpoint_every = 2_000
  c.keep_every = 50_000
  if args.smoke:  # generated images stand in for the dataset: runs offline
    synthetic_smoke(c, 32)
    c.model.update(img_size=32, embed_dim=16, depths=(2, 1), num_heads=(1, 2), window_size=4, num_classes=10)
  return c.lock()
