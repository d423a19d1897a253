"""MLP-Mixer on ImageNet-1k from scratch (Tolstikhin et al. 2021, §3 and Appendix B).

  python -m papers_jax.main --config configs/mixer/imagenet.py:variant=B/16 --workdir runs/mixer_b16_i1k

The paper's pre-training recipe (§3 "Pre-training"): Adam (0.9, 0.999), batch 4096, 10k linear warm-up
steps then linear decay, weight decay, gradient clipping at global norm 1, resolution 224 (Inception crops
with flips); mean/std 0.5 are timm's for these models (the paper does not state them). Its ImageNet-1k
settings (Appendix B, Table 4, Mixer-B and Mixer-L alike): 300 epochs, lr 0.001, weight decay 0.1,
RandAugment of 2 layers at magnitude 15, mixup 0.5, dropout 0.0, stochastic depth 0.1 (its rate rising
linearly from 0 at the first MLP to 0.1 at the last). Paper, ImageNet-1k from scratch (Table 3, 224 px, 300
epochs): 76.44% (B/16) and 71.76% (L/16) top-1, L overfitting more (§3.2); not reproduced here.
Hardware and time: the paper uses TPU-v3 pods; B/16 costs 3 × 12.6 GFLOPs × 1.28M × 300 ≈ 1.5 × 10^19
FLOPs, about a day on one 8-GPU node (bf16) if the input pipeline keeps up (an estimate, not measured);
measure with tools/benchmark.py first.
Data: `tfds build imagenet2012 --file_format=array_record` with the ImageNet tars in
<data_dir>/downloads/manual/. `smoke` shrinks everything to seconds, on generated images (no
dataset needed).
Precision: bfloat16 compute with float32 params and float32 softmax, norms and losses;
`--config.dtype=float32` for full precision. `smoke` keeps bfloat16.

Departures from the paper:
- No RandAugment (Table 4: 2 layers, magnitude 15); the lr, weight decay, mixup and dropout are Table 4's.
- Stochastic depth 0.1 on every block (timm's Mixer, which the model matches), where Appendix B raises it
  linearly from 0 to 0.1 over the MLPs.
- Weight decay is not applied to biases or norm gains (the paper does not list its exclusions).
- The Inception crop is this codebase's, not compared pixel for pixel with the paper's pipeline.
"""

from papers_jax.core.config import base_config, parse_arg, synthetic_smoke

VARIANTS = ("S/32", "S/16", "B/32", "B/16", "L/32", "L/16")


def get_config(arg=None):
  args = parse_arg(arg, variant="B/16", smoke=False)
  if args.variant not in VARIANTS:
    raise ValueError(f"unknown variant {args.variant!r}; choose from {list(VARIANTS)}")
  width, patch = args.variant.lower().split("/")
  c = base_config()
  c.dtype = "bfloat16"  # compute; params stay float32
  c.model = dict(name=f"mixer_{width}{patch}_224", num_classes=1000, drop_path_rate=0.1)
  c.data.name = "tfds:imagenet2012"
  c.data.train_split = "train[:99%]"      # as the ViT / Mixer papers: 1% of train held out for validation
  c.data.eval_split = "validation"
  c.data.image_size = 224
  c.data.augment = "inception"  # mean, std and crop_pct: the model name's (inputs in [-1, 1], 0.875)
  c.batch_size = 4096
  c.num_epochs = 300.0
  c.optimizer.update(name="adamw", lr=1e-3, b1=0.9, b2=0.999, weight_decay=0.1, clip_grad_norm=1.0,
                     wd_exclude=(r"(^|/)bias$", r"(^|/)scale$"))
  c.schedule.update(name="linear", warmup_steps=10_000, end_lr_ratio=0.0)
  c.mixup = dict(mixup_alpha=0.5, cutmix_alpha=0.0, switch_prob=0.0, prob=1.0)
  c.mesh.update(data=-1, fsdp=1, tensor=1)
  c.data_threads = 16
  c.log_every = 100
  c.eval_every = 5_000
  c.checkpoint_every = 2_000
  c.keep_every = 50_000
  if args.smoke:  # generated images stand in for the dataset: runs offline
    synthetic_smoke(c, 64)
    c.model.update(img_size=64, embed_dim=32, num_blocks=2, num_classes=10)
  return c.lock()
