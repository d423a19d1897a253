"""configs/vit/digits.py's ViT on the localisation data of configs/resnet/digits_cam.py: each digit,
upsampled 2× to 16×16, pasted at a random position on a black 32×32 canvas (data.name="digits_canvas").
With 4×4 patches that is an 8×8 grid of tokens, of which the digit covers about a quarter, so the
[CLS] attention and its rollout have something to find (docs/cam_localization.md).

  python -m papers_jax.main --config configs/vit/digits_canvas.py --workdir runs/vit_digits_canvas
  PYTHONPATH=. python tools/visualize.py attention --config configs/vit/digits_canvas.py \
      --checkpoint runs/vit_digits_canvas/checkpoints/300/state --out docs/vit_digits_canvas_attention.png
  PYTHONPATH=. python tools/cam_localization.py --map rollout --config configs/vit/digits_canvas.py \
      --checkpoint runs/vit_digits_canvas/checkpoints/300/state

Departures from the paper: those of configs/vit/digits.py, which this config loads, and 32×32
canvases with 64 tokens instead of 16×16 digits with 16; 300 steps of batch 128 (38k examples,
the CPU budget) instead of 450 of 256; the affine warps move the digit within the canvas.
"""

import os

from papers_jax.core.config import load, parse_arg


def get_config(arg=None):
  args = parse_arg(arg, smoke=False)
  c = load(os.path.join(os.path.dirname(os.path.abspath(__file__)), "digits.py") + (":smoke" if args.smoke else ""))
  c = c.unlock()
  c.data.name = "digits_canvas"
  c.data.canvas = 32
  c.data.scale = 2
  c.data.image_size = 32
  c.model.img_size = 32
  if not args.smoke:
    c.num_steps = 300
    c.batch_size = 128
    c.eval_every = 300
    c.checkpoint_every = 300
  return c.lock()
