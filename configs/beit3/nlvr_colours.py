"""BEiT-3 NLVR2-style pair reasoning, statements about colours only (data.subjects = "colours").

  python -m papers_jax.main --config configs/beit3/nlvr_colours.py --workdir runs/beit3_nlvr_colours \\
      --config.init_from=runs/beit3_pretrain/checkpoints/250/state

configs/beit3/nlvr.py on the easier subset of data/nlvr_scenes.py: every statement is about "{colour}
objects" (20 meanings in 3 wordings each; 20 of the 60 sentences only in testing), so a patch's colour is all
the vision it needs. Baselines: the majority label 52.2%, the statement prior 52.2%, the meaning prior 50.4%.

Departures from the paper: those of configs/beit3/nlvr.py (which lists the ones it inherits from
configs/beit3/scenes_pretrain.py), and templated statements about colours only.
"""

import os

from papers_jax.core.config import load, parse_arg


def get_config(arg=None):
  args = parse_arg(arg, smoke=False, steps=800)
  base = os.path.join(os.path.dirname(os.path.abspath(__file__)), "nlvr.py")
  c = load(f"{base}:steps={args.steps}" + (",smoke" if args.smoke else "")).unlock()
  c.data.subjects = "colours"
  return c.lock()
