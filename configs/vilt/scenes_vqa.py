"""ViLT VQA fine-tuning on the generated scenes' questions, from a pre-training checkpoint or from scratch.

  python -m papers_jax.main --config configs/vilt/scenes_vqa.py --workdir runs/vilt_vqa \\
      --config.init_from=runs/vilt_pretrain/checkpoints/<step>/state
  python -m papers_jax.main --config configs/vilt/scenes_vqa.py --workdir runs/vilt_vqa_scratch   # baseline

The model of configs/vilt/scenes_pretrain.py with the paper's VQA head (Linear(D, 2D) → LayerNorm → GELU
→ Linear(2D, 19 answers)) on the pooled output, binary cross-entropy on the answer scores; init_from loads
everything but the MLM and ITM heads (init_skip = tasks.vision_language.VQA_INIT_SKIP). Evaluation: accuracy
on the 3,379 test questions (500 unseen scenes), per question type too. Baselines without the image
(data/vqa_scenes.py answer_baselines): the majority answer ("yes") 21.5%, the most frequent training
answer of each exact question 43.6%.

The paper fine-tunes VQA v2 with AdamW lr 1e-4 (×10 for the head), weight decay 0.01, 10 epochs, warm-up
over 10% then linear decay, and RandAugment.

The learning rates are the paper's (1e-4, the VQA head 1e-3). With 1e-3 for every param the fine-tuning lost the
pre-trained image reading: only colour questions used the image (docs/vision_language.md).

Departures from the paper:
  - batch 64 for `steps` steps (1,500 by default: 2.4 epochs of the 40,368 training questions);
  - no RandAugment or dropout;
  - one-hot answer scores (each generated question has one answer);
  - the demo model and data of configs/vilt/scenes_pretrain.py, with its other departures.
"""

import os

from papers_jax.core.config import load, parse_arg
from papers_jax.tasks import vision_language


def get_config(arg=None):
  args = parse_arg(arg, smoke=False, steps=1500)
  base = os.path.join(os.path.dirname(os.path.abspath(__file__)), "scenes_pretrain.py")
  c = load(f"{base}:steps={args.steps}" + (",smoke" if args.smoke else "")).unlock()
  c.vl.objective = "vqa"
  c.vl.retrieval_images = 0
  c.init_skip = vision_language.VQA_INIT_SKIP
  c.optimizer.update(lr=1e-4, lr_multipliers=((r"^vqa_head/", 10.0),))
  if not args.smoke:
    c.batch_size = 64
  return c.lock()
