"""ViT on CIFAR-10, from scratch or fine-tuned from converted ImageNet weights.

From scratch (ViT-S/4 at 32×32, 64 tokens), one GPU, about an hour:
  python -m papers_jax.main --config configs/vit/cifar10.py --workdir runs/vit_cifar10
Fine-tuning as in the paper's transfer experiments (ViT-B/16 at 224, SGD momentum 0.9, no weight
decay, cosine, global-norm clip 1, batch 512, 10k steps, warmup 500):
  python tools/convert_weights.py --source timm --model vit_base_patch16_224 --checkpoint w.safetensors \
      --num-classes 10 --out ckpt/vit_b16
  python -m papers_jax.main --config configs/vit/cifar10.py:finetune --workdir runs/vit_b16_cifar10 \
      --config.init_from=ckpt/vit_b16
The paper reports 98.13% (ViT-B/16, ImageNet-21k pre-training) after fine-tuning; this number has
not been reproduced here yet. Data: `tfds build cifar10 --file_format=array_record`.
`smoke` shrinks the model and the run to seconds, on generated images (no dataset needed).

Departures from the paper:
- From scratch: not a paper experiment (the paper only fine-tunes on CIFAR-10); AdamW lr 1e-3,
  weight decay 0.05 (not on biases, norm gains, pos_embed or cls_token), clipping at 1, cosine,
  label smoothing 0.1, drop path 0.1, average pooling.
- `finetune`: at 224 px (the paper fine-tunes at a higher resolution than pre-training, 384 in its
  tables), from timm's augreg ImageNet-21k weights rather than the paper's original checkpoints;
  no Polyak averaging of the weights (the paper reports averaging with factor 0.9999 in its
  fine-tuning; `--config.ema_decay=0.9999` turns the trainer's weight EMA on).
"""

from papers_jax.core.config import base_config, parse_arg, synthetic_smoke


def get_config(arg=None):
  args = parse_arg(arg, smoke=False, finetune=False)
  c = base_config()
  c.data.name = "tfds:cifar10"
  c.data.train_split = "train"
  c.data.eval_split = "test"
  c.data.mean = (0.4914, 0.4822, 0.4465)
  c.data.std = (0.2470, 0.2435, 0.2616)
  if args.finetune:
    c.model = dict(name="vit_base_patch16_224", num_classes=10, img_size=224)
    c.data.image_size = 224
    c.data.augment = "inception"
    c.data.mean = c.data.std = None  # the model name's: timm's augreg ViT weights expect inputs in [-1, 1]
    c.data.crop_pct = 0.875
    c.batch_size = 512
    c.num_steps = 10_000
    c.optimizer.update(name="sgd", lr=0.03, momentum=0.9, weight_decay=0.0, clip_grad_norm=1.0)
    c.schedule.update(name="cosine", warmup_steps=500)
  else:
    c.model = dict(name="vit_small_patch16_224", num_classes=10, img_size=32, patch_size=4,
                   drop_path_rate=0.1, global_pool="avg")
    c.data.image_size = 32
    c.data.augment = "cifar"
    c.batch_size = 512
    c.num_epochs = 200.0
    c.optimizer.update(name="adamw", lr=1e-3, b1=0.9, b2=0.999, weight_decay=0.05, clip_grad_norm=1.0)
    c.schedule.update(name="cosine", warmup_steps=2_000)
    c.label_smoothing = 0.1
  c.optimizer.wd_exclude=(r"(^|/)bias$", r"(^|/)scale$", r"pos_embed", r"cls_token")
  c.log_every = 100
  c.eval_every = 2_000
  c.checkpoint_every = 2_000
  if args.smoke:  # generated images stand in for the dataset: runs offline
    synthetic_smoke(c, 32)
    c.model.update(img_size=32, patch_size=8, embed_dim=32, depth=2, num_heads=2)
    c.data.augment = "cifar"
  return c.lock()
