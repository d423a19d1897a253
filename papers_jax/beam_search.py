"""Beam search under jit, as the Transformer decodes ("Attention Is All You Need", §6.1: beam 4,
length penalty α = 0.6, maximum output length = input length + 50, stopping early when possible).

The model is seen only through one decode step, `step_fn(tokens (N, 1), cache) -> (logits (N, 1, V),
cache)` as in decoding.py, with the K beams of each of the B examples folded into its batch
(N = B·K rows, example-major: row b·K + k is beam k of example b). Build the cache for B·K rows, e.g.
by repeating an example's encoder memory K times with `tile_beams`. After each step the cache follows
its surviving beams: every cache leaf with a leading axis is gathered along it (`jax.tree.map`);
scalar leaves (a cache's write position, shared by all rows) are left as they are.

Scoring (Wu et al., 2016, GNMT): a hypothesis y of length |y| (its EOS included) scores
log P(y) / lp(y), lp(y) = ((5 + |y|) / 6)^α. One step: the 2K best extensions by log-probability;
those of the first K that end in EOS are finished and kept apart (the K best by score), the K best
that do not become the next beams. An example is complete once K hypotheses have finished or the
maximum length is reached, when its remaining beams are finished as they are (without an EOS); the
loop stops when every example is complete. This is fairseq's stopping rule, under which beam size 1
is exactly greedy decoding; a beam wide enough to hold every prefix enumerates all hypotheses, so the
result is then the exact best under the score (tests/test_transformer.py checks both).
"""

import jax
import jax.numpy as jnp


def length_penalty(length, alpha: float):
  """GNMT's ((5 + length) / 6)^α."""
  return ((5.0 + jnp.asarray(length, jnp.float32)) / 6.0) ** alpha


def tile_beams(tree, beam_size: int):
  """Repeats every array leaf K times along its leading (batch) axis: row b → rows b·K … b·K + K − 1."""
  return jax.tree.map(lambda x: jnp.repeat(x, beam_size, axis=0) if jnp.ndim(x) else x, tree)


def gather_beams(tree, rows, num_rows: int):
  """Selects `rows` (N,) along the leading axis of every non-scalar leaf, which must have `num_rows` rows."""
  def gather(x):
    if not jnp.ndim(x):
      return x
    if x.shape[0] != num_rows:
      raise ValueError(f"a cache leaf of shape {x.shape} does not have the batch × beam = {num_rows} rows first; "
                       "build the cache for batch × beam_size rows (see tile_beams)")
    return jnp.take(x, rows, axis=0)
  return jax.tree.map(gather, tree)


def beam_search(step_fn, cache, start_tokens, *, beam_size: int, max_len: int, eos_id: int, alpha: float = 0.6,
                pad_id: int = 0):
  """The best hypothesis of each example: (tokens (B, max_len) int32, scores (B,) float32).

  `start_tokens` (B,) is each example's first decoder input (BOS); `cache` holds B·beam_size rows
  and room for max_len positions. A hypothesis's tokens end with its EOS (unless it reached max_len)
  and are followed by `pad_id`; its score is the length-penalised log-probability above.
  """
  if beam_size < 1 or max_len < 1:
    raise ValueError(f"beam_size and max_len must be at least 1, got {beam_size} and {max_len}")
  b, k = start_tokens.shape[0], beam_size
  neg_inf = jnp.float32(-jnp.inf)

  def step(state):
    i = state["i"]
    logits, cache = step_fn(state["tokens"].reshape(b * k, 1), state["cache"])
    vocab = logits.shape[-1]
    if 2 * k > k * vocab:
      raise ValueError(f"beam search needs a vocabulary of at least 2 tokens, got {vocab}")
    log_probs = jax.nn.log_softmax(logits[:, -1].astype(jnp.float32), axis=-1).reshape(b, k, vocab)
    candidates = (state["logp"][:, :, None] + log_probs).reshape(b, k * vocab)
    cand_logp, flat = jax.lax.top_k(candidates, 2 * k)  # (B, 2K), best first
    cand_beam, cand_token = flat // vocab, flat % vocab
    cand_seqs = jnp.take_along_axis(state["seqs"], cand_beam[:, :, None], axis=1)
    cand_seqs = cand_seqs.at[:, :, i].set(cand_token)
    is_eos = cand_token == eos_id
    real = cand_logp > neg_inf  # extensions of the placeholder beams of step 0 are not hypotheses
    active = ~state["done"][:, None]

    # Finish the EOS extensions ranked among the first K.
    finishing = is_eos & real & active & (jnp.arange(2 * k) < k)[None, :]
    new_scores = jnp.where(finishing, cand_logp / length_penalty(i + 1, alpha), neg_inf)
    fin_scores = jnp.concatenate([state["fin_scores"], new_scores], axis=1)
    fin_seqs = jnp.concatenate([state["fin_seqs"], cand_seqs], axis=1)
    count = state["count"] + finishing.sum(axis=1)

    # The K best extensions without EOS continue.
    logp, pick = jax.lax.top_k(jnp.where(is_eos, neg_inf, cand_logp), k)
    beams = jnp.take_along_axis(cand_beam, pick, axis=1)
    tokens = jnp.take_along_axis(cand_token, pick, axis=1)
    seqs = jnp.take_along_axis(cand_seqs, pick[:, :, None], axis=1)
    rows = (jnp.arange(b)[:, None] * k + beams).reshape(-1)
    cache = gather_beams(cache, rows, b * k)

    # At the maximum length the surviving beams are finished as they are.
    last = (i + 1 == max_len) & active & (logp > neg_inf)
    fin_scores = jnp.concatenate([fin_scores, jnp.where(last, logp / length_penalty(max_len, alpha), neg_inf)], 1)
    fin_seqs = jnp.concatenate([fin_seqs, seqs], axis=1)
    fin_scores, keep = jax.lax.top_k(fin_scores, k)
    fin_seqs = jnp.take_along_axis(fin_seqs, keep[:, :, None], axis=1)
    done = state["done"] | (count >= k) | (i + 1 == max_len)
    return dict(i=i + 1, tokens=tokens, logp=logp, seqs=seqs, cache=cache, fin_seqs=fin_seqs, fin_scores=fin_scores,
                count=count, done=done)

  # Only beam 0 is live at the start, so the first step does not expand K copies of one prefix.
  state = dict(
      i=jnp.zeros((), jnp.int32),
      tokens=jnp.repeat(start_tokens.astype(jnp.int32)[:, None], k, axis=1),
      logp=jnp.tile(jnp.array([0.0] + [-jnp.inf] * (k - 1), jnp.float32), (b, 1)),
      seqs=jnp.full((b, k, max_len), pad_id, jnp.int32),
      cache=cache,
      fin_seqs=jnp.full((b, k, max_len), pad_id, jnp.int32),
      fin_scores=jnp.full((b, k), -jnp.inf, jnp.float32),
      count=jnp.zeros((b,), jnp.int32),
      done=jnp.zeros((b,), bool),
  )
  state = jax.lax.while_loop(lambda s: (s["i"] < max_len) & ~jnp.all(s["done"]), step, state)
  # The finished set is sorted best first.
  return state["fin_seqs"][:, 0], state["fin_scores"][:, 0]
