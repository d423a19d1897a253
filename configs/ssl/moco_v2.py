"""MoCo v2 (Chen, Fan, Girshick, He 2020): MoCo v1 with an MLP projector, blur and a cosine schedule.

  python -m papers_jax.main --config configs/ssl/moco_v2.py:digits --workdir runs/moco_v2_digits

Paper recipe: ResNet-50, batch 256, SGD (momentum 0.9) lr 0.03, weight decay 1e-4, cosine, 200 epochs:
67.5% ImageNet linear top-1 (the reference README: 67.5 ± 0.1 over 5 runs, released model 67.7; 71.1%
at 800 epochs), τ = 0.2, queue K = 65,536 of 128-d keys, momentum m = 0.999,
per-GPU BatchNorm with shuffle-BN on 8 GPUs (`ssl.bn_group_size` = 32).
What follows the paper and its code: as configs/ssl/moco_v1.py (one-direction loss, shuffle-BN over
groups of 32, EMA of the weights only, weight decay on every parameter, no gradient clipping), with
the 2-layer MLP projector (no BatchNorm) and a cosine lr to 0. Linear evaluation:
configs/ssl/moco_linear.py.
Precision: the ImageNet recipe computes in bfloat16 (float32 params); `digits` and `smoke` run float32.

Departures from the paper:
- The views are made on device (data/views.py), not compared pixel for pixel with the reference's.
- The BatchNorm groups are fixed at 32 images whatever the mesh; on another number of devices a group
  may span devices (the statistics are the same as on the paper's 8 GPUs).
- The `digits` demo uses a ViT (no BatchNorm, so the shuffle changes nothing there) and AdamW.
"""

from papers_jax.tasks.ssl import recipe


def get_config(arg=None):
  return recipe("moco_v2", arg, **{
      "batch_size": 256, "num_epochs": 200.0, "ssl.views": "moco_v2", "ssl.temperature": 0.2,
      "ssl.projector_layers": 2, "ssl.projector_hidden": 2048, "ssl.projector_dim": 128, "ssl.projector_bn": False,
      "ssl.queue_size": 65536, "ssl.momentum": 0.999, "ssl.bn_group_size": 32,
      "optimizer.name": "sgd", "optimizer.lr": 0.03, "optimizer.momentum": 0.9, "optimizer.weight_decay": 1e-4,
      "optimizer.nesterov": False, "optimizer.wd_exclude": (), "optimizer.clip_grad_norm": 0.0,
      "schedule.name": "cosine", "schedule.warmup_steps": 0, "schedule.end_lr_ratio": 0.0})
