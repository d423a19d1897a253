"""BYOL (Grill et al. 2020): online predictor regresses the momentum encoder's projection.

  python -m papers_jax.main --config configs/ssl/byol.py:digits --workdir runs/byol_digits

Paper recipe: ResNet-50, batch 4096, LARS, lr 0.2 × batch/256 (3.2), weight decay 1.5e-6, 10 warm-up
epochs then cosine over 1000 epochs (74.3% linear top-1); projector and predictor 4096 → 256 with
BatchNorm; target momentum 0.996 → 1 on a cosine; asymmetric views (blur 1.0/0.1, solarise 0/0.2).
"""

from papers_jax.tasks.ssl import recipe


def get_config(arg=None):
  return recipe("byol", arg, **{
      "batch_size": 4096, "num_epochs": 1000.0, "ssl.views": "byol",
      "ssl.projector_layers": 2, "ssl.projector_hidden": 4096, "ssl.projector_dim": 256,
      "ssl.predictor_hidden": 4096, "ssl.momentum": 0.996, "ssl.momentum_schedule": "cosine",
      "optimizer.name": "lars", "optimizer.lr": 3.2, "optimizer.weight_decay": 1.5e-6,
      "schedule.warmup_steps": 3130})
