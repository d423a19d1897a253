"""Context prediction (Doersch, Gupta & Efros 2015): where a patch lies relative to the centre patch, among
the eight positions of a 3 × 3 grid.

  python -m papers_jax.main --config configs/ssl/relative_position.py --workdir runs/relpos   # ImageNet
  python -m papers_jax.main --config configs/ssl/relative_position.py:digits --workdir runs/relpos_digits

Paper recipe: 96-px patches with 48-px gaps between them, each moved by up to 7 px (the gap and the jitter
keep low-level cues such as continuing edges from giving the answer away); both patches go through one
network with shared weights (AlexNet-style up to fc6), the pair's features are concatenated and classified
8-way. Labels: objectives/pretext.py's NEIGHBOURS (row-major around the centre). Task: tasks/ssl/pretext.py.
Precision: the ImageNet recipe computes in bfloat16 (float32 params); `digits` and `smoke` run float32.

Departures from the paper:
- ResNet-50 patch encoder (the recipe's default) and a 2-layer MLP head on the two pooled features.
- The 3 × 3 grid (144-px cells: patch + gap) is centred in a 432-px random-resized crop, not sampled
  anywhere in an image resized to 150k-450k pixels; no chromatic-aberration projection or colour dropping.
- SGD (momentum 0.9, lr 0.01, weight decay 5e-4, batch 128) and the run length (30 epochs) are this
  config's choices, not taken from the paper.
- Weight decay applies to every parameter.
"""

from papers_jax.tasks.ssl import recipe

# Demo (docs/pretext_selftraining.md): 16 px digits give 5-px cells with 4-px patches (a 1-px gap, jitter
# ≤ 1 px), each upsampled to 8 px; 128 pairs per step.
DEMO = {"batch_size": 128, "ssl.crop_scale": (0.6, 1.0), "ssl.cell_size": 5, "ssl.tile_size": 4,
        "ssl.tile_jitter": 1, "ssl.tile_view_size": 8}


def get_config(arg=None):
  return recipe("relative_position", arg, demo=DEMO, **{
      "batch_size": 128, "num_epochs": 30.0, "data.image_size": 432, "ssl.view_size": 432,
      "ssl.views": "pretext",
      "ssl.cell_size": 144, "ssl.tile_size": 96, "ssl.tile_jitter": 7, "ssl.tile_view_size": 96,
      "ssl.projector_layers": 2, "ssl.projector_hidden": 2048, "ssl.projector_bn": True,
      "optimizer.name": "sgd", "optimizer.lr": 0.01, "optimizer.momentum": 0.9,
      "optimizer.weight_decay": 5e-4, "optimizer.wd_exclude": (),
      "optimizer.clip_grad_norm": 0.0, "schedule.name": "constant", "schedule.warmup_steps": 0})
