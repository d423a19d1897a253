"""YOLOv1 on PASCAL VOC 2007+2012 (Redmon et al. 2016, §2.2 "Training"): the paper's recipe.

  python -m papers_jax.main --config configs/yolo/voc.py --workdir runs/yolov1_voc \
      --config.data.data_dir=<voc>   # <voc>/annotations/instances_trainval0712.json, <voc>/trainval0712/...

VOC is not bundled and nothing downloads: convert VOC 2007+2012 trainval and VOC 2007 test to the COCO
layout the detection task reads (`<voc>/annotations/instances_<split>.json` and the images under
`<voc>/<split>/`; data/scenes.py), with the 20 classes as category ids 1..20 in VOC's order, and name the
splits trainval0712 and test2007 (or set data.train_split / data.eval_split).

Model: `yolov1`, the 24 convolutional and 2 fully connected layers of Figure 3 (models/yolo.py), 448×448
inputs, S = 7, B = 2, C = 20, leaky ReLU 0.1, dropout 0.5 after the first FC layer. Loss (objectives/yolo.py):
sum-squared error with λcoord = 5, λnoobj = 0.5, square-rooted w and h, the responsible predictor by IoU,
confidence target = IoU. Optimiser: SGD with momentum 0.9 and weight decay 5e-4, batch 64, 135 epochs: the
lr rises to 1e-2 over the first epochs, stays at 1e-2 up to epoch 75, 1e-3 for 30 epochs, 1e-4 for the
last 30. Augmentation: random scaling and translations of up to 20% of the image size, exposure and
saturation scaled by up to 1.5 in HSV. Evaluation: VOC-style AP50 is COCO's AP50 here (evaluators/coco.py,
101-point interpolation); the paper reports 63.4 mAP on VOC 2007 test. Not reproduced here.

Departures from the paper:
  - No ImageNet pretraining: the paper first trains the first 20 convolutions (with an average pool and an FC
    layer) on ImageNet at 224×224 for about a week; here the whole network starts from random init
    (He-normal convolutions, Xavier FC layers; the paper states no init). Give `init_from` a converted
    checkpoint to start elsewhere.
  - The warm-up rises linearly from 0 (the paper: from 1e-3) to 1e-2 over the first 2 epochs (the paper:
    "the first epochs", no number), counted in steps for VOC 2007+2012 trainval's 16,551 images
    (259 steps of 64 per epoch; another training set shifts it).
  - Weight decay on the weights only, not the biases (the paper does not say; Darknet decays weights only).
  - Jitter moves each side of the crop window independently (Darknet's), so the aspect ratio changes too;
    the pad is grey. The HSV factors are Darknet's `rand_scale` (uniform in [1, 1.5], inverted half the time).
  - Horizontal flips with probability 0.5 (Darknet's data loader flips; the paper does not mention them).
  - Evaluation: COCO's 101-point AP50 on every box instead of VOC's 11-point AP (VOC 2007) without
    "difficult" objects; detections over score 0.001 after per-class NMS at IoU 0.5, at most 100 per image.
  - Set explicitly, overriding the base config: no gradient clipping (base: none either), a step schedule
    (base: cosine), weight decay 5e-4 (base: 1e-4), biases excluded from decay (base: biases and scales).
"""

from papers_jax.core.config import base_config, parse_arg
from papers_jax.tasks.detection import default_config as detection_defaults

VOC_TRAINVAL_0712 = 16551  # images in VOC 2007 trainval + VOC 2012 trainval
EPOCHS, WARMUP_EPOCHS = 135, 2


def get_config(arg=None):
  args = parse_arg(arg, smoke=False)
  c = base_config()
  c.task = "detection"
  c.model = dict(name="yolov1", grid_size=7, boxes_per_cell=2, drop_rate=0.5, img_size=448)
  c.data.name = "coco"
  c.data.train_split = "trainval0712"
  c.data.eval_split = "test2007"
  c.data.image_size = 448
  c.data.mean, c.data.std = (0.0, 0.0, 0.0), (1.0, 1.0, 1.0)  # Darknet feeds pixels in [0, 1]
  c.detection = detection_defaults(max_boxes=50, coord_weight=5.0, noobj_weight=0.5, flip_prob=0.5, jitter=0.2,
                                   hsv_exposure=1.5, hsv_saturation=1.5, score_threshold=0.001, nms_iou=0.5,
                                   max_detections=100)
  c.batch_size = 64
  c.num_epochs = EPOCHS
  c.optimizer.update(name="sgd", lr=1e-2, momentum=0.9, nesterov=False, weight_decay=5e-4,
                     wd_exclude=(r"(^|/)bias$",), clip_grad_norm=0.0)
  steps_per_epoch = -(-VOC_TRAINVAL_0712 // c.batch_size)
  c.schedule.update(name="step", warmup_steps=WARMUP_EPOCHS * steps_per_epoch, boundaries=(75 / EPOCHS, 105 / EPOCHS),
                    decay_factor=0.1)
  if args.smoke:  # a tiny YOLO for a few steps on the bundled scenes, offline
    c.model = dict(name="yolov1_tiny", grid_size=7, boxes_per_cell=2, img_size=64)
    c.data.name = "shapes_scenes"
    c.data.train_split, c.data.eval_split = "train", "test"
    c.data.image_size = 64
    c.detection.max_boxes = 6
    c.batch_size = 8
    c.num_epochs = 0
    c.num_steps = 4
    c.schedule.warmup_steps = 1
    c.log_every = 2
    c.eval_every = 0
  return c
