"""ELMo's biLM (Peters et al. 2018) at a small size on Python's documentation text: the LM demo, offline.

  python -m papers_jax.main --config configs/elmo/python_docs.py --workdir runs/elmo_python_docs

The architecture of the released model (models/elmo.py: character CNN with max-pooled filters, highway layers
and a projection; two LSTMP layers per direction with cell and projection clipping and a residual connection;
one softmax tied between the directions) at a CPU size: 16-dim characters, filters of widths 1-4 with 32, 32,
64 and 128 maps, one highway layer, projection 128, 512 LSTM cells. Data: the 71 training topics of
`pydoc_data.topics` as words (2,000-word vocabulary of words seen twice; rarer words keep their characters),
rows of 20 tokens as the paper's unrolled 20 steps; evaluation on the 8 held-out topics: perplexity of each
direction against the unigram baseline (tasks/elmo.py). docs/language_extras.md has the measured numbers.
`smoke` shrinks it to seconds. The paper-size model is `elmo_original` (93.6M parameters without its softmax).

Departures from the paper:
- 57k words of Python documentation instead of the 1B Word Benchmark; a 2k-word softmax instead of 793k (the
  paper's softmax is sampled; here it is the full softmax).
- The small sizes above instead of 2,048 filters, 2 highway layers, projection 512 and 4,096 cells.
- Adam (lr 2e-3, 50 warm-up steps, cosine) with gradient clipping at 10 instead of Adagrad at lr 0.2; batch 32
  rows instead of 128 × 20 steps per GPU on 3 GPUs; 3 epochs of 57k words instead of 10 of 1B words.
- Rows are cut from the concatenated documents without carrying the LSTM state from one row to the next
  (the released training code carries it).
"""

from papers_jax.core.config import base_config, parse_arg
from papers_jax.tasks import elmo


def get_config(arg=None):
  args = parse_arg(arg, smoke=False)
  c = base_config()
  c.task = "elmo"
  c.elmo = elmo.default_config()
  c.model = dict(name="elmo_original", vocab_size=0, char_dim=16, filters=((1, 32), (2, 32), (3, 64), (4, 128)),
                 num_highway=1, projection_dim=128, cell_dim=512, dropout_rate=0.1)
  c.data.name = "python_docs"
  c.data.train_split, c.data.eval_split = "train", "validation"
  c.batch_size = 32
  c.num_epochs = 3.0
  c.optimizer.update(name="adam", lr=2e-3, clip_grad_norm=10.0, wd_exclude=())  # no weight decay
  c.schedule.update(name="cosine", warmup_steps=50)
  c.log_every = 50
  c.eval_every = 100
  c.checkpoint_every = 1000
  if args.smoke:
    elmo.smoke(c)
  return c.lock()
