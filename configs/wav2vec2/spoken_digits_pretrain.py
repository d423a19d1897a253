"""wav2vec 2.0 pre-training on the bundled spoken digits (offline demo; task "wav2vec2").

  python -m papers_jax.main --config configs/wav2vec2/spoken_digits_pretrain.py --workdir runs/w2v_pretrain

then fine-tune with CTC from its checkpoint (configs/wav2vec2/spoken_numbers_ctc.py; docs/speech.md has the
demo's exact commands):

  python -m papers_jax.main --config configs/wav2vec2/spoken_numbers_ctc.py:data=digits --workdir runs/w2v_ctc \\
      --config.init_from=runs/w2v_pretrain/checkpoints/800/state

Data: `data=digits` (default: 64 eSpeak NG speakers × 10 digits × 2, 1-second clips) or `data=numbers`
(the spoken numbers' audio without its transcripts, 3-second clips); the split is by speaker.
Model: the BASE layout (7-layer conv encoder with the paper's kernels and strides, group norm on the first
layer, post-norm Transformer, Gumbel product quantiser) at a small width. About an hour on a loaded
2-core CPU. docs/speech.md gives the measured numbers. `smoke` shrinks it to seconds for the test suite.

Departures from the paper (BASE, §4.2), all for a CPU demo on synthetic speech:
- Widths: conv 64 channels (512), model 64 (768), 4 layers (12), 4 heads (12), MLP 256 (3072); position
  convolution kernel 16 with 4 groups (128, 16): 0.32 s instead of 2.56 s of context, for 1–3 s clips.
- Quantiser: G = 2 × V = 32 entries (320), codewords 64 wide (256 → 768 for LARGE), projections 64.
- Masking: p = 0.65 as the paper (its "0.065 of the frames are span starts" with M = 10 is fairseq's
  mask_prob 0.65), but M = 3 frames (10) for 49-frame clips of one spoken word; K = 20 distractors (100).
- Feature penalty weight λ = 0.1 (10): at 10, with no down-scaled gradient into the feature encoder
  (fairseq's feature_grad_mult 0.1, which this model lacks), the penalty drove the encoder's output to
  zero and the contrastive loss stayed at chance (log 21) for 150 steps; at 0.1 it falls below chance
  after ~150 steps (docs/speech.md).
- Gumbel temperature annealed 2 → 0.5 by 0.995 per step (0.999995): the demo has 800 updates, not 400k.
- Batch 16 clips of ≤ 1 s (1.4 h of audio per batch in the paper), 800 steps; Adam lr 5e-4 (as the paper)
  with 80 warm-up steps (32k) then linear decay; no LayerDrop (0.05), dropout 0.1.
"""

from papers_jax.core.config import base_config, parse_arg
from papers_jax.tasks import wav2vec2

TINY = dict(conv_dim=(64,) * 7, hidden_size=64, num_layers=4, num_heads=4, mlp_dim=256, pos_conv_kernel=16,
            pos_conv_groups=4, num_codevectors_per_group=32, codevector_dim=64, proj_codevector_dim=64,
            layerdrop=0.0)


def get_config(arg=None):
  args = parse_arg(arg, smoke=False, data="digits")
  c = base_config()
  c.task = "wav2vec2"
  numbers = args.data == "numbers"
  c.wav2vec2 = wav2vec2.default_config(max_samples=48_000 if numbers else 16_000, mask_length=3, num_negatives=20,
                                       feature_penalty_weight=0.1, gumbel=(2.0, 0.5, 0.995))
  c.model = dict(name="wav2vec2_base", **TINY)
  c.data.name = "spoken_numbers" if numbers else "spoken_digits"
  c.data.train_split, c.data.eval_split = "train", "test"
  c.batch_size = 16
  c.num_steps = 800
  c.optimizer.update(name="adamw", lr=5e-4, b1=0.9, b2=0.98, eps=1e-6, weight_decay=0.01, clip_grad_norm=10.0,
                     wd_exclude=(r"(^|/)bias$", r"(^|/)scale$"))
  c.schedule.update(name="linear", warmup_steps=80)
  c.log_every = 20
  c.eval_every = 400
  c.checkpoint_every = 400
  if args.smoke:
    c.wav2vec2.max_samples = 4000
    c.wav2vec2.mask_length = 2
    c.wav2vec2.num_negatives = 4
    c.model.update(conv_dim=(16,) * 7, hidden_size=16, num_layers=1, num_heads=2, mlp_dim=32, pos_conv_kernel=4,
                   pos_conv_groups=2, num_codevectors_per_group=4, codevector_dim=8, proj_codevector_dim=8)
    c.data.num_speakers, c.data.repeats = 5, 1
    c.batch_size = 8
    c.num_steps = 3
    c.schedule.warmup_steps = 1
    c.log_every = c.eval_every = c.checkpoint_every = 3
  return c.lock()
