"""BERT's masked-LM input corruption (Devlin et al. 2019, §3.1 and Appendix A.1), on the host.

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
