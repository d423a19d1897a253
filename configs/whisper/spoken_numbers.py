"""Whisper trained from scratch on the bundled spoken numbers, reporting WER and CER on held-out voices.

  python -m papers_jax.main --config configs/whisper/spoken_numbers.py --workdir runs/whisper_numbers
  python -m papers_jax.main --config configs/whisper/spoken_numbers.py:data=digits --workdir runs/whisper_digits

Data: data/spoken.py's numbers 0–999 read out by eSpeak NG ("three hundred and forty two"), 64 speakers
(accent × voice variant, each with its own pitch and rate), 20 numbers each; 51 speakers train (1,020
utterances), 13 held-out speakers test (260). Audio cut or padded to 3.2 s (320 frames, 160 encoder
positions); transcripts as characters (27 letters, space and apostrophe) after Whisper's prompt
<|startoftranscript|><|en|><|transcribe|><|notimestamps|>.
Model: Whisper's architecture (models/whisper.py) at width 128, 3 + 3 layers, 4 heads.
Optimisation as the paper's (Appendix: AdamW β2 0.98, ε 1e-6, weight decay 0.1, gradient clipping 1.0,
linear warm-up then linear decay to 0), here 150 warm-up steps, lr 1e-3, batch 24, 1,500 steps.
Evaluation: teacher-forced loss and token accuracy, then greedy transcripts of all 260 test utterances, WER
and CER (tasks/speech_to_text.py).
`data=digits`: the spoken digit words instead ("zero" … "nine", 1,020 train / 260 test utterances of the
same speakers), 1-second windows (50 encoder positions), width 128, 2 + 2 layers, 800 steps: a demo that
fits a few minutes of CPU.

Departures from the paper (an offline demo, not one of its experiments):
- Synthesised spoken numbers instead of 680,000 hours of web audio; one language and one task (no
  translation, no timestamps, no voice-activity or previous-text prompts).
- 3.2-second windows instead of 30 s; width 128 and 3 + 3 layers (tiny: 384, 4 + 4).
- Character tokens instead of Whisper's byte-level BPE; batch 24 instead of 256; 1,500 steps; 150 warm-up
  steps instead of 2,048; lr 1e-3 (the paper's tiny: 1.5e-3).
- No SpecAugment or other augmentation (as the paper's models; its later large-v2 used SpecAugment).
"""

from papers_jax.core.config import base_config, parse_arg
from papers_jax.errors import ConfigError
from papers_jax.tasks import speech_to_text


def get_config(arg=None):
  args = parse_arg(arg, smoke=False, data="numbers")
  c = base_config()
  c.task = "speech_to_text"
  c.speech = speech_to_text.default_config(max_seconds=3.2, max_tokens=36)
  c.model = dict(name="whisper_tiny", d_model=128, num_layers=3, num_heads=4, max_source_positions=160,
                 max_target_positions=48)
  c.data.name = "spoken_numbers"
  c.data.num_speakers, c.data.repeats = 64, 2
  c.data.train_split, c.data.eval_split = "train", "test"
  c.batch_size = 24
  c.num_steps = 1500
  c.optimizer.update(name="adamw", lr=1e-3, b1=0.9, b2=0.98, eps=1e-6, weight_decay=0.1, clip_grad_norm=1.0)
  c.optimizer.wd_exclude = (r"(^|/)bias$", r"(^|/)scale$")
  c.schedule.update(name="linear", warmup_steps=150, end_lr_ratio=0.0)
  c.log_every = 50
  c.eval_every = 750
  c.checkpoint_every = 750
  if args.data == "digits":
    c.data.name = "spoken_digits"
    c.speech.update(max_seconds=1.0, max_tokens=8)
    c.model.update(num_layers=2, max_source_positions=50, max_target_positions=16)
    c.num_steps, c.eval_every, c.checkpoint_every = 800, 400, 400
    c.schedule.warmup_steps = 80
  elif args.data != "numbers":
    raise ConfigError(f"data={args.data!r}: choose 'numbers' or 'digits'")
  if args.smoke:
    c.data.num_speakers, c.data.repeats = 5, 1
    c.speech.decode_examples = 4
    c.model.update(d_model=32, num_layers=1, num_heads=2)
    c.batch_size, c.num_steps = 8, 4
    c.schedule.warmup_steps = 1
    c.mesh.update(data=-1, fsdp=1, tensor=1)
    c.log_every, c.eval_every, c.checkpoint_every = 2, 4, 4
  return c.lock()
