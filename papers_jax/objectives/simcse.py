"""SimCSE's losses (Gao, Yao, Chen 2021, "SimCSE: Simple Contrastive Learning of Sentence Embeddings").

Unsupervised (§3, Eq. 4): a sentence encoded twice with independent dropout masks gives the positive pair
(h_i, h_i⁺); the other sentences' second encodings in the batch are the negatives:
  ℓ_i = −log exp(sim(h_i, h_i⁺)/τ) / Σ_j exp(sim(h_i, h_j⁺)/τ),   sim = cosine, τ = 0.05.
That is objectives/contrastive.in_batch_info_nce(h, h⁺, τ).

Supervised (§4, Eq. 5): NLI triples (premise, entailment, contradiction) give (h_i, h_i⁺, h_i⁻); every
entailment and every contradiction in the batch is a candidate:
  ℓ_i = −log exp(sim(h_i, h_i⁺)/τ) / Σ_j (exp(sim(h_i, h_j⁺)/τ) + exp(sim(h_i, h_j⁻)/τ)).
numpy references in tests/test_simcse.py.
"""

import jax
import jax.numpy as jnp

from papers_jax.objectives.contrastive import in_batch_info_nce, l2_normalize

TEMPERATURE = 0.05


def unsupervised_loss(h, h_positive, temperature: float = TEMPERATURE):
  """Eq. 4 per sentence (N,): h, h_positive (N, D) the two dropout encodings of the same N sentences."""
  return in_batch_info_nce(h.astype(jnp.float32), h_positive.astype(jnp.float32), temperature)


def supervised_loss(h, h_positive, h_negative, temperature: float = TEMPERATURE):
  """Eq. 5 per premise (N,): h, h_positive, h_negative (N, D) premises, entailments, contradictions."""
  h, candidates = l2_normalize(h.astype(jnp.float32)), l2_normalize(
      jnp.concatenate([h_positive, h_negative], axis=0).astype(jnp.float32))
  logits = h @ candidates.T / temperature  # (N, 2N): the N positives first
  return -jnp.take_along_axis(jax.nn.log_softmax(logits, -1), jnp.arange(h.shape[0])[:, None], -1)[:, 0]
