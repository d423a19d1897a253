"""BEiT-3 captioning on the generated scenes (data/vqa_scenes.py), fine-tuned from a pre-training run.

  python -m papers_jax.main --config configs/beit3/scenes_captioning.py --workdir runs/beit3_captioning \\
      --config.init_from=runs/beit3_pretrain/checkpoints/250/state

(tools/beit3_demo.py runs it after the pre-training.) As BEiT-3 fine-tunes captioning (§3.2, the released
BEiT3ForCaptioning): the image and a caption go through the model together under the prefix-LM mask (the image
sees only itself; a caption token sees the image, the tokens before it and itself), 60% of the caption's tokens
([SEP] included) become [MASK], and the MLM head predicts them (tasks/beit3.py, objective "captioning").
Decoding puts a [MASK] after the tokens so far and takes the head's prediction there, by beam search (beam 3,
at most 24 tokens from [CLS], at least 5, GNMT length penalty α = 1) after the prompt "from left to right:",
as BLIP's scenes demo (configs/blip/scenes_pretrain.py). Eval: masked-token accuracy on each test scene's first
caption, then BLEU-4 (sacrebleu) and CIDEr-D of the captions of the first 200 test scenes against all of their
captions, beside the caption of the nearest training image and the most frequent training caption.
init_from keeps everything but the MIM head (init_skip = tasks.beit3.CAPTION_INIT_SKIP); with no init_from
it trains from random weights.

The paper fine-tunes on COCO (Karpathy split) with AdamW, label smoothing 0.1 and a mask ratio of 0.6 (the
released recipe as we read it), then beam search with beam 3, and reports BLEU-4 and CIDEr on COCO.

Departures from the paper:
  - lr 1e-3 with a 10% warm-up then linear decay, batch 32, `steps` steps (1000 by default: 5.3 epochs of
    the 6,000 training scenes, each step one random caption of each scene), no label smoothing, no
    layer-wise lr decay, no augmentation; at most 24 caption tokens (the model's 24 text positions);
  - generated scenes and templated captions instead of COCO; the prompt "from left to right:" picks the
    listing caption;
  - the demo model and recipe of configs/beit3/scenes_pretrain.py, with its other departures (VLMo's shared
    LayerNorms, one VL layer, a VQ-VAE tokenizer in pre-training, no dropout or drop-path).
`smoke`: the smoke model of scenes_pretrain.py, 4 steps, 4 captions decoded.
"""

import os

from papers_jax.core.config import load, parse_arg
from papers_jax.tasks import beit3


def get_config(arg=None):
  args = parse_arg(arg, smoke=False, steps=1000)
  base = os.path.join(os.path.dirname(os.path.abspath(__file__)), "scenes_pretrain.py")
  c = load(f"{base}:steps={args.steps}" + (",smoke" if args.smoke else "")).unlock()
  c.beit3.update(objective="captioning", visual_tokenizer="", caption_prompt="from left to right:",
                 caption_images=200, beam_size=3, max_caption_len=24, min_caption_len=5)
  c.init_skip = beit3.CAPTION_INIT_SKIP
  c.eval_every = 0 if args.smoke else c.num_steps // 2
  c.log_every = 50
  if args.smoke:
    c.beit3.caption_images = 4
    c.log_every = 2
  return c.lock()
