"""word2vec (Mikolov et al. 2013, skip-gram or CBOW with negative sampling) on Python's documentation text.

  python -m papers_jax.main --config configs/word2vec/python_docs.py --workdir runs/word2vec_python_docs
  python -m papers_jax.main --config configs/word2vec/python_docs.py:arch=cbow --workdir runs/cbow_python_docs

Data: the 71 training topics of `pydoc_data.topics` (57k words; 1,253 words seen ≥ 5 times form the
vocabulary), the 8 held-out topics for the held-out loss. The paper's settings where they carry over:
100-dimensional vectors, a window of up to 5 words each side (b drawn in 1..5 per centre word), 5 noise words
from the unigram distribution to the 3/4 power, subsampling threshold 1e-3 (word2vec.c's default for small
corpora), min_count 5, 5 passes (word2vec.c's iterations), SGD from lr 0.025 (skip-gram) / 0.05 (CBOW) decayed
linearly. Evaluation (tasks/word2vec.py): held-out loss, the nearest neighbours of category words and
singular/plural analogies against random and co-occurrence-count vectors; docs/language_extras.md has
the measured numbers. `smoke` shrinks it to seconds.

Departures from the paper:
- 57k words of Python documentation instead of 1B-6B words of news: the vectors are small-corpus vectors,
  and the paper's analogy sets do not apply (a Python-word category and plural test stands in).
- 100 dimensions instead of 300 (the paper's are for billions of words).
- Minibatches of 256 centre words with the loss averaged over them, the lr scaled by 256 (one example's
  update then has word2vec.c's size), instead of asynchronous per-word SGD on many threads.
- CBOW: the gradient of the context mean reaches each context row divided by the window's size
  (word2vec.c adds it to each row undivided).
- The lr decays linearly to 0 over the run (word2vec.c: to 1e-4 of the start).
"""

from papers_jax.core.config import base_config, parse_arg
from papers_jax.tasks import word2vec

BATCH = 256


def get_config(arg=None):
  args = parse_arg(arg, arch="skipgram", smoke=False)
  c = base_config()
  c.task = "word2vec"
  c.word2vec = word2vec.default_config(arch=args.arch)
  c.model = dict(name="word2vec", vocab_size=0, embed_dim=100)
  c.data.name = "python_docs"
  c.data.train_split, c.data.eval_split = "train", "validation"
  c.batch_size = BATCH
  c.num_epochs = 1.0  # one pass over word2vec.passes subsampled passes
  c.optimizer.update(name="sgd", lr=(0.025 if args.arch == "skipgram" else 0.05) * BATCH, momentum=0.0,
                     weight_decay=0.0, clip_grad_norm=0.0, wd_exclude=())  # word2vec.c: plain SGD
  c.schedule.update(name="linear", warmup_steps=0, end_lr_ratio=0.0)
  c.log_every = 100
  c.eval_every = 0
  c.checkpoint_every = 1000
  if args.smoke:
    word2vec.smoke(c)
  return c.lock()
