"""Fine-tuning data for text encoders (BERT §4): sequence classification and span extraction, offline.

Examples are built the way BERT's fine-tuning code builds them, as fixed-shape numpy dicts (no key is
called "mask": data/pipeline.py adds its own):

  ClassificationSource(examples, tokenizer, max_seq_len)   GLUE-style: examples (text_a, text_b or None, label)
    input_ids       int32 (T,)  [CLS] A [SEP] (B [SEP]) [PAD]...
    token_type_ids  int32 (T,)  0 for [CLS] A [SEP], 1 for B [SEP], 0 on padding
    attention_mask  bool  (T,)
    label           int32 ()
  SpanSource(examples, tokenizer, max_seq_len)   SQuAD-style: examples (question, context, (char_start, char_end))
    input_ids, token_type_ids, attention_mask   [CLS] question [SEP] context [SEP], question 0, context 1
    start_position, end_position   int32 ()     first and last token of the answer (inclusive)
    context_mask    bool  (T,)  the context's tokens: where a predicted span may lie

A pair longer than max_seq_len loses tokens from the end of the longer side first (BERT's
truncate_seq_pair, deterministic here). A span example whose answer does not fit is dropped (SQuAD's code
slides a window over long contexts instead; at 64 tokens this drops 3 of number_questions' 3,530
training questions and none of its validation questions).

Bundled tasks:
  python_docs_topics(split)    which of 8 documentation topics (`pydoc_data.topics`) a sentence comes from
  number_questions(split)      "How many red apples?" → the written-out number in a generated English
                               sentence of data/translation.py
"""

import functools
import re
from collections.abc import Sequence

import numpy as np

from papers_jax.data import text, translation
from papers_jax.errors import ConfigError, DataError

# The topics with at least 150 sentences in Python 3.11's documentation text (data/text.split_sentences).
# debugger and formatstrings are among the 8 topics configs/bert/python_docs.py holds out of pre-training.
TOPICS = ("compound", "specialnames", "types", "string-methods", "debugger", "typesseq", "formatstrings",
          "typesmapping")
TOPIC_SPLITS = ("train", "validation")


def _check_split(split, splits):
  if split not in splits:
    raise DataError(f"Unknown split {split!r}; use one of {list(splits)}.")


@functools.cache
def python_docs_topics(split: str) -> tuple[tuple[str, None, int], ...]:
  """(sentence, None, topic index) of the TOPICS. Sentences that occur more than once (in one topic or
  several, e.g. "Changed in version 3.3.") are left out; of each topic's remaining sentences, every fifth
  (the 5th, 10th, ...) is validation and the rest train. With Python 3.11: 1,808 train, 451 validation."""
  _check_split(split, TOPIC_SPLITS)
  from pydoc_data import topics
  per_topic = [text.split_sentences(topics.topics[name]) for name in TOPICS]
  counts = {}
  for sentences in per_topic:
    for s in sentences:
      counts[s] = counts.get(s, 0) + 1
  out = []
  for label, sentences in enumerate(per_topic):
    unique = [s for s in sentences if counts[s] == 1]
    out += [(s, None, label) for i, s in enumerate(unique) if (i % 5 == 4) == (split == "validation")]
  return tuple(out)


# --- Number questions over the generated translation sentences ---

_NUMBER_WORDS = set(translation._EN_ONES[1:]) | set(translation._EN_TENS[2:]) | {"hundred", "thousand"}
_PLURALS = {row[1] for row in translation.NOUNS.values()}


@functools.cache
def _english_numbers() -> frozenset:
  return frozenset(translation.english_number(n) for n in range(2, translation.MAX_NUMBER + 1))


def _is_number_word(word: str) -> bool:
  return all(part in _NUMBER_WORDS for part in word.lower().split("-"))


def number_spans(sentence: str) -> list[tuple[int, int, str]]:
  """(char_start, char_end, question) for every written-out number in a generated English sentence; the
  question names what is counted: "three hundred and two old men" → "How many old men?"."""
  words = [(m.start(), m.end(), m.group()) for m in re.finditer(r"[^\s.,]+", sentence)]
  spans, i = [], 0
  while i < len(words):
    if not _is_number_word(words[i][2]):
      i += 1
      continue
    j = i  # the number runs on over number words and an "and" between two of them
    while j + 1 < len(words) and (_is_number_word(words[j + 1][2]) or (
        words[j + 1][2] == "and" and j + 2 < len(words) and _is_number_word(words[j + 2][2]))):
      j += 1
    start, end = words[i][0], words[j][1]
    if sentence[start:end].lower() not in _english_numbers():
      raise DataError(f"{sentence[start:end]!r} in {sentence!r} is not a number of data/translation.py")
    k = j + 1
    while k < len(words) and words[k][2] not in _PLURALS:
      k += 1
    if k == len(words):
      raise DataError(f"no plural noun after the number in {sentence!r}")
    spans.append((start, end, f"How many {sentence[words[j + 1][0]:words[k][1]]}?"))
    i = k + 1
  return spans


@functools.cache
def number_questions(split: str) -> tuple[tuple[str, str, tuple[int, int]], ...]:
  """(question, English sentence, answer's (char_start, char_end)) for every number in the English
  sentences of `translation.number_sentences(split)` that hold two or three numbers, so that the answer
  depends on the question; a question asked twice of one sentence ("three men say that five men ...")
  is left out. Splits as data/translation.py's (train 20,000 sentences, validation
  1,000, test 1,000; with seed 0: 14,014 / 707 / 701 questions)."""
  out = []
  for english, _ in translation.number_sentences(split):
    spans = number_spans(english)
    questions = [q for _, _, q in spans]
    if len(spans) >= 2:  # with one number the question would not matter
      out += [(q, english, (s, e)) for s, e, q in spans if questions.count(q) == 1]
  return tuple(out)


def first_number_span(context: str) -> tuple[int, int]:
  """The trivial baseline's answer: the first number in the sentence, whatever the question."""
  start, end, _ = number_spans(context)[0]
  return start, end


# --- Fixed-shape examples ---


def _special_ids(tokenizer) -> tuple[int, int, int]:
  ids = (tokenizer.cls_id, tokenizer.sep_id, tokenizer.pad_id)
  if None in ids:
    raise ConfigError("Fine-tuning needs a tokenizer with [CLS], [SEP] and [PAD] (a 'wordpiece' tokenizer).")
  return ids


def _truncate(a: list, b: list, max_tokens: int) -> None:
  while len(a) + len(b) > max_tokens:
    (a if len(a) > len(b) else b).pop()


def pair_example(tokens_a: Sequence[int], tokens_b: Sequence[int] | None, *, max_seq_len: int, cls_id: int,
                 sep_id: int, pad_id: int) -> dict[str, np.ndarray]:
  """input_ids, token_type_ids, attention_mask of [CLS] A [SEP] (B [SEP]), truncated to fit."""
  a, b = list(tokens_a), None if tokens_b is None else list(tokens_b)
  if b is None:
    del a[max_seq_len - 2:]
    ids, types = [cls_id, *a, sep_id], [0] * (len(a) + 2)
  else:
    _truncate(a, b, max_seq_len - 3)
    ids, types = [cls_id, *a, sep_id, *b, sep_id], [0] * (len(a) + 2) + [1] * (len(b) + 1)
  input_ids = np.full((max_seq_len,), pad_id, np.int32)
  input_ids[:len(ids)] = ids
  token_type_ids = np.zeros((max_seq_len,), np.int32)
  token_type_ids[:len(types)] = types
  return {"input_ids": input_ids, "token_type_ids": token_type_ids,
          "attention_mask": np.arange(max_seq_len) < len(ids)}


class ClassificationSource:
  """Sequence-classification examples (keys in the module docstring), tokenised on access."""

  def __init__(self, examples: Sequence[tuple[str, str | None, int]], tokenizer, *, max_seq_len: int):
    self.examples, self.tokenizer, self.max_seq_len = examples, tokenizer, max_seq_len
    self._ids = dict(zip(("cls_id", "sep_id", "pad_id"), _special_ids(tokenizer)))
    self.num_labels = max(label for *_, label in examples) + 1

  def __len__(self) -> int:
    return len(self.examples)

  def __getitem__(self, i) -> dict[str, np.ndarray]:
    text_a, text_b, label = self.examples[int(i)]
    tok = self.tokenizer
    example = pair_example(tok.encode(text_a), None if text_b is None else tok.encode(text_b),
                           max_seq_len=self.max_seq_len, **self._ids)
    return example | {"label": np.asarray(label, np.int32)}


class SpanSource:
  """Span-extraction examples (keys in the module docstring), tokenised at construction (answers are
  mapped from characters to tokens through the tokenizer's offsets)."""

  def __init__(self, examples: Sequence[tuple[str, str, tuple[int, int]]], tokenizer, *, max_seq_len: int):
    cls_id, sep_id, pad_id = _special_ids(tokenizer)
    self.examples, self.rows, self.dropped = [], [], 0
    for question, context, (char_start, char_end) in examples:
      q = tokenizer.encode(question)
      c = tokenizer.backend.encode(context, add_special_tokens=False)
      inside = [t for t, (s, e) in enumerate(c.offsets) if s < char_end and e > char_start]
      offset, budget = len(q) + 2, max_seq_len - len(q) - 3  # [CLS] question [SEP] context [SEP]
      if not inside or inside[-1] >= budget:
        self.dropped += 1
        continue
      context_ids = c.ids[:budget]
      row = pair_example(q, context_ids, max_seq_len=max_seq_len, cls_id=cls_id, sep_id=sep_id, pad_id=pad_id)
      positions = np.arange(max_seq_len)
      row["context_mask"] = (positions >= offset) & (positions < offset + len(context_ids))
      row["start_position"] = np.asarray(offset + inside[0], np.int32)
      row["end_position"] = np.asarray(offset + inside[-1], np.int32)
      self.rows.append(row)
      self.examples.append((question, context, (char_start, char_end)))
    if not self.rows:
      raise DataError(f"No span example fits max_seq_len={max_seq_len}; raise it.")

  def __len__(self) -> int:
    return len(self.rows)

  def __getitem__(self, i) -> dict[str, np.ndarray]:
    return dict(self.rows[int(i)])
