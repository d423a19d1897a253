"""MoCo v1 (He et al. 2020): InfoNCE against a queue of 65,536 keys from a momentum encoder.

  python -m papers_jax.main --config configs/ssl/moco_v1.py:digits --workdir runs/moco_v1_digits

Paper recipe: ResNet-50 with a linear 128-d projection, batch 256, SGD (momentum 0.9) lr 0.03,
weight decay 1e-4, 200 epochs with the lr ×0.1 at epochs 120 and 160: 60.6% ImageNet linear top-1 (the
reference README's released model; 60.8 ± 0.2 over its 5 runs), τ = 0.07,
m = 0.999 (the ablation: 0.99 is worse, 0.9999 a little worse), per-GPU BatchNorm with shuffle-BN.
What follows the paper and its code: queries of one view and keys of the other (one direction, as
the reference), the keys from the key encoder on the globally permuted batch with BatchNorm over
groups of 32 images (8 GPUs × 32; `ssl.bn_group_size`), then unshuffled (tasks/ssl/moco.py,
`shuffled_keys`); the key encoder is the EMA of the query encoder's weights only, its BatchNorm
statistics its own; SGD weight decay on every parameter (the reference passes `model.parameters()`),
no gradient clipping. Linear evaluation: configs/ssl/moco_linear.py.
Precision: the ImageNet recipe computes in bfloat16 (float32 params); `digits` and `smoke` run float32.

Departures from the paper:
- The views are made on device (data/views.py), not compared pixel for pixel with the reference's.
- The BatchNorm groups are fixed at 32 images whatever the mesh; on another number of devices a group
  may span devices (the statistics are the same as on the paper's 8 GPUs).
- The `digits` demo uses a ViT (no BatchNorm, so the shuffle changes nothing there) and AdamW.
"""

from papers_jax.tasks.ssl import recipe


def get_config(arg=None):
  return recipe("moco_v1", arg, **{
      "batch_size": 256, "num_epochs": 200.0, "ssl.views": "moco_v1", "ssl.temperature": 0.07,
      "ssl.projector_layers": 1, "ssl.projector_bn": False, "ssl.projector_dim": 128,
      "ssl.queue_size": 65536, "ssl.momentum": 0.999, "ssl.bn_group_size": 32,
      "optimizer.name": "sgd", "optimizer.lr": 0.03, "optimizer.momentum": 0.9, "optimizer.weight_decay": 1e-4,
      "optimizer.nesterov": False, "optimizer.wd_exclude": (), "optimizer.clip_grad_norm": 0.0,
      "schedule.name": "step", "schedule.warmup_steps": 0, "schedule.boundaries": (0.6, 0.8),
      "schedule.decay_factor": 0.1})
