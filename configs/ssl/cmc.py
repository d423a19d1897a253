"""CMC (Tian, Krishnan, Isola 2020): contrastive multiview coding between the L and ab channels.

  python -m papers_jax.main --config configs/ssl/cmc.py:digits --workdir runs/cmc_digits

Paper recipe: two half-width ResNet-50s (one for L, one for ab; 64.1% ImageNet linear top-1 on their
concatenated features: not verified here, an early reference README gives "~63%"), random-resized
crop + flip then RGB → Lab (normalised with the reference's channel ranges), linear 128-d projections
with L2 normalisation, one memory bank per view (momentum 0.5), NCE with m = 16384 uniform draws,
τ = 0.07; batch 256, SGD (momentum 0.9) lr 0.03, weight decay 1e-4, 240 epochs with the lr ×0.1 at
epochs 120, 160 and 200; SGD weight decay on every parameter, no gradient clipping.

Departures from the paper:
- The views are made on device (data/views.py), not compared pixel for pixel with the reference's.

Digits deviations: the digits have one channel, so the two views are two augmented crops of the
same image, each to its own encoder (the small ViT at full width); as for InstDisc's demo
(configs/ssl/instdisc.py), the projections end in a BatchNorm without affine and τ = 0.5.
Precision: the ImageNet recipe computes in bfloat16 (float32 params); `digits` and `smoke` run float32.
"""

from papers_jax.tasks.ssl import recipe

DEMO = {"ssl.views": "moco_v1", "ssl.lab_views": False, "ssl.nce_negatives": 1024, "ssl.temperature": 0.5,
        "ssl.projector_last_bn": True}


def get_config(arg=None):
  return recipe("cmc", arg, demo=DEMO, **{
      "model": {"name": "resnet50", "width": 32},
      "batch_size": 256, "num_epochs": 240.0, "ssl.views": "cmc", "ssl.lab_views": True, "ssl.temperature": 0.07,
      "ssl.projector_layers": 1, "ssl.projector_bn": False, "ssl.projector_dim": 128,
      "ssl.nce_negatives": 16384, "ssl.bank_momentum": 0.5,
      "optimizer.name": "sgd", "optimizer.lr": 0.03, "optimizer.momentum": 0.9, "optimizer.weight_decay": 1e-4,
      "optimizer.nesterov": False, "optimizer.wd_exclude": (), "optimizer.clip_grad_norm": 0.0,
      "schedule.name": "step", "schedule.warmup_steps": 0, "schedule.boundaries": (0.5, 2 / 3, 5 / 6),
      "schedule.decay_factor": 0.1})
