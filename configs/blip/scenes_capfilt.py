"""BLIP's second pre-training after one CapFilt round: configs/blip/scenes_pretrain.py on the captions that the
filter kept (the originals and the captioner's synthetic ones).

  PYTHONPATH=. python tools/blip_capfilt.py --config configs/blip/scenes_pretrain.py \
      --checkpoint runs/blip_pretrain --out runs/blip_pretrain/capfilt.json --workdir runs/blip_capfilt

runs the round and then this config (a new model from random weights, as many steps as the first run) in one
command; on its own, after a round without --workdir:

  python -m papers_jax.main --config configs/blip/scenes_capfilt.py:captions=runs/blip_pretrain/capfilt.json \
      --workdir runs/blip_capfilt

The paper (§3.3) fine-tunes the captioner (LM) and the filter (ITC, ITM) on COCO first, bootstraps the web
data with them, and pre-trains a new model on the result.

Departures from the paper: those of configs/blip/scenes_pretrain.py, which this config loads; the captioner and
the filter are the pre-trained model itself, not fine-tuned on a human-annotated set first (there is none here
beside the training captions it was pre-trained on); the synthetic captions start with the demo's prompt
"from left to right:" (BLIP's: "a picture of") and are sampled without the official repetition penalty (1.1).
The demo's round used `--threshold 0.3333` instead of the paper's 0.5: its ITM head, trained on 1 positive to 2
negatives, stayed at that prior, so no match probability reached 0.5 (docs/blip.md).
`captions` defaults to the file the first command writes. `smoke`: the pre-training config's smoke run on the
captions file given (without one, on the original captions).
"""

import os

from papers_jax.core.config import load, parse_arg


def get_config(arg=None):
  # The default is where the command above writes the file; a missing file stops the run with a DataError.
  args = parse_arg(arg, smoke=False, steps=1500, captions="runs/blip_pretrain/capfilt.json")
  c = load(os.path.join(os.path.dirname(os.path.abspath(__file__)), "scenes_pretrain.py")
           + (":smoke" if args.smoke else f":steps={args.steps}")).unlock()
  c.blip.train_captions = "" if args.smoke and args.captions == "runs/blip_pretrain/capfilt.json" else args.captions
  return c.lock()
