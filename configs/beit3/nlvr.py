"""BEiT-3 NLVR2-style pair reasoning on generated scene pairs (data/nlvr_scenes.py), from a pre-training run.

  python -m papers_jax.main --config configs/beit3/nlvr.py --workdir runs/beit3_nlvr \\
      --config.init_from=runs/beit3_pretrain/checkpoints/250/state
  python -m papers_jax.main --config configs/beit3/nlvr.py --workdir runs/beit3_nlvr_scratch   # no pre-training

The model of configs/beit3/scenes_pretrain.py with the NLVR2 head of the released BEiT-3 code: each image of
the pair is encoded with the statement, the outputs at the image class token and at the text's [CLS] of both
passes are concatenated (4D), then Linear(4D, 2D) → LayerNorm → GELU → Linear(2D, 2); cross-entropy on
true / false. init_from loads everything but the MLM/MIM heads (init_skip = tasks.beit3.NLVR_INIT_SKIP). Eval:
accuracy on the 1,000 test pairs (unseen scenes, unseen sentences), per template too, and the same model's with
both images blank (a text-only baseline). The test sentences are held out by wording (data.held_out =
"wordings"): each is a sentence never seen in training whose meaning is trained in two other wordings;
`--config.data.held_out=combinations` holds out template × subject combinations instead (harder than NLVR2:
see docs/beit3.md). Baselines that never look at the images (data/nlvr_scenes.py label_baselines): the
majority label 52.2%, the majority label of each exact statement 52.2% (no test sentence occurs in
training), of each meaning 50.6% (50.4% for the colours subset).

The paper fine-tunes on NLVR2's real photo pairs and sentences with AdamW, layer-wise lr decay and
RandAugment (its appendix gives the per-size values).

Departures from the paper:
  - lr 1e-3, warm-up over 10% then linear decay, batch 32, `steps` steps (800 by default: 2.6 epochs
    of the 10,000 training pairs), no layer-wise lr decay, no augmentation;
  - generated scene pairs and templated statements instead of NLVR2, test sentences held out by wording;
  - the demo model and recipe of configs/beit3/scenes_pretrain.py, with its other departures.
"""

import os

from papers_jax.core.config import load, parse_arg
from papers_jax.tasks import beit3


def get_config(arg=None):
  args = parse_arg(arg, smoke=False, steps=800)
  base = os.path.join(os.path.dirname(os.path.abspath(__file__)), "scenes_pretrain.py")
  c = load(f"{base}:steps={args.steps}" + (",smoke" if args.smoke else "")).unlock()
  c.beit3.objective = "nlvr"
  c.beit3.visual_tokenizer = ""
  c.data.name = "nlvr_scenes"
  c.data.held_out = "wordings"  # test sentences are unseen wordings of trained meanings (data/nlvr_scenes.py)
  c.init_skip = beit3.NLVR_INIT_SKIP
  c.optimizer.lr = 1e-3
  c.beit3.max_text_len = 16  # the longest statement is 15 tokens; the model keeps the pre-training's 24 positions
  c.model.max_text_len = 24
  c.eval_every = 0 if args.smoke else c.num_steps // 2
  return c.lock()
