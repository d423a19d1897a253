"""AudioCLIP on generated sounds (spoken digits and synthetic tones), trained into the frozen scenes CLIP.

  python -m papers_jax.main --config configs/clip/scenes.py --workdir runs/clip_scenes     # the CLIP
  python -m papers_jax.main --config configs/audioclip/sounds.py --workdir runs/audioclip_sounds \\
      --config.audioclip.clip_run=runs/clip_scenes
  # ablation: no audio-text term (text zero-shot only through CLIP's image-text alignment)
  python -m papers_jax.main --config configs/audioclip/sounds.py:pairs=audio_image --workdir runs/audioclip_ai \\
      --config.audioclip.clip_run=runs/clip_scenes
  # the paper's audio tower (ESResNeXt-fbsp, 32.1M parameters; far too slow for the shared CPU): :audio=paper

Data (data/sounds.py): 1,326 training and 338 test clips of one second at 16 kHz in 13 classes, the scenes'
object kinds: the spoken digits "0" ... "9" (51 training and 13 test speakers) and tones named after their
waveform, sine "circle", "square" and "triangle" (beeps, sirens and chirps in white noise); each clip paired with
an image of one object of its kind (random colour, place and size) and the caption "a {colour} {kind}.". The
CLIP is configs/clip/scenes.py's run (its tokenizer knows only the scenes' words, so the classes are its
kinds), frozen: the paper's "partial training" (audio head only). The audio tower: ESResNeXt-fbsp (the
trainable FBSP time-frequency transform, three frequency bands as channels, a ResNeXt with the attention
blocks) at the demo's size: 1 block per stage, width 16, ungrouped (ESResNet-fbsp, the official code's
other variant), FFT and window 256 / hop 160 (16 / 10 ms) → 64-d, the CLIP's joint space. Loss: the three
pairwise contrastive losses summed and divided by 3! (the official code's; the image-text term is a constant with
the CLIP frozen) plus the FBSP weight-norm term. AdamW lr 1e-3, weight decay 1e-4, cosine, batch 64, 600 steps
(about 29 epochs), time shifts of ±0.1 s.

Evaluation (tasks/audioclip.py): zero-shot top-1 of the test clips against the 13 class prompts (every template
and colour, averaged), beside chance (1/13), the majority class, a linear probe on the same audio embeddings and
one on log-Mel statistics (supervised baselines), and audio→image retrieval among the 338 test images.

Measured (seed 0, the shared 2-core CPU at load ~34; the run stopped at step 401, numbers from its step-300
evaluation; docs/clip_family.md): zero-shot 21.6% on the 338 test clips (chance 7.7%); linear probes on the
audio embeddings 60.7%, on log-Mel statistics 93.2%; audio→image R@1 0.9% (chance 0.3%).

Departures from the paper (a CPU demo, not one of its experiments):
- Generated data (spoken digits, synthetic tones, images of the scenes' objects, templated captions) instead of
  AudioSet (training) and ESC-50 / UrbanSound8K (zero-shot); 16 kHz one-second clips instead of 44.1 kHz
  five-second ones. The classes of the test split are those of training (new speakers, new tones), not a new
  label set: zero-shot here means no classifier is trained, the labels are read from text prompts.
- The CLIP is the tiny scenes CLIP (ViT width 64, 64-d joint space), not OpenAI's RN50; it stays frozen (the
  paper's partial training; its full training, which also updates CLIP's towers, is not run).
- The audio tower is ESResNeXt-fbsp shrunk (1 block per stage instead of 3/4/6/3, width 16 instead of 64) and
  ungrouped (32 groups of 4 in the paper: grouped convolutions are slow on XLA's CPU backend; `:audio=paper`
  keeps them), the transform's FFT 256 instead of 2,048, trained from scratch: the paper starts from
  ESResNeXt pre-trained on AudioSet, with ImageNet weights before that.
- The FBSP parameters' gradients are not rescaled by their ∞-norm (the official code's hooks); AdamW normalises
  each parameter's step anyway. The optimiser, schedule and batch are this demo's.
- Inherited from the base config: float32, no EMA, no gradient accumulation.
"""

import os

from papers_jax.core.config import base_config, load, parse_arg
from papers_jax.data import vqa_scenes
from papers_jax.tasks.audioclip import PAPER_AUDIO
from papers_jax.tasks.audioclip import default_config as audioclip_defaults

# Grouped convolutions ran 2.9× slower than plain ones on XLA's CPU backend (a train step of batch 64: 11.4 s for 8
# groups of 4, 4.0 s ungrouped, same widths, measured on the loaded shared CPU): the demo's tower is ungrouped.
DEMO_AUDIO = dict(layers=(1, 1, 1, 1), width=16, groups=1, width_per_group=64, n_fft=256, hop_length=160,
                  win_length=256, window="blackmanharris", normalized=True, apply_attention=True)


def get_config(arg=None):
  args = parse_arg(arg, pairs="all", audio="demo", smoke=False)
  here = os.path.dirname(os.path.abspath(__file__))
  scenes_clip = load(os.path.join(here, "..", "clip", "scenes.py") + (":smoke" if args.smoke else ""))
  c = base_config()
  c.task = "audioclip"
  c.model = dict(scenes_clip.model)  # the CLIP run's architecture: its checkpoint is read strictly
  pairs = ("audio_image", "audio_text", "image_text") if args.pairs == "all" else tuple(args.pairs.split("+"))
  c.audioclip = audioclip_defaults(clip_run="runs/clip_scenes", pairs=pairs,
                                   audio=dict(PAPER_AUDIO if args.audio == "paper" else DEMO_AUDIO))
  c.data.name = "sounds"
  c.data.train_split = "train"
  c.data.eval_split = "test"
  c.data.image_size = 64
  c.data.mean = vqa_scenes.MEAN  # the CLIP's own normalisation (the scenes are dark)
  c.data.std = vqa_scenes.STD
  c.batch_size = 64
  c.num_steps = 600
  c.optimizer.update(name="adamw", lr=1e-3, b1=0.9, b2=0.999, weight_decay=1e-4, clip_grad_norm=0.0,
                     wd_exclude=(r"(^|/)bias$", r"(^|/)scale$", r"logit_scale", r"fbsp"))
  c.schedule.update(name="cosine", warmup_steps=40, end_lr_ratio=0.0)
  c.log_every = 50
  c.eval_every = 300
  c.checkpoint_every = 300
  if args.smoke:
    c.audioclip.update(clip_run="", feature_batch=16, num_speakers=5, repeats=1, limit=16)
    c.audioclip.audio.update(width=8, n_fft=128, hop_length=400, win_length=128)
    c.batch_size = 8
    c.num_steps = 2
    c.schedule.warmup_steps = 1
    c.log_every = 1
    c.eval_every = 0
    c.checkpoint_every = 2
  return c.lock()
