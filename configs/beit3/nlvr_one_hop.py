"""BEiT-3 NLVR2-style pair reasoning, one lookup per image: colour statements, data.templates = "one_hop".

  python -m papers_jax.main --config configs/beit3/nlvr_one_hop.py --workdir runs/beit3_nlvr_one_hop \\
      --config.init_from=runs/beit3_captioning/checkpoints/600/state

configs/beit3/nlvr_colours.py with the statements "the left image has a {colour} object.", "the right image has
…" and "both images have …" (3 wordings each; test sentences held out by wording, 12 of 36). Each needs one
lookup of the named colour per image, and the evidence always counts the same way, where "neither" and
"exactly one" reverse or cancel it: on the five-template set, 10,000 pairs from this model stayed on the ln 2
plateau (docs/beit3.md). Baselines on the test pairs: the majority label 52.2%, the statement prior 52.2%, the
meaning prior 50.7%, and an MLP with perfect perception but blind to which colour the statement names 59.6%
(tools/nlvr_scenes_oracle.py --blind): a scene with more colours is more likely to hold the named one.
From the captioner (tools/beit3_demo.py --nlvr_config nlvr_one_hop.py --nlvr_steps 1200 --nlvr_init captioning),
1,200 steps: 72.6% (600 steps: 59.6%, the blind baseline's; see docs/beit3.md).

Departures from the paper: those of configs/beit3/nlvr_colours.py (which lists those it inherits; its 800
default steps become 1,200 here: 3.8 epochs of the 10,000 training pairs), and statements of three one-hop
templates about colours.
"""

import os

from papers_jax.core.config import load, parse_arg


def get_config(arg=None):
  args = parse_arg(arg, smoke=False, steps=1200)
  base = os.path.join(os.path.dirname(os.path.abspath(__file__)), "nlvr_colours.py")
  c = load(f"{base}:steps={args.steps}" + (",smoke" if args.smoke else "")).unlock()
  c.data.templates = "one_hop"
  return c.lock()
