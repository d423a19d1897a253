"""The Transformer on WMT 2014 English→German (Vaswani et al. 2017): the paper's base and big recipes.

  python -m papers_jax.main --config configs/transformer/wmt14.py:variant=base --workdir runs/transformer_wmt14

Needs `wmt14_translate/de-en` prepared with TFDS as ArrayRecord (the error message gives the command);
nothing is downloaded at run time. The paper reports newstest2014 BLEU 27.3 (base, 100k steps, 12 hours
on 8 P100s) and 28.4 (big, 300k steps), tokenised BLEU with compound splitting and checkpoint averaging
(last 5 / 20 checkpoints), neither of which is done here: eval/bleu is sacreBLEU on detokenised text of
the validation split (newstest2013 in TFDS), typically about 1 point below the tokenised number.

What follows the paper (§5, Table 3): one shared BPE vocabulary of 37,000 (trained here on the training
pairs: the first run tokenises all 4.5M pairs, which takes a while; pass lm.tokenizer=<tokenizer.json> to
reuse one), shared embeddings, Adam (0.9, 0.98, 1e-9), lr = d_model^-0.5 · min(step^-0.5,
step · 4000^-1.5), label smoothing 0.1, dropout 0.1 (base) / 0.3 (big), beam 4 with α 0.6 and at most input
length + 50 tokens. Where it differs: the paper batches ~25,000 source + 25,000 target tokens by length;
here a batch is 1,024 sentence pairs of at most 128 tokens per side (pairs are cut, not filtered).
`smoke` runs the same code on the bundled translation task in seconds.

Precision: bfloat16 compute with float32 params and float32 softmax, norms and losses;
`--config.dtype=float32` for full precision. `smoke` keeps bfloat16.

Departures from the paper:
- Batches of 1,024 sentence pairs of at most 128 tokens per side (cut, not filtered), not ~25k
  source + 25k target tokens batched by length.
- No checkpoint averaging; sacreBLEU on detokenised newstest2013 / 2014 instead of tokenised BLEU
  with compound splitting. The BPE vocabulary is trained here, not the paper's.
"""

from papers_jax.core.config import base_config, parse_arg
from papers_jax.models.transformer import peak_learning_rate
from papers_jax.tasks import lm

VARIANTS = {"base": dict(d_model=512, steps=100_000, dropout=0.1), "big": dict(d_model=1024, steps=300_000, dropout=0.3)}


def get_config(arg=None):
  args = parse_arg(arg, variant="base", smoke=False)
  v = VARIANTS[args.variant]
  c = base_config()
  c.dtype = "bfloat16"  # compute; params stay float32
  c.task = "lm"
  c.lm = lm.default_config(objective="translation", vocab_size=37000, max_source_len=128, max_target_len=128,
                           label_smoothing=0.1, beam_size=4, length_penalty=0.6, bleu_examples=0, decode_batch=128)
  c.model = dict(name=f"transformer_{args.variant}", vocab_size=0, dropout_rate=v["dropout"])
  c.data.name = "tfds:wmt14_translate/de-en"
  c.data.train_split, c.data.eval_split = "train", "validation"
  c.batch_size = 1024
  c.num_steps = v["steps"]
  c.optimizer.update(name="adam", lr=peak_learning_rate(v["d_model"], 4000), b1=0.9, b2=0.98, eps=1e-9,
                     clip_grad_norm=0.0)
  c.optimizer.wd_exclude = ()  # Adam without weight decay, as the paper
  c.schedule.update(name="rsqrt", warmup_steps=4000)
  c.mesh.update(data=-1, fsdp=1, tensor=1)
  c.log_every = 100
  c.eval_every = 10_000
  c.checkpoint_every = 5_000
  if args.smoke:
    lm.smoke(c)
  return c.lock()
