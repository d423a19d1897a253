"""fastText (Bojanowski et al. 2017, "Enriching Word Vectors with Subword Information"): configs/word2vec/
python_docs.py's skip-gram with each centre word represented by its own vector and its character n-grams'.

  python -m papers_jax.main --config configs/fasttext/python_docs.py --workdir runs/fasttext_python_docs

The n-grams of "<word>" for 3 ≤ n ≤ 6, hashed with FNV-1a into 2^16 rows after the vocabulary's; the word
vector used afterwards is the mean of the word's rows (data/word2vec.py, models/word2vec.py). Everything else is
configs/word2vec/python_docs.py's, which this config loads. docs/language_extras.md has the measured numbers.

Departures from the paper: those of configs/word2vec/python_docs.py (small corpus, 100 dimensions, minibatch
SGD, linear decay to 0), and
- 2^16 hash buckets instead of 2M (the corpus has about 20k distinct n-grams);
- lr 0.025 (word2vec's) instead of fastText's 0.05 for skip-gram;
- no character n-grams on the output side either (as the paper: subwords only for the input word).
"""

import os

from papers_jax.core.config import load, parse_arg


def get_config(arg=None):
  args = parse_arg(arg, smoke=False)
  base = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "word2vec", "python_docs.py")
  c = load(base + (":smoke" if args.smoke else "")).unlock()
  c.word2vec.subwords = True
  c.model = dict(name="fasttext", vocab_size=0, embed_dim=c.model.embed_dim, buckets=1024 if args.smoke else 2 ** 16)
  return c.lock()
