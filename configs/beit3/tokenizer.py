"""The BEiT-3 demo's visual tokenizer: a VQ-VAE on the generated scenes, one code per 16×16 patch.

  python -m papers_jax.main --config configs/beit3/tokenizer.py --workdir runs/beit3_tokenizer

BEiT-3 predicts the visual tokens of BEiT v2's tokenizer (VQ-KD: a ViT encoder distilled from CLIP
features, 8,192 codes). None of that is available offline, so the VQ-VAE of models/vqvae.py stands in: it
reads the 64×64 scenes of data/vqa_scenes.py downsampled 4× (16×16) and its two stride-2 convolutions give a
4×4 grid of codes, one per 16×16 patch of the BEiT-3 demo model (configs/beit3/scenes_pretrain.py reads the
checkpoint through `beit3.tokenizer_checkpoint`). 64 codes of dimension 16, EMA codebook with dead-code
restarts, 64 hidden units; the rest is configs/vqvae/digits.py.

Departures from the paper (BEiT v2's tokenizer): a pixel-reconstruction VQ-VAE instead of VQ-KD, on 16×16
downsampled scenes, 64 codes instead of 8,192; and those configs/vqvae/digits.py lists (Adam lr 1e-3,
batch 64, `steps` steps: 1000 by default).
"""

import os

from papers_jax.core.config import load, parse_arg


def get_config(arg=None):
  args = parse_arg(arg, smoke=False, steps=1000)
  base = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "vqvae", "digits.py")
  c = load(f"{base}:ema=1,steps={args.steps}" + (",smoke" if args.smoke else "")).unlock()
  c.data.name = "vqa_scene_images"
  c.data.mean, c.data.std = (0.5,) * 3, (0.5,) * 3
  c.vqvae.fid = False
  if not args.smoke:
    c.model.update(in_chans=3, num_codes=64, code_dim=16)
  else:
    c.model.in_chans = 3
  return c.lock()
