"""ELMo's bidirectional language model (`config.task = "elmo"`), Peters et al. 2018 §3.1.

The model (models/elmo.py) reads each row's characters; its forward LSTM stack predicts every next token and its
backward stack every previous token through one tied softmax; the loss is the mean of the two directions'
token cross-entropies (objectives/elmo.py). Dropout `model.dropout_rate` before each LSTM layer and the softmax.

Data: "python_docs" (data/elmo.py: words, documents between <S> and </S>, rows of `elmo.seq_len` tokens, the
vocabulary the training words seen ≥ `elmo.min_count` times; rarer words are <unk> as targets but keep their
own characters as input). Evaluation on data.eval_split: eval/loss (mean of both directions' NLL per token),
eval/perplexity, eval/perplexity_forward, eval/perplexity_backward, and eval/perplexity_unigram, the
perplexity of the training text's unigram distribution (add-one smoothed) on the same targets: the baseline.
"""

import functools
import math

import jax.numpy as jnp
import ml_collections
import numpy as np
from flax import nnx

from papers_jax import models
from papers_jax.core.state import merge_model
from papers_jax.data import elmo as elmo_data
from papers_jax.data import text as text_data
from papers_jax.errors import ConfigError
from papers_jax.models import elmo as elmo_model
from papers_jax.models import registry
from papers_jax.objectives import elmo as objective

RANGES = (("seq_len", "[2, inf)"), ("max_chars", "[3, inf)"), ("min_count", "[1, inf)"))


def default_config(**overrides) -> ml_collections.ConfigDict:
  """`config.elmo`, the fields this task reads."""
  return ml_collections.ConfigDict(dict(seq_len=20, max_chars=50, min_count=2) | overrides)


def smoke(c) -> None:
  c.elmo.update(seq_len=8, max_chars=12)
  c.model.update(char_dim=4, filters=((1, 4), (2, 4)), num_highway=1, projection_dim=8, cell_dim=16)
  c.batch_size, c.num_steps, c.num_epochs = 8, 4, 0.0
  c.schedule.warmup_steps = 0
  c.mesh.update(data=-1, fsdp=1, tensor=1)
  c.log_every, c.eval_every, c.checkpoint_every = 2, 0, 4


class ELMoTask:
  """Model + objective + evaluation for `config.task = "elmo"`."""

  def __init__(self, config):
    self.config = config
    self.e = config.elmo
    if config.data.name != "python_docs":
      raise ConfigError(f"elmo data.name {config.data.name!r}: only 'python_docs' (bundled) is known")
    if registry.model_class(config.model.name) is not elmo_model.ELMo:
      raise ConfigError(f"model.name {config.model.name!r}: the elmo task trains 'elmo_original' (resized)")
    self._sources = {}

  @functools.cached_property
  def vocab(self) -> elmo_data.WordVocabulary:
    return elmo_data.WordVocabulary(text_data.python_docs(self.config.data.train_split), int(self.e.min_count))

  def source(self, split: str):
    if split not in self._sources:
      self._sources[split] = elmo_data.WordRowSource(text_data.python_docs(split), self.vocab,
                                                     seq_len=int(self.e.seq_len), max_chars=int(self.e.max_chars))
    return self._sources[split]

  def preprocess(self, train: bool):
    del train
    return text_data.identity

  def build_model(self, rngs: nnx.Rngs) -> nnx.Module:
    kwargs = dict(self.config.model)
    name = kwargs.pop("name")
    kwargs["vocab_size"] = int(kwargs.get("vocab_size") or 0) or len(self.vocab)
    return elmo_model.ELMo(**(models.model_config(name) | kwargs), rngs=rngs)

  def forward_flops(self, model) -> float:
    return elmo_model.forward_flops(model, int(self.e.seq_len), int(self.e.max_chars))

  def tokens_per_example(self) -> int:
    return int(self.e.seq_len)

  @functools.cached_property
  def unigram_log_probs(self) -> np.ndarray:
    counts = np.bincount(self.source(self.config.data.train_split).word_ids, minlength=len(self.vocab)) + 1.0
    return np.log(counts / counts.sum()).astype(np.float32)

  def _terms(self, model, batch, *, train, rngs=None):
    fwd, bwd = model.lm_logits(batch["chars"], batch["length"], train=train, rngs=rngs)
    return objective.bidirectional_lm_loss(fwd, bwd, batch["word_ids"], batch["length"])

  def make_loss_fn(self, graphdef):
    def loss_fn(params, model_state, batch, rng):
      model = merge_model(graphdef, params, model_state)
      f, b, fw, bw = self._terms(model, batch, train=True, rngs=nnx.Rngs(dropout=rng))
      forward, backward = (f * fw).sum() / jnp.maximum(fw.sum(), 1), (b * bw).sum() / jnp.maximum(bw.sum(), 1)
      return (forward + backward) / 2, ({"forward_loss": forward, "backward_loss": backward}, model_state)
    return loss_fn

  def make_eval_fn(self, graphdef):
    """Sums over the real targets; `count` the forward targets (as many as the backward ones)."""
    log_probs = self.unigram_log_probs

    def eval_fn(params, model_state, batch):
      model = merge_model(graphdef, params, model_state)
      rows = batch["mask"].astype(jnp.float32)[:, None]
      f, b, fw, bw = self._terms(model, batch, train=False)
      fw, bw = fw * rows, bw * rows
      targets = jnp.concatenate([batch["word_ids"][:, 1:], batch["word_ids"][:, :1]], 1)
      unigram = -jnp.take(jnp.asarray(log_probs), targets)
      return {"loss": ((f * fw).sum() + (b * bw).sum()) / 2, "forward_loss": (f * fw).sum(),
              "backward_loss": (b * bw).sum(), "unigram_loss": (unigram * fw).sum(), "count": fw.sum()}
    return eval_fn

  def after_eval(self, trainer, step: int, writer, source, metrics) -> dict:
    del trainer, step, writer, source
    return {"perplexity": math.exp(metrics["loss"]), "perplexity_forward": math.exp(metrics["forward_loss"]),
            "perplexity_backward": math.exp(metrics["backward_loss"]),
            "perplexity_unigram": math.exp(metrics["unigram_loss"])}
