"""SwAV (Caron et al. 2020): swapped prediction of Sinkhorn codes over prototypes, multi-crop.

  python -m papers_jax.main --config configs/ssl/swav.py:digits --workdir runs/swav_digits

Paper recipe: ResNet-50, batch 4096, LARS lr 4.8 (final 0.0048) with 10 warm-up epochs then cosine,
weight decay 1e-6, 800 epochs, 2×224 + 6×96 crops (scales 0.14–1 and 0.05–0.14) for 75.3% linear
top-1; MLP projector 2048 → 128, 3000 prototypes (unit norm), τ = 0.1, Sinkhorn ε = 0.05 with 3
iterations over the global batch, prototypes frozen for the first epoch (313 iterations). The queue
(`ssl.queue_size` = 3840 from epoch 15, `ssl.queue_start_steps`) is for small batches such as 256;
the batch-4096 recipe runs without it. Deviations: the prototypes are normalised at use, not
renormalised in place after each update (see papers_jax/tasks/ssl.py); warm-up starts at lr 0, not 0.3.
"""

from papers_jax.tasks.ssl import recipe

DEMO = {
    "ssl.global_crop_scale": (0.4, 1.0), "ssl.local_crop_scale": (0.15, 0.4), "ssl.local_view_size": 8,
    "ssl.num_local_views": 4, "ssl.num_prototypes": 64, "ssl.freeze_last_layer_steps": 6,
}


def get_config(arg=None):
  return recipe("swav", arg, demo=DEMO, **{
      "batch_size": 4096, "num_epochs": 800.0, "ssl.views": "swav_multi_crop",
      "ssl.view_size": 224, "ssl.global_crop_scale": (0.14, 1.0),
      "ssl.local_view_size": 96, "ssl.num_local_views": 6, "ssl.local_crop_scale": (0.05, 0.14),
      "ssl.projector_layers": 2, "ssl.projector_hidden": 2048, "ssl.projector_dim": 128,
      "ssl.num_prototypes": 3000, "ssl.temperature": 0.1, "ssl.sinkhorn_epsilon": 0.05, "ssl.sinkhorn_iterations": 3,
      "ssl.queue_size": 0, "ssl.queue_start_steps": 15 * 313, "ssl.freeze_last_layer_steps": 313,
      "optimizer.name": "lars", "optimizer.lr": 4.8, "optimizer.weight_decay": 1e-6,
      "schedule.warmup_steps": 3130, "schedule.end_lr_ratio": 0.001})
