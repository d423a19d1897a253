"""The CAM paper's weakly supervised localisation (Zhou et al., 2016, Sec. 3) on bundled data.

  python -m papers_jax.main --config configs/resnet/digits_cam.py --workdir runs/digits_cam
  PYTHONPATH=. python tools/cam_localization.py --config configs/resnet/digits_cam.py \
      --checkpoint runs/digits_cam/checkpoints/240/state --out docs/cam_localization.png

Each of scikit-learn's 8×8 digits, upsampled 2× (nearest) to 16×16, is pasted at a random position
on a black 32×32 canvas (data.name="digits_canvas"; the 1,437 training and the 360 held-out digits
as in `digits`). A GAP + linear classifier is trained on the labels only; the tool then turns each
test image's class activation map into a box and scores it against the digit's true box.
Measured numbers: docs/cam_localization.md.

The network is the paper's CIFAR ResNet-20 (3×3 stem, widths 16/32/64, option-A shortcuts): it keeps
an 8×8 last feature map for a 32×32 input (the CAM paper likewise removes layers of VGG / GoogLeNet so
that the last map is 14×14), then global average pooling and one linear layer, CAM's architecture.
The recipe is the CIFAR one of configs/resnet/digits.py (SGD 0.1, momentum 0.9, weight decay 1e-4 on
every weight, lr ÷10 at 50% and 75%, no clipping, no label smoothing), 240 steps of batch 64.

Departures from the paper (ILSVRC localisation with GoogLeNet-GAP / VGG-GAP):
  - Data: one bundled digit per synthetic 32×32 image, 10 classes, no augmentation; the ground-truth
    box is the digit's tight box. Boxes from the top-1 class only (the paper also scores top-5).
  - Network: ResNet-20 (0.27M parameters) trained from scratch, not ImageNet-pre-trained GoogLeNet.
  - Set explicitly, overriding the base config: no gradient clipping (base: 1.0), weight decay on every
    parameter (base: BatchNorm and biases excluded), no label smoothing.
`smoke` shrinks it to a few steps (n=1).
"""

from papers_jax.core.config import base_config, parse_arg


def get_config(arg=None):
  args = parse_arg(arg, smoke=False)
  c = base_config()
  c.model = dict(name="resnet20_cifar", num_classes=10, in_chans=1, img_size=32)
  c.data.name = "digits_canvas"
  c.data.canvas = 32
  c.data.scale = 2
  c.data.image_size = 32
  c.data.augment = "none"
  c.data.mean = (0.5,)
  c.data.std = (0.5,)
  c.batch_size = 64
  c.num_steps = 240
  c.optimizer.update(name="sgd", lr=0.1, momentum=0.9, nesterov=False, weight_decay=1e-4, wd_exclude=(),
                     clip_grad_norm=0.0, layer_decay=1.0)
  c.schedule.update(name="step", boundaries=(0.5, 0.75), decay_factor=0.1, warmup_steps=0, warmup_shape="linear",
                    warmup_lr_ratio=0.1)
  c.label_smoothing = 0.0
  c.log_every = 20
  c.eval_every = 120
  c.checkpoint_every = 120
  c.async_checkpoint = False
  if args.smoke:
    c.model.update(layers=(1, 1, 1))
    c.batch_size = 32
    c.num_steps = 6
    c.log_every = 2
    c.eval_every = 0
    c.checkpoint_every = 3
  return c.lock()
