"""Colourful image colourisation (Zhang, Isola & Efros 2016): predict the ab colours of an image from its L.

  python -m papers_jax.main --config configs/ssl/colorization.py --workdir runs/colorization   # ImageNet
  python -m papers_jax.main --config configs/ssl/colorization.py:digits --workdir runs/colorization_photos

Paper recipe: the network sees L only and predicts, per output pixel (a quarter of the input's
resolution), a distribution over the quantised ab space (grid 10: 313 in-gamut bins), trained against
soft targets (the 5 nearest bins, Gaussian σ = 5) with class rebalancing (the empirical bin distribution
smoothed with σ = 5, mixed with the uniform by λ = 0.5, inverted and normalised to expectation 1; each
pixel weighted by its target's most likely bin); Adam (β 0.9, 0.99), lr 3e-5, weight decay 1e-3, batch 40,
about 450k iterations. Loss and bins: objectives/pretext.py; task: tasks/ssl/pretext.py.
Precision: the ImageNet recipe computes in bfloat16 (float32 params); `digits` and `smoke` run float32.

Departures from the paper:
- A ViT-B/16 on L (one channel) with a linear head per patch token instead of the paper's VGG-style
  fully convolutional network: the prediction is one distribution per 16-px patch (targets: the patch's
  mean ab), not per 4 px.
- The ab bins are those the sRGB gamut reaches on the grid (262), not the 313 of ImageNet's pixels' hull.
- The empirical colour distribution is counted on the first 10000 training images (hard bins, by
  rounding), not on all of ImageNet.
- The view is the on-device `pretext` crop (8–100% and a flip); no annealed-mean decoding (the demo
  evaluates the encoder, not the colourised pictures).
- Adam's weight decay is decoupled (AdamW), and no schedule is given here from the paper: constant lr.
- Weight decay applies to every parameter.

The digits demo colourises photos: the digits are grey, so `digits` trains on crops of scikit-image's
bundled colour photographs (data/photos.py: 32-px crops resized to 16 px, the 8-way photo label is the
probes' task), and tools/pretext_demo.py probes the same encoder on the grey digits too (grey = L).
"""

from papers_jax.tasks.ssl import recipe

# Demo (docs/pretext_selftraining.md): the recipe's tiny ViT (4-px patches: one colour distribution per
# 4 × 4 patch, the paper's quarter resolution) on the L of 16-px photo crops; 128 crops per step.
DEMO = {"batch_size": 128, "ssl.crop_scale": (0.6, 1.0), "data.name": "photo_crops", "data.crop": 32,
        "data.channels": 3, "data.mean": (0.5, 0.5, 0.5), "data.std": (0.5, 0.5, 0.5),
        "ssl.projector_layers": 1, "ssl.prior_max_examples": 4096}


def get_config(arg=None):
  return recipe("colorization", arg, demo=DEMO, **{
      "batch_size": 40, "num_steps": 450_000, "ssl.views": "pretext",
      "model": dict(name="vit_base_patch16_224", in_chans=1),
      "ssl.projector_layers": 1, "ssl.projector_bn": False, "ssl.ab_grid": 10.0, "ssl.ab_neighbours": 5,
      "ssl.ab_sigma": 5.0, "ssl.rebalance_lambda": 0.5, "ssl.prior_max_examples": 10000,
      "optimizer.name": "adamw", "optimizer.lr": 3e-5, "optimizer.b1": 0.9, "optimizer.b2": 0.99,
      "optimizer.eps": 1e-8, "optimizer.weight_decay": 1e-3, "optimizer.wd_exclude": (),
      "optimizer.clip_grad_norm": 0.0,
      "schedule.name": "constant", "schedule.warmup_steps": 0})
