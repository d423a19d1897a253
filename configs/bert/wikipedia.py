"""BERT pretraining (Devlin et al. 2019, §3.1 and Appendix A.2) on English Wikipedia.

  python -m papers_jax.main --config configs/bert/wikipedia.py:variant=base,phase=1 --workdir runs/bert_base
  python -m papers_jax.main --config configs/bert/wikipedia.py:variant=base,phase=2 --workdir runs/bert_base_512 \
      --config.init_from=runs/bert_base/checkpoints/900000/state --config.init_skip='()'

The paper trains on BooksCorpus (not distributable) and English Wikipedia; here Wikipedia alone
(`wikipedia/20230601.en` prepared with TFDS as ArrayRecord; the error message gives the command). Its recipe:
batch 256 sequences, 1,000,000 steps, the first 90% at 128 tokens (20 predictions) and the last 10% at 512
(80 predictions) to learn the long position embeddings; Adam lr 1e-4, β (0.9, 0.999), weight decay 0.01,
10,000 warm-up steps then linear decay, dropout 0.1, GELU (here: `bert_adam`, the reference code's Adam
without bias correction, ε 1e-6, global-norm clipping at 1.0 as that code; one linear schedule over the
1,000,000 steps, which phase 2 continues from step 900,000: its Adam moments start again from zero, as
init_from loads parameters only); masked LM (15%: 80% [MASK], 10% random, 10%
unchanged) plus next-sentence prediction. A lower-cased WordPiece vocabulary of 30,522 is trained on the
training split at the first run (pass lm.tokenizer=<bert-base-uncased tokenizer.json> to use BERT's own).
BertPretrainingSource builds its sentence pairs in memory, so the whole of Wikipedia needs a machine
with the memory for it or a slice per run (a streaming pair writer does not exist yet).
The paper's result is on fine-tuning (GLUE 79.6 / 82.1 for base / large); pretraining reports masked-token
and NSP accuracy. `smoke` runs the same code on the bundled Python documentation text in seconds.

Precision: bfloat16 compute with float32 params and float32 softmax, norms and losses;
`--config.dtype=float32` for full precision. `smoke` keeps bfloat16.

Departures from the paper:
- English Wikipedia only: BooksCorpus is not distributable.
- Phase 2's Adam moments start from zero (init_from loads parameters only); the reference run
  continued its optimizer state across the sequence-length change.
- Weight decay skips biases and LayerNorm gains, as BERT's code does (the paper does not say).
"""

from papers_jax.core.config import base_config, parse_arg
from papers_jax.tasks import lm

# One schedule over the whole run: 10,000 warm-up steps, then linear decay to 0 at step 1,000,000; phase 2
# starts where phase 1 stopped (schedule.step_offset), so its lr continues phase 1's.
PHASES = {1: dict(max_seq_len=128, max_predictions=20, steps=900_000, offset=0),
          2: dict(max_seq_len=512, max_predictions=80, steps=100_000, offset=900_000)}
TOTAL_STEPS, WARMUP_STEPS = 1_000_000, 10_000


def get_config(arg=None):
  args = parse_arg(arg, variant="base", phase=1, smoke=False)
  p = PHASES[args.phase]
  c = base_config()
  c.dtype = "bfloat16"  # compute; params stay float32
  c.task = "lm"
  c.lm = lm.default_config(objective="bert", vocab_size=30522, max_seq_len=p["max_seq_len"],
                           max_predictions=p["max_predictions"], dupe_factor=1)
  c.model = dict(name=f"bert-{args.variant}-uncased", vocab_size=0)
  c.data.name = "tfds:wikipedia/20230601.en"
  c.data.train_split, c.data.eval_split = "train[:99%]", "train[99%:]"
  c.batch_size = 256
  c.num_steps = p["steps"]
  c.optimizer.update(name="bert_adam", lr=1e-4, b1=0.9, b2=0.999, eps=1e-6, weight_decay=0.01, clip_grad_norm=1.0,
                     wd_exclude=(r"(^|/)bias$", r"(^|/)scale$"))
  c.schedule.update(name="linear", warmup_steps=WARMUP_STEPS, total_steps=TOTAL_STEPS, step_offset=p["offset"])
  c.log_every = 100
  c.eval_every = 50_000
  c.checkpoint_every = 5_000
  if args.smoke:
    lm.smoke(c)
  return c.lock()
