"""gensim's word2vec and fastText on the same text and evaluation as ours: a behavioural reference.

  PYTHONPATH=. python tools/word2vec_gensim.py

Trains gensim's `Word2Vec` (skip-gram and CBOW) and `FastText` (skip-gram with character n-grams) on the
training topics of Python's documentation with the settings of configs/word2vec/python_docs.py and
configs/fasttext/python_docs.py (100 dimensions, window 5, 5 noise words, subsampling 1e-3, min_count 5,
5 passes, lr 0.025 skip-gram / 0.05 CBOW, n-grams 3–6 in 2^16 buckets), tokenised by data/word2vec.py's
`words`, and scores the vectors of our vocabulary with tasks/word2vec.py's `word_vector_scores` (neighbours
P@5 in the five categories, plural analogies). gensim trains example by example with one worker thread;
ours in minibatches of 256 centre words (the configs' departures), so the numbers should be close, not equal.
gensim is in the `test` extra (pyproject.toml); nothing in papers_jax imports it.
"""

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--seeds", type=int, default=3, help="gensim runs per model (seeds 0, 1, ...)")
  args = parser.parse_args(argv)

  import numpy as np
  from gensim.models import FastText, Word2Vec

  from papers_jax.data import text as text_data
  from papers_jax.data import word2vec as w2v_data
  from papers_jax.tasks.word2vec import word_vector_scores

  documents = text_data.python_docs("train")
  vocab = w2v_data.Vocabulary(documents, 5)
  sentences = [w2v_data.words(doc) for doc in documents]
  common = dict(vector_size=100, window=5, negative=5, sample=1e-3, min_count=5, epochs=5, workers=1)
  runs = {
      "gensim Word2Vec skip-gram": lambda seed: Word2Vec(sentences, sg=1, alpha=0.025, seed=seed, **common),
      "gensim Word2Vec CBOW": lambda seed: Word2Vec(sentences, sg=0, alpha=0.05, cbow_mean=1, seed=seed, **common),
      "gensim FastText skip-gram": lambda seed: FastText(sentences, sg=1, alpha=0.025, min_n=3, max_n=6,
                                                         bucket=2 ** 16, seed=seed, **common),
  }
  print(f"vocabulary: {len(vocab)} words (ours, min_count 5)")
  print("| vectors | neighbours P@5 | plural analogy |")
  print("|---|---|---|")
  for name, train in runs.items():
    scores = []
    for seed in range(args.seeds):
      model = train(seed)
      missing = [w for w in vocab.words if w not in model.wv.key_to_index]
      if missing and name.startswith("gensim Word2Vec"):
        raise SystemExit(f"{name}: {len(missing)} of our words missing from gensim's vocabulary, e.g. {missing[:5]}")
      vectors = np.stack([model.wv[w] for w in vocab.words])  # FastText builds any missing word from n-grams
      s = word_vector_scores(vectors, vocab, 5)
      scores.append((s["neighbours_p5"], s["plural_analogy"]))
    p5, analogy = np.asarray(scores).T
    spread = lambda x: f"{x.mean():.3f}" + (f" ({x.min():.3f}–{x.max():.3f})" if len(x) > 1 else "")  # noqa: E731
    print(f"| {name} | {spread(p5)} | {spread(analogy)} |")


if __name__ == "__main__":
  main()
