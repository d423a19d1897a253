"""Word and character error rates: the Levenshtein distance between hypothesis and reference, summed over
a corpus and divided by the reference length (jiwer's corpus-level WER / CER; tests/test_speech_to_text.py
checks them against jiwer)."""

from collections.abc import Sequence


def edit_distance(hypothesis: Sequence, reference: Sequence) -> int:
  """Insertions + deletions + substitutions turning `hypothesis` into `reference`."""
  previous = list(range(len(reference) + 1))
  for i, h in enumerate(hypothesis, start=1):
    current = [i] + [0] * len(reference)
    for j, r in enumerate(reference, start=1):
      current[j] = min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (h != r))
    previous = current
  return previous[-1]


def error_rate(hypotheses: Sequence[Sequence], references: Sequence[Sequence]) -> float:
  if len(hypotheses) != len(references):
    raise ValueError(f"{len(hypotheses)} hypotheses for {len(references)} references")
  errors = sum(edit_distance(h, r) for h, r in zip(hypotheses, references))
  return errors / max(1, sum(len(r) for r in references))


def wer(hypotheses: Sequence[str], references: Sequence[str]) -> float:
  return error_rate([h.split() for h in hypotheses], [r.split() for r in references])


def cer(hypotheses: Sequence[str], references: Sequence[str]) -> float:
  return error_rate(list(hypotheses), list(references))
