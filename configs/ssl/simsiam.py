"""SimSiam (Chen & He 2021): one encoder, a predictor on one side and stop-gradient on the other.

  python -m papers_jax.main --config configs/ssl/simsiam.py:digits --workdir runs/simsiam_digits

Paper recipe: ResNet-50, batch 512, SGD lr 0.05 × batch/256 (0.1), weight decay 1e-4, cosine, 100
epochs: 68.1% ImageNet linear top-1 (the reference README's 100-epoch model, trained with the
predictor's lr not decayed, `--fix-pred-lr`: the last row of the paper's Table 1); 3-layer projector
2048-d with BatchNorm on the output, predictor 2048 → 512 → 2048. SGD weight decay on every
parameter (the reference passes all of them), no gradient clipping.
Precision: the ImageNet recipe computes in bfloat16 (float32 params); `digits` and `smoke` run float32.

Departures from the paper:
- The predictor's lr decays with the rest (`--fix-pred-lr` is not modelled).
- The views are made on device (data/views.py), not compared pixel for pixel with the reference's.
"""

from papers_jax.tasks.ssl import recipe


def get_config(arg=None):
  return recipe("simsiam", arg, **{
      "batch_size": 512, "num_epochs": 100.0, "ssl.views": "moco_v2",
      "ssl.projector_layers": 3, "ssl.projector_hidden": 2048, "ssl.projector_dim": 2048,
      "ssl.projector_last_bn": True, "ssl.predictor_hidden": 512,
      "optimizer.name": "sgd", "optimizer.lr": 0.1, "optimizer.momentum": 0.9, "optimizer.weight_decay": 1e-4,
      "optimizer.nesterov": False, "optimizer.wd_exclude": (), "optimizer.clip_grad_norm": 0.0,
      "schedule.name": "cosine", "schedule.warmup_steps": 0, "schedule.end_lr_ratio": 0.0})
