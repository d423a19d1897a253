"""Contrastive objectives: InfoNCE (MoCo v1/v2/v3), NT-Xent (SimCLR), supervised contrastive (SupCon),
NCE over a memory bank (InstDisc, CMC) and the symmetric image-text loss (CLIP).

Every function takes global arrays: under `jax.jit` with batch-sharded inputs the similarity
matrices span the whole global batch, so every device's examples are negatives for every other's
(the partitioner inserts the all-gathers). Embeddings are L2-normalised here, not by the caller,
unless a function says otherwise. Losses and logits are computed in float32.
"""

import jax
import jax.numpy as jnp


def l2_normalize(x, axis: int = -1, eps: float = 1e-12):
  x = x.astype(jnp.float32)
  return x * jax.lax.rsqrt(jnp.maximum(jnp.sum(x * x, axis=axis, keepdims=True), eps * eps))


def _cross_entropy(logits, labels):
  """Per-row softmax cross-entropy with integer labels."""
  log_probs = jax.nn.log_softmax(logits, axis=-1)
  return -jnp.take_along_axis(log_probs, labels[:, None], axis=-1)[:, 0]


def info_nce(q, k, queue, temperature: float = 0.07):
  """MoCo v1/v2 (He et al. 2020, Eq. 1): each query against its key and the K queued negatives.

  q, k: (N, C) query and key embeddings (keys are stop-gradiented here); queue: (K, C) earlier
  keys. logits = [q·k₊, q·queue] / τ and the positive is class 0. Returns per-example losses (N,).
  """
  q, k, queue = l2_normalize(q), jax.lax.stop_gradient(l2_normalize(k)), jax.lax.stop_gradient(l2_normalize(queue))
  positive = jnp.sum(q * k, axis=-1, keepdims=True)
  negatives = q @ queue.T
  logits = jnp.concatenate([positive, negatives], axis=1) / temperature
  return _cross_entropy(logits, jnp.zeros((q.shape[0],), jnp.int32))


def in_batch_info_nce(q, k, temperature: float):
  """InfoNCE where the keys of the other examples in the global batch are the negatives: (N,)."""
  q, k = l2_normalize(q), l2_normalize(k)
  logits = (q @ k.T) / temperature
  return _cross_entropy(logits, jnp.arange(q.shape[0]))


def moco_v3_loss(q1, q2, k1, k2, temperature: float = 0.2):
  """MoCo v3 (Chen, Xie, He 2021): symmetric in-batch InfoNCE between the two views.

  q1, q2 come from the query encoder (with predictor), k1, k2 from the momentum encoder (no
  gradient). The official code scales each term by 2τ; so does this. Returns per-example (N,).
  """
  k1, k2 = jax.lax.stop_gradient(k1), jax.lax.stop_gradient(k2)
  return 2.0 * temperature * (in_batch_info_nce(q1, k2, temperature) + in_batch_info_nce(q2, k1, temperature))


def nt_xent(z1, z2, temperature: float = 0.1):
  """SimCLR's NT-Xent (Chen et al. 2020): 2N views, each with its pair as the positive and the
  other 2(N−1) views as negatives (self-similarity excluded). Returns per-view losses (2N,)."""
  z = l2_normalize(jnp.concatenate([z1, z2], axis=0))
  n = z1.shape[0]
  logits = (z @ z.T) / temperature
  logits = jnp.where(jnp.eye(2 * n, dtype=bool), -jnp.inf, logits)
  labels = jnp.concatenate([jnp.arange(n, 2 * n), jnp.arange(n)])
  return _cross_entropy(logits, labels)


def supervised_contrastive(z, labels, valid, temperature: float = 0.1):
  """SupCon's L_out (Khosla et al. 2020, Eq. 2) over the rows of z (M, D) with `valid` (M,) True: each valid
  anchor against every other valid row, its positives the rows of its label; −mean over the positives of
  log softmax, averaged over the anchors that have a positive (0 when none has). Rows not `valid`
  (unlabelled examples) are neither anchors nor candidates."""
  z = l2_normalize(z)
  m = z.shape[0]
  others = valid[None, :] & valid[:, None] & ~jnp.eye(m, dtype=bool)
  logits = jnp.where(others, (z @ z.T) / temperature, -jnp.inf)
  log_probs = jax.nn.log_softmax(jnp.where(others.any(1, keepdims=True), logits, 0.0), axis=-1)
  positive = others & (labels[:, None] == labels[None, :])
  count = positive.sum(1)
  per_anchor = -jnp.where(positive, log_probs, 0.0).sum(1) / jnp.maximum(count, 1)
  anchors = count > 0
  return jnp.where(anchors, per_anchor, 0.0).sum() / jnp.maximum(anchors.sum(), 1)


def nce_loss(positive_logits, negative_logits, *, temperature: float, num_data: int, normalizer, eps: float = 1e-7):
  """Noise-contrastive estimation over a memory bank (InstDisc, Wu et al. 2018, Eq. 4–6; CMC).

  positive_logits: (N,) v·f_i for each example's own bank entry; negative_logits: (N, m) for m
  entries drawn uniformly (noise P_n = 1/num_data). P(i|v) = exp(v·f_i/τ)/Z with Z, the
  `normalizer`, estimated once by Monte Carlo (see `estimate_nce_normalizer`). Each example's
  loss is −log h(positive) − Σ log(1 − h(negative)), h(x) = P(x) / (P(x) + m·P_n), with the
  reference code's eps in the denominators. Returns (N,).
  """
  m = negative_logits.shape[-1]
  noise = m / num_data
  p_pos = jnp.exp(positive_logits.astype(jnp.float32) / temperature) / normalizer
  p_neg = jnp.exp(negative_logits.astype(jnp.float32) / temperature) / normalizer
  return -(jnp.log(p_pos / (p_pos + noise + eps)) + jnp.sum(jnp.log(noise / (p_neg + noise + eps)), axis=-1))


def estimate_nce_normalizer(logits, *, temperature: float, num_data: int):
  """Z ≈ num_data · mean(exp(v·f/τ)) over the first batch's positive and negative logits, as the
  InstDisc code estimates it once and then keeps it fixed."""
  return jax.lax.stop_gradient(jnp.mean(jnp.exp(logits.astype(jnp.float32) / temperature)) * num_data)


def bank_logits(features, bank, positive_index, negative_index):
  """(v·f_i, v·f_negatives) for L2-normalised features (N, C) against a bank (num_data, C).

  negative_index: (N, m) integer draws. The bank is a constant of the step (no gradient).
  """
  bank = jax.lax.stop_gradient(bank)
  features = l2_normalize(features)
  positive = jnp.sum(features * bank[positive_index], axis=-1)
  negatives = jnp.einsum("nc,nmc->nm", features, bank[negative_index])
  return positive, negatives


def cmc_nce_loss(z1, z2, bank1, bank2, index, negative_index, *, temperature: float, num_data: int,
                 normalizers):
  """CMC (Tian et al. 2020) for two views: each view's features are scored against the *other*
  view's memory bank (positive: the same image's entry; negatives: uniform draws), with NCE as in
  InstDisc. Returns per-example losses (N,) summed over both directions; `normalizers` = (Z₁, Z₂)."""
  pos_12, neg_12 = bank_logits(z1, bank2, index, negative_index)
  pos_21, neg_21 = bank_logits(z2, bank1, index, negative_index)
  return (nce_loss(pos_12, neg_12, temperature=temperature, num_data=num_data, normalizer=normalizers[0])
          + nce_loss(pos_21, neg_21, temperature=temperature, num_data=num_data, normalizer=normalizers[1]))


def clip_loss(image_embeddings, text_embeddings, logit_scale):
  """CLIP (Radford et al. 2021): symmetric cross-entropy over the N×N similarity matrix.

  `logit_scale` is the learned log-temperature's exponent (the caller clips it at 100).
  Returns the scalar mean of the image→text and text→image losses.
  """
  i, t = l2_normalize(image_embeddings), l2_normalize(text_embeddings)
  logits = logit_scale * (i @ t.T)
  labels = jnp.arange(i.shape[0])
  return 0.5 * (_cross_entropy(logits, labels).mean() + _cross_entropy(logits.T, labels).mean())


def multi_label_contrastive_loss(image_embeddings, text_embeddings, valid, logit_scale):
  """GroupViT's multi-label image-text loss (Xu et al. 2022, eqs. 4-5): each image i against K
  prompted nouns of its caption, `text_embeddings` (B, K, D) with `valid` (B, K) marking the real
  ones (at least one per image).
    image → texts: −log(Σ_k exp(s(x_i, y_i^k)) / Σ_j Σ_k exp(s(x_i, y_j^k))), the mean over images;
    texts → image: −log(exp(s(y_i^k, x_i)) / Σ_j exp(s(y_i^k, x_j))), the mean over the valid (i, k);
  s = logit_scale · cosine. Returns the mean of the two directions."""
  b, k, _ = text_embeddings.shape
  x, y = l2_normalize(image_embeddings), l2_normalize(text_embeddings)
  logits = logit_scale * jnp.einsum("id,jkd->ijk", x, y)  # (images, captions, nouns)
  masked = jnp.where(valid[None], logits, -jnp.inf)
  own = jnp.diagonal(masked, axis1=0, axis2=1).T  # (B, K): image i with its own nouns
  i2t = jax.nn.logsumexp(masked.reshape(b, b * k), axis=1) - jax.nn.logsumexp(own, axis=1)
  t2i = jax.nn.logsumexp(logits, axis=0) - jnp.diagonal(logits, axis1=0, axis2=1).T  # (B, K)
  t2i = jnp.sum(jnp.where(valid, t2i, 0.0)) / jnp.maximum(valid.sum(), 1)
  return 0.5 * (i2t.mean() + t2i)
