"""SimCSE (`config.task = "simcse"`): contrastive sentence embeddings on our BERT (Gao, Yao, Chen 2021).

`config.simcse.mode`:
  "mlm"           BERT's masked-LM pre-training (15% of the tokens, 80/10/10, data/mlm.py; no next-sentence
                  prediction, as RoBERTa) on the unsupervised training sentences: the pre-trained encoder the
                  paper starts from, on the only text these sentences' words occur in. The SimCSE modes load it
                  with `init_from=<run>/checkpoints/<step>/state` and `init_prefix="bert/"`.
  "unsupervised"  each sentence is encoded twice in one batch, with independent dropout masks, and the two
                  encodings are the positive pair; the other sentences are the negatives (§3, Eq. 4).
  "supervised"    NLI triples: the entailment is the positive, the contradiction a hard negative, and all the
                  batch's entailments and contradictions are the candidates (§4, Eq. 5).
Both at temperature `temperature` (0.05) on cosine similarity (objectives/simcse.py). The sentence embedding is
the [CLS] output through BERT's pooler (a dense layer and tanh, the paper's MLP over [CLS]) in training; at
test time the unsupervised model drops that MLP ([CLS] only, as §3 does) and the supervised one keeps it.

Data (data/sentence_pairs.py, generated: no NLI or STS set is bundled): unsupervised training on random
descriptions in the training wordings, supervised training on generated NLI-style triples; evaluation on
held-out pairs written in wordings never trained on, graded 0-4 by the attributes they share.
Evaluation: eval/spearman, Spearman's ρ × 100 between the embeddings' cosine and the grade (the paper's STS
metric), with baselines on the same pairs: `spearman_untrained_cls` / `spearman_untrained_avg` (the same
BERT at its random initialisation: [CLS] output, mean of the last layer's token outputs), `spearman_avg`
(the trained model's mean token output) and `spearman_bag_of_words` (cosine of word-count vectors).
"""

import functools
import os
import re

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from flax import nnx
from scipy import stats

from papers_jax import models
from papers_jax.core.state import merge_model
from papers_jax.data import mlm, sentence_pairs, tokenizers
from papers_jax.data import text as text_data
from papers_jax.errors import ConfigError
from papers_jax.models import bert, registry
from papers_jax.objectives import lm as lm_objective
from papers_jax.objectives import simcse as objective

MODES = ("mlm", "unsupervised", "supervised")
NAMES = {"mlm": ("sentence",), "unsupervised": ("sentence",), "supervised": ("premise", "entailment", "contradiction")}
MLM_PROB = 0.15
RANGES = (("temperature", "(0, inf)"), ("max_seq_len", "[4, inf)"), ("train_examples", "[1, inf)"),
          ("eval_pairs", "[2, inf)"), ("vocab_size", "[16, inf)"))


def default_config(**overrides) -> ml_collections.ConfigDict:
  """`config.simcse`, the fields this task reads."""
  return ml_collections.ConfigDict(dict(
      mode="unsupervised", temperature=objective.TEMPERATURE, max_seq_len=24, train_examples=20000,
      eval_pairs=1000, vocab_size=256) | overrides)


def smoke(c) -> None:
  c.simcse.update(train_examples=256, eval_pairs=64)
  c.model = dict(name="bert-base-uncased", vocab_size=0, hidden_size=32, num_layers=1, num_heads=2,
                 intermediate_size=64, max_position_embeddings=32)
  c.batch_size, c.num_steps, c.num_epochs = 16, 4, 0.0
  c.schedule.warmup_steps = 0
  c.mesh.update(data=-1, fsdp=1, tensor=1)
  c.log_every, c.eval_every, c.checkpoint_every = 2, 0, 4


def sentence_embedding(model: bert.BertModel, ids, mask, *, mlp: bool, train: bool = False, rngs=None):
  """[CLS] through the pooler (dense + tanh) when `mlp`, else the [CLS] output itself."""
  x, pooled = model(ids, None, mask, train=train, rngs=rngs)
  return pooled if mlp else x[:, 0]


def spearman(similarities, scores) -> float:
  """Spearman's ρ × 100 (average ranks for ties), as SentEval reports STS."""
  return float(100 * stats.spearmanr(similarities, scores).statistic)


def _cosine(a, b):
  a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
  return np.sum(a * b, -1) / np.maximum(np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1), 1e-12)


class SimCSETask:
  """Model + objective + evaluation for `config.task = "simcse"`."""

  def __init__(self, config):
    self.config = config
    self.s = config.simcse
    if self.s.mode not in MODES:
      raise ConfigError(f"simcse.mode must be one of {MODES}, got {self.s.mode!r}")
    if config.data.name != "sentence_pairs":
      raise ConfigError(f"simcse data.name {config.data.name!r}: only 'sentence_pairs' (generated) is known")
    if registry.model_class(config.model.name) is not bert.BertForPreTraining:
      raise ConfigError(f"model.name {config.model.name!r}: SimCSE runs on the BERT names (bert-base-uncased, ...)")
    self._sources = {}

  # ------------------------------------------------------------------ data

  @functools.cached_property
  def tokenizer(self):
    texts = lambda: sentence_pairs.training_sentences(2000, seed=0)  # every word of the generator's vocabulary
    return tokenizers.train("wordpiece", texts, int(self.s.vocab_size))

  def source(self, split: str):
    if split not in self._sources:
      n, seed = int(self.s.train_examples), self.config.seed
      if split == "train":
        rows = (sentence_pairs.nli_triples(n, seed) if self.s.mode == "supervised"
                else sentence_pairs.training_sentences(n, seed))
        names = NAMES[self.s.mode]
      elif split == "validation":
        rows, names = sentence_pairs.similarity_pairs(int(self.s.eval_pairs), seed=12345), ("a", "b")
      else:
        raise ConfigError(f"simcse splits are 'train' and 'validation', got {split!r}")
      self._sources[split] = sentence_pairs.SentenceSource(rows, self.tokenizer, max_seq_len=int(self.s.max_seq_len),
                                                           names=names)
    return self._sources[split]

  def preprocess(self, train: bool):
    if not (train and self.s.mode == "mlm"):
      return text_data.identity
    tok = self.tokenizer
    max_predictions = max(1, round(MLM_PROB * int(self.s.max_seq_len)))

    def mask(example, rng):
      ids = example["sentence_ids"]
      inputs, positions, labels, weights = mlm.mask_tokens(
          ids, ~np.isin(ids, [tok.pad_id, tok.cls_id, tok.sep_id]), rng, mask_id=tok.mask_id,
          vocab_size=tok.vocab_size, max_predictions=max_predictions, prob=MLM_PROB)
      return example | {"sentence_ids": inputs, "positions": positions, "labels": labels, "weights": weights}
    return mask

  def save_assets(self, workdir: str):
    self.tokenizer.save(os.path.join(workdir, tokenizers.FILE_NAME))

  # ------------------------------------------------------------------ model

  def build_model(self, rngs: nnx.Rngs) -> nnx.Module:
    kwargs = dict(self.config.model)
    name = kwargs.pop("name")
    kwargs["vocab_size"] = int(kwargs.get("vocab_size") or 0) or self.tokenizer.vocab_size
    cls = bert.BertForPreTraining if self.s.mode == "mlm" else bert.BertModel
    return cls(**(models.model_config(name) | kwargs), rngs=rngs)

  def encoder(self, model) -> bert.BertModel:
    return model.bert if self.s.mode == "mlm" else model

  def forward_flops(self, model) -> float:
    """Per training example: the encoder on each of its sentences (two dropout passes, or a triple)."""
    passes = {"mlm": 1, "unsupervised": 2, "supervised": 3}[self.s.mode]
    return passes * models.forward_flops(model, seq_len=int(self.s.max_seq_len))

  def tokens_per_example(self) -> int:
    return int(self.s.max_seq_len)

  # ------------------------------------------------------------------ losses

  def losses(self, model, batch, rngs):
    """Per-example losses (B,) of one training batch (dropout on)."""
    tau = float(self.s.temperature)
    if self.s.mode == "mlm":
      logits, _ = model(batch["sentence_ids"], None, batch["sentence_mask"], masked_positions=batch["positions"],
                        train=True, rngs=rngs)
      losses, weights = lm_objective.masked_lm_loss(logits, batch["labels"], batch["weights"])
      return (losses * weights).sum(-1) / jnp.maximum(weights.sum(-1), 1.0)
    if self.s.mode == "unsupervised":
      ids, mask = batch["sentence_ids"], batch["sentence_mask"]
      h = sentence_embedding(model, jnp.concatenate([ids, ids]), jnp.concatenate([mask, mask]), mlp=True,
                             train=True, rngs=rngs)
      return objective.unsupervised_loss(h[:ids.shape[0]], h[ids.shape[0]:], tau)
    names = NAMES["supervised"]
    h = sentence_embedding(model, jnp.concatenate([batch[f"{n}_ids"] for n in names]),
                           jnp.concatenate([batch[f"{n}_mask"] for n in names]), mlp=True, train=True, rngs=rngs)
    return objective.supervised_loss(*jnp.split(h, 3), tau)

  def make_loss_fn(self, graphdef):
    def loss_fn(params, model_state, batch, rng):
      model = merge_model(graphdef, params, model_state)
      return self.losses(model, batch, nnx.Rngs(dropout=rng)).mean(), ({}, model_state)
    return loss_fn

  def _embed_fn(self, graphdef):
    mlp = self.s.mode == "supervised"

    @jax.jit
    def embed(params, model_state, ids, mask):
      model = self.encoder(merge_model(graphdef, params, model_state))
      x, _ = model(ids, None, mask)
      weights = mask.astype(jnp.float32)[..., None]
      return sentence_embedding(model, ids, mask, mlp=mlp), (x * weights).sum(1) / weights.sum(1)
    return embed

  def make_eval_fn(self, graphdef):
    """The sum of the pairs' cosines (eval/cosine: their mean); Spearman's ρ comes in after_eval."""
    embed = self._embed_fn(graphdef)

    def eval_fn(params, model_state, batch):
      a, _ = embed.__wrapped__(params, model_state, batch["a_ids"], batch["a_mask"])
      b, _ = embed.__wrapped__(params, model_state, batch["b_ids"], batch["b_mask"])
      cos = jnp.sum(objective.l2_normalize(a) * objective.l2_normalize(b), -1)
      rows = batch["mask"].astype(jnp.float32)
      return {"cosine": (cos * rows).sum(), "count": rows.sum()}
    return eval_fn

  # ------------------------------------------------------------------ evaluation

  def pair_scores(self, embed, params, model_state, source) -> dict:
    """Spearman's ρ of the [CLS] embedding (as the mode uses it) and of the mean token output."""
    batch = {k: np.stack([source[i][k] for i in range(len(source))]) for k in source[0]}
    a, a_avg = embed(params, model_state, batch["a_ids"], batch["a_mask"])
    b, b_avg = embed(params, model_state, batch["b_ids"], batch["b_mask"])
    return {"cls": spearman(_cosine(a, b), batch["score"]), "avg": spearman(_cosine(a_avg, b_avg), batch["score"])}

  def after_eval(self, trainer, step: int, writer, source, metrics) -> dict:
    del step, writer, metrics
    embed = self._embed_fn(trainer.graphdef)
    trained = self.pair_scores(embed, trainer.state.params, trainer.state.model_state, source)
    out = {"spearman": trained["cls"], "spearman_avg": trained["avg"]}
    if not hasattr(self, "_baselines"):
      untrained = nnx.split(self.build_model(nnx.Rngs(params=self.config.seed)), nnx.Param, ...)
      scores = self.pair_scores(embed, nnx.to_pure_dict(untrained[1]), nnx.to_pure_dict(untrained[2]), source)
      self._baselines = {"spearman_untrained_cls": scores["cls"], "spearman_untrained_avg": scores["avg"],
                         "spearman_bag_of_words": bag_of_words_spearman(source.rows)}
    return out | self._baselines


def bag_of_words_spearman(rows) -> float:
  """Spearman's ρ × 100 of the cosine between the two sentences' word-count vectors."""
  texts = [t for a, b, _ in rows for t in (a, b)]
  vocab = {w: i for i, w in enumerate(sorted({w for t in texts for w in re.findall(r"[a-z]+", t)}))}
  dense = np.zeros((len(texts), len(vocab)))
  for i, t in enumerate(texts):
    for w in re.findall(r"[a-z]+", t):
      dense[i, vocab[w]] += 1
  return spearman(_cosine(dense[0::2], dense[1::2]), [s for *_, s in rows])
