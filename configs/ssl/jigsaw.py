"""Jigsaw puzzles (Noroozi & Favaro 2016): which permutation of its 3 × 3 tiles an image was shuffled by.

  python -m papers_jax.main --config configs/ssl/jigsaw.py --workdir runs/jigsaw   # ImageNet
  python -m papers_jax.main --config configs/ssl/jigsaw.py:digits --workdir runs/jigsaw_digits

Paper recipe: a 225 × 225 crop cut into 75-px cells, a 64-px tile at a random position in each, each tile
normalised on its own; 1000 permutations chosen by maximal Hamming distance (the paper's Algorithm 1,
objectives/pretext.py); a siamese "context-free network" encodes the 9 tiles with shared weights and a
head classifies their concatenated features; SGD, batch 256, lr 0.01, 350k iterations. Task:
tasks/ssl/pretext.py.
Precision: the ImageNet recipe computes in bfloat16 (float32 params); `digits` and `smoke` run float32.

Departures from the paper:
- ResNet-50 tile encoder (the recipe's default) instead of the AlexNet-based CFN with its per-tile fc6;
  the head is a 2-layer MLP (9 × 2048 → 2048 → 1000) on the concatenated pooled features.
- The crop is the on-device `pretext` view (8–100% random-resized crop to 225 and a flip), not a resize to
  256 and a random 225 crop; no colour jitter per tile and no grey-scale tiles.
- The paper's SGD momentum, weight decay and learning-rate drops are not given here from the paper:
  momentum 0.9, weight decay 5e-4 and a constant lr are this config's choices.
- Weight decay applies to every parameter.
"""

from papers_jax.tasks.ssl import recipe

# Demo (docs/pretext_selftraining.md): 16 px digits give 5-px cells (a 15-px grid) with 4-px tiles jittered
# by ≤ 1 px, each upsampled to 8 px (2 × 2 patches of the tiny ViT); 100 permutations of maximal Hamming
# distance instead of 1000 (4-px tiles of an 8 px digit carry little, and 64 images per step would see
# each of 1000 classes once in 16 steps).
DEMO = {"batch_size": 64, "ssl.crop_scale": (0.6, 1.0), "ssl.num_permutations": 100, "ssl.cell_size": 5,
        "ssl.tile_size": 4, "ssl.tile_jitter": 1, "ssl.tile_view_size": 8}


def get_config(arg=None):
  return recipe("jigsaw", arg, demo=DEMO, **{
      "batch_size": 256, "num_steps": 350_000, "data.image_size": 225, "ssl.view_size": 225,
      "ssl.views": "pretext",
      "ssl.num_permutations": 1000, "ssl.cell_size": 75, "ssl.tile_size": 64, "ssl.tile_jitter": 5,
      "ssl.tile_view_size": 64, "ssl.projector_layers": 2, "ssl.projector_hidden": 2048, "ssl.projector_bn": True,
      "optimizer.name": "sgd", "optimizer.lr": 0.01, "optimizer.momentum": 0.9,
      "optimizer.weight_decay": 5e-4, "optimizer.wd_exclude": (),
      "optimizer.clip_grad_norm": 0.0, "schedule.name": "constant", "schedule.warmup_steps": 0})
