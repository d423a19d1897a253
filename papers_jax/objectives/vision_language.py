"""ViLT's pre-training and VQA objectives (Kim et al., 2021, §3.3 and the official code), float32.

  itm_pairs       ITM inputs: exactly half of the batch keeps its own image and half gets another
                  example's (as the official `compute_itm_wpa`: a shuffled half-ones label vector);
  itm_loss        2-way cross-entropy on the pooled output (1 = the image matches the text);
  ipot            inexact proximal-point optimal transport (Xie et al., 2020; UNITER's and ViLT's
                  `ipot`): β = 0.5, 50 outer iterations, 1 inner Sinkhorn step, padding masked;
  wpa_distance    word-patch alignment: the transport cost between the text tokens (without [CLS] and
                  the last real token, [SEP]) and the image patches (without the image class token)
                  under the cosine-distance cost, the plan held fixed (no gradient through IPOT);
  wpa_loss        (Σ distances of matched pairs − Σ of mismatched) / B, which the paper weighs by 0.1;
  vqa_bce         binary cross-entropy on soft answer scores, summed over answers (HF's and the
                  official code's `BCE(mean) × num_answers`), per example.
Masked LM is BERT's (objectives/lm.py `masked_lm_loss`) on whole-word masked inputs (data/mlm.py).
SwAV's `sinkhorn_knopp` (tasks/ssl) balances a (batch × prototypes) assignment with entropic
regularisation; IPOT's proximal term differs (the plan of the last step multiplies the kernel), so it
has its own loop here.
"""

import jax
import jax.numpy as jnp

from papers_jax.objectives.classification import sigmoid_cross_entropy
from papers_jax.objectives.lm import token_cross_entropy


def itm_pairs(key, images):
  """(images with half of them replaced by another example's, labels (B,) int32: 1 = own image).
  A replaced image comes from the example `shift` places on (shift uniform in 1..B-1), so it is
  never the example's own."""
  b = images.shape[0]
  k_labels, k_shift = jax.random.split(key)
  labels = jax.random.permutation(k_labels, (jnp.arange(b) < b - b // 2).astype(jnp.int32))
  shift = jax.random.randint(k_shift, (), 1, max(b, 2))
  others = jnp.roll(images, -shift, axis=0)
  keep = labels.astype(bool).reshape((b,) + (1,) * (images.ndim - 1))
  return jnp.where(keep, images, others), labels


def itm_loss(logits, labels):
  """(B, 2) logits, (B,) int labels → (B,) cross-entropies."""
  return token_cross_entropy(logits, labels)


def cosine_cost(x, y, eps: float = 1e-5):
  """1 − cosine similarity of every pair: (B, M, D), (B, N, D) → (B, M, N); norms floored at eps."""
  x = x.astype(jnp.float32) / jnp.maximum(jnp.linalg.norm(x.astype(jnp.float32), axis=-1, keepdims=True), eps)
  y = y.astype(jnp.float32) / jnp.maximum(jnp.linalg.norm(y.astype(jnp.float32), axis=-1, keepdims=True), eps)
  return 1.0 - jnp.einsum("bmd,bnd->bmn", x, y)


def ipot(cost, x_valid, y_valid, beta: float = 0.5, iterations: int = 50):
  """The IPOT plan (B, N, M) (y × x, the official layout) for cost (B, M, N) between M x-tokens and N
  y-tokens, uniform marginals over the valid ones; padded rows and columns are 0."""
  cost = cost.astype(jnp.float32)
  b, m, n = cost.shape
  x_len = x_valid.sum(-1).astype(jnp.float32)[:, None, None]
  y_len = y_valid.sum(-1).astype(jnp.float32)[:, None, None]
  joint = (y_valid[:, :, None] & x_valid[:, None, :])          # (B, N, M)
  kernel = jnp.where(joint, jnp.exp(-jnp.swapaxes(cost, 1, 2) / beta), 0.0)
  x_pad = (~x_valid).astype(jnp.float32)[:, None, :] * 1e4     # keeps 1/(...) finite on padding
  y_pad = (~y_valid).astype(jnp.float32)[:, None, :] * 1e4
  sigma = jnp.where(x_valid, 1.0, 0.0)[:, :, None] / x_len     # (B, M, 1)

  def step(_, carry):
    plan, sigma = carry
    q = kernel * plan
    delta = 1.0 / (y_len * jnp.einsum("bnm,bmo->bon", q, sigma) + y_pad)  # (B, 1, N)
    sigma_row = 1.0 / (x_len * jnp.einsum("bon,bnm->bom", delta, q) + x_pad)  # (B, 1, M)
    plan = jnp.swapaxes(delta, 1, 2) * q * sigma_row
    return plan, jnp.swapaxes(sigma_row, 1, 2)

  plan, _ = jax.lax.fori_loop(0, iterations, step, (joint.astype(jnp.float32), sigma))
  return jnp.where(joint, plan, 0.0)


def wpa_distance(text_features, image_features, text_mask, *, beta: float = 0.5, iterations: int = 50):
  """Word-patch alignment distance per example (B,): text_features (B, T, D) with text_mask (B, T)
  (1 on [CLS], the words and [SEP]), image_features (B, 1 + P, D) (class token first)."""
  t = text_mask.shape[1]
  lengths = text_mask.astype(jnp.int32).sum(-1)
  positions = jnp.arange(t)[None, :]
  text_valid = text_mask.astype(bool) & (positions > 0) & (positions != lengths[:, None] - 1)
  image_valid = jnp.broadcast_to(jnp.arange(image_features.shape[1]) > 0, image_features.shape[:2])
  cost = cosine_cost(text_features, image_features)
  cost = jnp.where(text_valid[:, :, None] & image_valid[:, None, :], cost, 0.0)
  plan = jax.lax.stop_gradient(ipot(jax.lax.stop_gradient(cost), text_valid, image_valid, beta, iterations))
  return jnp.einsum("bmn,bnm->b", cost, plan)


def wpa_loss(distances, itm_labels):
  """(Σ distance of matched pairs − Σ of mismatched) / B: pulls matched words and patches together."""
  sign = jnp.where(itm_labels.astype(bool), 1.0, -1.0)
  return jnp.sum(sign * distances) / distances.shape[0]


def vqa_bce(logits, targets):
  """(B, A) logits, (B, A) soft scores in [0, 1] → (B,) binary cross-entropies summed over answers."""
  return sigmoid_cross_entropy(logits, targets)
