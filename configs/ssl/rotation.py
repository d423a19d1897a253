"""RotNet (Gidaris, Singh & Komodakis 2018): predict which of 0°, 90°, 180°, 270° an image was rotated by.

  python -m papers_jax.main --config configs/ssl/rotation.py --workdir runs/rotation   # ImageNet
  python -m papers_jax.main --config configs/ssl/rotation.py:digits --workdir runs/rotation_digits

Paper recipe (the reference code's config/ImageNet_RotNet_AlexNet.py): all four rotations of every image in
one batch, batch 192 images (768 rotated copies), random-resized crops, SGD with Nesterov momentum 0.9,
weight decay 5e-4, 50 epochs at lr 0.01, dropped ×0.1 after epochs 15, 30 and 45; the 4-way classifier is
the network's last layers; features probed per convolutional block. Task: tasks/ssl/pretext.py.
Precision: the ImageNet recipe computes in bfloat16 (float32 params); `digits` and `smoke` run float32.

Departures from the paper:
- ResNet-50 backbone (the recipe's default) with a 2-layer MLP head (2048 → 4), not the paper's AlexNet /
  NIN with its own top layers as the rotation classifier.
- The crop is made on device (data/views.py: `pretext`, 8–100% and a flip).
- The step schedule is counted in fractions of training (0.3, 0.6, 0.9) and the last 5 epochs' 1e-5 is
  folded into the third drop.
- Features are probed on the pooled backbone output only (the recipe's k-NN and linear probe), not per block.
- Weight decay applies to every parameter (the reference code's SGD decays all of them).
"""

from papers_jax.tasks.ssl import recipe

# Demo (docs/pretext_selftraining.md): the recipe's tiny ViT and AdamW on 16 px digits, 32 images (128
# rotated copies) per step; crops of 60-100% (a rotated 40% crop of an 8 px digit is hard to tell apart).
DEMO = {"batch_size": 32, "ssl.crop_scale": (0.6, 1.0)}


def get_config(arg=None):
  return recipe("rotation", arg, demo=DEMO, **{
      "batch_size": 192, "num_epochs": 50.0, "ssl.views": "pretext",
      "ssl.projector_layers": 2, "ssl.projector_hidden": 2048, "ssl.projector_bn": True,
      "optimizer.name": "sgd", "optimizer.lr": 0.01, "optimizer.momentum": 0.9, "optimizer.nesterov": True,
      "optimizer.weight_decay": 5e-4, "optimizer.wd_exclude": (), "optimizer.clip_grad_norm": 0.0,
      "schedule.name": "step", "schedule.boundaries": (0.3, 0.6, 0.9), "schedule.decay_factor": 0.1,
      "schedule.warmup_steps": 0})
