"""DANet-101 on Cityscapes (Fu et al., CVPR 2019, §4.1 and §4.2): the paper's recipe.

  python -m papers_jax.main --config configs/danet/cityscapes.py --workdir runs/danet101_cityscapes \
      --config.data.data_dir=/data/cityscapes --config.init_from=<ImageNet ResNet-101 checkpoint> \
      --config.init_prefix=backbone/

The network (models/danet.py): a dilated ResNet-101 at output stride 8 with the official Cityscapes
model's multi-grid dilations (4, 8, 16) in its last stage, the official head with PAM and CAM, the
two branch outputs as auxiliary losses of weight 1 (the official SegmentationMultiLosses). The recipe
(§4.2): SGD with momentum 0.9 and weight decay 1e-4, base lr 0.01 with poly decay
lr·(1 − iter/total)^0.9, batch 8, random crops of 768 × 768 and random left-right flips, 240 epochs
(the official README's command: `--epochs 240 --batch-size 8 --base-size 1024 --crop-size 768`);
evaluation on the 500 val images at their full 1024 × 2048 resolution, single scale.

Paper: 81.5% mIoU on the test set (Table 5, fine data only, with multi-grid, multi-scale
testing); the official README gives 79.93% mIoU / 95.97% pixel accuracy single-scale on val (the 2020
re-release). Not reproduced here.
Data: the user's Cityscapes files (data/segmentation.py's "cityscapes": leftImg8bit and gtFine unzipped
into data.data_dir); a missing folder stops the run with how to get it. `smoke`: the same network and
recipe for two steps on the bundled shape scenes at 64 px, offline.

Departures from the paper:
  - The paper's backbone is ImageNet-pre-trained; this config starts it random unless `init_from` names
    a checkpoint (e.g. a converted torchvision / timm ResNet-101, with init_prefix "backbone/").
  - Random rescaling of the short side to 0.75–2.0 × the 1024-px base size before the crop, as the
    official 2018 code's `_sync_transform` (the paper names only cropping and flipping).
  - The official code trains the head with 10× the backbone's lr; here every parameter has the base lr.
  - The head's convolutions take He-normal (fan-out) init, not torch's default uniform one.
  - BatchNorm synchronised over the whole batch of 8 (the code's SyncBN), torch's momentum 0.1 / eps 1e-5.
  - Set explicitly, overriding the base config: no gradient clipping (base: 1.0), weight decay on every
    parameter (base: BatchNorm and biases excluded), no label smoothing.
"""

from papers_jax.core.config import base_config, parse_arg
from papers_jax.tasks.segmentation import default_config

EPOCHS, BATCH, TRAIN_IMAGES = 240, 8, 2975


def get_config(arg=None):
  args = parse_arg(arg, smoke=False)
  c = base_config()
  c.task = "segmentation"
  c.model = dict(name="danet_resnet101", num_classes=19, multi_grid=(4, 8, 16), img_size=768)
  # The official code's short side drawn from 0.75–2.0 × base size 1024: Cityscapes' 1024 short side × 0.75–2.0.
  c.segmentation = default_config(aux_loss_weight=1.0, crop_size=768, scale_range=(0.75, 2.0), flip=True)
  c.data.name = "cityscapes"
  c.data.train_split = "train"
  c.data.eval_split = "val"
  c.data.image_size = 768
  c.data.mean = (0.485, 0.456, 0.406)
  c.data.std = (0.229, 0.224, 0.225)
  c.batch_size = BATCH
  c.num_steps = EPOCHS * TRAIN_IMAGES // BATCH
  c.optimizer.update(name="sgd", lr=0.01, momentum=0.9, nesterov=False, weight_decay=1e-4, wd_exclude=(),
                     clip_grad_norm=0.0, layer_decay=1.0)
  c.schedule.update(name="poly", power=0.9, warmup_steps=0)
  c.label_smoothing = 0.0
  c.data_threads = 8
  c.log_every = 50
  c.eval_every = 5_000
  c.checkpoint_every = 2_000
  if args.smoke:
    c.model.num_classes = 5
    c.segmentation.update(crop_size=0, scale_range=(1.0, 1.0))
    c.data.name = "segmentation_shapes"
    c.data.train_split, c.data.eval_split = "train", "test"
    c.data.image_size = 64
    c.num_steps = 2
    c.data_threads = 2
    c.log_every = 1
    c.eval_every = 0
    c.checkpoint_every = 2
  return c.lock()
