"""Text metrics: corpus BLEU (sacrebleu), bits per byte and perplexity, masked-token accuracy.

  score, signature = corpus_bleu(hypotheses, references)   # detokenised strings; BLEU in 0..100
  bits_per_byte(nll_sum, num_bytes)                        # nll_sum in nats over every target token
  perplexity(nll_sum, num_tokens)
  correct, total = masked_accuracy_counts(logits, labels, weights)   # sums, to add up over batches

BLEU is sacrebleu's corpus BLEU on detokenised text with its default 13a tokenisation and exponential
smoothing, the number papers report since Post (2018); the signature string (e.g.
"nrefs:1|case:mixed|eff:no|tok:13a|smooth:exp|version:2.6.0") says exactly how it was computed and goes
next to every reported score. (The Transformer paper's 28.4 was tokenised BLEU with compound splitting,
which is not the same number.)

Bits per byte make language models with different tokenizers comparable: the summed negative
log-likelihood (nats) of every target token of a text, over ln 2 and the UTF-8 byte count of that text.
data/text.CausalLMSource gives the byte count of its documents as `num_bytes`.
"""

import math
from collections.abc import Sequence

import numpy as np


def corpus_bleu(hypotheses: Sequence[str], references: Sequence[str] | Sequence[Sequence[str]], *,
                tokenize: str = "13a", lowercase: bool = False) -> tuple[float, str]:
  """(BLEU score 0..100, sacrebleu signature). `references` is one reference per hypothesis, or a list
  of reference streams (each as long as `hypotheses`) for several references."""
  import sacrebleu

  if references and isinstance(references[0], str):
    references = [references]
  hypotheses = list(hypotheses)
  for stream in references:
    if len(stream) != len(hypotheses):
      raise ValueError(f"{len(hypotheses)} hypotheses but a reference stream of {len(stream)} sentences.")
  bleu = sacrebleu.metrics.BLEU(tokenize=tokenize, lowercase=lowercase)
  score = bleu.corpus_score(hypotheses, [list(s) for s in references])
  return float(score.score), str(bleu.get_signature())


def utf8_bytes(texts: str | Sequence[str]) -> int:
  """UTF-8 byte count of a text or of several texts together."""
  if isinstance(texts, str):
    texts = [texts]
  return sum(len(t.encode("utf-8")) for t in texts)


def bits_per_byte(nll_sum: float, num_bytes: int) -> float:
  """nll_sum (nats, summed over the target tokens) / ln 2 / num_bytes (of the text they cover)."""
  if num_bytes <= 0:
    raise ValueError(f"num_bytes must be positive, got {num_bytes}.")
  return float(nll_sum) / math.log(2.0) / num_bytes


def perplexity(nll_sum: float, num_tokens: int) -> float:
  """exp(mean NLL per token)."""
  if num_tokens <= 0:
    raise ValueError(f"num_tokens must be positive, got {num_tokens}.")
  return math.exp(float(nll_sum) / num_tokens)


def masked_accuracy_counts(logits, labels, weights):
  """(weighted count of argmax(logits) == labels, sum of weights) over all positions; works on numpy
  and jax arrays (inside a jitted eval step too). logits (..., V), labels and weights (...)."""
  xp = np if isinstance(logits, np.ndarray) else _jnp()
  correct = (xp.argmax(logits, axis=-1) == labels).astype(xp.float32) * weights
  return xp.sum(correct), xp.sum(weights.astype(xp.float32))


def _jnp():
  import jax.numpy as jnp
  return jnp
