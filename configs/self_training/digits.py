"""Pseudo-labelling and Noisy Student self-training on scikit-learn's digits with 10% of the labels.

  python tools/self_training.py --iterations 2                                      # the whole demo
  python -m papers_jax.main --config configs/self_training/digits.py --workdir runs/st_teacher   # one run

Task `self_training` (papers_jax/tasks/self_training.py): the labelled 10% (144 of the 1,437 training digits,
data/sources.py's fixed Subset) trains the first teacher alone; the teacher labels the other 90% (soft
labels, no threshold, in evaluation mode on un-augmented digits); a noised student of equal or larger size
trains on both from scratch; the student becomes the next teacher (tools/self_training.py runs the
iterations, one trainer run each, and reads each run's test accuracy). Noise: RandAugment (2 ops at
magnitude 5), dropout 0.1 and stochastic depth 0.1 on top of the ViT digits recipe's affine warps.
`labels=hard,threshold=0.9` gives pseudo-labelling in Lee's manner (hard labels, confident ones only).

The model and recipe are configs/vit/digits.py's (a 4-layer, 64-wide ViT on 16 × 16 digits, AdamW), loaded
and overridden here.

Departures from the paper (Noisy Student: EfficientNets on ImageNet + 300M unlabelled JFT images):
- Inherited from configs/vit/digits.py: a tiny ViT instead of EfficientNet-B0…L2, AdamW with a cosine
  schedule, random affine warps; its label smoothing is off here (the targets are soft already).
- The unlabelled data are the other 90% of the same training split (in-domain, 1,293 digits), not JFT.
- No data balancing (Noisy Student duplicates or drops pseudo-labelled images to even out the classes),
  and the labelled and pseudo-labelled examples share each batch in proportion to their numbers, instead
  of a fixed, larger share of unlabelled images per batch.
- RandAugment magnitude 5 with 2 ops (the paper: magnitude 27 for its largest models), through timm's
  implementation on 16-px grey digits.
- Students are the same size or one step wider (tools/self_training.py), not B7 → L2.
- Steps per run are fixed (300), not scaled with the data.
"""

import importlib.util
import os

from papers_jax.core.config import parse_arg


def _vit_digits(arg):
  path = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "vit", "digits.py")
  spec = importlib.util.spec_from_file_location("vit_digits_config", path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config(arg)


def get_config(arg=None):
  args = parse_arg(arg, smoke=False, labels="soft", threshold=0.0, fraction=0.1)
  c = _vit_digits("smoke" if args.smoke else None).unlock()
  c.task = "self_training"
  c.self_training = dict(labelled_fraction=args.fraction, teacher="", teacher_model={}, labels=args.labels,
                         threshold=args.threshold)
  c.model.update(drop_rate=0.1, drop_path_rate=0.1)
  c.data.randaugment = "rand-m5-n2-mstd0.5"
  c.label_smoothing = 0.0
  if not args.smoke:
    c.batch_size = 128
    c.num_steps = 300
    c.schedule.warmup_steps = 20
    c.eval_every = 100
    c.evals = {}
    c.checkpoint_every = 300
  return c.lock()
