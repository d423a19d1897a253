"""Fine-tuning an MAE-pre-trained ViT on ImageNet-1k (He et al. 2022, Appendix A.1, Table 9),
and partial fine-tuning of its last k blocks (§4.3, Figure 9).

  python -m papers_jax.main --config configs/mae/finetune.py:variant=B/16 --workdir runs/mae_b16_ft \
      --config.init_from=runs/mae_b16/checkpoints/<step>/state
  python -m papers_jax.main --config configs/mae/finetune.py:variant=L/16,partial=4 ...   # last 4 blocks only

ViT with global average pooling and fc_norm (the pre-trained final `norm` is dropped), learned
position embedding started at the pre-training's fixed sin-cos table, head N(0, 2e-5²). AdamW
β = (0.9, 0.999), weight decay 0.05, lr = blr × batch / 256 with blr 5e-4 (B) / 1e-3 (L, H), batch
1024, layer-wise lr decay 0.65 (B) / 0.75 (L, H), 5 warm-up epochs then cosine to 1e-6, drop path
0.1 / 0.2 / 0.3, label smoothing 0.1, mixup 0.8, cutmix 1.0, 100 epochs (B) / 50 (L, H),
RandAugment (9, 0.5) as timm's "rand-m9-mstd0.5-inc1" and random erasing 0.25 (timm's mode "pixel",
one box), after the random-resized crop and flip.
Paper (1600-epoch pre-training): 83.6 / 85.9 / 86.9% top-1; not reproduced here.
`partial=k` (k ≥ 1) trains only the last k blocks, fc_norm and the head: the rest gets no gradient
(`frozen_blocks`) and no weight decay, so AdamW leaves it unchanged. (optimizer.freeze would also
drop its optimizer state, but the trainer cannot shard the masked optimizer state yet.) The paper
tunes the number of epochs for each k; set it with --config.num_epochs.
Data: tfds imagenet2012 (see configs/mae/pretrain.py). `smoke` shrinks everything to seconds, on generated images (no
dataset needed).
Weight decay is not applied to biases, norm gains, pos_embed or cls_token (the reference's
`no_weight_decay` list and 1-D parameters); no gradient clipping.
No weight EMA (`ema_decay` 0): neither Table 9 nor the reference's fine-tuning commands use one.
Precision: bfloat16 compute with float32 params and float32 softmax, norms and losses (the reference
fine-tunes with float16 autocast); `--config.dtype=float32` for full precision. `smoke` keeps bfloat16.

Departures from the paper:
- Random erasing runs on the host on uint8 images, before the device normalises them: its N(0, 1)
  noise is drawn in normalised space and mapped back, so it is rounded to uint8 and clipped to
  [0, 255] (|z| beyond about 2); the reference erases the normalised float tensor.
- RandAugment and random erasing draw from numpy's generator per example, not Python's `random`,
  so the same seed gives other (equally distributed) draws than the reference.
- The random-resized crop resamples bilinearly (the reference: bicubic); RandAugment's geometric
  ops are bicubic, as the reference's.
"""

from papers_jax.core.config import base_config, parse_arg, synthetic_smoke
from papers_jax.tasks.mae import ENCODER_INIT_SKIP

IMAGENET_TRAIN = 1_281_167
# variant → (timm ViT name, base lr, layer decay, drop path, epochs)
VARIANTS = {
    "B/16": ("vit_base_patch16_224", 5e-4, 0.65, 0.1, 100),
    "L/16": ("vit_large_patch16_224", 1e-3, 0.75, 0.2, 50),
    "H/14": ("vit_huge_patch14_224", 1e-3, 0.75, 0.3, 50),
}


def get_config(arg=None):
  args = parse_arg(arg, variant="B/16", partial=0, batch=1024, smoke=False)
  if args.variant not in VARIANTS:
    raise ValueError(f"unknown variant {args.variant!r}; choose from {sorted(VARIANTS)}")
  name, blr, layer_decay, drop_path, epochs = VARIANTS[args.variant]
  c = base_config()
  c.dtype = "bfloat16"  # compute; params stay float32
  c.model = dict(name=name, num_classes=1000, global_pool="avg", drop_path_rate=drop_path, pos_embed_init="sincos",
                 head_init_std=2e-5, frozen_blocks=0)
  c.init_skip = ENCODER_INIT_SKIP + (r"^norm/",)
  c.data.name = "tfds:imagenet2012"
  c.data.train_split = "train"
  c.data.eval_split = "validation"
  c.data.image_size = 224
  c.data.augment = "inception"
  c.data.crop_pct = 0.875  # the reference's 224 of 256
  c.data.mean = (0.485, 0.456, 0.406)  # the encoder's pre-training normalisation, not the ViT name's
  c.data.std = (0.229, 0.224, 0.225)
  c.data.randaugment = "rand-m9-mstd0.5-inc1"
  c.data.random_erasing = 0.25
  c.batch_size = args.batch
  c.num_epochs = float(epochs)
  lr = blr * args.batch / 256
  c.optimizer.update(name="adamw", lr=lr, b1=0.9, b2=0.999, weight_decay=0.05, clip_grad_norm=0.0, wd_exclude=(r"(^|/)bias$", r"(^|/)scale$", r"pos_embed", r"cls_token"),
                     layer_decay=layer_decay)
  c.schedule.update(name="cosine", warmup_steps=5 * IMAGENET_TRAIN // args.batch, end_lr_ratio=1e-6 / lr)
  c.label_smoothing = 0.1
  c.mixup = dict(mixup_alpha=0.8, cutmix_alpha=1.0, switch_prob=0.5, prob=1.0)
  c.mesh.update(data=-1, fsdp=1, tensor=1)
  c.data_threads = 16
  c.log_every = 100
  c.eval_every = 5_000
  c.checkpoint_every = 2_000
  depth = None
  if args.smoke:  # generated images stand in for the dataset: runs offline
    synthetic_smoke(c, 32, steps=4, warmup_steps=1, checkpoint_every=4)
    c.model.update(img_size=32, patch_size=8, embed_dim=32, depth=2, num_heads=2, num_classes=10)
    depth = 2
  if args.partial:
    from papers_jax import models
    depth = depth or models.model_config(name)["depth"]
    if not 0 < args.partial <= depth:
      raise ValueError(f"partial={args.partial}: choose 1..{depth} blocks to fine-tune")
    frozen = depth - args.partial
    c.model.frozen_blocks = frozen
    c.optimizer.wd_exclude = tuple(c.optimizer.wd_exclude) + (r"^(patch_embed|cls_token|pos_embed)(/|$)",) + tuple(
        rf"^blocks/{i}/" for i in range(frozen))
  return c.lock()
