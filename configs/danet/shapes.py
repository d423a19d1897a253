"""A small DANet on generated shape scenes with per-pixel masks (bundled, offline; CPU, minutes).

  python -m papers_jax.main --config configs/danet/shapes.py --workdir runs/danet_shapes
  python -m papers_jax.main --config configs/danet/shapes.py:attention=false --workdir runs/fcn_shapes

Scenes of 1–4 rectangles, circles, triangles and ellipses in random colours on a noisy random
background, 64×64, five classes with the background (data/segmentation.py, "segmentation_shapes": 2,048
training and 512 test scenes, fixed). The network is DANet's (models/danet.py): a dilated ResNet at
output stride 8 (one bottleneck block per stage, base width 8, so 256 channels and an 8×8 map at the
end), the official head with PAM and CAM on 64 channels, the two branch outputs as auxiliary losses of
weight 1, bilinear upsampling to 64×64. `attention=false` drops PAM and CAM (the same head without
them: the dilated-FCN baseline). Measured numbers: docs/segmentation.md.

The recipe keeps the paper's form (SGD with momentum 0.9, weight decay 1e-4, poly decay with power
0.9, random flips).

Departures from the paper (Cityscapes, configs/danet/cityscapes.py):
  - Data: generated 64×64 shape scenes, not Cityscapes; no random scaling or cropping.
  - Network: ResNet-50's layout cut to one block per stage at width 8 (0.5M parameters in all), trained
    from scratch, not an ImageNet-pre-trained ResNet-101.
  - Base lr 0.05 (paper 0.01, with a pre-trained backbone), batch 32 (paper 8), 600 steps.
  - Set explicitly, overriding the base config: no gradient clipping (base: 1.0), weight decay on every
    parameter (base: BatchNorm and biases excluded), no label smoothing.
`smoke` shrinks it to a few steps.
"""

from papers_jax.core.config import base_config, parse_arg
from papers_jax.tasks.segmentation import default_config


def get_config(arg=None):
  args = parse_arg(arg, attention=True, smoke=False)
  c = base_config()
  c.task = "segmentation"
  c.model = dict(name="danet_resnet50", num_classes=5, layers=(1, 1, 1, 1), width=8, img_size=64,
                 attention=bool(args.attention))
  c.segmentation = default_config(aux_loss_weight=1.0, flip=True)
  c.data.name = "segmentation_shapes"
  c.data.image_size = 64
  c.data.mean = (0.5, 0.5, 0.5)
  c.data.std = (0.25, 0.25, 0.25)
  c.batch_size = 32
  c.num_steps = 600
  c.optimizer.update(name="sgd", lr=0.05, momentum=0.9, nesterov=False, weight_decay=1e-4, wd_exclude=(),
                     clip_grad_norm=0.0, layer_decay=1.0)
  c.schedule.update(name="poly", power=0.9, warmup_steps=0)
  c.label_smoothing = 0.0
  c.log_every = 50
  c.eval_every = 300
  c.checkpoint_every = 300
  c.async_checkpoint = False
  if args.smoke:
    c.data.image_size = 32
    c.batch_size = 8
    c.num_steps = 2
    c.log_every = 2
    c.eval_every = 0
    c.checkpoint_every = 2
  return c.lock()
