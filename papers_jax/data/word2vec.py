"""Word-window examples for word2vec and fastText (tasks/word2vec.py), from documents (strings).

Words: the lower-cased runs of [a-z_][a-z0-9_]* of a document (identifiers such as `__init__` stay whole);
the vocabulary keeps the words seen at least `min_count` times in the training documents, most frequent
first, and words outside it are dropped from the text before windowing (word2vec.c's rule).

`WindowSource(documents, vocab, window, passes, subsample, seed, subwords)` has `len(source)` and
`source[i] -> dict` of fixed-shape numpy arrays (data/pipeline.py):
  center          int32 ()       the centre word
  context         int32 (2c,)    the words within its window, 0-padded
  context_mask    bool  (2c,)    True on real context words
  center_subwords int32 (G,)     fastText only: the centre word's row and its n-gram rows of the input table
  subword_mask    bool  (G,)
  example         int32 ()       i (the held-out loss draws its noise words from a key per example)
Each of `passes` passes over the text draws its own subsampling (§2.3 of the word2vec paper: each word is
kept with probability sqrt(t / f)) and its own window sizes (word2vec.c: b uniform in 1..c, the window of
a centre word is b words on each side, counted over the words kept by subsampling); an example is one
kept centre word of one pass. The windows stay inside a document.

fastText (Bojanowski et al. 2017, §3.2): a word w is represented by its own vector and those of the
character n-grams of "<w>" (3 ≤ n ≤ 6, the "<" and ">" marks included), each n-gram hashed with FNV-1a
(32 bits, fastText's `Dictionary::hash`) into one of `buckets` rows after the vocabulary's.
"""

import collections
import re

import numpy as np

from papers_jax.errors import DataError
from papers_jax.objectives import word2vec as objective

WORD = re.compile(r"[a-z_][a-z0-9_]*")


def words(document: str) -> list[str]:
  return WORD.findall(document.lower())


class Vocabulary:
  """The words of the training text seen ≥ min_count times (most frequent first) and their counts."""

  def __init__(self, documents, min_count: int = 5):
    counts = collections.Counter(w for d in documents for w in words(d))
    kept = sorted((w for w, n in counts.items() if n >= min_count), key=lambda w: (-counts[w], w))
    if not kept:
      raise DataError(f"no word occurs {min_count} times in the training text; lower word2vec.min_count")
    self.words = kept
    self.index = {w: i for i, w in enumerate(kept)}
    self.counts = np.asarray([counts[w] for w in kept], np.int64)

  def __len__(self):
    return len(self.words)

  def encode(self, document: str) -> np.ndarray:
    return np.asarray([self.index[w] for w in words(document) if w in self.index], np.int32)


def fnv1a(text: str) -> int:
  """fastText's Dictionary::hash: 32-bit FNV-1a over the UTF-8 bytes (each byte sign-extended, as fastText
  casts char to int8_t before xor)."""
  h = 2166136261
  for byte in text.encode("utf-8"):
    h = ((h ^ (byte - 256 if byte > 127 else byte) & 0xFFFFFFFF) * 16777619) & 0xFFFFFFFF
  return h


def char_ngrams(word: str, min_n: int = 3, max_n: int = 6) -> list[str]:
  """The character n-grams of "<word>", min_n ≤ n ≤ max_n, in fastText's order (by start, then length)."""
  marked = f"<{word}>"
  return [marked[i:i + n] for i in range(len(marked)) for n in range(min_n, max_n + 1) if i + n <= len(marked)]


def subword_rows(word: str, vocab: Vocabulary, buckets: int, min_n: int = 3, max_n: int = 6) -> list[int]:
  """Input-table rows of a word: its own (when in the vocabulary) and its hashed n-grams' (len(vocab) + h % buckets);
  an out-of-vocabulary word gets a vector from its n-grams alone."""
  own = [vocab.index[word]] if word in vocab.index else []
  return own + [len(vocab) + fnv1a(g) % buckets for g in char_ngrams(word, min_n, max_n)]


def subword_table(vocab: Vocabulary, buckets: int, min_n: int = 3, max_n: int = 6):
  """(rows (V, G) int32, mask (V, G) bool): every vocabulary word's subword_rows, padded to the longest."""
  lists = [subword_rows(w, vocab, buckets, min_n, max_n) for w in vocab.words]
  width = max(len(r) for r in lists)
  rows, mask = np.zeros((len(lists), width), np.int32), np.zeros((len(lists), width), bool)
  for i, r in enumerate(lists):
    rows[i, :len(r)], mask[i, :len(r)] = r, True
  return rows, mask


class WindowSource:
  """Centre words with their windows, `passes` subsampled passes over the documents (module docstring)."""

  def __init__(self, documents, vocab: Vocabulary, *, window: int = 5, passes: int = 1, subsample: float = 1e-3,
               seed: int = 0, subwords: tuple | None = None):
    self.window = window
    self.subwords = subwords
    encoded = [vocab.encode(d) for d in documents]
    tokens = np.concatenate(encoded) if encoded else np.zeros(0, np.int32)
    doc_ids = np.concatenate([np.full(len(e), i, np.int32) for i, e in enumerate(encoded)]) if encoded else tokens
    keep = objective.keep_probability(vocab.counts, subsample) if subsample > 0 else np.ones(len(vocab))
    self.passes = []
    for p in range(passes):
      rng = np.random.default_rng((seed, p))
      kept = rng.random(len(tokens)) < keep[tokens]
      self.passes.append((tokens[kept], doc_ids[kept], rng.integers(1, window + 1, size=int(kept.sum()))))
    self.offsets = np.cumsum([0] + [len(t) for t, _, _ in self.passes])
    if self.offsets[-1] == 0:
      raise DataError("the word2vec text holds no word of the vocabulary")

  def __len__(self):
    return int(self.offsets[-1])

  def __getitem__(self, i: int) -> dict:
    p = int(np.searchsorted(self.offsets, i, side="right") - 1)
    tokens, doc_ids, spans = self.passes[p]
    k = i - int(self.offsets[p])
    b = int(spans[k])
    lo, hi = max(k - b, 0), min(k + b + 1, len(tokens))
    near = np.r_[lo:k, k + 1:hi]
    near = near[doc_ids[near] == doc_ids[k]]
    context = np.zeros(2 * self.window, np.int32)
    mask = np.zeros(2 * self.window, bool)
    context[:len(near)], mask[:len(near)] = tokens[near], True
    out = {"center": np.int32(tokens[k]), "context": context, "context_mask": mask, "example": np.int32(i)}
    if self.subwords is not None:
      rows, row_mask = self.subwords
      out |= {"center_subwords": rows[tokens[k]], "subword_mask": row_mask[tokens[k]]}
    return out
