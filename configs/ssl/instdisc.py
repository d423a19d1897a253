"""InstDisc (Wu et al. 2018): every image its own class, NCE against a memory bank of 128-d features.

  python -m papers_jax.main --config configs/ssl/instdisc.py:digits --workdir runs/instdisc_digits

Paper recipe: ResNet-50 with a linear 128-d projection and L2 normalisation, batch 256, SGD (momentum
0.9) lr 0.03, weight decay 5e-4, 200 epochs with the lr ×0.1 at epochs 120 and 160. ResNet-50: 54.0%
ImageNet linear top-1 as the MoCo paper's comparison cites it (its Table 1, an image in the copies in the search
index; the row as a study note transcribes it; the reference README gives 46.8% top-1 for its released
ResNet-50, measured with its k-NN test). Memory bank of one
unit vector per training image (lemniscate's uniform init), rows updated with momentum 0.5; NCE with
m = 4096 uniform noise draws, τ = 0.07, the normaliser Z estimated on the first batch and then fixed.
SGD weight decay on every parameter (lemniscate passes all of them), no gradient clipping.
Precision: the ImageNet recipe computes in bfloat16 (float32 params); `digits` and `smoke` run float32.

Departures from the paper:
- The views are made on device (data/views.py), not compared pixel for pixel with the reference's.
"""

from papers_jax.tasks.ssl import recipe

# Demo deviations, measured on digits (300 steps of 256): the tiny ViT's random-init features are
# nearly identical (pairwise cosine 0.96), the 1437-row bank refills every 6 steps with them, and NCE
# with the fixed Z then saturates (loss in the thousands, k-NN 58% → 20%). A BatchNorm (no affine)
# after the linear projection centres the embeddings, and τ = 0.5 keeps NCE out of saturation.
DEMO = {"ssl.nce_negatives": 1024, "ssl.temperature": 0.5, "ssl.projector_last_bn": True}


def get_config(arg=None):
  return recipe("instdisc", arg, demo=DEMO, **{
      "batch_size": 256, "num_epochs": 200.0, "ssl.views": "instdisc", "ssl.temperature": 0.07,
      "ssl.projector_layers": 1, "ssl.projector_bn": False, "ssl.projector_dim": 128,
      "ssl.nce_negatives": 4096, "ssl.bank_momentum": 0.5,
      "optimizer.name": "sgd", "optimizer.lr": 0.03, "optimizer.momentum": 0.9, "optimizer.weight_decay": 5e-4,
      "optimizer.nesterov": False, "optimizer.wd_exclude": (), "optimizer.clip_grad_norm": 0.0,
      "schedule.name": "step", "schedule.warmup_steps": 0, "schedule.boundaries": (0.6, 0.8),
      "schedule.decay_factor": 0.1})
