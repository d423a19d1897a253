"""Text data for the language-model papers: sources, packing and fixed-shape examples (numpy, host side).

Documents (strings) come from
  python_docs(split)                 Python's own documentation, bundled with Python (offline);
  TfdsText(name, split, data_dir)    documents of a prepared TFDS dataset ("wikipedia/20230601.en", "c4/en");
  TfdsTranslation(name, split, ...)  (source, target) pairs of a prepared TFDS dataset ("wmt14_translate/de-en");
  data/translation.py                a generated, offline English→German task.

Example sources have `len(source)` and `source[i] -> dict` of fixed-shape numpy arrays, so they plug into
data/pipeline.py as they are (`train_batches(source, identity, ...)`, `eval_batches(...)`; those add their
own "index" / "mask" keys, so no key here is called "mask"):

  CausalLMSource.from_documents(documents, tokenizer, seq_len, seed=0, split_documents=False)   (GPT)
    tokens          int32 (L,)  BOS doc EOS BOS doc EOS ... packed; padding holds pad_id (or EOS if none)
    segment_ids     int32 (L,)  1, 2, ... for the document pieces in the row, 0 on padding
    positions       int32 (L,)  position inside its piece, restarting at 0; 0 on padding
    attention_mask  bool  (L,)  segment_ids > 0
    loss_mask       bool  (L,)  token t is a target: it and token t-1 are in the same piece (never on
                                a piece's first token or on padding)
    Loss: objectives.lm.causal_lm_loss(logits, tokens, loss_mask) (it weighs target t+1 by loss_mask[t+1]);
    in evaluation also zero the pipeline's padded rows: loss_mask & batch["mask"][:, None].
    Attention that stays inside a document: causal & (segment_ids[:, None] == segment_ids[None, :]) &
    attention_mask[None, :]. Positions for learned or sinusoidal embeddings: `positions`.

  BertPretrainingSource(documents, tokenizer, max_seq_len=128, max_predictions=20, ...)   (BERT)
    input_ids            int32   (T,)  [CLS] A [SEP] B [SEP] [PAD]..., after masking
    token_type_ids       int32   (T,)  0 for [CLS] A [SEP] (and padding), 1 for B [SEP]
    attention_mask       bool    (T,)  True on real tokens
    masked_positions     int32   (P,)  positions chosen for prediction, ascending, 0-padded
    masked_labels        int32   (P,)  original tokens there, 0-padded
    masked_weights       float32 (P,)  1 on real predictions, 0 on padding
    next_sentence_label  int32   ()    1 if B is a random segment, 0 if B follows A
    Loss: masked_lm_loss(logits gathered at masked_positions, masked_labels, masked_weights) and
    next_sentence_loss(nsp_logits, next_sentence_label).

  TranslationSource(pairs, tokenizer, max_source_len, max_target_len)   (Transformer)
    source_ids         int32 (S,)  source tokens, EOS, padding
    source_mask        bool  (S,)
    decoder_input_ids  int32 (T,)  BOS, target tokens, padding   (teacher forcing: right-shifted)
    target_ids         int32 (T,)  target tokens, EOS, padding
    target_mask        bool  (T,)  real positions of target_ids, and equally of decoder_input_ids
    A side longer than its length is cut together with its EOS. `source.pairs[i]` keeps the strings
    (the BLEU references).

Causal-LM packing (pack_documents / iter_packed_rows): each document becomes BOS + tokens + EOS (GPT-2's
<|endoftext|> is both) and documents are laid into rows of L tokens in a seeded order. With
`split_documents=False` a document never starts in a row it does not fit into (the rest of the row is
padding), and only documents longer than a row are cut into row-sized pieces; with True the rows are
filled completely and documents run on into the next row (GPT-2's concatenate-and-chop, less padding).
A piece that continues a document starts with the last token of the piece before it, as context only,
so every token but a document's BOS is a target exactly once per pass, and a validation pass covers
exactly the bytes of its documents: bits per byte = sum of target NLLs / ln 2 / `num_bytes` (byte-level
BPE is lossless). Which documents share a row is fixed by the source's seed; data/pipeline.py draws a
fresh row order every epoch from (seed, epoch). For corpora too large to tokenise in memory,
`CausalLMSource.write(directory, documents, ...)` streams them into memory-mapped files once (per host
shard, say) and `CausalLMSource.load(directory)` reads them.

BERT examples follow create_pretraining_data.py of the BERT release: documents are lists of sentences
(split_sentences), instances aim at max_seq_len - 3 tokens (a random shorter length with probability
short_seq_prob), A is the first 1..k-1 sentences of a chunk, the longer side is trimmed from a random end
until the pair fits, masking is data/mlm.mask_tokens with a fixed seed per example (static masking as in
the release; dupe_factor > 1 makes copies with other pairs and masks). One deliberate difference: the
release forces a random B whenever a chunk holds a single sentence, which puts the random-next rate above
50%; here the coin is always tossed, and when B is to follow A in a one-sentence chunk that sentence is
cut in two at a random token (a one-token sentence alone makes no instance), so B is random with
probability exactly 0.5, as the paper states.

Building blocks, for other recipes: iter_tokenized / tokenize_documents, iter_packed_rows / pack_documents /
causal_lm_features, split_sentences / nsp_instances / bert_example, seq2seq_example.
"""

import json
import os
import re
from collections.abc import Iterable, Iterator, Sequence

import numpy as np

from papers_jax.data import mlm
from papers_jax.data.sources import open_tfds
from papers_jax.errors import ConfigError, DataError


def identity(example: dict, rng=None) -> dict:
  """The preprocess_fn for data/pipeline.py: the sources here already return final examples."""
  del rng
  return example


# --- Bundled text: Python's documentation ---

PYTHON_DOCS_SPLITS = ("train", "validation")
PYTHON_DOCS_HOLDOUT = (10, 6)  # Topic i (sorted by name) is held out when i % 10 == 6.


def python_docs(split: str) -> list[str]:
  """The topics of Python's own documentation (`pydoc_data.topics`, the text behind `help("topic")`).

  One document per topic, topics sorted by name; topic i is "validation" when i % 10 == 6, else
  "train" (the offset 6 holds out about a tenth of the text; offset 0 would hold out 7%). With Python
  3.11: 79 topics; 71 train (412k characters) and 8 validation (53k: attribute-references, break,
  debugger, formatstrings, lambda, raise, truth, while). The text differs between Python versions, so
  results on it name the Python version.
  """
  if split not in PYTHON_DOCS_SPLITS:
    raise DataError(f"Unknown split {split!r} (data.train_split / data.eval_split) of the Python documentation text; use one of {PYTHON_DOCS_SPLITS}.")
  from pydoc_data import topics
  every, offset = PYTHON_DOCS_HOLDOUT
  held_out = split == "validation"
  return [topics.topics[n] for i, n in enumerate(sorted(topics.topics)) if (i % every == offset) == held_out]


# --- Prepared TFDS text datasets ---

# The datasets the language-model configs name, and the features they are read from.
TFDS_TEXT_FEATURES = {"wikipedia": ("text",), "c4": ("text",), "wmt14_translate": None}  # None: the languages.


def _text(value) -> str:
  return value.decode("utf-8") if isinstance(value, bytes) else str(value)


def _open_tfds(name: str, split: str, data_dir: str | None, features: Sequence[str]):
  extra = ""
  if name.split("/")[0] in ("wikipedia", "c4"):
    extra = (" This dataset is built with Apache Beam (`pip install apache-beam`; see "
             "https://www.tensorflow.org/datasets/beam_datasets), and c4 needs Common Crawl files too.")
  return open_tfds(name, split, data_dir, features, extra_hint=extra)[1]


class TfdsText:
  """Documents (str) of a prepared TFDS text dataset, random access: `source[i] -> str`."""

  def __init__(self, name: str, split: str, data_dir: str | None = None, *, feature: str = "text"):
    self.name, self.split, self.feature = f"tfds:{name}", split, feature
    self._source = _open_tfds(name, split, data_dir, (feature,))

  def __len__(self) -> int:
    return len(self._source)

  def __getitem__(self, i) -> str:
    return _text(self._source[int(i)][self.feature])


class TfdsTranslation:
  """(source, target) string pairs of a prepared TFDS translation dataset, e.g. `wmt14_translate/de-en`
  with source_lang="en", target_lang="de" for the paper's En→De."""

  def __init__(self, name: str, split: str, data_dir: str | None = None, *, source_lang: str = "en",
               target_lang: str = "de"):
    self.name, self.split = f"tfds:{name}", split
    self.source_lang, self.target_lang = source_lang, target_lang
    self._source = _open_tfds(name, split, data_dir, (source_lang, target_lang))

  def __len__(self) -> int:
    return len(self._source)

  def __getitem__(self, i) -> tuple[str, str]:
    example = self._source[int(i)]
    return _text(example[self.source_lang]), _text(example[self.target_lang])


# --- Tokenising ---


def iter_tokenized(tokenizer, documents: Iterable[str], *, batch_size: int = 1024) -> Iterator[np.ndarray]:
  """int32 token ids of each document, in order, encoded `batch_size` documents at a time."""
  batch = []
  for document in documents:
    batch.append(document)
    if len(batch) == batch_size:
      yield from (np.asarray(ids, np.int32) for ids in tokenizer.encode_batch(batch))
      batch = []
  if batch:
    yield from (np.asarray(ids, np.int32) for ids in tokenizer.encode_batch(batch))


def tokenize_documents(tokenizer, documents: Iterable[str], *, batch_size: int = 1024) -> list[np.ndarray]:
  return list(iter_tokenized(tokenizer, documents, batch_size=batch_size))


# --- Causal LM: packing ---


def _row(pieces: list[np.ndarray], seq_len: int, pad_id: int) -> dict[str, np.ndarray]:
  tokens = np.full((seq_len,), pad_id, np.int32)
  segment_ids = np.zeros((seq_len,), np.int32)
  positions = np.zeros((seq_len,), np.int32)
  start = 0
  for segment, piece in enumerate(pieces, 1):
    stop = start + len(piece)
    tokens[start:stop], segment_ids[start:stop], positions[start:stop] = piece, segment, np.arange(len(piece))
    start = stop
  return {"tokens": tokens, "segment_ids": segment_ids, "positions": positions}


def iter_packed_rows(documents: Iterable[np.ndarray], seq_len: int, *, split_documents: bool = False,
                     pad_id: int = 0) -> Iterator[dict[str, np.ndarray]]:
  """Rows {tokens, segment_ids, positions} (int32, (seq_len,)) packed greedily from token sequences in
  order (see the module docstring). Streams: holds one row at a time, so it serves corpora of any size."""
  if seq_len < 2:
    raise ConfigError(f"seq_len must be at least 2 for a causal LM, got {seq_len}.")
  pieces, used = [], 0
  for doc in documents:
    doc = np.asarray(doc, np.int32)
    n, start = len(doc), 0
    if n == 0:
      continue
    if split_documents:
      while True:
        space = seq_len - used
        if space < 2:  # A one-token piece would hold no target.
          yield _row(pieces, seq_len, pad_id)
          pieces, used = [], 0
          continue
        if n - start <= space:
          pieces.append(doc[start:])
          used += n - start
          break
        pieces.append(doc[start:start + space])
        yield _row(pieces, seq_len, pad_id)
        pieces, used = [], 0
        start += space - 1  # The next piece repeats this token as its context.
    else:
      if n > seq_len:
        if used:
          yield _row(pieces, seq_len, pad_id)
          pieces, used = [], 0
        while n - start > seq_len:
          yield _row([doc[start:start + seq_len]], seq_len, pad_id)
          start += seq_len - 1
      if n - start > seq_len - used:
        yield _row(pieces, seq_len, pad_id)
        pieces, used = [], 0
      pieces.append(doc[start:])
      used += n - start
  if used:
    yield _row(pieces, seq_len, pad_id)


def pack_documents(documents: Iterable[np.ndarray], seq_len: int, *, split_documents: bool = False,
                   pad_id: int = 0) -> dict[str, np.ndarray]:
  """`iter_packed_rows` stacked: {tokens, segment_ids, positions}, each int32 (rows, seq_len)."""
  rows = list(iter_packed_rows(documents, seq_len, split_documents=split_documents, pad_id=pad_id))
  if not rows:
    raise DataError("No text to pack: every document is empty.")
  return {k: np.stack([r[k] for r in rows]) for k in rows[0]}


def causal_lm_features(tokens: np.ndarray, segment_ids: np.ndarray, positions: np.ndarray) -> dict[str, np.ndarray]:
  """Adds attention_mask and loss_mask (bool, same shape) to packed rows of shape (..., L)."""
  attention_mask = segment_ids > 0
  loss_mask = np.zeros_like(attention_mask)
  loss_mask[..., 1:] = attention_mask[..., 1:] & (segment_ids[..., 1:] == segment_ids[..., :-1])
  return {"tokens": tokens, "segment_ids": segment_ids, "positions": positions, "attention_mask": attention_mask,
          "loss_mask": loss_mask}


def _document_ids(tokenizer, documents: Iterable[str], byte_count: list) -> Iterator[np.ndarray]:
  """BOS + ids + EOS per document; adds the documents' UTF-8 byte counts to byte_count[0]."""
  if tokenizer.eos_id is None:
    raise ConfigError("A causal-LM tokenizer needs an end-of-text token (e.g. <|endoftext|> or </s>).")
  bos = tokenizer.eos_id if tokenizer.bos_id is None else tokenizer.bos_id

  def counted():
    for document in documents:
      byte_count[0] += len(document.encode("utf-8"))
      yield document

  for ids in iter_tokenized(tokenizer, counted()):
    yield np.concatenate([[bos], ids, [tokenizer.eos_id]]).astype(np.int32)


def _pad_id(tokenizer) -> int:
  return tokenizer.eos_id if tokenizer.pad_id is None else tokenizer.pad_id


class CausalLMSource:
  """Packed causal-LM rows, random access (keys in the module docstring).

  `from_documents` packs in memory (the whole corpus is tokenised at once); `write` streams documents
  into files in a directory and `load` memory-maps them, for corpora that do not fit in memory.
  `num_bytes` is the UTF-8 size of the packed documents (for bits per byte); `num_targets` the
  number of target tokens.
  """

  FILES = ("tokens", "segment_ids", "positions")

  def __init__(self, tokens: np.ndarray, segment_ids: np.ndarray, positions: np.ndarray, *, num_bytes: int):
    self.tokens, self.segment_ids, self.positions = tokens, segment_ids, positions
    self.seq_len = tokens.shape[1]
    self.num_bytes = int(num_bytes)

  @classmethod
  def from_documents(cls, documents: Sequence[str], tokenizer, seq_len: int, *, seed: int = 0,
                     split_documents: bool = False) -> "CausalLMSource":
    """Packs `documents` in the order of a permutation seeded by `seed`."""
    order = np.random.default_rng(seed).permutation(len(documents))
    byte_count = [0]
    ids = _document_ids(tokenizer, (documents[i] for i in order), byte_count)
    rows = pack_documents(ids, seq_len, split_documents=split_documents, pad_id=_pad_id(tokenizer))
    return cls(**rows, num_bytes=byte_count[0])

  @classmethod
  def write(cls, directory: str, documents: Iterable[str], tokenizer, seq_len: int, *,
            split_documents: bool = False) -> "CausalLMSource":
    """Streams `documents` (in the order given; shuffle or shard them first) into packed rows under
    `directory` (raw int32 files plus meta.json) and returns the memory-mapped result."""
    os.makedirs(directory, exist_ok=True)
    byte_count, num_rows = [0], 0
    ids = _document_ids(tokenizer, documents, byte_count)
    files = {k: open(os.path.join(directory, f"{k}.int32"), "wb") for k in cls.FILES}
    try:
      for row in iter_packed_rows(ids, seq_len, split_documents=split_documents, pad_id=_pad_id(tokenizer)):
        for k, f in files.items():
          f.write(row[k].tobytes())
        num_rows += 1
    finally:
      for f in files.values():
        f.close()
    with open(os.path.join(directory, "meta.json"), "w") as f:
      json.dump({"num_rows": num_rows, "seq_len": seq_len, "num_bytes": byte_count[0]}, f)
    return cls.load(directory)

  @classmethod
  def load(cls, directory: str) -> "CausalLMSource":
    meta_path = os.path.join(directory, "meta.json")
    if not os.path.exists(meta_path):
      raise DataError(f"No packed rows in {directory} (meta.json is missing). Write them with CausalLMSource.write.")
    with open(meta_path) as f:
      meta = json.load(f)
    shape = (meta["num_rows"], meta["seq_len"])
    arrays = {k: np.memmap(os.path.join(directory, f"{k}.int32"), np.int32, "r", shape=shape) for k in cls.FILES}
    return cls(**arrays, num_bytes=meta["num_bytes"])

  @property
  def num_targets(self) -> int:
    segment_ids = np.asarray(self.segment_ids)
    return int(np.sum((segment_ids[:, 1:] > 0) & (segment_ids[:, 1:] == segment_ids[:, :-1])))

  def __len__(self) -> int:
    return self.tokens.shape[0]

  def __getitem__(self, i) -> dict[str, np.ndarray]:
    return causal_lm_features(np.array(self.tokens[i]), np.array(self.segment_ids[i]), np.array(self.positions[i]))


# --- BERT: sentence pairs with next-sentence labels ---

_UNDERLINE = re.compile(r"^\s*([^\w\s])\1{2,}\s*$")  # reStructuredText heading rules: "*****", "=====".
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[\"'(\[]?[A-Z0-9])")


def split_sentences(document: str) -> list[str]:
  """Sentences of a document, by a fixed rule: paragraphs are separated by blank lines; lines made of one
  repeated punctuation character (heading underlines) are dropped; a paragraph's lines are joined and its
  whitespace collapsed; it is then cut after ".", "!" or "?" followed by whitespace and an upper-case
  letter, a digit, or an opening quote or bracket before one. Code examples stay whole paragraphs."""
  sentences = []
  for paragraph in re.split(r"\n[ \t]*\n", document):
    lines = [line for line in paragraph.split("\n") if not _UNDERLINE.match(line)]
    text = " ".join(" ".join(lines).split())
    if text:
      sentences.extend(_SENTENCE_END.split(text))
  return sentences


def _truncate_pair(tokens_a: list, tokens_b: list, max_tokens: int, rng: np.random.Generator) -> None:
  """BERT's truncate_seq_pair: trim the longer side, from its front or back at random, until both fit."""
  while len(tokens_a) + len(tokens_b) > max_tokens:
    longer = tokens_a if len(tokens_a) > len(tokens_b) else tokens_b
    if rng.random() < 0.5:
      del longer[0]
    else:
      longer.pop()


def nsp_instances(documents: Sequence[Sequence[Sequence[int]]], max_seq_len: int, rng: np.random.Generator, *,
                  short_seq_prob: float = 0.1) -> list[tuple[list[int], list[int], bool]]:
  """(tokens_a, tokens_b, is_random_next) pairs from documents given as lists of tokenised sentences
  (none empty), one pass over every document (see the module docstring)."""
  if len(documents) < 2:
    raise DataError("Next-sentence pairs need at least two documents (a random B comes from another one).")
  max_tokens = max_seq_len - 3  # [CLS] A [SEP] B [SEP]
  instances = []
  for doc_index, document in enumerate(documents):
    target_len = max_tokens
    if rng.random() < short_seq_prob:
      target_len = int(rng.integers(2, max_tokens + 1))
    chunk, chunk_len, i = [], 0, 0
    while i < len(document):
      chunk.append(list(document[i]))
      chunk_len += len(document[i])
      if i == len(document) - 1 or chunk_len >= target_len:
        if len(chunk) == 1 and len(chunk[0]) < 2:
          chunk, chunk_len, i = [], 0, i + 1  # Cannot be cut into A and B: no instance.
          continue
        a_end = int(rng.integers(1, len(chunk))) if len(chunk) >= 2 else 1
        is_random_next = bool(rng.random() < 0.5)
        if is_random_next:
          tokens_a = [t for s in chunk[:a_end] for t in s]
          other = doc_index
          for _ in range(10):  # As the release: a few tries for another document.
            other = int(rng.integers(0, len(documents)))
            if other != doc_index:
              break
          if other == doc_index:
            other = (doc_index + 1) % len(documents)
          random_document = documents[other]
          tokens_b = []
          for sentence in random_document[int(rng.integers(0, len(random_document))):]:
            tokens_b.extend(sentence)
            if len(tokens_b) >= target_len - len(tokens_a):
              break
          i -= len(chunk) - a_end  # The unused sentences start the next chunk.
        elif len(chunk) == 1:  # One sentence: B is the rest of it.
          cut = int(rng.integers(1, len(chunk[0])))
          tokens_a, tokens_b = chunk[0][:cut], chunk[0][cut:]
        else:
          tokens_a = [t for s in chunk[:a_end] for t in s]
          tokens_b = [t for s in chunk[a_end:] for t in s]
        _truncate_pair(tokens_a, tokens_b, max_tokens, rng)
        instances.append((tokens_a, tokens_b, is_random_next))
        chunk, chunk_len = [], 0
      i += 1
  return instances


def bert_example(tokens_a: Sequence[int], tokens_b: Sequence[int], is_random_next: bool, rng: np.random.Generator,
                 *, max_seq_len: int, max_predictions: int, cls_id: int, sep_id: int, pad_id: int, mask_id: int,
                 vocab_size: int, masked_lm_prob: float = 0.15) -> dict[str, np.ndarray]:
  """One BERT pretraining example (keys in the module docstring) from a pair that fits max_seq_len."""
  len_a, len_b = len(tokens_a), len(tokens_b)
  n = len_a + len_b + 3
  if n > max_seq_len:
    raise ValueError(f"Pair of {len_a} + {len_b} tokens does not fit max_seq_len={max_seq_len} with 3 specials.")
  tokens = np.full((max_seq_len,), pad_id, np.int32)
  tokens[:n] = [cls_id, *tokens_a, sep_id, *tokens_b, sep_id]
  token_type_ids = np.zeros((max_seq_len,), np.int32)
  token_type_ids[len_a + 2:n] = 1
  attention_mask = np.arange(max_seq_len) < n
  maskable = np.zeros((max_seq_len,), bool)  # Everything but [CLS], the two [SEP] and padding.
  maskable[1:1 + len_a] = True
  maskable[len_a + 2:n - 1] = True
  inputs, positions, labels, weights = mlm.mask_tokens(
      tokens, maskable, rng, mask_id=mask_id, vocab_size=vocab_size, max_predictions=max_predictions,
      prob=masked_lm_prob)
  return {"input_ids": inputs.astype(np.int32), "token_type_ids": token_type_ids, "attention_mask": attention_mask,
          "masked_positions": positions, "masked_labels": labels, "masked_weights": weights,
          "next_sentence_label": np.asarray(is_random_next, np.int32)}


class BertPretrainingSource:
  """BERT pretraining examples (masked LM + next sentence) from documents, random access.

  Builds `dupe_factor` passes of sentence pairs at construction (pass d seeded by (seed, d)) and masks
  example i with a generator seeded by (seed, i), so `source[i]` is fixed (keys in the module docstring).
  """

  def __init__(self, documents: Sequence[str], tokenizer, *, max_seq_len: int = 128, max_predictions: int = 20,
               masked_lm_prob: float = 0.15, short_seq_prob: float = 0.1, dupe_factor: int = 1, seed: int = 0):
    roles = {"cls": tokenizer.cls_id, "sep": tokenizer.sep_id, "pad": tokenizer.pad_id, "mask": tokenizer.mask_id}
    absent = [role for role, token_id in roles.items() if token_id is None]
    if absent:
      raise ConfigError(f"BERT pretraining needs a tokenizer with {sorted(roles)} tokens; this one lacks {absent} "
                        "(train a 'wordpiece' tokenizer).")
    if max_seq_len < 5:
      raise ConfigError(f"max_seq_len must be at least 5 ([CLS] a [SEP] b [SEP]), got {max_seq_len}.")
    self.max_seq_len, self.max_predictions, self.masked_lm_prob, self.seed = (
        max_seq_len, max_predictions, masked_lm_prob, seed)
    self._ids = dict(cls_id=roles["cls"], sep_id=roles["sep"], pad_id=roles["pad"], mask_id=roles["mask"],
                     vocab_size=tokenizer.vocab_size)

    sentences = [split_sentences(d) for d in documents]
    flat = tokenize_documents(tokenizer, [s for doc in sentences for s in doc])
    tokenized, start = [], 0
    for doc in sentences:
      doc_ids = [ids.tolist() for ids in flat[start:start + len(doc)] if len(ids)]
      start += len(doc)
      if doc_ids:
        tokenized.append(doc_ids)
    self.instances = []
    for d in range(dupe_factor):
      self.instances += nsp_instances(tokenized, max_seq_len, np.random.default_rng([seed, d]),
                                      short_seq_prob=short_seq_prob)

  def __len__(self) -> int:
    return len(self.instances)

  def __getitem__(self, i) -> dict[str, np.ndarray]:
    tokens_a, tokens_b, is_random_next = self.instances[int(i)]
    rng = np.random.default_rng([self.seed, int(i), 0])  # Pass d's pairs used (seed, d): another stream.
    return bert_example(tokens_a, tokens_b, is_random_next, rng,
                        max_seq_len=self.max_seq_len, max_predictions=self.max_predictions,
                        masked_lm_prob=self.masked_lm_prob, **self._ids)


# --- Sequence to sequence (translation) ---


def seq2seq_example(source_ids: Sequence[int], target_ids: Sequence[int], *, max_source_len: int,
                    max_target_len: int, bos_id: int, eos_id: int, pad_id: int = 0) -> dict[str, np.ndarray]:
  """An encoder-decoder example (keys in the module docstring)."""
  source = (list(source_ids) + [eos_id])[:max_source_len]
  decoder_inputs = ([bos_id] + list(target_ids))[:max_target_len]
  targets = (list(target_ids) + [eos_id])[:max_target_len]

  def padded(ids, length):
    out = np.full((length,), pad_id, np.int32)
    out[:len(ids)] = ids
    return out

  return {"source_ids": padded(source, max_source_len), "source_mask": np.arange(max_source_len) < len(source),
          "decoder_input_ids": padded(decoder_inputs, max_target_len), "target_ids": padded(targets, max_target_len),
          "target_mask": np.arange(max_target_len) < len(targets)}


class TranslationSource:
  """Encoder-decoder examples from (source, target) string pairs (a list, TfdsTranslation or
  data/translation.py's pairs), tokenised on access; `pairs[i]` keeps the strings."""

  def __init__(self, pairs: Sequence[tuple[str, str]], tokenizer, *, max_source_len: int, max_target_len: int):
    if tokenizer.bos_id is None or tokenizer.eos_id is None:
      raise ConfigError("A translation tokenizer needs BOS and EOS tokens (train a 'translation_bpe' tokenizer).")
    self.pairs, self.tokenizer = pairs, tokenizer
    self.max_source_len, self.max_target_len = max_source_len, max_target_len

  def __len__(self) -> int:
    return len(self.pairs)

  def __getitem__(self, i) -> dict[str, np.ndarray]:
    source, target = self.pairs[int(i)]
    tok = self.tokenizer
    return seq2seq_example(tok.encode(source), tok.encode(target), max_source_len=self.max_source_len,
                           max_target_len=self.max_target_len, bos_id=tok.bos_id, eos_id=tok.eos_id,
                           pad_id=_pad_id(tok))
