"""word2vec and fastText (`config.task = "word2vec"`): skip-gram or CBOW with negative sampling on a text.

`config.word2vec.arch`: "skipgram" (the centre word's input vector scores each context word against
`negatives` noise words; Mikolov et al. 2013b, Eq. 4) or "cbow" (the mean of the context's input vectors
scores the centre word). `subwords=True` is fastText's skip-gram (Bojanowski et al. 2017): the centre word's
input vector is the mean of its row and its character n-gram rows (`min_n`..`max_n`, hashed into the
model's `buckets`). Noise words are drawn from the unigram distribution to the 3/4 power, a fresh draw every
step; draws equal to the target are skipped (word2vec.c). Frequent words are subsampled with threshold
`subsample`, and a window of b ∈ 1..`window` words each side is drawn per centre word, afresh in each of
`passes` passes (data/word2vec.py). The loss is the mean over a batch of centre words of the summed pair
losses.

Data: "python_docs" (data/text.py; the vocabulary from the training topics, words seen ≥ `min_count` times).
Evaluation on data.eval_split: eval/loss (the held-out objective with noise words drawn from a fixed key per
example), then from the trained word vectors (the input vectors; fastText's: the mean of each word's rows):
  neighbours_p<k> for each word of hand-made categories of Python words (built-in types, exceptions, special
                  methods, statement keywords, number words; WORD_CATEGORIES), the fraction of its k nearest
                  vocabulary words (cosine) in its own category, averaged over the words;
  plural_analogy  3CosAdd accuracy on "a : as :: b : ?" over the singular/plural pairs of PLURALS (the three
                  question words excluded from the answers);
each with the same scores for two baselines: `_random` (Gaussian vectors) and `_cooccurrence` (each word's row
of symmetric window co-occurrence counts over the training text, window `window`).
"""

import functools

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from flax import nnx

from papers_jax import models
from papers_jax.core.state import merge_model
from papers_jax.data import text as text_data
from papers_jax.data import word2vec as w2v_data
from papers_jax.errors import ConfigError
from papers_jax.models import registry
from papers_jax.models import word2vec as w2v_model
from papers_jax.objectives import word2vec as objective

ARCHS = ("skipgram", "cbow")
RANGES = (("window", "[1, inf)"), ("negatives", "[1, inf)"), ("subsample", "[0, 1]"), ("min_count", "[1, inf)"),
          ("passes", "[1, inf)"), ("min_n", "[1, inf)"), ("max_n", "[1, inf)"), ("neighbours", "[1, inf)"))

WORD_CATEGORIES = {
    "types": "int float complex str bytes list tuple dict set frozenset bool bytearray range memoryview",
    "exceptions": "typeerror valueerror attributeerror keyerror indexerror nameerror stopiteration runtimeerror "
                  "syntaxerror importerror zerodivisionerror overflowerror unboundlocalerror notimplementederror",
    "special_methods": "__getitem__ __setitem__ __delitem__ __len__ __iter__ __next__ __contains__ __eq__ __ne__ "
                       "__lt__ __le__ __gt__ __ge__ __hash__ __init__ __new__ __del__ __get__ __set__ __delete__ "
                       "__getattr__ __setattr__ __add__ __mul__ __enter__ __exit__ __call__ __repr__ __str__",
    "keywords": "if elif else while for try except finally with def return yield raise import pass break "
                "continue global nonlocal lambda del assert async await",
    "numbers": "zero one two three four five six first second third",
}
PLURALS = ("object value type method name class string list argument attribute module function expression instance "
           "statement key item number sequence character variable operation exception keyword element operand "
           "operator parameter identifier literal clause pattern target block").split()


def default_config(**overrides) -> ml_collections.ConfigDict:
  """`config.word2vec`, the fields this task reads."""
  return ml_collections.ConfigDict(dict(
      arch="skipgram", window=5, negatives=5, subsample=1e-3, min_count=5, passes=5, subwords=False, min_n=3,
      max_n=6, neighbours=5) | overrides)


def smoke(c) -> None:
  c.word2vec.update(passes=1, min_count=20)
  c.model.embed_dim = 16
  if c.model.get("buckets"):
    c.model.buckets = 1024
  c.batch_size, c.num_steps, c.num_epochs = 64, 6, 0.0
  c.mesh.update(data=-1, fsdp=1, tensor=1)
  c.log_every, c.eval_every, c.checkpoint_every = 3, 0, 6


class Word2VecTask:
  """Model + objective + evaluation for `config.task = "word2vec"`."""

  def __init__(self, config):
    self.config = config
    self.w2v = config.word2vec
    if self.w2v.arch not in ARCHS:
      raise ConfigError(f"word2vec.arch must be one of {ARCHS}, got {self.w2v.arch!r}")
    if self.w2v.subwords and self.w2v.arch != "skipgram":
      raise ConfigError("word2vec.subwords (fastText) is built on skip-gram; set word2vec.arch='skipgram'")
    if self.w2v.min_n > self.w2v.max_n:
      raise ConfigError(f"word2vec.min_n ({self.w2v.min_n}) must not exceed word2vec.max_n ({self.w2v.max_n})")
    if config.data.name != "python_docs":
      raise ConfigError(f"word2vec data.name {config.data.name!r}: only 'python_docs' (bundled) is known")
    name = config.model.name
    if registry.model_class(name) is not w2v_model.Word2Vec:
      raise ConfigError(f"model.name {name!r}: the word2vec task trains 'word2vec' or 'fasttext'")
    self.buckets = int(config.model.get("buckets", models.model_config(name).get("buckets", 0)))
    if self.w2v.subwords and self.buckets < 1:
      raise ConfigError("word2vec.subwords needs model.buckets ≥ 1 (rows for the hashed n-grams)")
    self._sources = {}

  # ------------------------------------------------------------------ data

  @functools.cached_property
  def vocab(self) -> w2v_data.Vocabulary:
    return w2v_data.Vocabulary(text_data.python_docs(self.config.data.train_split), int(self.w2v.min_count))

  @functools.cached_property
  def subword_table(self):
    if not self.w2v.subwords:
      return None
    return w2v_data.subword_table(self.vocab, self.buckets, int(self.w2v.min_n), int(self.w2v.max_n))

  def source(self, split: str):
    if split not in self._sources:
      train = split == self.config.data.train_split
      self._sources[split] = w2v_data.WindowSource(
          text_data.python_docs(split), self.vocab, window=int(self.w2v.window),
          passes=int(self.w2v.passes) if train else 1, subsample=float(self.w2v.subsample),
          seed=self.config.seed if train else 1, subwords=self.subword_table)
    return self._sources[split]

  def preprocess(self, train: bool):
    del train
    return text_data.identity

  # ------------------------------------------------------------------ model

  def build_model(self, rngs: nnx.Rngs) -> nnx.Module:
    kwargs = dict(self.config.model)
    name = kwargs.pop("name")
    kwargs["vocab_size"] = int(kwargs.get("vocab_size") or 0) or len(self.vocab)
    return w2v_model.Word2Vec(**(models.model_config(name) | kwargs), rngs=rngs)

  def forward_flops(self, model) -> float:
    subwords = 1 if self.subword_table is None else float(self.subword_table[1].sum(1).mean())
    targets = 2 * int(self.w2v.window) if self.w2v.arch == "skipgram" else 1
    return w2v_model.forward_flops(model, targets, int(self.w2v.negatives), subwords)

  # ------------------------------------------------------------------ losses

  @functools.cached_property
  def noise_cdf(self):
    return np.cumsum(objective.noise_distribution(self.vocab.counts)).astype(np.float32)  # numpy: a jit constant

  def _losses(self, model, batch, key):
    """Per-example negative-sampling losses (B,) with noise words drawn from `key` (one per row, (B,) keys)."""
    if self.w2v.arch == "skipgram":
      if self.w2v.subwords:
        inputs = model.input_vectors(batch["center_subwords"], batch["subword_mask"])
      else:
        inputs = model.input_vectors(batch["center"])
      targets, target_mask = batch["context"], batch["context_mask"]
    else:
      inputs = model.input_vectors(batch["context"], batch["context_mask"])
      targets, target_mask = batch["center"][:, None], batch["context_mask"].any(-1, keepdims=True)
    k = int(self.w2v.negatives)
    noise = jax.vmap(lambda r: objective.sample_noise(r, self.noise_cdf, targets.shape[1:] + (k,)))(key)
    return objective.negative_sampling_loss(inputs, model.output_vectors(targets), target_mask,
                                            model.output_vectors(noise), noise != targets[..., None])

  def make_loss_fn(self, graphdef):
    def loss_fn(params, model_state, batch, rng):
      model = merge_model(graphdef, params, model_state)
      losses = self._losses(model, batch, jax.random.split(rng, batch["center"].shape[0]))
      return losses.mean(), ({}, model_state)
    return loss_fn

  def make_eval_fn(self, graphdef):
    """Sums over the real rows; noise words from a fixed key per example index (a reproducible held-out loss)."""
    def eval_fn(params, model_state, batch):
      model = merge_model(graphdef, params, model_state)
      keys = jax.vmap(lambda i: jax.random.fold_in(jax.random.key(0), i))(batch["example"])
      rows = batch["mask"].astype(jnp.float32)
      return {"loss": (self._losses(model, batch, keys) * rows).sum(), "count": rows.sum()}
    return eval_fn

  # ------------------------------------------------------------------ word vectors

  def word_vectors(self, params) -> np.ndarray:
    """(V, D) float32: each vocabulary word's input vector (fastText: the mean over its subword rows)."""
    table = np.asarray(jax.device_get(params["input_embed"]), np.float32)
    if self.subword_table is None:
      return table[:len(self.vocab)]
    rows, mask = self.subword_table
    return (table[rows] * mask[..., None]).sum(1) / mask.sum(1, keepdims=True)

  @functools.cached_property
  def baselines(self) -> dict:
    vocab = self.vocab
    rng = np.random.default_rng(0)
    counts = np.zeros((len(vocab), len(vocab)), np.float32)
    window = int(self.w2v.window)
    for doc in text_data.python_docs(self.config.data.train_split):
      ids = vocab.encode(doc)
      for shift in range(1, window + 1):
        np.add.at(counts, (ids[:-shift], ids[shift:]), 1.0)
        np.add.at(counts, (ids[shift:], ids[:-shift]), 1.0)
    return {"random": rng.standard_normal((len(vocab), 100)).astype(np.float32), "cooccurrence": counts}

  def after_eval(self, trainer, step: int, writer, source, metrics) -> dict:
    del step, writer, source, metrics
    out = word_vector_scores(self.word_vectors(trainer.state.params), self.vocab, int(self.w2v.neighbours))
    for name, vectors in self.baselines.items():
      out |= {f"{k}_{name}": v for k, v in word_vector_scores(vectors, self.vocab, int(self.w2v.neighbours)).items()
              if not k.endswith("_words")}
    return out


def _unit(vectors):
  return vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)


def word_vector_scores(vectors, vocab, k: int = 5) -> dict:
  """neighbours_p@k and plural_analogy of (V, D) word vectors (module docstring), with the numbers of
  category words and analogy questions the vocabulary holds."""
  unit = _unit(np.asarray(vectors, np.float32))
  label = {w: c for c, ws in WORD_CATEGORIES.items() for w in ws.split() if w in vocab.index}
  precisions = []
  for word, category in label.items():
    sims = unit @ unit[vocab.index[word]]
    sims[vocab.index[word]] = -np.inf
    top = np.argsort(-sims)[:k]
    precisions.append(np.mean([label.get(vocab.words[j]) == category for j in top]))
  pairs = [(vocab.index[s], vocab.index[s + ("es" if s.endswith("s") else "s")]) for s in PLURALS
           if s in vocab.index and s + ("es" if s.endswith("s") else "s") in vocab.index]
  correct = total = 0
  for a, a_plural in pairs:
    for b, b_plural in pairs:
      if a == b:
        continue
      sims = unit @ (unit[a_plural] - unit[a] + unit[b])
      sims[[a, a_plural, b]] = -np.inf
      correct += int(np.argmax(sims) == b_plural)
      total += 1
  return {f"neighbours_p{k}": float(np.mean(precisions)) if precisions else 0.0, "neighbours_words": len(label),
          "plural_analogy": correct / max(total, 1), "plural_analogy_words": total}
