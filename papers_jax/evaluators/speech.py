"""Speech recognition evaluation: the character vocabulary of CTC models, greedy CTC decoding, and word /
character error rates from a Levenshtein edit distance (tested against `jiwer`).

Error rates are corpus-level, as jiwer and the papers report them: the edits (substitutions, deletions,
insertions) summed over all utterances divided by the reference words (WER) or characters (CER), spaces
counted as characters.
"""

import numpy as np

BLANK = "<blank>"
# CTC's blank, the space between words, the apostrophe and a–z (fairseq's letter dictionary without
# its specials; "|" there is our space).
CHARACTERS = (BLANK, " ", "'") + tuple("abcdefghijklmnopqrstuvwxyz")


def encode_text(text: str, max_len: int) -> tuple[np.ndarray, np.ndarray]:
  """(ids int32 (max_len,), valid bool (max_len,)) of lower-cased `text`; characters outside the
  vocabulary are dropped, a longer transcript is cut."""
  index = {c: i for i, c in enumerate(CHARACTERS)}
  ids = [index[c] for c in " ".join(text.lower().split()) if c in index and c != BLANK][:max_len]
  out = np.zeros(max_len, np.int32)
  out[:len(ids)] = ids
  return out, np.arange(max_len) < len(ids)


def decode_ids(ids) -> str:
  return "".join(CHARACTERS[int(i)] for i in ids if int(i) != 0)


def ctc_greedy(ids, valid=None) -> list[int]:
  """Best-path CTC decoding of one utterance's frame-wise argmax `ids`: merge repeats, drop blanks (0)."""
  ids = np.asarray(ids)
  if valid is not None:
    ids = ids[np.asarray(valid, bool)]
  out, previous = [], None
  for i in ids.tolist():
    if i != previous and i != 0:
      out.append(i)
    previous = i
  return out


def greedy_transcripts(logits, frame_mask=None) -> list[str]:
  """Transcripts of (B, T, vocab) CTC logits by best-path decoding."""
  ids = np.asarray(logits).argmax(-1)
  masks = [None] * len(ids) if frame_mask is None else np.asarray(frame_mask)
  return [" ".join(decode_ids(ctc_greedy(row, m)).split()) for row, m in zip(ids, masks)]


def edit_distance(reference, hypothesis) -> int:
  """Levenshtein distance between two sequences (unit costs), one row of the table at a time."""
  reference, hypothesis = list(reference), list(hypothesis)
  previous = list(range(len(hypothesis) + 1))
  for i, r in enumerate(reference, start=1):
    current = [i] + [0] * len(hypothesis)
    for j, h in enumerate(hypothesis, start=1):
      current[j] = min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (r != h))
    previous = current
  return previous[-1]


def error_counts(references, hypotheses, unit: str) -> tuple[int, int]:
  """(edits, reference length) summed over utterances; unit "word" or "char"."""
  if unit not in ("word", "char"):
    raise ValueError(f"unit={unit!r}; choose 'word' or 'char'")
  split = str.split if unit == "word" else (lambda s: list(" ".join(s.split())))
  edits = length = 0
  for ref, hyp in zip(references, hypotheses, strict=True):
    ref, hyp = split(ref), split(hyp)
    edits += edit_distance(ref, hyp)
    length += len(ref)
  return edits, length


def wer(references, hypotheses) -> float:
  edits, length = error_counts(references, hypotheses, "word")
  return edits / max(length, 1)


def cer(references, hypotheses) -> float:
  edits, length = error_counts(references, hypotheses, "char")
  return edits / max(length, 1)
