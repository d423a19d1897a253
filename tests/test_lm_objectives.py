"""Language-model losses against numpy references, and BERT's masking statistics."""

import jax
import numpy as np
import pytest

from papers_jax.data.mlm import mask_tokens
from papers_jax.objectives import lm

RNG = np.random.default_rng(0)


def np_log_softmax(x):
  x = np.asarray(x, np.float64)
  x = x - x.max(-1, keepdims=True)
  return x - np.log(np.exp(x).sum(-1, keepdims=True))


def test_causal_lm_ignores_padding_and_shifts_targets():
  logits = RNG.standard_normal((2, 5, 7)).astype(np.float32)
  tokens = RNG.integers(0, 7, (2, 5))
  mask = np.array([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]])
  losses, weights = lm.causal_lm_loss(logits, tokens, mask)
  total, count = 0.0, 0
  for b in range(2):
    for t in range(4):
      if mask[b, t + 1]:
        total += -np_log_softmax(logits[b, t])[tokens[b, t + 1]]
        count += 1
  np.testing.assert_allclose(float(lm.weighted_mean(losses, weights)), total / count, rtol=1e-5)
  # Changing logits or targets at padded positions changes nothing.
  logits2 = logits.copy()
  logits2[1, 3:] += 100.0
  tokens2 = tokens.copy()
  tokens2[1, 4] = (tokens2[1, 4] + 1) % 7
  np.testing.assert_allclose(float(lm.weighted_mean(*lm.causal_lm_loss(logits2, tokens2, mask))), total / count,
                             rtol=1e-5)


def test_masked_lm_and_nsp_equal_numpy():
  logits = RNG.standard_normal((3, 4, 11)).astype(np.float32)
  labels = RNG.integers(0, 11, (3, 4))
  weights = np.array([[1, 1, 0, 0], [1, 0, 0, 0], [1, 1, 1, 1]], np.float32)
  losses, w = lm.masked_lm_loss(logits, labels, weights)
  ref = -np.take_along_axis(np_log_softmax(logits), labels[..., None], -1)[..., 0]
  np.testing.assert_allclose(float(lm.weighted_mean(losses, w)), (ref * weights).sum() / weights.sum(), rtol=1e-5)
  nsp_logits = RNG.standard_normal((5, 2)).astype(np.float32)
  is_random = np.array([0, 1, 1, 0, 1])
  np.testing.assert_allclose(np.asarray(lm.next_sentence_loss(nsp_logits, is_random)),
                             -np_log_softmax(nsp_logits)[np.arange(5), is_random], rtol=1e-5)


def test_label_smoothing_gives_the_true_class_0_9():
  logits = RNG.standard_normal((4, 6, 13)).astype(np.float32)
  targets = RNG.integers(0, 13, (4, 6))
  target_dist = np.full((4, 6, 13), 0.1 / 12)
  np.put_along_axis(target_dist, targets[..., None], 0.9, -1)
  ref = -(target_dist * np_log_softmax(logits)).sum(-1)
  np.testing.assert_allclose(np.asarray(lm.label_smoothed_cross_entropy(logits, targets, 0.1)), ref, rtol=1e-5)
  np.testing.assert_allclose(np.asarray(lm.label_smoothed_cross_entropy(logits, targets, 0.0)),
                             -np.take_along_axis(np_log_softmax(logits), targets[..., None], -1)[..., 0], rtol=1e-5)
  grad = jax.grad(lambda l: lm.label_smoothed_cross_entropy(l, targets, 0.1).sum())(logits)
  assert np.isfinite(np.asarray(grad)).all()


def test_mlm_masking_is_15_percent_and_80_10_10_within_sampling_error():
  rng = np.random.default_rng(1)
  vocab, mask_id, length = 1000, 3, 128
  chosen = replaced_mask = replaced_random = kept = maskable_total = 0
  for _ in range(400):
    tokens = rng.integers(10, vocab, length)
    maskable = np.ones(length, bool)
    maskable[[0, 64, 127]] = False  # [CLS], [SEP], [SEP]
    inputs, positions, labels, weights = mask_tokens(tokens, maskable, rng, mask_id=mask_id, vocab_size=vocab,
                                                     max_predictions=40)
    n = int(weights.sum())
    pos = positions[:n]
    assert maskable[pos].all() and len(set(pos.tolist())) == n
    np.testing.assert_array_equal(labels[:n], tokens[pos])
    unchosen = np.setdiff1d(np.arange(length), pos)
    np.testing.assert_array_equal(inputs[unchosen], tokens[unchosen])  # only chosen tokens change
    chosen += n
    maskable_total += maskable.sum()
    replaced_mask += (inputs[pos] == mask_id).sum()
    same = inputs[pos] == tokens[pos]
    kept += same.sum()
    replaced_random += ((inputs[pos] != mask_id) & ~same).sum()
  assert chosen / maskable_total == pytest.approx(0.15, abs=0.005)  # round(0.15 × 125) = 19 per sequence
  # Binomial sampling error over `chosen` draws: within 4 standard deviations. A random token can
  # equal the original (p = 1/1000) and count as kept; that shifts the split by < 0.01%.
  for observed, p in [(replaced_mask, 0.8), (replaced_random, 0.1), (kept, 0.1)]:
    assert abs(observed / chosen - p) < 4 * np.sqrt(p * (1 - p) / chosen) + 1e-3


def test_fine_tuning_losses_equal_numpy():
  logits = RNG.standard_normal((4, 3)).astype(np.float32)
  labels = np.array([0, 2, 1, 2])
  np.testing.assert_allclose(np.asarray(lm.sequence_classification_loss(logits, labels)),
                             -np_log_softmax(logits)[np.arange(4), labels], rtol=1e-5)
  start, end = RNG.standard_normal((2, 3, 9)).astype(np.float32)
  s, e = np.array([1, 4, 8]), np.array([2, 4, 8])
  ref = 0.5 * (-np_log_softmax(start)[np.arange(3), s] - np_log_softmax(end)[np.arange(3), e])
  np.testing.assert_allclose(np.asarray(lm.span_extraction_loss(start, end, s, e)), ref, rtol=1e-5)


def test_best_span_is_the_best_allowed_pair_and_f1_counts_overlap():
  start, end = RNG.standard_normal((2, 6, 10)).astype(np.float32)
  allowed = np.zeros((6, 10), bool)
  allowed[:, 3:9] = True
  allowed[5, 3:4] = False
  got_s, got_e = map(np.asarray, lm.best_span(start, end, allowed, max_answer_len=4))
  for b in range(6):  # brute force over every pair
    pairs = [(i, j) for i in range(10) for j in range(10)
             if allowed[b, i] and allowed[b, j] and i <= j < i + 4]
    want = max(pairs, key=lambda p: start[b, p[0]] + end[b, p[1]])
    assert (got_s[b], got_e[b]) == want
  f1 = np.asarray(lm.span_f1(np.array([2, 2, 0, 5]), np.array([4, 3, 1, 5]), np.array([3, 2, 4, 5]),
                             np.array([6, 3, 6, 5])))
  # overlap 2 of predicted 3 and true 4 tokens: 2·(2/3)(1/2)/(2/3 + 1/2); exact; disjoint; exact single token
  np.testing.assert_allclose(f1, [2 * (2 / 3) * 0.5 / (2 / 3 + 0.5), 1.0, 0.0, 1.0], rtol=1e-6)
