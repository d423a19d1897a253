"""BERT pretraining (masked LM + next-sentence prediction) on Python's documentation text, offline.

  python -m papers_jax.main --config configs/bert/python_docs.py --workdir runs/bert_python_docs

Data: the 71 training topics of `pydoc_data.topics` (Python 3.11) split into sentences, a lower-cased
WordPiece vocabulary of 4,096 trained on them, sentence pairs [CLS] A [SEP] B [SEP] of at most 128 tokens
built as BERT's create_pretraining_data does (B the true continuation half of the time), 5 passes with
different pairs and masks (dupe_factor); 15% of the tokens (at most 20) chosen for prediction, 80% of those
replaced by [MASK], 10% by a random token. The 8 held-out topics give the evaluation pairs. Model: BERT's
architecture (post-LN, GELU, LayerNorm eps 1e-12, tied MLM decoder) at hidden 128, 4 layers, 4 heads,
FFN 512. Adam with decoupled weight decay 0.01 (BERT's), lr 1e-3, 100 warm-up steps then linear decay,
batch 32, 2,000 steps (about 12 passes over the 5,384 training pairs; 200 steps did not get past word
frequencies). Evaluation: masked-token accuracy and NSP accuracy on the held-out pairs.
The README's language-model table gives the measured numbers of this command.

Departures from the paper (an offline demo, not one of its experiments):
- Python's documentation text, a 4,096-word vocabulary and hidden 128 / 4 layers instead of
  BooksCorpus + Wikipedia and BERT-Base / Large; one phase at 128 tokens.
- lr 1e-3, 100 warm-up steps, batch 32; optax's AdamW (bias-corrected, weight decay 0.01 not on
  biases or LayerNorm gains, clipping at 1.0 as BERT's code) instead of BertAdam.
"""

from papers_jax.core.config import base_config, parse_arg
from papers_jax.tasks import lm


def get_config(arg=None):
  args = parse_arg(arg, smoke=False)
  c = base_config()
  c.task = "lm"
  c.lm = lm.default_config(objective="bert", vocab_size=4096, max_seq_len=128, max_predictions=20, dupe_factor=5)
  c.model = dict(name="bert-base-uncased", vocab_size=0, hidden_size=128, num_layers=4, num_heads=4,
                 intermediate_size=512, max_position_embeddings=128)
  c.data.name = "python_docs"
  c.data.train_split, c.data.eval_split = "train", "validation"
  c.batch_size = 32
  c.num_steps = 2000
  c.optimizer.update(name="adamw", lr=1e-3, b1=0.9, b2=0.999, eps=1e-6, weight_decay=0.01, clip_grad_norm=1.0,
                     wd_exclude=(r"(^|/)bias$", r"(^|/)scale$"))
  c.schedule.update(name="linear", warmup_steps=100)
  c.log_every = 50
  c.eval_every = 500
  c.checkpoint_every = 500
  if args.smoke:
    lm.smoke(c)
  return c.lock()

