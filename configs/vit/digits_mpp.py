"""The ViT paper's self-supervised masked patch prediction (§4.6, Appendix B.1.2) on scikit-learn's digits.

  python -m papers_jax.main --config configs/vit/digits_mpp.py --workdir runs/vit_mpp_digits
  python -m papers_jax.main --config configs/vit/digits.py --workdir runs/vit_digits_from_mpp \\
      --config.init_from=runs/vit_mpp_digits/checkpoints/450/state --config.init_prefix=vit/

configs/vit/digits.py's ViT (width 64, depth 4, 4 heads, 4×4 patches of 16×16 digits) and recipe, trained
without labels: half of each image's 16 patch embeddings are corrupted (80% the learned [mask] embedding,
10% another patch's embedding, 10% unchanged) and a linear head predicts each corrupted patch's mean grey
level in 8 bins (3 bits, one channel). Evaluation: the colour loss and accuracy on the corrupted test
patches, and every 150 steps a k-NN (k = 20) of the [CLS] features. Results: docs/vision_variants.md.
`smoke` shrinks it to seconds.

Departures from the paper:
- Those of configs/vit/digits.py's recipe, which this config loads: a small ViT on 16×16 digits instead of
  ViT-B/16 on JFT-300M; AdamW lr 4e-3, weight decay 0.05, cosine with 30 warm-up steps, global-norm
  clipping at 1, drop path 0.1, random affine warps (the paper's MPP: Adam lr 2e-4, 1M steps of batch 4096).
- One grey channel: 8 colour classes instead of 512; the label smoothing of the loaded recipe is not used
  (the colour loss is plain cross-entropy, as the paper).
"""

import os

from papers_jax.core.config import load, parse_arg


def get_config(arg=None):
  args = parse_arg(arg, smoke=False)
  vit = os.path.join(os.path.dirname(os.path.abspath(__file__)), "digits.py")
  c = load(vit + (":smoke" if args.smoke else "")).unlock()
  c.task = "masked_patch_prediction"
  c.model.name = "mpp_vit_tiny_patch16_224"
  del c.model["num_classes"]
  c.model.colour_bits = 3
  c.label_smoothing = 0.0
  if not args.smoke:
    c.evals = dict(knn=dict(type="knn", split="test", every=150, k=(20,)))
  return c.lock()
