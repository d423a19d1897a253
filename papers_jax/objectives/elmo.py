"""ELMo's biLM objective (Peters et al. 2018, §3.1): jointly maximise the forward and the backward
log-likelihood, Σ_k log p(t_k | t_1..t_{k−1}) + log p(t_k | t_{k+1}..t_N). numpy reference in tests/test_elmo.py."""

import jax
import jax.numpy as jnp


def bidirectional_lm_loss(forward_logits, backward_logits, word_ids, lengths):
  """(forward NLLs (B, T), backward NLLs (B, T), weights (B, T)): position t's forward logits score token t + 1
  and its backward logits token t − 1, each where that token is inside the row's `lengths` (the forward
  weight at t is for target t + 1, the backward weight for target t − 1). Loss per direction:
  Σ NLL · weight / Σ weight; the objective is their sum (reported halved, as a per-direction mean)."""
  b, t = word_ids.shape
  pos = jnp.arange(t)[None, :]
  fwd_targets = jnp.concatenate([word_ids[:, 1:], jnp.zeros((b, 1), word_ids.dtype)], 1)
  bwd_targets = jnp.concatenate([jnp.zeros((b, 1), word_ids.dtype), word_ids[:, :-1]], 1)
  nll = lambda logits, targets: -jnp.take_along_axis(jax.nn.log_softmax(logits.astype(jnp.float32), -1),
                                                     targets[..., None], -1)[..., 0]
  fwd_weights = (pos + 1 < lengths[:, None]).astype(jnp.float32)
  bwd_weights = ((pos >= 1) & (pos < lengths[:, None])).astype(jnp.float32)
  return nll(forward_logits, fwd_targets), nll(backward_logits, bwd_targets), fwd_weights, bwd_weights
