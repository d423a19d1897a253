"""wav2vec 2.0 BASE pre-training on LibriSpeech 960 h (Baevski et al., 2020, §4.2; task "wav2vec2").

  python -m papers_jax.main --config configs/wav2vec2/librispeech_base.py --workdir runs/w2v_base \\
      --config.data.data_dir=/data/librispeech_manifest

Data: a fairseq manifest (data.name="manifest": <split>.tsv listing 16 kHz WAV files, as fairseq's
wav2vec_manifest.py writes them; data/audio.ManifestSource). The paper trains on the 960 h of
LibriSpeech without transcripts; its Tables 1–2 give the WER after CTC fine-tuning on 10 min to 960 h of
labelled data (configs/wav2vec2/spoken_numbers_ctc.py is the fine-tuning task at demo scale).
Hardware: 64 V100 GPUs for 1.6 days in the paper (400k updates). `smoke` runs a tiny model on the bundled
spoken numbers for the test suite.

Settings from the paper: BASE (12 layers, 768 wide, 12 heads, MLP 3072, 95M with the heads),
mask p = 0.65 of fairseq (0.065 span starts, M = 10), K = 100 distractors, G = 2 × V = 320, κ = 0.1,
diversity α = 0.1, feature penalty 10, Gumbel temperature 2 → 0.5 by 0.999995, Adam (0.9, 0.98, eps 1e-6),
weight decay 0.01, lr 5e-4 warmed up over the first 8% of 400k updates then decayed linearly, dropout
0.1, LayerDrop 0.05, feature input and quantiser-input dropout 0.1.

Departures from the paper:
- Batches: 64 utterances padded to 250k samples (15.6 s; the paper's crop) with masks; fairseq instead
  packs length-bucketed crops up to 1.4M samples per GPU.
- The feature encoder's gradient is not scaled by 0.1 (fairseq's feature_grad_mult).
- bf16 compute (fairseq: fp16 with loss scaling).
"""

from papers_jax.core.config import base_config, parse_arg
from papers_jax.tasks import wav2vec2


def get_config(arg=None):
  args = parse_arg(arg, smoke=False)
  c = base_config()
  c.task = "wav2vec2"
  c.wav2vec2 = wav2vec2.default_config()
  c.model = dict(name="wav2vec2_base", hidden_dropout=0.1, attention_dropout=0.1, activation_dropout=0.0,
                 feat_proj_dropout=0.1, feat_quantizer_dropout=0.1, layerdrop=0.05)
  c.data.name = "manifest"
  c.data.train_split, c.data.eval_split = "train", "valid"
  c.dtype = "bfloat16"
  c.batch_size = 64
  c.num_steps = 400_000
  c.optimizer.update(name="adamw", lr=5e-4, b1=0.9, b2=0.98, eps=1e-6, weight_decay=0.01, clip_grad_norm=0.0,
                     wd_exclude=(r"(^|/)bias$", r"(^|/)scale$"))
  c.schedule.update(name="linear", warmup_steps=32_000)
  c.log_every = 200
  c.eval_every = 10_000
  c.checkpoint_every = 5_000
  if args.smoke:
    c.data.name = "spoken_numbers"
    c.data.train_split, c.data.eval_split = "train", "test"
    c.data.num_speakers, c.data.repeats = 5, 1
    c.dtype = "float32"
    c.wav2vec2.update(max_samples=4000, mask_length=2, num_negatives=4)
    c.model.update(conv_dim=(16,) * 7, hidden_size=16, num_layers=1, num_heads=2, mlp_dim=32, pos_conv_kernel=4,
                   pos_conv_groups=2, num_codevectors_per_group=4, codevector_dim=8, proj_codevector_dim=8,
                   layerdrop=0.0)
    c.batch_size = 8
    c.num_steps = 3
    c.schedule.warmup_steps = 1
    c.log_every = c.eval_every = c.checkpoint_every = 3
  return c.lock()
