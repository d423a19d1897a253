"""BEiT-3 NLVR2-style pair reasoning on the five templates, trained with the one-hop statements mixed in.
  python -m papers_jax.main --config configs/beit3/nlvr_mixed.py --workdir runs/beit3_nlvr_mixed \\
      --config.init_from=runs/beit3_captioning/checkpoints/600/state
configs/beit3/nlvr_colours.py (colour statements, test sentences held out by wording) whose training pairs draw
their statement from all seven templates of data/nlvr_scenes.py (data.templates = "mixed"): the five pair
templates ("both", "exactly one", "neither", "left more", "right more") and the one-hop "the left image has …"
and "the right image has …". Alone, the five stayed on the ln 2 plateau (docs/beit3.md); the one-hop statements
got off it from the captioner, so here they ground the colour words while the five are trained. The test pairs
are those of nlvr_colours.py (data.eval_templates = "pair": the five templates only), so its baselines hold:
the majority label 52.2%, the statement prior 52.2%, the meaning prior 50.4%, and 99.3% for an MLP with
perfect perception (tools/nlvr_scenes_oracle.py --held_out wordings).
Departures from the paper: those of configs/beit3/nlvr_colours.py (which lists those it inherits; its 800
default steps become 1,200 here), colour statements only, and training statements of two templates that the
test pairs do not have.
"""

import os

from papers_jax.core.config import load, parse_arg


def get_config(arg=None):
  args = parse_arg(arg, smoke=False, steps=1200)
  base = os.path.join(os.path.dirname(os.path.abspath(__file__)), "nlvr_colours.py")
  c = load(f"{base}:steps={args.steps}" + (",smoke" if args.smoke else "")).unlock()
  c.data.templates = "mixed"
  c.data.eval_templates = "pair"
  return c.lock()
