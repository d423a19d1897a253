"""wav2vec 2.0 CTC fine-tuning on the bundled spoken numbers ("three hundred and forty two"; task "ctc").

From a pre-trained checkpoint (configs/wav2vec2/spoken_digits_pretrain.py):
  python -m papers_jax.main --config configs/wav2vec2/spoken_numbers_ctc.py --workdir runs/w2v_ctc \\
      --config.init_from=runs/w2v_pretrain/checkpoints/<step>/state
From scratch (the baseline): the same command without init_from.

Data: 64 eSpeak NG speakers × 20 numbers (train: 51 speakers, test: 13 new ones), clips up to 3 s;
`data=digits`: the spoken digits' words ("seven"), 1-second clips, 20 per speaker. Transcripts as characters (blank, space, apostrophe, a–z). Evaluation: CTC loss per character, then greedy
decoding with CER and WER on the held-out speakers. docs/speech.md gives the measured numbers.
`smoke` shrinks it to seconds for the test suite; `size=base` puts in the BASE model (95M, the paper's
dropouts and LayerDrop) for tools/benchmark.py.

Departures from the paper (§4.3, fine-tuning BASE on labelled LibriSpeech), for a CPU demo:
- The small model of spoken_digits_pretrain.py (its docstring lists the sizes).
- The feature encoder is trained too (the paper freezes it: optimizer.freeze=("^feature_extractor/",)),
  and there is no initial phase that trains the head alone (10k updates in the paper).
- Time masking p = 0.3, M = 5 (fairseq base_100h: 0.65, 10); no channel masking.
- Adam lr 1e-3, 10% warm-up then linear decay (tri-stage schedule, 3e-5 peak), batch 32, 600 steps.
- Greedy decoding, no language model.
"""

from papers_jax.core.config import base_config, parse_arg
from papers_jax.errors import ConfigError
from papers_jax.tasks import ctc

TINY = dict(conv_dim=(64,) * 7, hidden_size=64, num_layers=4, num_heads=4, mlp_dim=256, pos_conv_kernel=16,
            pos_conv_groups=4, layerdrop=0.0, quantizer=False, final_dropout=0.0)


def get_config(arg=None):
  args = parse_arg(arg, smoke=False, data="numbers", size="tiny")
  if args.size not in ("tiny", "base"):
    raise ConfigError(f"size={args.size!r}: use tiny (the demo's model) or base (wav2vec 2.0 BASE)")
  c = base_config()
  c.task = "ctc"
  digits = args.data == "digits"
  c.ctc = ctc.default_config(max_samples=16_000 if digits else 48_000, max_label_len=8 if digits else 48,
                             mask_prob=0.3, mask_length=5)
  c.model = dict(name="wav2vec2_base_ctc", **TINY) if args.size == "tiny" else dict(name="wav2vec2_base_ctc")
  c.data.name = "spoken_digits" if digits else "spoken_numbers"
  c.data.train_split, c.data.eval_split = "train", "test"
  c.init_skip = ctc.ENCODER_INIT_SKIP
  c.batch_size = 32
  c.num_steps = 600
  c.optimizer.update(name="adamw", lr=1e-3, b1=0.9, b2=0.98, eps=1e-8, weight_decay=0.0, clip_grad_norm=10.0,
                     wd_exclude=(r"(^|/)bias$", r"(^|/)scale$"))
  c.schedule.update(name="linear", warmup_steps=60)
  c.log_every = 20
  c.eval_every = 300
  c.checkpoint_every = 300
  if args.smoke:
    c.ctc.max_samples = 16000
    c.ctc.max_label_len = 32
    c.ctc.mask_length = 2
    c.ctc.decode_batch = 8
    c.model.update(conv_dim=(16,) * 7, hidden_size=16, num_layers=1, num_heads=2, mlp_dim=32, pos_conv_kernel=4,
                   pos_conv_groups=2)
    c.data.num_speakers, c.data.repeats = 5, 1
    c.batch_size = 8
    c.num_steps = 3
    c.schedule.warmup_steps = 1
    c.log_every = c.eval_every = c.checkpoint_every = 3
  return c.lock()
