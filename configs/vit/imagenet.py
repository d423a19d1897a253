"""ViT on ImageNet-1k from scratch: the paper's recipe (Dosovitskiy et al. 2021, Table 3).

  python -m papers_jax.main --config configs/vit/imagenet.py:variant=B/16 --workdir runs/vit_b16_i1k

Adam(0.9, 0.999), batch 4096, base LR 3e-3 (B) / 1e-3 (L), weight decay 0.3 (decoupled, as in
the paper's code), linear warmup of 10k steps then cosine decay, global-norm clipping at 1,
dropout 0.1, 300 epochs (B) / 90 (L), 224×224 Inception crops with flips. The paper reports
77.9% top-1 for ViT-B/16 and 76.5% for ViT-L/16 trained this way on ImageNet-1k only;
not reproduced here yet (a TPU v3-256 or 64+ GPUs, about a day for B/16).
Training uses 99% of the train split; the held-out 1% (the paper's validation set) is evaluated as
`eval/minival/...` and the official validation split as `eval/...`, every 5,000 steps.
Data: `tfds build imagenet2012 --file_format=array_record` with the ImageNet tars in
<data_dir>/downloads/manual/. `smoke` shrinks everything to seconds, on generated images (no
dataset needed).
Precision: bfloat16 compute with float32 params and float32 softmax, norms and losses;
`--config.dtype=float32` for full precision. `smoke` keeps bfloat16.

Departures from the paper:
- Weight decay is not applied to biases, norm gains, pos_embed or cls_token (big_vision's default
  decays kernels only; the paper does not list its exclusions).
- The Inception crop is this codebase's (data/), not compared pixel for pixel with the paper's
  TensorFlow pipeline.
"""

from papers_jax.core.config import base_config, parse_arg, synthetic_smoke

# variant → (timm width name, patch, base LR, epochs)
VARIANTS = {
    "Ti/16": ("tiny", 16, 3e-3, 300), "S/16": ("small", 16, 3e-3, 300), "S/32": ("small", 32, 3e-3, 300),
    "B/16": ("base", 16, 3e-3, 300), "B/32": ("base", 32, 3e-3, 300),
    "L/16": ("large", 16, 1e-3, 90), "L/32": ("large", 32, 1e-3, 90), "H/14": ("huge", 14, 1e-3, 90),
}


def get_config(arg=None):
  args = parse_arg(arg, variant="B/16", smoke=False)
  if args.variant not in VARIANTS:
    raise ValueError(f"unknown variant {args.variant!r}; choose from {sorted(VARIANTS)}")
  width, patch, lr, epochs = VARIANTS[args.variant]
  c = base_config()
  c.dtype = "bfloat16"  # compute; params stay float32
  c.model = dict(name=f"vit_{width}_patch{patch}_224", num_classes=1000, drop_rate=0.1)
  c.data.name = "tfds:imagenet2012"
  c.data.train_split = "train[:99%]"      # the paper holds out 1% of train for validation
  c.data.eval_split = "validation"
  c.data.image_size = 224
  c.data.augment = "inception"
  c.data.crop_pct = 0.875  # mean and std: the model name's (inputs in [-1, 1])
  c.batch_size = 4096
  c.num_epochs = float(epochs)
  c.optimizer.update(name="adamw", lr=lr, b1=0.9, b2=0.999, weight_decay=0.3, clip_grad_norm=1.0,
                     wd_exclude=(r"(^|/)bias$", r"(^|/)scale$", r"pos_embed", r"cls_token"))
  c.schedule.update(name="cosine", warmup_steps=10_000, end_lr_ratio=0.0)
  c.mesh.update(data=-1, fsdp=1, tensor=1)
  c.data_threads = 16
  c.log_every = 100
  c.eval_every = 5_000
  # The held-out 1% of train (the paper's validation set; big_vision's "minival"), as eval/minival/...
  c.evals.minival = dict(type="task", split="train[99%:]", every=5_000)
  c.checkpoint_every = 2_000
  c.keep_every = 50_000
  if args.smoke:  # generated images stand in for the dataset: runs offline
    synthetic_smoke(c, 64)
    c.evals.minival.update(split="train", every=0)
    c.model.update(embed_dim=32, depth=2, num_heads=2, img_size=64, patch_size=16)
  return c.lock()
