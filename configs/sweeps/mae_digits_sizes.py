"""MAE encoder width × mask ratio on the bundled digits: the probe-accuracy and reconstruction-loss
surface (docs/scaling_mae_digits.md).

  python tools/sweep.py run configs/sweeps/mae_digits_sizes.py --workdir runs/sweep_mae_digits
  python tools/sweep.py collect runs/sweep_mae_digits

configs/mae/digits.py's pre-training (16×16 digits, 4×4 patches, a 2-block 64-wide decoder, AdamW,
norm_pix_loss, random affine warps) for 200 steps of 256 (the config's default is 800; cut so that
nine points fit a 2-core CPU shared with other jobs), with encoders of width 32, 64 and 128 (depth 4,
4 heads, MLP ratio 2; with the decoder 0.11M, 0.21M and 0.61M parameters) and mask ratios 0.5, 0.75
and 0.9.
After training, the frozen encoder's class token is probed on the 1,437 training digits and tested
on the 360 held-out ones (the config's `evals`): weighted k-NN (eval/knn/knn_top1_k20) and a linear
probe (eval/linear_probe/linear_probe_top1). eval/loss is the reconstruction loss on the removed patches only, so it compares
encoder widths at one mask ratio, not mask ratios. tools/mae_demo.py's `sweep` is the mask-ratio
sweep of the default encoder alone (docs/mae_mask_ratio.md).
"""

from papers_jax.sweep import Sweep, product


def get_sweep():
  return Sweep(config="configs/mae/digits.py:stage=pretrain,steps=200",
               points=product(**{"model.embed_dim": [32, 64, 128], "model.mask_ratio": [0.5, 0.75, 0.9]}),
               fixed={"eval_every": 0, "checkpoint_every": 100})
