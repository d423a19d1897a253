"""DepthCLIP on rendered scenes with known depth: a small CLIP trained on image-level depth captions, then
zero-shot dense depth from its patch features.

  python -m papers_jax.main --config configs/depthclip/scenes.py --workdir runs/depthclip_scenes

Data (data/depth_scenes.py): 64×64 scenes of one or two flat shapes standing on the ground at depths in
[1, 3] under a pinhole camera (apparent size and height in the image scale with 1 / depth); 6,000
training and 500 test scenes. Captions name each object's depth with DepthCLIP's words ("the red circle
is close.", "this object is far."): image-level, no pixel is ever told its depth. The CLIP is
configs/clip/scenes.py's (a ViT of width 64, depth 4 on 8×8 patches, a text Transformer of width 64,
depth 2, 64-d joint space; AdamW lr 1e-3, β2 0.98, weight decay 0.2, cosine) trained here for 400 steps of
128 captioned scenes, normalised with the depth scenes' own mean / std (they are dark). The image feature is
the mean of the patch tokens after the final LayerNorm (`model.vision_pool = "avg"`), so the image embedding
the captions train is the mean of the projected patch features the readout reads: the patches are in the
joint space by construction, as the paper's RN50 attention pool makes its pooled feature a weighted sum of
the per-position value features DepthCLIP reads. Evaluation
(tasks/depthclip.py): CLIP's retrieval, then DepthCLIP's readout on every test scene: each patch's
feature against "this object is {giant, extremely close, close, not in distance, a little remote, far,
unseen}." with the paper's bin depths [1.00, 1.50, 2.00, 2.25, 2.50, 2.75, 3.00] and temperature 0.1,
AbsRel / RMSE / δ < 1.25 on the object pixels beside a constant (the mean training depth).

Measured (seed 0, 26 minutes on a shared 2-core CPU at load 25-32; docs/clip_family.md): on the object pixels of
the 500 test scenes the readout beats a constant depth (AbsRel 0.227 / RMSE 0.500 / δ1 0.553 against
0.281 / 0.532 / 0.419); retrieval image→text R@1 16.4%, text→image 8.9%. With the class token's feature
instead (600 steps) the readout lost to the constant (AbsRel 0.425 / RMSE 0.768 / δ1 0.420).

Departures from the paper (a CPU demo, not one of its experiments):
- The paper uses OpenAI's CLIP (RN50) unchanged on NYU Depth v2; here a tiny CLIP is trained on generated
  scenes whose captions contain the depth words (the paper's CLIP learned them from web text), at the
  image level only, so the dense readout is still zero-shot for depth. Those of configs/clip/scenes.py,
  which this config loads (tiny towers, a word-level tokenizer, no augmentation, lr 1e-3 with 50 warm-up
  steps and cosine, weight decay 0.2 not on biases, gains, position / class embeddings or the temperature),
  with 400 steps instead of 1,000.
- The ViT's image feature is the mean of its patch tokens (CLIP's ViTs use the class token; the paper's RN50
  an attention pool).
- Dense features: every ViT patch token after the final LayerNorm, through the image projection, the terms
  whose mean is the image feature (the paper reads the RN50 attention pool's value path at every position);
  8×8 patches give an 8×8 depth map, bilinearly resized to 64×64 (the paper: 13×17 to 416×544).
- Metrics on the object pixels only (the scenes' depth is defined there); no depth range cropping.
"""

import os

from papers_jax.core.config import load, parse_arg
from papers_jax.data import depth_scenes
from papers_jax.tasks.depthclip import default_config as depthclip_defaults


def get_config(arg=None):
  args = parse_arg(arg, smoke=False)
  here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  c = load(os.path.join(here, "clip", "scenes.py") + (":smoke" if args.smoke else "")).unlock()
  c.task = "depthclip"
  c.model.vision_pool = "avg"  # the image feature is the mean of the projected patch features (docstring)
  c.depthclip = depthclip_defaults()
  c.data.name = "depth_scenes"
  c.data.mean = depth_scenes.MEAN
  c.data.std = depth_scenes.STD
  c.clip.retrieval_ks = (1, 5)
  if args.smoke:
    c.depthclip.update(baseline_scenes=8, eval_scenes=16, train_scenes=64)
    c.clip.max_eval_images = 16
  else:
    c.num_steps = 400
    c.eval_every = 400
    c.checkpoint_every = 400
  return c.lock()
