"""Deformable DETR on COCO 2017 (Zhu et al. 2021, §5 "Implementation details"): the paper's recipe.

  python -m papers_jax.main --config configs/deformable_detr/coco.py --workdir runs/ddetr_coco \
      --config.data.data_dir=<coco>   # <coco>/annotations/instances_train2017.json, <coco>/train2017/...
  python -m papers_jax.main --config configs/deformable_detr/coco.py:variant=box_refine ...
  python -m papers_jax.main --config configs/deformable_detr/coco.py:variant=two_stage ...

Model: ResNet-50 with frozen BatchNorm, C3–C5 and a stride-2 C6, 4 levels × 4 sampling points, 8 heads,
d_model 256, FFN 1024, 6 + 6 layers, dropout 0.1, 300 queries, a sigmoid class head over 91 classes
(models/deformable_detr.py); `variant`: plain, box_refine (iterative bounding-box refinement) or two_stage
(box refinement with encoder proposals), the paper's Table 1 rows. The focal set loss (α 0.25, γ 2; class
cost and weight 2, L1 5, GIoU 2, auxiliary losses at every layer) is the detection task's.
Optimiser: AdamW, lr 2e-4, × 0.1 for the backbone and for the linear layers that predict the sampling
offsets and the reference points (`optimizer.lr_multipliers`), weight decay 1e-4 on every parameter,
gradients clipped at global norm 0.1; the stem and layer1 do not train, as in the reference code. Batch 32
(8 GPUs × 4), 50 epochs, lr × 0.1 after epoch 40. Paper (val2017): AP 44.5 (plain), 46.2 (box refine),
46.9 (two-stage). Not reproduced here. `smoke` trains a tiny model for a few steps on the bundled
generated scenes, offline.

Departures from the paper:
  - The backbone starts from random init unless `init_from` gives a whole Deformable DETR params checkpoint
    (HF's `SenseTime/deformable-detr` converted with convert/hf_detr.py); the paper starts it from an
    ImageNet ResNet-50. A frozen-BN backbone from random init does not learn: convert weights first.
  - Images: the detection task's augmentation and its fixed padded size, not the paper's random resize of
    the shorter side to 480–800 (longest ≤ 1333) with random crops.
  - Set explicitly, overriding the base config: weight decay on biases and norms too (base: excluded),
    clipping 0.1 (base: 1.0), no warmup, a step schedule (base: cosine).
"""

from papers_jax.core.config import base_config, parse_arg
from papers_jax.tasks.detection import default_config as detection_defaults

VARIANTS = {"plain": "deformable_detr_resnet50", "box_refine": "deformable_detr_resnet50_box_refine",
            "two_stage": "deformable_detr_resnet50_two_stage"}
SMOKE_MODEL = dict(num_classes=4, backbone_width=8, backbone_layers=(1, 1, 1, 1), d_model=32, num_heads=4,
                   encoder_layers=1, decoder_layers=2, ffn_dim=64, num_queries=8, two_stage_num_proposals=8)


def get_config(arg=None):
  args = parse_arg(arg, variant="plain", smoke=False)
  if args.variant not in VARIANTS:
    raise ValueError(f"variant={args.variant!r}; choose from {list(VARIANTS)}")
  c = base_config()
  c.task = "detection"
  c.model = dict(name=VARIANTS[args.variant], num_classes=91, num_queries=300, dropout=0.1)
  c.data.name = "coco"
  c.data.train_split = "train2017"
  c.data.eval_split = "val2017"
  c.data.image_size = 800
  c.data.mean, c.data.std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)  # the ImageNet backbone's
  c.detection = detection_defaults(max_boxes=100, flip_prob=0.5, class_cost=2.0, class_weight=2.0)
  c.batch_size = 32
  c.num_epochs = 50
  c.optimizer.update(name="adamw", lr=2e-4, b1=0.9, b2=0.999, eps=1e-8, weight_decay=1e-4, wd_exclude=(),
                     clip_grad_norm=0.1,
                     lr_multipliers=((r"^backbone/", 0.1), (r"(^|/)(sampling_offsets|reference_points)/", 0.1)),
                     freeze=(r"^backbone/(conv1|layer1)/",))
  c.schedule.update(name="step", warmup_steps=0, boundaries=(40 / 50,), decay_factor=0.1)
  if args.smoke:
    c.model = dict(name=VARIANTS[args.variant], **SMOKE_MODEL)
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
