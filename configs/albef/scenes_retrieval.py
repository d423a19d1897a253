"""ALBEF retrieval fine-tuning on the generated scenes, from the pre-training run of
configs/albef/scenes_pretrain.py; evaluates R@1/5/10 both ways by ITC alone and with the ITC top-k re-ranked by
ITM (tasks/albef.py), against chance and the nearest-caption baseline.

  python -m papers_jax.main --config configs/albef/scenes_retrieval.py --workdir runs/albef_retrieval \\
      --config.init_from=runs/albef_pretrain/checkpoints/<step>/state

As the paper's retrieval fine-tuning (§4, the official Retrieval.py): ITC and ITM with momentum distillation,
no MLM (`albef.mlm_weight = 0`); the momentum model and the queues start from the pre-training run's
(`init_model_state`, as the official code loads its checkpoint's state dict), then the distillation weight
warms up again over the first epoch. The paper fine-tunes COCO / Flickr30K for 5 / 10 epochs with lr 1e-5,
batch 256, re-ranking the top 256 / 128 ITC candidates.

Departures from the paper:
  - `steps` steps (300 by default: 3.2 epochs of the 6,000 scenes) of batch 64 with lr 1e-4;
  - ITC targets treat only the example's own caption as positive (the official fine-tuning also counts the
    other captions of the same image, in the batch and the queue);
  - re-ranking of the top 16 candidates over 100 test scenes;
  - the demo model, data and other departures of configs/albef/scenes_pretrain.py.
"""

import os

from papers_jax.core.config import load, parse_arg


def get_config(arg=None):
  args = parse_arg(arg, smoke=False, steps=300)
  base = os.path.join(os.path.dirname(os.path.abspath(__file__)), "scenes_pretrain.py")
  c = load(f"{base}:steps={args.steps}" + (",smoke" if args.smoke else "")).unlock()
  c.albef.mlm_weight = 0.0
  c.init_model_state = True
  if not args.smoke:
    c.optimizer.lr = 1e-4
    c.albef.alpha_warmup_steps = 94
  return c.lock()
