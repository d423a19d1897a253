"""word2vec (Mikolov et al. 2013) and fastText (Bojanowski et al. 2017): an input and an output embedding table.

Skip-gram and CBOW (Mikolov et al. 2013a, "Efficient Estimation of Word Representations in Vector Space")
share this model and differ in the objective (tasks/word2vec.py): the input vector v of a training example
is the centre word's row (skip-gram) or the mean of its context words' rows (CBOW), and it is scored
against output rows u by dot products (objectives/word2vec.py). fastText's input vector of a word is the
mean of its own row and the rows of its hashed character n-grams, which follow the vocabulary's rows in
the input table (`buckets` of them; data/word2vec.py). fastText's paper writes the sum; its released code
averages (Model::computeHidden), which this follows.

Initialisation as the released code: input rows uniform in ±0.5/D (word2vec.c; fastText: ±1/D), output
rows zero. The word vectors used afterwards are the input vectors.

Parameter paths: input_embed (vocab + buckets, dim), output_embed (vocab, dim).
"""

import jax.numpy as jnp
from flax import nnx

from papers_jax.errors import ConfigError
from papers_jax.models.registry import register
from papers_jax.nn import param


class Word2Vec(nnx.Module):
  """`model.input_vectors(rows, mask)`: (..., G) rows → (..., D) means; `model.output_vectors(ids)`: (..., D)."""

  def __init__(self, *, vocab_size: int = 10000, embed_dim: int = 100, buckets: int = 0, init_scale: float = 0.5,
               param_dtype=jnp.float32, rngs: nnx.Rngs):
    if vocab_size < 1 or embed_dim < 1 or buckets < 0:
      raise ConfigError(f"word2vec needs vocab_size ≥ 1, embed_dim ≥ 1 and buckets ≥ 0, got {vocab_size}, "
                        f"{embed_dim}, {buckets}")
    self.vocab_size, self.embed_dim, self.buckets = vocab_size, embed_dim, buckets
    bound = init_scale / embed_dim
    self.input_embed = param(rngs, nnx.initializers.uniform(2 * bound), (vocab_size + buckets, embed_dim),
                             param_dtype, ("vocab", "embed"))
    self.input_embed[...] = self.input_embed[...] - bound  # uniform(2b) draws in [0, 2b): shift to [−b, b)
    self.output_embed = param(rngs, nnx.initializers.zeros, (vocab_size, embed_dim), param_dtype, ("vocab", "embed"))

  def input_vectors(self, rows, mask=None):
    """Input-table rows (...,) → (..., D), or (..., G) with `mask` (..., G) → the mean of the masked rows."""
    vectors = jnp.take(self.input_embed[...], rows, axis=0)
    if mask is None:
      return vectors
    weights = mask.astype(vectors.dtype)[..., None]
    return jnp.sum(vectors * weights, axis=-2) / jnp.maximum(jnp.sum(weights, axis=-2), 1.0)

  def output_vectors(self, ids):
    return jnp.take(self.output_embed[...], ids, axis=0)

  def __call__(self, rows, mask=None):
    return self.input_vectors(rows, mask)


register("word2vec", Word2Vec, embed_dim=300)  # the paper's 300-dimensional vectors
register("fasttext", Word2Vec, embed_dim=300, buckets=2_000_000, init_scale=1.0)  # fastText's 2M buckets


def forward_flops(model: Word2Vec, targets: int = 10, negatives: int = 5, subwords: int = 1) -> float:
  """Per example: the dot products of the input vector with `targets` output rows and `negatives` noise
  rows per target (2 per multiply-add), and the mean over `subwords` input rows."""
  d = model.embed_dim
  return float(2 * d * targets * (1 + negatives) + d * subwords)


EMBEDDINGS = ("input_embed", "output_embed")
