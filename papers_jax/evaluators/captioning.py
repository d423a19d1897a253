"""Captioning metrics: corpus BLEU-4 (sacrebleu) and CIDEr-D (Vedantam et al., 2015, as the COCO caption
evaluation code `pycocoevalcap/cider` computes it), each against several references per image.

Texts are first normalised by `tokenize`: lower case, every character that is not a letter, digit or
space becomes a space, split on whitespace (what COCO's PTB tokenizer does to punctuation, which it
drops; our WordPiece decoder and the references then agree on "right:" vs "right :").

CIDEr-D, step by step (n = 1..4):
  - each text is a bag of its n-grams; the document frequency df(g) is the number of images whose
    references (any of them) contain g, over the images being scored;
  - a text's n-gram vector has entries tf(g) · (log N − log max(1, df(g))), N the number of images;
  - sim_n(c, r) = Σ_g min(v_c(g), v_r(g)) · v_r(g) / (‖v_c‖ ‖v_r‖) (0 when a norm is 0), times the
    length penalty exp(−δ² / (2σ²)), σ = 6, δ = the difference of the two texts' lengths — counted,
    as in the COCO code, as their numbers of bigrams;
  - an image scores 10 · mean_n mean_refs sim_n(c, r); CIDEr-D is the mean over images.
"""

import collections
import math
import re

import numpy as np


def tokenize(text: str) -> list[str]:
  return re.sub(r"[^a-z0-9 ]", " ", text.lower()).split()


def bleu4(hypotheses: list[str], references: list[list[str]]) -> float:
  """sacrebleu's corpus BLEU (0-100, 4-grams, its 13a tokenizer) on normalised texts; images may
  have different numbers of references."""
  import sacrebleu
  hyps = [" ".join(tokenize(h)) for h in hypotheses]
  width = max(len(r) for r in references)
  streams = [[" ".join(tokenize(r[i])) if i < len(r) else None for r in references] for i in range(width)]
  return float(sacrebleu.corpus_bleu(hyps, streams).score)


def _ngrams(words: list[str], n_max: int = 4) -> collections.Counter:
  return collections.Counter(tuple(words[i:i + n]) for n in range(1, n_max + 1) for i in range(len(words) - n + 1))


def _vector(counts: collections.Counter, df: dict, log_n: float, n_max: int):
  vec = [dict() for _ in range(n_max)]
  norm = np.zeros(n_max)
  length = 0
  for gram, tf in counts.items():
    n = len(gram) - 1
    vec[n][gram] = tf * (log_n - math.log(max(1.0, df.get(gram, 0.0))))
    norm[n] += vec[n][gram] ** 2
    if n == 1:  # the COCO code's length: the number of bigrams
      length += tf
  return vec, np.sqrt(norm), length


def cider_d_scores(hypotheses: list[str], references: list[list[str]], *, n_max: int = 4,
                   sigma: float = 6.0) -> np.ndarray:
  """CIDEr-D of each image (see the module docstring)."""
  if len(hypotheses) != len(references):
    raise ValueError(f"{len(hypotheses)} hypotheses but {len(references)} reference lists")
  hyp_counts = [_ngrams(tokenize(h), n_max) for h in hypotheses]
  ref_counts = [[_ngrams(tokenize(r), n_max) for r in refs] for refs in references]
  df = collections.Counter(g for refs in ref_counts for g in set().union(*refs))
  log_n = math.log(float(len(references)))
  scores = []
  for hyp, refs in zip(hyp_counts, ref_counts):
    vec, norm, length = _vector(hyp, df, log_n, n_max)
    total = np.zeros(n_max)
    for ref in refs:
      vec_r, norm_r, length_r = _vector(ref, df, log_n, n_max)
      penalty = math.exp(-((length - length_r) ** 2) / (2 * sigma ** 2))
      for n in range(n_max):
        val = sum(min(v, vec_r[n].get(g, 0.0)) * vec_r[n].get(g, 0.0) for g, v in vec[n].items())
        if norm[n] != 0 and norm_r[n] != 0:
          val /= norm[n] * norm_r[n]
        total[n] += val * penalty
    scores.append(10.0 * total.mean() / len(refs))
  return np.asarray(scores)


def cider_d(hypotheses: list[str], references: list[list[str]]) -> float:
  return float(np.mean(cider_d_scores(hypotheses, references)))


def caption_metrics(hypotheses: list[str], references: list[list[str]]) -> dict:
  """{"bleu4": corpus BLEU-4 (0-100), "cider": CIDEr-D (the COCO code's scale; papers print ×100)}."""
  return {"bleu4": bleu4(hypotheses, references), "cider": cider_d(hypotheses, references)}
