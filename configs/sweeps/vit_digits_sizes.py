"""ViT width × training steps on the bundled digits: a scaling study sized for a 2-core CPU.

  python tools/sweep.py run configs/sweeps/vit_digits_sizes.py --workdir runs/sweep_vit_digits [--dry-run]
  python tools/sweep.py collect runs/sweep_vit_digits
  python tools/scaling.py fit runs/sweep_vit_digits/results.jsonl --out docs/scaling_vit_digits

Five widths (16, 24, 32, 48, 64: 10k to 137k parameters; depth 4, 4 heads, MLP ratio 2, 4×4 patches
on 16×16 digits) × four step budgets (50 to 400 steps), batch 256, configs/vit/digits.py's recipe otherwise (affine augmentation, AdamW, cosine
schedule over each point's own budget). The named sizes (`size="Ti/4"`, ...) fit the same file, but
even Ti (12 blocks of width 192) takes hours per point on such a CPU, and width 128 was dropped from
the grid so that the study finished on a CPU shared with other jobs. Departures from the ViT papers'
setting: the data (1,437 training digits, not ImageNet-21k/JFT) and the sizes that follow from it.
"""

from papers_jax.sweep import Sweep, product


def get_sweep():
  return Sweep(config="configs/vit/digits.py",
               points=product(**{"model.embed_dim": [16, 24, 32, 48, 64], "num_steps": [50, 100, 200, 400]}),
               fixed={"model.depth": 4, "model.num_heads": 4, "model.mlp_ratio": 2.0, "eval_every": 0,
                      "checkpoint_every": 100})
