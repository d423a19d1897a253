"""BERT's masked-LM input corruption (Devlin et al. 2019, §3.1 and Appendix A.1), on the host; and whole-word
masking (`whole_word_mask_tokens`, ViLT's).

Per sequence, round(15%) of the maskable tokens (not [CLS], [SEP] or padding), at most
`max_predictions`, are chosen uniformly; each chosen token becomes [MASK] with probability 0.8,
a token drawn uniformly from the vocabulary with probability 0.1, and stays itself otherwise. The
model predicts the original token at every chosen position, replaced or not.
"""

import numpy as np


def mask_tokens(tokens: np.ndarray, maskable: np.ndarray, rng: np.random.Generator, *, mask_id: int,
                vocab_size: int, max_predictions: int, prob: float = 0.15, mask_frac: float = 0.8,
                random_frac: float = 0.1):
  """tokens, maskable: (T,). Returns (inputs (T,), positions (P,), labels (P,), weights (P,)),
  P = max_predictions, padded with weight 0."""
  candidates = np.flatnonzero(maskable)
  count = min(max_predictions, max(1, int(round(len(candidates) * prob)))) if len(candidates) else 0
  chosen = np.sort(rng.choice(candidates, size=count, replace=False)) if count else np.zeros((0,), np.int64)
  inputs = tokens.copy()
  draw = rng.random(count)
  replace_mask = draw < mask_frac
  replace_random = (draw >= mask_frac) & (draw < mask_frac + random_frac)
  inputs[chosen[replace_mask]] = mask_id
  inputs[chosen[replace_random]] = rng.integers(0, vocab_size, replace_random.sum())
  positions = np.zeros((max_predictions,), np.int32)
  labels = np.zeros((max_predictions,), np.int32)
  weights = np.zeros((max_predictions,), np.float32)
  positions[:count], labels[:count], weights[:count] = chosen, tokens[chosen], 1.0
  return inputs, positions, labels, weights


def word_ids(tokens: list[str], special: set[str]) -> np.ndarray:
  """The word index of each WordPiece token ("##x" continues the word before it); -1 for specials."""
  out, word = np.full(len(tokens), -1, np.int32), -1
  for i, token in enumerate(tokens):
    if token in special:
      continue
    if not (token.startswith("##") and word >= 0):
      word += 1
    out[i] = word
  return out


def whole_word_mask_tokens(tokens: np.ndarray, words: np.ndarray, rng: np.random.Generator, *, mask_id: int,
                           vocab_size: int, max_predictions: int, prob: float = 0.15, mask_frac: float = 0.8,
                           random_frac: float = 0.1):
  """Whole-word masking (BERT's later release; HF's DataCollatorForWholeWordMask, which ViLT uses):
  words (from `word_ids`; -1 never masked) are taken in random order while their tokens fit in
  round(15%) of the maskable tokens (at least 1, at most `max_predictions`); a word that would
  overshoot is skipped. Each chosen token then becomes [MASK] / a random token / itself at 80/10/10.
  Returns (inputs, positions, labels, weights) as `mask_tokens`."""
  maskable = words >= 0
  budget = min(max_predictions, max(1, int(round(maskable.sum() * prob)))) if maskable.any() else 0
  chosen: list[int] = []
  for w in rng.permutation(np.unique(words[maskable])):
    if len(chosen) >= budget:
      break
    span = np.flatnonzero(words == w)
    if len(chosen) + len(span) <= budget:
      chosen += span.tolist()
  chosen = np.sort(np.asarray(chosen, np.int64))
  count = len(chosen)
  inputs = tokens.copy()
  draw = rng.random(count)
  replace_mask = draw < mask_frac
  replace_random = (draw >= mask_frac) & (draw < mask_frac + random_frac)
  inputs[chosen[replace_mask]] = mask_id
  inputs[chosen[replace_random]] = rng.integers(0, vocab_size, replace_random.sum())
  positions = np.zeros((max_predictions,), np.int32)
  labels = np.zeros((max_predictions,), np.int32)
  weights = np.zeros((max_predictions,), np.float32)
  positions[:count], labels[:count], weights[:count] = chosen, tokens[chosen], 1.0
  return inputs, positions, labels, weights
