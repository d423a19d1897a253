"""ViT on scikit-learn's bundled digits: the default experiment (`make demo`).

  python -m papers_jax.main --config configs/vit/digits.py --workdir runs/vit_digits

8×8 grayscale digits, 1,437 for training and a fixed, stratified 360 held out for testing
(never trained on). A small ViT (2×2 patches, 16 tokens + class token) trained from scratch
with AdamW; CPU, a couple of minutes. `smoke` shrinks it to seconds for the test suite.
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
  c.batch_size = 128
  c.num_steps = 900
  c.optimizer.lr = 3e-3
  c.optimizer.weight_decay = 0.05
  c.schedule.warmup_steps = 60
  c.label_smoothing = 0.1
  c.log_every = 50
  c.eval_every = 150
  c.checkpoint_every = 300
  if args.smoke:
    c.model.update(embed_dim=32, depth=2, num_heads=2)
    c.batch_size = 32
    c.num_steps = 20
    c.schedule.warmup_steps = 2
    c.log_every = 5
    c.eval_every = 0
    c.checkpoint_every = 10
  return c.lock()
