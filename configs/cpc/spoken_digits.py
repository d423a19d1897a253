"""CPC (Contrastive Predictive Coding) on the bundled spoken digits, with linear probes (task "cpc").

  python -m papers_jax.main --config configs/cpc/spoken_digits.py --workdir runs/cpc_digits

Data: 64 eSpeak NG speakers × 10 digits × 2 (train: 51 speakers; test: 13 new ones), 1-second clips.
After training (and at each evaluation) linear probes on the utterance-averaged context report the digit
(train → held-out speakers) and the speaker (even → odd utterances of the train speakers), for the
trained encoder (eval/probe/...) and a randomly initialised one (eval/probe_random/...).
docs/speech.md gives the measured numbers. `smoke` shrinks it to seconds for the test suite.

Departures from the paper (§3.1, LibriSpeech 100 h), for a CPU demo on synthetic speech:
- Widths: 64 conv channels (512) and a 64-unit GRU (256); the paper's strides, filters and 12 offsets.
- Negatives: the frames at t + k of the other sequences of the batch plus 8 frames of the same sequence
  (the paper samples from both; its counts are not given).
- Waveforms normalised per utterance; 1-second clips (20,480-sample windows), batch 32 (8 GPUs × 8).
- Adam lr 1e-3 with 20 warm-up steps then cosine (2e-4), 300 steps; the paper's probes were trained on
  phone labels and LibriSpeech speakers, these on digits and eSpeak voices.
"""

from papers_jax.core.config import base_config, parse_arg
from papers_jax.tasks import cpc


def get_config(arg=None):
  args = parse_arg(arg, smoke=False)
  c = base_config()
  c.task = "cpc"
  c.cpc = cpc.default_config(max_samples=16_000, num_negatives=8)
  c.model = dict(name="cpc_audio", channels=64, context_dim=64, num_offsets=12)
  c.data.name = "spoken_digits"
  c.data.train_split, c.data.eval_split = "train", "test"
  c.batch_size = 32
  c.num_steps = 300
  c.optimizer.update(name="adam", lr=1e-3, weight_decay=0.0, clip_grad_norm=0.0)
  c.optimizer.wd_exclude = ()  # no weight decay at all
  c.schedule.update(name="cosine", warmup_steps=20)
  c.log_every = 20
  c.eval_every = 0
  c.checkpoint_every = 300
  if args.smoke:
    c.cpc.max_samples = 4000
    c.cpc.num_negatives = 2
    c.model.update(channels=8, context_dim=8, num_offsets=3)
    c.data.num_speakers, c.data.repeats = 5, 1
    c.batch_size = 8
    c.num_steps = 3
    c.schedule.warmup_steps = 1
    c.log_every = c.checkpoint_every = 3
  return c.lock()
