"""BLIP VQA as generation on the generated VQA scenes, from a BLIP pre-training run.

  python -m papers_jax.main --config configs/blip/scenes_vqa.py --workdir runs/blip_vqa \
      --config.init_from=runs/blip_pretrain/checkpoints/500/state

The image-grounded encoder reads "[ENC] question" against the image; the decoder generates "[DEC] answer [SEP]"
with cross-attention to the encoded question (tasks/blip.py, objective "vqa"); eval/accuracy counts greedy answers
equal to the reference, against the majority answer ("yes", eval/baseline_majority). Without init_from the same
model trains from scratch. Model and data as configs/blip/scenes_pretrain.py.

The paper's recipe (§5.3): the pre-trained encoder and a decoder initialised from the pre-trained decoder, VQA2 +
VG, AdamW lr 2e-5 with cosine decay, batch 1,024, 10 epochs, 480×480 images, answers ranked among 3,128
candidates or generated.

Departures from the paper (a CPU demo):
  - the answer decoder shares the cross-attention and FFN with the image-grounded encoder (BLIP's VQA model gives
    the decoder its own copy, initialised from the pre-trained one), so the vision and text widths must be equal;
  - inherited from configs/blip/scenes_pretrain.py: the 64-wide, 2-layer model, the generated scenes, lr 1e-3 with
    warm-up and linear decay (here 1,000 steps), batch 64, weight decay 0.05 not on biases and LayerNorm gains,
    no augmentation, no gradient clipping, dropout 0, the images normalised with the scenes' own mean / std, the
    cross-attention's query and key initialised at std 0.125 (for a run without init_from), ITC on the mean of the
    tokens (unused here);
  - answers are generated greedily (at most 5 tokens) and must equal the reference exactly; VQA2's accuracy
    averages over 10 human answers.
`smoke`: the pre-training config's smoke model, 4 steps.
"""

import os

from papers_jax.core.config import load, parse_arg


def get_config(arg=None):
  args = parse_arg(arg, smoke=False, steps=1000)
  c = load(os.path.join(os.path.dirname(os.path.abspath(__file__)), "scenes_pretrain.py")
           + (":smoke" if args.smoke else "")).unlock()
  c.blip.objective = "vqa"
  c.blip.caption_images = 0
  c.batch_size = 64
  if not args.smoke:
    c.num_steps = args.steps
    c.schedule.warmup_steps = c.num_steps // 10
    c.eval_every = c.checkpoint_every = c.num_steps
  return c.lock()
