"""PoolFormer on ImageNet-1k from scratch: the paper's recipe (Yu et al. 2022, §4.1 and Appendix A).

  python -m papers_jax.main --config configs/poolformer/imagenet.py:variant=S12 --workdir runs/poolformer_s12
  python -m papers_jax.main --config configs/poolformer/imagenet.py:variant=M48,batch=2048 --workdir runs/pf_m48

DeiT's training scheme, as the paper: AdamW (0.9, 0.999), lr 1e-3 per 1024 images scaled linearly with
`batch` (4e-3 at the paper's 4096), weight decay 0.05 (not on biases, norm gains and layer scales, as
timm's trainer the official code ran), 300 epochs with 5 linear warm-up epochs then cosine decay; label
smoothing 0.1; RandAugment (m9, std 0.5), mixup 0.8 / cutmix 1.0, random erasing 0.25; stochastic depth
0.1 / 0.1 / 0.2 / 0.3 / 0.4 (S12 / S24 / S36 / M36 / M48), layer scale (the model's table); no dropout;
224×224 Inception crops with flips, ImageNet mean/std, evaluation at crop 0.9 (S) / 0.95 (M).
Paper: 77.2 / 80.3 / 81.4 / 82.1 / 82.5% top-1 (S12 / S24 / S36 / M36 / M48; 1.8 / 3.4 / 5.0 / 8.8 /
11.6 GMACs); not reproduced here. Hardware and time: the paper trains on 8 A100s. Training costs
3 × forward FLOPs × 1.28M × 300 ≈ 4 × 10^18 FLOPs for S12; measure throughput with tools/benchmark.py first.
Data: `tfds build imagenet2012 --file_format=array_record` with the ImageNet tars in
<data_dir>/downloads/manual/. `smoke` shrinks everything to seconds, on generated images (no
dataset needed).
Precision: bfloat16 compute with float32 params and float32 norms and losses (the official code trains
with float16 autocast); `--config.dtype=float32` for full precision. `smoke` keeps bfloat16.

Departures from the paper:
- The Inception crop, RandAugment and random erasing are this codebase's, not compared pixel for pixel
  with timm's pipeline that the official code used.
- The cosine decays per step to lr · min_lr / lr (timm 0.4's defaults the official script kept: min lr 1e-5,
  so `end_lr_ratio` = 1e-5 / lr), where timm steps it per epoch; its warm-up starts from 0, not 1e-6.
- The official code's batch is 4096 on 8 GPUs with no gradient accumulation stated; the default here is
  `batch=4096` too, so a smaller machine needs `batch=...` (the lr scales with it).
"""

from papers_jax.core.config import base_config, parse_arg, synthetic_smoke
from papers_jax.models.poolformer import PAPER_DROP_PATH

IMAGENET_TRAIN = 1_281_167
VARIANTS = ("S12", "S24", "S36", "M36", "M48")


def get_config(arg=None):
  args = parse_arg(arg, variant="S12", batch=4096, smoke=False)
  if args.variant not in VARIANTS:
    raise ValueError(f"unknown variant {args.variant!r}; choose from {list(VARIANTS)}")
  name = f"poolformer_{args.variant.lower()}"
  c = base_config()
  c.dtype = "bfloat16"  # compute; params stay float32
  c.model = dict(name=name, num_classes=1000, drop_path_rate=PAPER_DROP_PATH[name])
  c.data.name = "tfds:imagenet2012"
  c.data.train_split = "train"
  c.data.eval_split = "validation"
  c.data.image_size = 224
  c.data.augment = "inception"  # mean, std and crop_pct: the model name's
  c.data.randaugment = "rand-m9-mstd0.5-inc1"
  c.data.random_erasing = 0.25
  c.batch_size = args.batch
  c.num_epochs = 300.0
  c.optimizer.update(name="adamw", lr=1e-3 * args.batch / 1024, b1=0.9, b2=0.999, weight_decay=0.05,
                     clip_grad_norm=0.0, wd_exclude=(r"(^|/)bias$", r"(^|/)scale$"))
  c.schedule.update(name="cosine", warmup_steps=5 * IMAGENET_TRAIN // args.batch,
                    end_lr_ratio=1e-5 / c.optimizer.lr)
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
    c.model.update(img_size=32, depths=(1, 1), dims=(8, 16), num_classes=10)
    c.data.randaugment = ""
  return c.lock()
