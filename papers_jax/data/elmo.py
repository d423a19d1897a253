"""Word rows for ELMo's bidirectional language model (tasks/elmo.py), from documents (strings).

Tokens: data/word2vec.py's words (lower-cased identifiers and words); each document becomes <S> words </S>,
the documents are concatenated in order and cut into rows of `seq_len` tokens (the last row padded). A
token's target id is its vocabulary id (the training words seen ≥ `min_count` times, then <unk>, <S>, </S>);
its characters are always its own, so a word outside the vocabulary still has a representation.

Characters (the released biLM's scheme): the UTF-8 bytes of a word, cut to `max_chars` − 2, between a
begin-of-word (258) and an end-of-word (259) mark; <S> and </S> are the single characters 256 and 257 between
the marks; every id is shifted by 1 so that 0 pads.

`WordRowSource(...)[i]`: chars int32 (T, C), word_ids int32 (T,), length int32 () (real tokens in the row).
"""

import collections

import numpy as np

from papers_jax.data.word2vec import words
from papers_jax.errors import DataError

BOS, EOS = "<S>", "</S>"
BOS_CHAR, EOS_CHAR, BOW_CHAR, EOW_CHAR = 256, 257, 258, 259


def char_ids(token: str, max_chars: int) -> np.ndarray:
  if token in (BOS, EOS):
    body = [BOS_CHAR if token == BOS else EOS_CHAR]
  else:
    body = list(token.encode("utf-8"))[:max_chars - 2]
  out = np.zeros(max_chars, np.int32)
  ids = [BOW_CHAR] + body + [EOW_CHAR]
  out[:len(ids)] = np.asarray(ids) + 1
  return out


class WordVocabulary:
  """Training words seen ≥ min_count times (most frequent first), then <unk>, <S>, </S>."""

  def __init__(self, documents, min_count: int = 2):
    counts = collections.Counter(w for d in documents for w in words(d))
    self.words = sorted((w for w, n in counts.items() if n >= min_count), key=lambda w: (-counts[w], w))
    self.unk = len(self.words)
    self.words += ["<unk>", BOS, EOS]
    self.index = {w: i for i, w in enumerate(self.words)}

  def __len__(self):
    return len(self.words)


def tokens(documents) -> list[str]:
  return [t for d in documents for t in [BOS, *words(d), EOS]]


class WordRowSource:
  def __init__(self, documents, vocab: WordVocabulary, *, seq_len: int = 20, max_chars: int = 50):
    stream = tokens(documents)
    if not stream:
      raise DataError("the ELMo text holds no words")
    self.seq_len, self.max_chars = seq_len, max_chars
    self.word_ids = np.asarray([vocab.index.get(t, vocab.unk) for t in stream], np.int32)
    cache = {t: char_ids(t, max_chars) for t in set(stream)}
    self.chars = np.stack([cache[t] for t in stream])
    self.num_rows = -(-len(stream) // seq_len)

  def __len__(self):
    return self.num_rows

  def __getitem__(self, i) -> dict:
    start = int(i) * self.seq_len
    n = min(self.seq_len, len(self.word_ids) - start)
    chars = np.zeros((self.seq_len, self.max_chars), np.int32)
    word_ids = np.zeros(self.seq_len, np.int32)
    chars[:n], word_ids[:n] = self.chars[start:start + n], self.word_ids[start:start + n]
    return {"chars": chars, "word_ids": word_ids, "length": np.int32(n)}
