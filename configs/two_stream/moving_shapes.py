"""Two-Stream ConvNets (Simonyan & Zisserman 2014) on generated clips whose class is their motion: one stream
per run, then fusion of the two by tools/two_stream_eval.py.

  python -m papers_jax.data.flow_clips --split train --shots 40     # the TV-L1 flow, cached (optional:
  python -m papers_jax.data.flow_clips --split test --shots 20      #   the first run computes it too)
  python -m papers_jax.main --config configs/two_stream/moving_shapes.py:stream=spatial --workdir runs/ts_spatial
  python -m papers_jax.main --config configs/two_stream/moving_shapes.py:stream=temporal --workdir runs/ts_temporal
  python tools/two_stream_eval.py --spatial runs/ts_spatial --temporal runs/ts_temporal

Data (data/clips.py, data/flow_clips.py): 16-frame 32×32 clips of one shape doing one of 12 motions (moving
left/right/up/down, the four diagonals, growing, shrinking, rotating clockwise/anticlockwise) on a torus
with a uniform start, so that a single frame says (almost) nothing of the class: the spatial stream should
be near chance and the temporal stream should not. 40 training clips a class (480), 20 test clips a class
(240, other seeds); fixed seeds. Networks: the paper's layers (models/two_stream.py) at 1/8 width
(`variant=demo`); `variant=paper` builds Fig. 1's nets (224 px, 101 classes: for counting, not for this data).
Measured numbers: docs/two_stream.md. `smoke`: 2 + 1 clips a class, a few steps.

Departures from the paper:
  - Data: generated 32×32 clips (the paper: UCF-101 / HMDB-51 at 256 px, 224 crops), 16 frames a clip, 480
    training clips; 28 px crops (the paper's 224/256 ratio). Flow: skimage's TV-L1 with its defaults on grey
    frames (the paper, §5: OpenCV's GPU implementation of Brox et al. [2]), stored as uint8 at 1/16 px steps
    (±7.9 px; the paper rescales each component to [0, 255] and stores it as JPEG, §5). Frames normalised by
    the clips' mean and std (0.125, 0.13; the paper follows AlexNet's training [15], §5); no RGB jittering
    (§5); each batch draws clips at random (the paper: 256 videos sampled uniformly across the classes, §5).
  - Network 1/8 as wide (conv 12/32/64/64/64, full6 512, full7 256), conv1 padded by 3 and conv2 at stride 1
    (a 28 px crop at the paper's strides leaves no map after pool5): maps 28 → 14 → 7 → 7 → 3 → 3 → 1 (the
    paper's 3×3/2 max-pooling, rounded up). torch's default weight init, zero biases (the paper names none).
  - Training: Adam (lr 1e-3, no weight decay), batch 64, 2,000 steps (spatial and temporal alike), cosine
    decay after 50 warm-up steps, dropout 0.5 (the paper, §5: SGD with momentum 0.9, batch 256, lr 1e-2, 1e-3
    after 50K and 1e-4 after 70K iterations, stopped at 80K, for a net trained from scratch; a fine-tuned one
    drops to 1e-3 after 14K and stops at 20K; dropout 0.5 or 0.9 for the spatial net (Table 1a) and 0.9 for
    the temporal net trained from scratch (§6)). No gradient clipping, no label smoothing, no weight-decay
    exclusions (none needed without weight decay).
  - Horizontal flips mirror the label here (moving left → moving right; the paper's UCF-101 actions keep
    their class when mirrored), in training and in the 10-crop test.
  - Only plain flow stacking with L = 10 and mean-flow subtraction (the paper's final input, §6; bi-directional
    flow was 0.2 points better alone, Table 1b, but not in fusion, Table 3); no trajectory or
    bi-directional stacking, no multi-task learning over two datasets, no pre-training of the spatial net.
  - The evaluation during training is one view a clip; the paper's 25 frames × 10 crops (§5) and the fusions
    (§2: averaging, or Crammer & Singer's multi-class linear SVM [6] on stacked L2-normalised scores) are
    tools/two_stream_eval.py's. A 16-frame clip has 16 frames and 6 flow-stack starts, so the 25 evenly spaced
    positions repeat some.
"""

from papers_jax.core.config import base_config, parse_arg
from papers_jax.errors import ConfigError

STREAMS = ("spatial", "temporal")


def get_config(arg=None):
  args = parse_arg(arg, stream="spatial", variant="demo", smoke=False)
  if args.stream not in STREAMS:
    raise ConfigError(f"stream must be one of {STREAMS}, got {args.stream!r}")
  if args.variant not in ("demo", "paper"):
    raise ConfigError(f"variant must be demo or paper, got {args.variant!r}")
  c = base_config()
  c.task = "two_stream"
  suffix = "_demo" if args.variant == "demo" else ""
  c.model = dict(name=f"two_stream_{args.stream}{suffix}", in_chans=3 if args.stream == "spatial" else 20,
                 num_classes=12, drop_rate=0.5)
  if args.variant == "demo":
    c.model.update(img_size=28, pool_window=3, pool_ceil=True)  # the paper's 3×3/2 pooling, rounded up
  c.two_stream = dict(stream=args.stream, flow_length=10, num_frames=16, crop=28, train_shots=40, test_shots=20,
                      seed=3232)
  c.data.name = "moving_shapes"
  c.data.image_size = 32
  if args.stream == "spatial":  # the clips' pixel statistics (dark, noisy background)
    c.data.mean, c.data.std = (0.125,), (0.13,)
  else:  # flow is stored as 128 + 16·d (data/flow_clips.py): normalised, d in pixels
    c.data.mean, c.data.std = (128 / 255,), (16 / 255,)
  c.batch_size = 64
  c.num_steps = 2000
  c.optimizer.update(name="adam", lr=1e-3, weight_decay=0.0, wd_exclude=(), clip_grad_norm=0.0)
  c.schedule.update(name="cosine", warmup_steps=50, end_lr_ratio=0.0)
  c.label_smoothing = 0.0
  c.log_every = 50
  c.eval_every = 500
  c.checkpoint_every = 1000
  c.async_checkpoint = False
  if args.smoke:
    c.model.update(drop_rate=0.0)
    c.two_stream.update(train_shots=2, test_shots=1)
    c.batch_size = 8
    c.num_steps = 4
    c.schedule.warmup_steps = 1
    c.log_every = 2
    c.eval_every = 0
    c.checkpoint_every = 4
  return c.lock()
