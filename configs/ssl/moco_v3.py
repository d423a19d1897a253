"""MoCo v3 (Chen, Xie, He 2021): symmetric in-batch InfoNCE with a predictor, for ViTs.

  python -m papers_jax.main --config configs/ssl/moco_v3.py:digits --workdir runs/moco_v3_digits

Paper recipe: ViT-B/16, batch 4096, AdamW lr 1.5e-4 × batch/256 (2.4e-3), weight decay 0.1, 40 warm-up
epochs then cosine, 300 epochs: 76.7% ImageNet linear top-1 (the reference CONFIG.md's ViT-B; ViT-S
73.2%), τ = 0.2, momentum 0.99 → 1 on a cosine; 3-layer projector 4096 → 256 (last BatchNorm without
affine), 2-layer predictor 4096; BYOL's views; the loss scaled by 2τ as the reference.
The paper's ViT: fixed 2-D sin-cos position embeddings (`pos_embed="sincos"`, MAE's table: not a
parameter, nothing added to the class token) and a random patch projection that is never trained
(`--stop-grad-conv1`; here `optimizer.freeze`, matched against the SSL model's parameter paths, where
the ViT sits under `backbone/`: the projection gets no update, no weight decay and no optimizer
state). AdamW (β 0.9, 0.999) with weight decay on every parameter (the reference passes
`model.parameters()`), no gradient clipping. Linear evaluation: configs/ssl/moco_linear.py.
Precision: the ImageNet recipe computes in bfloat16 (float32 params); `digits` and `smoke` run float32.

Departures from the paper:
- The sin-cos table is MAE's / big_vision's: its first half encodes the column and the second the
  row; the reference's `build_2d_sincos_position_embedding` puts the row first. The same functions
  of position on swapped channels; it matters only when loading the reference's weights.
- The ViT's initialisation is big_vision's (models/vit.py), not the reference's (xavier-uniform on
  q, k, v separately; patch projection U(±√(6 / (3·p² + D)))).
- The views are made on device (data/views.py), not compared pixel for pixel with the reference's.
"""

from papers_jax.tasks.ssl import recipe


def get_config(arg=None):
  return recipe("moco_v3", arg, **{
      "model": {"name": "vit_base_patch16_224", "global_pool": "token", "pos_embed": "sincos"},
      "batch_size": 4096, "num_epochs": 300.0, "ssl.views": "byol", "ssl.temperature": 0.2,
      "ssl.projector_layers": 3, "ssl.projector_hidden": 4096, "ssl.projector_dim": 256, "ssl.projector_last_bn": True,
      "ssl.predictor_hidden": 4096, "ssl.momentum": 0.99, "ssl.momentum_schedule": "cosine",
      "optimizer.name": "adamw", "optimizer.lr": 2.4e-3, "optimizer.b1": 0.9, "optimizer.b2": 0.999,
      "optimizer.eps": 1e-8, "optimizer.weight_decay": 0.1, "optimizer.wd_exclude": (),
      "optimizer.clip_grad_norm": 0.0, "optimizer.freeze": ("^backbone/patch_embed/",),
      "schedule.name": "cosine", "schedule.warmup_steps": 12510, "schedule.end_lr_ratio": 0.0})
