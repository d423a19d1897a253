"""Fine-tuning a pre-trained BERT (`config.task = "text_finetune"`), BERT §4.

`config.finetune.objective` selects the head and the loss:
  "classification"  GLUE-style (§4.1): [CLS] A [SEP] (B [SEP]) → pooled [CLS] output → dropout → linear
                    (models.bert.BertForSequenceClassification); loss the mean softmax cross-entropy.
                    Evaluation: eval/loss, eval/accuracy.
  "span"            SQuAD-style (§4.2): [CLS] question [SEP] context [SEP] → a start and an end score per
                    token (BertForQuestionAnswering); loss the mean of the start and end cross-entropies.
                    Evaluation: eval/loss, eval/exact_match (both ends right) and eval/f1 (token overlap)
                    of the best span inside the context (start ≤ end, at most `max_answer_len` tokens).
Both losses equal HF transformers' on the same batch and weights (tests/test_bert_fnet.py).

Data (`config.data.name`, data/text_tasks.py): "python_docs_topics" (classification) or
"number_questions" (span). The tokenizer must be the pre-training run's: `finetune.tokenizer` is its
tokenizer.json, or "" to train the WordPiece tokenizer that configs/bert/python_docs.py trains (same text,
same vocab_size, deterministic, so the same vocabulary).

Pre-trained weights come through the trainer's `config.init_from` (a pre-training run's
checkpoints/<step>/state); `config.init_skip` names what the checkpoint has and the fine-tuning model
lacks or re-initialises (the MLM and NSP heads, the pooler for span extraction, the new head), see
INIT_SKIP. Without init_from the same model trains from random initialisation (the baseline).
"""

import functools
import os

import jax.numpy as jnp
import ml_collections
from flax import nnx

from papers_jax import models
from papers_jax.core.state import merge_model
from papers_jax.data import text as text_data
from papers_jax.data import text_tasks, tokenizers
from papers_jax.errors import ConfigError
from papers_jax.models import bert, registry
from papers_jax.objectives import lm as objective
from papers_jax.tasks.lm import _trained_tokenizer

HEADS = {"classification": bert.BertForSequenceClassification, "span": bert.BertForQuestionAnswering}
DATA = {"python_docs_topics": ("classification", text_tasks.python_docs_topics),
        "number_questions": ("span", text_tasks.number_questions)}
# Params of a BertForPreTraining checkpoint the fine-tuning model does not take (regexes for init_skip).
INIT_SKIP = {"classification": (r"^classifier/", r"^mlm_head/", r"^nsp_head/"),
             "span": (r"^qa_outputs/", r"^mlm_head/", r"^nsp_head/", r"^bert/pooler/")}


def default_config(**overrides) -> ml_collections.ConfigDict:
  """`config.finetune`, the fields this task reads."""
  return ml_collections.ConfigDict(dict(
      objective="classification", tokenizer="", tokenizer_data="python_docs", vocab_size=4096, max_seq_len=64,
      max_answer_len=30) | overrides)


def smoke(c) -> None:
  """Seconds on CPU, with the model and tokenizer sizes of lm.smoke's BERT, so that a smoke pre-training
  checkpoint of configs/bert/python_docs.py initialises it."""
  c.finetune.update(tokenizer="", vocab_size=512, max_seq_len=32)
  c.model = dict(name="bert-base-uncased", vocab_size=0, hidden_size=32, num_layers=2, num_heads=2,
                 intermediate_size=64, max_position_embeddings=32)
  c.num_epochs, c.num_steps, c.batch_size = 0.0, 6, 16
  c.schedule.warmup_steps = 2
  c.mesh.update(data=-1, fsdp=1, tensor=1)
  c.log_every, c.eval_every, c.checkpoint_every = 3, 0, 6


class TextFinetuneTask:
  """Model + objective + evaluation for `config.task = "text_finetune"`."""

  def __init__(self, config):
    self.config = config
    self.ft = config.finetune
    self.objective = self.ft.objective
    if self.objective not in HEADS:
      raise ConfigError(f"finetune.objective must be one of {sorted(HEADS)}, got {self.objective!r}")
    name = config.data.name
    if name not in DATA:
      raise ConfigError(f"unknown fine-tuning data.name {name!r}; use one of {sorted(DATA)}")
    if DATA[name][0] != self.objective:
      raise ConfigError(f"data.name {name!r} is a {DATA[name][0]} task; set finetune.objective={DATA[name][0]!r}")
    self._sources = {}

  # ------------------------------------------------------------------ data

  @functools.cached_property
  def tokenizer(self):
    if self.ft.tokenizer:
      return tokenizers.load(self.ft.tokenizer)
    if self.ft.tokenizer_data != "python_docs":
      raise ConfigError(f"finetune.tokenizer_data {self.ft.tokenizer_data!r}: only 'python_docs' is known; "
                        "or give finetune.tokenizer the pre-training run's tokenizer.json")
    return _trained_tokenizer("wordpiece", int(self.ft.vocab_size), "python_docs", "train", None)

  def source(self, split: str):
    if split not in self._sources:
      examples = DATA[self.config.data.name][1](split)
      cls = text_tasks.ClassificationSource if self.objective == "classification" else text_tasks.SpanSource
      self._sources[split] = cls(examples, self.tokenizer, max_seq_len=int(self.ft.max_seq_len))
    return self._sources[split]

  def preprocess(self, train: bool):
    del train
    return text_data.identity

  def save_assets(self, workdir: str):
    self.tokenizer.save(os.path.join(workdir, tokenizers.FILE_NAME))

  # ------------------------------------------------------------------ model

  def build_model(self, rngs: nnx.Rngs) -> nnx.Module:
    kwargs = dict(self.config.model)
    name = kwargs.pop("name")
    if registry.model_class(name) is not bert.BertForPreTraining:
      raise ConfigError(f"model.name {name!r}: fine-tuning heads exist for the BERT names (bert-base-uncased, ...)")
    if kwargs.get("dtype"):
      kwargs["dtype"] = jnp.dtype(kwargs["dtype"])
    else:
      kwargs.pop("dtype", None)
    kwargs["vocab_size"] = int(kwargs.get("vocab_size") or 0) or self.tokenizer.vocab_size
    if self.objective == "classification":
      kwargs["num_labels"] = self.source(self.config.data.train_split).num_labels
    return HEADS[self.objective](**(models.model_config(name) | kwargs), rngs=rngs)

  def tokens_per_example(self) -> int:
    return int(self.ft.max_seq_len)

  def forward_flops(self, model) -> float:
    """FLOPs of one example's forward pass at finetune.max_seq_len (the BERT family's counter)."""
    return models.forward_flops(model, seq_len=int(self.ft.max_seq_len))

  # ------------------------------------------------------------------ losses

  def _outputs(self, model, batch, *, train: bool, rngs=None):
    return model(batch["input_ids"], batch["token_type_ids"], batch["attention_mask"], train=train, rngs=rngs)

  def _terms(self, outputs, batch):
    """Per-example losses and what the metrics count (per example)."""
    if self.objective == "classification":
      losses = objective.sequence_classification_loss(outputs, batch["label"])
      return losses, {"accuracy": (jnp.argmax(outputs, -1) == batch["label"]).astype(jnp.float32)}
    start_logits, end_logits = outputs
    start, end = batch["start_position"], batch["end_position"]
    losses = objective.span_extraction_loss(start_logits, end_logits, start, end)
    pred_start, pred_end = objective.best_span(start_logits, end_logits, batch["context_mask"],
                                               int(self.ft.max_answer_len))
    exact = ((pred_start == start) & (pred_end == end)).astype(jnp.float32)
    return losses, {"exact_match": exact, "f1": objective.span_f1(pred_start, pred_end, start, end)}

  def make_loss_fn(self, graphdef):
    def loss_fn(params, model_state, batch, rng):
      model = merge_model(graphdef, params, model_state)
      losses, counts = self._terms(self._outputs(model, batch, train=True, rngs=nnx.Rngs(dropout=rng)), batch)
      metrics = {k: v.mean() for k, v in counts.items()}
      new_model_state = nnx.to_pure_dict(nnx.state(model, nnx.Not(nnx.Param)))
      return losses.mean(), (metrics, new_model_state)
    return loss_fn

  def make_eval_fn(self, graphdef):
    """Sums over the real rows; the loop divides by `count`, the number of examples."""
    def eval_fn(params, model_state, batch):
      model = merge_model(graphdef, params, model_state)
      losses, counts = self._terms(self._outputs(model, batch, train=False), batch)
      rows = batch["mask"].astype(jnp.float32)
      return {"loss": (losses * rows).sum(), "count": rows.sum()} | {k: (v * rows).sum() for k, v in counts.items()}
    return eval_fn
