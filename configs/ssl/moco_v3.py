"""MoCo v3 (Chen, Xie, He 2021): symmetric in-batch InfoNCE with a predictor, for ViTs.

  python -m papers_jax.main --config configs/ssl/moco_v3.py:digits --workdir runs/moco_v3_digits

Paper recipe: ViT-B/16, batch 4096, AdamW lr 1.5e-4 × batch/256 (2.4e-3), weight decay 0.1, 40 warm-up
epochs then cosine, 300 epochs: 76.7% ImageNet linear top-1 (the reference CONFIG.md's ViT-B; ViT-S
73.2%), τ = 0.2, momentum 0.99 → 1 on a cosine; 3-layer projector 4096 → 256 (last BatchNorm without
affine), 2-layer predictor 4096; BYOL's views. The paper freezes the random patch projection for
stability (`--stop-grad-conv1`; here `optimizer.freeze`, matched against the SSL model's parameter
paths, where the ViT sits under `backbone/`).
Precision: the ImageNet recipe computes in bfloat16 (float32 params); `digits` and `smoke` run float32.
"""

from papers_jax.tasks.ssl import recipe


def get_config(arg=None):
  return recipe("moco_v3", arg, **{
      "model": {"name": "vit_base_patch16_224", "global_pool": "token"},
      "batch_size": 4096, "num_epochs": 300.0, "ssl.views": "byol", "ssl.temperature": 0.2,
      "ssl.projector_layers": 3, "ssl.projector_hidden": 4096, "ssl.projector_dim": 256, "ssl.projector_last_bn": True,
      "ssl.predictor_hidden": 4096, "ssl.momentum": 0.99, "ssl.momentum_schedule": "cosine",
      "optimizer.name": "adamw", "optimizer.lr": 2.4e-3, "optimizer.weight_decay": 0.1,
      "optimizer.freeze": ("^backbone/patch_embed/",), "schedule.warmup_steps": 12510})
