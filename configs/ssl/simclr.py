"""SimCLR (Chen et al. 2020): NT-Xent over the global batch, 2-layer MLP projector to 128-d.

  python -m papers_jax.main --config configs/ssl/simclr.py --workdir runs/simclr   # ImageNet, TPU pod
  python -m papers_jax.main --config configs/ssl/simclr.py:digits --workdir runs/simclr_digits

Paper recipe: ResNet-50, batch 4096, LARS, lr 0.3 × batch/256 (4.8), weight decay 1e-6, 10 warm-up
epochs then cosine, 100 epochs for the ablations (1000 for the headline 69.3% ImageNet linear top-1:
the paper's number, not verified here; the reference README gives 69.1% for its released ResNet-50),
τ = 0.1, global BatchNorm, colour distortion strength 1.0 with blur. Not reproduced here.
Precision: the ImageNet recipe computes in bfloat16 (float32 params); `digits` and `smoke` run float32.
"""

from papers_jax.tasks.ssl import recipe


def get_config(arg=None):
  return recipe("simclr", arg, **{
      "batch_size": 4096, "num_epochs": 100.0, "ssl.views": "simclr", "ssl.temperature": 0.1,
      "ssl.projector_layers": 2, "ssl.projector_hidden": 2048, "ssl.projector_dim": 128,
      "optimizer.name": "lars", "optimizer.lr": 4.8, "optimizer.weight_decay": 1e-6,
      "schedule.warmup_steps": 3130})
