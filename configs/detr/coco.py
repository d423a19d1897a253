"""DETR on COCO 2017 (Carion et al. 2020, §4 and appendix A.4): the paper's recipe.

  python -m papers_jax.main --config configs/detr/coco.py --workdir runs/detr_r50_coco \
      --config.data.data_dir=<coco>   # <coco>/annotations/instances_train2017.json, <coco>/train2017/...
  python -m papers_jax.main --config configs/detr/coco.py:backbone=101 ...

Model: DETR-R50 (or R101): ResNet with frozen BatchNorm, d_model 256, 8 heads, 6 encoder and 6 decoder
layers, FFN 2048, dropout 0.1, 100 object queries, 91 classes + no-object (models/detr.py); the set loss
with auxiliary losses at every decoder layer is the detection task's (class 1, L1 5, GIoU 2; no-object
weight 0.1). Optimiser: AdamW, lr 1e-4 for the transformer and 1e-5 for the backbone
(`optimizer.lr_multipliers`), weight decay 1e-4 on every parameter, gradients clipped at global norm 0.1;
the stem and layer1 do not train (`optimizer.freeze`, as the reference code's `train_backbone` keeps only
layer2–4). Batch 64 (the paper: 16 GPUs × 4), 500 epochs, lr × 0.1 after epoch 400. Paper (val2017):
AP 42.0 (R50), 43.5 (R101). Not reproduced here. `smoke` trains a tiny DETR for a few steps on the bundled
generated scenes, offline.

Departures from the paper:
  - The backbone starts from random init unless `init_from` gives a whole DETR params checkpoint (e.g. HF's
    `facebook/detr-resnet-50` converted with convert/hf_detr.py); the paper starts it from torchvision's
    ImageNet ResNet. A frozen-BN backbone from random init does not learn: convert weights first.
  - Images: the detection task's augmentation and its fixed padded size (static shapes under jit), not the
    paper's random resize of the shorter side to 480–800 (longest ≤ 1333) with random crops per batch.
  - Set explicitly, overriding the base config: weight decay on biases and norms too (base: excluded),
    clipping 0.1 (base: 1.0), no warmup, a step schedule (base: cosine).
"""

from papers_jax.core.config import base_config, parse_arg
from papers_jax.tasks.detection import default_config as detection_defaults

SMOKE_MODEL = dict(num_classes=4, backbone="resnet50", backbone_width=8, backbone_layers=(1, 1, 1, 1), d_model=32,
                   num_heads=4, encoder_layers=1, decoder_layers=2, ffn_dim=64, num_queries=8)


def get_config(arg=None):
  args = parse_arg(arg, backbone=50, smoke=False)
  if args.backbone not in (50, 101):
    raise ValueError(f"backbone={args.backbone!r}; DETR's are ResNet-50 and ResNet-101")
  c = base_config()
  c.task = "detection"
  c.model = dict(name=f"detr_resnet{args.backbone}", num_classes=91, num_queries=100, dropout=0.1)
  c.data.name = "coco"
  c.data.train_split = "train2017"
  c.data.eval_split = "val2017"
  c.data.image_size = 800
  c.data.mean, c.data.std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)  # the ImageNet backbone's
  c.detection = detection_defaults(max_boxes=100, flip_prob=0.5)
  c.batch_size = 64
  c.num_epochs = 500
  c.optimizer.update(name="adamw", lr=1e-4, b1=0.9, b2=0.999, eps=1e-8, weight_decay=1e-4, wd_exclude=(),
                     clip_grad_norm=0.1, lr_multipliers=((r"^backbone/", 0.1),),
                     freeze=(r"^backbone/(conv1|layer1)/",))
  c.schedule.update(name="step", warmup_steps=0, boundaries=(400 / 500,), decay_factor=0.1)
  if args.smoke:
    c.model = dict(name="detr_resnet50", **SMOKE_MODEL)
    c.data.name = "shapes_scenes"
    c.data.train_split, c.data.eval_split = "train", "test"
    c.data.image_size = 64
    c.detection.max_boxes = 6
    c.batch_size = 8
    c.num_epochs = 0
    c.num_steps = 4
    c.log_every = 2
    c.eval_every = 0
  return c
