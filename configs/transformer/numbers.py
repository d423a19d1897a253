"""The Transformer on an offline English→German translation task, reporting sacreBLEU.

  python -m papers_jax.main --config configs/transformer/numbers.py --workdir runs/transformer_numbers

Data: data/translation.py's generated pairs: numbers 2–9,999 written out inside short sentences that need
German compounding ("dreihundertzweiundvierzig"), gender/case/adjective agreement, verb-second order after a
fronted time phrase, the participle at the end in the perfect and the verb at the end of a "dass" clause;
20,000 training pairs, 1,000 validation pairs that share no sentence with them (the test split stays
unused). One byte-level BPE of 800 tokens shared by both languages (and one embedding matrix shared by
encoder, decoder and output projection, as the paper shares its EN-DE vocabulary), 40 tokens per side.
Model: the paper's architecture (post-LN, sinusoidal positions, embeddings × sqrt(d_model), ReLU FFN,
dropout 0.1) at d_model 128, 3+3 layers, 4 heads, d_ff 512. The paper's optimisation: Adam (0.9, 0.98, 1e-9)
with lr = d_model^-0.5 · min(step^-0.5, step · warmup^-1.5), here with 400 warm-up steps, label smoothing
0.1, batch 64 sentence pairs, 600 steps (1.9 epochs). Evaluation: teacher-forced loss and token accuracy, and sacreBLEU (13a, mixed
case) of beam-search translations (beam 4, α 0.6, up to source length + 50) of the 1,000 validation pairs.
The README's language-model table gives the measured numbers of this command.

Departures from the paper (an offline demo, not one of its experiments):
- Generated number sentences instead of WMT 2014; d_model 128, 3+3 layers, 4 heads, d_ff 512; a
  shared BPE of 800 tokens; batches of 64 sentence pairs instead of ~25k tokens; 400 warm-up steps.
- No checkpoint averaging; sacreBLEU instead of tokenised BLEU.
"""

from papers_jax.core.config import base_config, parse_arg
from papers_jax.models.transformer import peak_learning_rate
from papers_jax.tasks import lm


def get_config(arg=None):
  args = parse_arg(arg, smoke=False)
  c = base_config()
  c.task = "lm"
  c.lm = lm.default_config(objective="translation", vocab_size=800, max_source_len=40, max_target_len=40,
                           label_smoothing=0.1, beam_size=4, length_penalty=0.6)
  c.model = dict(name="transformer_base", vocab_size=0, num_layers=3, d_model=128, d_ff=512, num_heads=4,
                 dropout_rate=0.1)
  c.data.name = "translation_numbers"
  c.data.train_split, c.data.eval_split = "train", "validation"
  c.batch_size = 64
  c.num_steps = 600
  warmup = 400
  c.optimizer.update(name="adam", lr=peak_learning_rate(128, warmup), b1=0.9, b2=0.98, eps=1e-9, clip_grad_norm=0.0)
  c.optimizer.wd_exclude = ()  # Adam without weight decay, as the paper
  c.schedule.update(name="rsqrt", warmup_steps=warmup)
  c.log_every = 100
  c.eval_every = 300
  c.checkpoint_every = 300
  if args.smoke:
    lm.smoke(c)
  return c.lock()

