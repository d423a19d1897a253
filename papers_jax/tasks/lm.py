"""Language-model recipes (`config.task = "lm"`), one task for the three objectives of the text papers.

`config.lm.objective` selects it:
  "causal"       GPT (Radford et al. 2018/2019): next-token cross-entropy over packed documents; a token
                 attends only to earlier tokens of its own document. Evaluation: loss per token, next-token
                 accuracy and bits per byte of the held-out text (byte-level BPE is lossless, so the
                 bytes are exactly those of the validation documents).
  "bert"         BERT (Devlin et al. 2019) and FNet (Lee-Thorp et al. 2022): masked LM at the 15% chosen
                 positions (80/10/10 corruption) plus next-sentence prediction, the sum of the two mean
                 losses. Evaluation: eval/loss and eval/accuracy over the masked tokens, eval/nsp_loss and
                 eval/nsp_accuracy over the examples.
  "translation"  the Transformer (Vaswani et al. 2017): label-smoothed cross-entropy (ε = 0.1, the true
                 class gets 1 − ε) on the target tokens under teacher forcing. Evaluation: loss and token
                 accuracy under teacher forcing, and sacreBLEU of beam-search translations (beam 4,
                 length penalty α = 0.6, at most source length + 50 tokens) of the eval split.

Data (`config.data.name`): "python_docs" (Python's documentation text, bundled with Python),
"translation_numbers" (data/translation.py's generated English→German pairs), or prepared TFDS datasets
"tfds:<name>" (text: wikipedia, c4; translation: wmt14_translate/de-en). The tokenizer is
`config.lm.tokenizer`: a tokenizer.json path, or "" to train one of kind `tokenizer_kind` with
`vocab_size` on the train split (deterministic, so every host and every resume gets the same one; it is
saved as <workdir>/tokenizer.json). The model's vocabulary is the tokenizer's unless config.model sets
one at least as large.
"""

import functools
import math
import os

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from flax import nnx

from papers_jax import models
from papers_jax.core import precision, sharding
from papers_jax.core.state import merge_model
from papers_jax.data import text as text_data
from papers_jax.data import tokenizers
from papers_jax.data import translation
from papers_jax.errors import ConfigError
from papers_jax.evaluators import text as text_eval
from papers_jax.objectives import lm as objective

OBJECTIVES = ("causal", "bert", "translation")
TOKENIZER_KINDS = {"causal": "byte_bpe", "bert": "wordpiece", "translation": "translation_bpe"}


# Allowed values of config.lm's numbers (core/config.py check_ranges).
RANGES = (
    ("vocab_size", "[1, 10000000]"),
    ("seq_len", "[2, 1048576]"),
    ("max_seq_len", "[5, 1048576]"),             # [CLS] a [SEP] b [SEP]
    ("max_source_len", "[1, 1048576]"),
    ("max_target_len", "[2, 1048576]"),
    ("max_predictions", "[1, 1048576]"),
    ("*_prob", "[0, 1]"),
    ("dupe_factor", "[1, 100]"),
    ("label_smoothing", "[0, 1)"),
    ("beam_size", "[1, 1024]"),
    ("length_penalty", "[0, 100]"),
    ("bleu_examples", "[0, inf)"),
    ("decode_batch", "[1, 1048576]"),
)


def default_config(**overrides) -> ml_collections.ConfigDict:
  """`config.lm`, the fields this task reads."""
  return ml_collections.ConfigDict(dict(
      objective="causal", tokenizer="", tokenizer_kind="", vocab_size=8192,
      seq_len=128, split_documents=False,                                     # causal
      max_seq_len=128, max_predictions=20, masked_lm_prob=0.15, dupe_factor=1, short_seq_prob=0.1,  # bert
      max_source_len=40, max_target_len=40, label_smoothing=0.1,              # translation
      beam_size=4, length_penalty=0.6, bleu_examples=0, decode_batch=250,
  ) | overrides)


def smoke(c, model_name: str | None = None) -> None:
  """Shrinks an LM config to seconds on CPU, on bundled data. Every config of one objective (and model
  family) gets the same program, so their smoke runs in the test suite compile it once."""
  objective = c.lm.objective
  c.data.train_split = "train"
  if objective == "translation":
    c.data.name, c.data.eval_split = "translation_numbers", "validation"
    c.lm.update(vocab_size=300, max_source_len=16, max_target_len=16, bleu_examples=8, decode_batch=8)
    c.model = dict(name="transformer_base", vocab_size=0, num_layers=1, d_model=32, d_ff=64, num_heads=2)
  else:
    c.data.name, c.data.eval_split = "python_docs", "validation"
  if objective == "causal":
    c.lm.update(vocab_size=512, seq_len=32)
    c.model = dict(name="gpt2", vocab_size=0, context_length=32, embed_dim=32, depth=2, num_heads=2)
  if objective == "bert":
    name = model_name or c.model.name
    c.lm.update(vocab_size=512, max_seq_len=32, max_predictions=5, dupe_factor=1)
    c.model = dict(name=name, vocab_size=0, hidden_size=32, num_layers=2, intermediate_size=64,
                   max_position_embeddings=32, **({} if name.startswith("fnet") else {"num_heads": 2}))
  c.lm.tokenizer = ""
  c.batch_size, c.num_steps = 16, 6
  c.schedule.warmup_steps = 2
  c.mesh.update(data=-1, fsdp=1, tensor=1)
  c.log_every, c.eval_every, c.checkpoint_every = 3, 0, 6


@functools.lru_cache(maxsize=8)
def _documents(name: str, split: str, data_dir: str | None):
  """Training/eval text of a data name: a list of documents, or of (source, target) pairs."""
  if name == "python_docs":
    return tuple(text_data.python_docs(split))
  if name == "translation_numbers":
    return tuple(translation.number_sentences(split))
  if name.startswith("tfds:"):
    tfds_name = name[len("tfds:"):]
    if tfds_name.startswith("wmt"):
      return text_data.TfdsTranslation(tfds_name, split, data_dir)
    return text_data.TfdsText(tfds_name, split, data_dir)
  raise ConfigError(f"unknown text data.name {name!r}; use 'python_docs', 'translation_numbers' or 'tfds:<name>'")


@functools.lru_cache(maxsize=8)
def _trained_tokenizer(kind: str, vocab_size: int, name: str, split: str, data_dir: str | None):
  docs = _documents(name, split, data_dir)
  return tokenizers.train(kind, lambda: (docs[i] for i in range(len(docs))), vocab_size)


class LMTask:
  """Model + objective + evaluation for `config.task = "lm"`."""

  def __init__(self, config):
    self.config = config
    self.lm = config.lm
    if self.lm.objective not in OBJECTIVES:
      raise ConfigError(f"lm.objective must be one of {OBJECTIVES}, got {self.lm.objective!r}")
    self.objective = self.lm.objective
    self._sources = {}

  # ------------------------------------------------------------------ data

  @functools.cached_property
  def tokenizer(self):
    if self.lm.tokenizer:
      return tokenizers.load(self.lm.tokenizer)
    kind = self.lm.tokenizer_kind or TOKENIZER_KINDS[self.objective]
    d = self.config.data
    return _trained_tokenizer(kind, int(self.lm.vocab_size), d.name, d.train_split, d.get("data_dir"))

  def source(self, split: str):
    if split not in self._sources:
      d, lm = self.config.data, self.lm
      docs = _documents(d.name, split, d.get("data_dir"))
      if self.objective == "causal":
        src = text_data.CausalLMSource.from_documents(docs, self.tokenizer, lm.seq_len, seed=self.config.seed,
                                                      split_documents=lm.split_documents)
      elif self.objective == "bert":
        src = text_data.BertPretrainingSource(
            docs, self.tokenizer, max_seq_len=lm.max_seq_len, max_predictions=lm.max_predictions,
            masked_lm_prob=lm.masked_lm_prob, short_seq_prob=lm.short_seq_prob, dupe_factor=lm.dupe_factor,
            seed=self.config.seed)
      else:
        src = text_data.TranslationSource(docs, self.tokenizer, max_source_len=lm.max_source_len,
                                          max_target_len=lm.max_target_len)
      self._sources[split] = src
    return self._sources[split]

  def preprocess(self, train: bool):
    del train
    return text_data.identity

  def save_assets(self, workdir: str):
    self.tokenizer.save(os.path.join(workdir, tokenizers.FILE_NAME))

  def synthetic_batch(self, batch: int, rng: np.random.Generator) -> dict:
    """Random token ids with this config's shapes (tools/benchmark.py)."""
    v, lm = self.vocab_size, self.lm
    ids = lambda n: rng.integers(5, v, (batch, n), dtype=np.int32)  # noqa: E731
    if self.objective == "causal":
      segment_ids = np.ones((batch, lm.seq_len), np.int32)
      positions = np.broadcast_to(np.arange(lm.seq_len, dtype=np.int32), (batch, lm.seq_len)).copy()
      return text_data.causal_lm_features(ids(lm.seq_len), segment_ids, positions)
    if self.objective == "bert":
      t, p = lm.max_seq_len, lm.max_predictions
      return {"input_ids": ids(t), "token_type_ids": (np.arange(t) >= t // 2).astype(np.int32)[None].repeat(batch, 0),
              "attention_mask": np.ones((batch, t), bool),
              "masked_positions": np.sort(rng.integers(1, t, (batch, p)), axis=1).astype(np.int32),
              "masked_labels": ids(p), "masked_weights": np.ones((batch, p), np.float32),
              "next_sentence_label": rng.integers(0, 2, (batch,), dtype=np.int32)}
    s, t = lm.max_source_len, lm.max_target_len
    return {"source_ids": ids(s), "source_mask": np.ones((batch, s), bool), "decoder_input_ids": ids(t),
            "target_ids": ids(t), "target_mask": np.ones((batch, t), bool)}

  # ------------------------------------------------------------------ model

  @property
  def vocab_size(self) -> int:
    """The tokenizer's, or model.vocab_size when set (it must then cover the tokenizer's ids; without any
    data, e.g. in tools/benchmark.py, no tokenizer is built at all)."""
    configured = int(self.config.model.get("vocab_size", 0) or 0)
    if not configured:
      return self.tokenizer.vocab_size
    if "tokenizer" in self.__dict__ and configured < self.tokenizer.vocab_size:
      raise ConfigError(f"model.vocab_size {configured} is smaller than the tokenizer's {self.tokenizer.vocab_size}")
    return configured

  def build_model(self, rngs: nnx.Rngs) -> nnx.Module:
    name, kwargs = precision.model_kwargs(self.config)
    kwargs["vocab_size"] = self.vocab_size
    if self.objective == "translation":
      tok = self.tokenizer
      kwargs.update(pad_id=text_data._pad_id(tok), bos_id=tok.bos_id, eos_id=tok.eos_id)
    return models.create(name, rngs=rngs, **kwargs)

  def tokens_per_example(self) -> int:
    """Token positions one example feeds the model (source + target for translation), for
    tools/benchmark.py's tokens/s."""
    lm = self.lm
    if self.objective == "causal":
      return lm.seq_len
    if self.objective == "bert":
      return lm.max_seq_len
    return lm.max_source_len + lm.max_target_len

  def forward_flops(self, model) -> float:
    """FLOPs of one example's forward pass at this config's lengths (the model family's counter)."""
    lm = self.lm
    if self.objective == "causal":
      return models.forward_flops(model, seq_len=lm.seq_len)
    if self.objective == "bert":
      return models.forward_flops(model, seq_len=lm.max_seq_len, predictions=lm.max_predictions)
    return models.forward_flops(model, source_len=lm.max_source_len, target_len=lm.max_target_len)

  # ------------------------------------------------------------------ losses

  def _forward(self, model, batch, *, train: bool, rngs=None):
    if self.objective == "causal":
      return model(batch["tokens"], positions=batch["positions"], segment_ids=batch["segment_ids"], train=train,
                   rngs=rngs)
    if self.objective == "bert":
      return model(batch["input_ids"], batch["token_type_ids"], batch["attention_mask"],
                   masked_positions=batch["masked_positions"], train=train, rngs=rngs)
    return model(batch["source_ids"], batch["decoder_input_ids"], src_mask=batch["source_mask"],
                 tgt_mask=batch["target_mask"], train=train, rngs=rngs)

  def _terms(self, outputs, batch, row_mask=None):
    """Per-position losses and weights of the objective, and the counts that metrics need (sums)."""
    rows = None if row_mask is None else row_mask.astype(jnp.float32)
    if self.objective == "causal":
      losses, weights = objective.causal_lm_loss(outputs, batch["tokens"], batch["loss_mask"])
      weights = weights if rows is None else weights * rows[:, None]
      correct = (jnp.argmax(outputs[:, :-1], -1) == batch["tokens"][:, 1:]) * weights
      return {"main": (losses, weights), "correct": correct.sum()}
    if self.objective == "bert":
      mlm_logits, nsp_logits = outputs
      losses, weights = objective.masked_lm_loss(mlm_logits, batch["masked_labels"], batch["masked_weights"])
      nsp = objective.next_sentence_loss(nsp_logits, batch["next_sentence_label"])
      nsp_w = jnp.ones_like(nsp) if rows is None else rows
      weights = weights if rows is None else weights * rows[:, None]
      correct = (jnp.argmax(mlm_logits, -1) == batch["masked_labels"]) * weights
      nsp_correct = (jnp.argmax(nsp_logits, -1) == batch["next_sentence_label"]) * nsp_w
      return {"main": (losses, weights), "nsp": (nsp, nsp_w), "correct": correct.sum(),
              "nsp_correct": nsp_correct.sum()}
    weights = batch["target_mask"].astype(jnp.float32)
    weights = weights if rows is None else weights * rows[:, None]
    nll = objective.token_cross_entropy(outputs, batch["target_ids"])
    correct = (jnp.argmax(outputs, -1) == batch["target_ids"]) * weights
    return {"main": (nll, weights), "correct": correct.sum()}

  def make_loss_fn(self, graphdef):
    def loss_fn(params, model_state, batch, rng):
      model = merge_model(graphdef, params, model_state)
      outputs = self._forward(model, batch, train=True, rngs=nnx.Rngs(dropout=rng))
      terms = self._terms(outputs, batch)
      losses, weights = terms["main"]
      count = jnp.maximum(weights.sum(), 1.0)
      metrics = {"accuracy": terms["correct"] / count}
      if self.objective == "translation":
        smoothed = objective.label_smoothed_cross_entropy(outputs, batch["target_ids"], self.lm.label_smoothing)
        loss = objective.weighted_mean(smoothed, weights)
        metrics["nll"] = objective.weighted_mean(losses, weights)
      else:
        loss = objective.weighted_mean(losses, weights)
      if self.objective == "bert":
        nsp, nsp_w = terms["nsp"]
        metrics |= {"mlm_loss": loss, "nsp_loss": nsp.mean(), "nsp_accuracy": terms["nsp_correct"] / nsp.shape[0]}
        loss = loss + nsp.mean()
      new_model_state = nnx.to_pure_dict(nnx.state(model, nnx.Not(nnx.Param)))
      return loss, (metrics, new_model_state)
    return loss_fn

  def make_eval_fn(self, graphdef):
    """Sums over the real rows; `count` is the number of target tokens (masked tokens for BERT), so the
    loop's eval/loss is the NLL per token and eval/accuracy the token accuracy."""
    def eval_fn(params, model_state, batch):
      model = merge_model(graphdef, params, model_state)
      terms = self._terms(self._forward(model, batch, train=False), batch, row_mask=batch["mask"])
      losses, weights = terms["main"]
      sums = {"loss": (losses * weights).sum(), "accuracy": terms["correct"], "count": weights.sum()}
      if self.objective == "bert":  # NSP is averaged over the examples, not the masked tokens
        nsp, nsp_w = terms["nsp"]
        sums |= {"nsp_loss": (nsp * nsp_w).sum(), "nsp_accuracy": terms["nsp_correct"],
                 "counts": {"nsp_loss": nsp_w.sum(), "nsp_accuracy": nsp_w.sum()}}
      return sums
    return eval_fn

  # ------------------------------------------------------------------ evaluation

  def after_eval(self, trainer, step: int, writer, source, metrics) -> dict:
    if self.objective == "causal":
      nll_sum = metrics["loss"] * metrics["count"]
      out = {"perplexity": math.exp(metrics["loss"])}
      if tokenizers_lossless(self.tokenizer):
        out["bits_per_byte"] = text_eval.bits_per_byte(nll_sum, source.num_bytes)
      return out
    if self.objective == "bert":
      return {}
    return self._bleu(trainer, source)

  def _bleu(self, trainer, source) -> dict:
    """sacreBLEU of beam-search translations of `source` (the first `lm.bleu_examples`, or all); the
    score's signature and the first 20 translations go to <workdir>/translations.txt."""
    n = len(source) if not self.lm.bleu_examples else min(int(self.lm.bleu_examples), len(source))
    if not n:
      return {}
    translate = self._translate_fn(trainer)
    batch_size = int(self.lm.decode_batch)
    hypotheses = []
    with sharding.use_mesh(trainer.mesh, trainer.rules):
      for start in range(0, n, batch_size):
        rows = [source[i] for i in range(start, min(start + batch_size, n))]
        pad = batch_size - len(rows)
        src = np.stack([r["source_ids"] for r in rows] + [rows[0]["source_ids"]] * pad)
        mask = np.stack([r["source_mask"] for r in rows] + [rows[0]["source_mask"]] * pad)
        tokens = np.asarray(translate(trainer.state.params, trainer.state.model_state, src, mask))
        hypotheses += [self.tokenizer.decode(t.tolist(), stop_at_eos=True) for t in tokens[:len(rows)]]
    references = [source.pairs[i][1] for i in range(n)]
    score, signature = text_eval.corpus_bleu(hypotheses, references)
    if trainer.is_main:
      with open(os.path.join(trainer.workdir, "translations.txt"), "w") as f:
        f.write(f"BLEU {score:.2f} on {n} examples, sacreBLEU {signature}\n\n")
        for i in range(min(n, 20)):
          f.write(f"src: {source.pairs[i][0]}\nref: {references[i]}\nhyp: {hypotheses[i]}\n\n")
    exact = float(np.mean([h == r for h, r in zip(hypotheses, references)]))
    return {"bleu": score, "exact_match": exact, "bleu_examples": n}

  def _translate_fn(self, trainer):
    if getattr(self, "_translate", None) is None:
      beam, alpha = int(self.lm.beam_size), float(self.lm.length_penalty)
      graphdef = trainer.graphdef

      @jax.jit
      def translate(params, model_state, src, mask):
        model = merge_model(graphdef, params, model_state)
        tokens, _ = model.translate(src, mask, beam_size=beam, alpha=alpha)
        return tokens
      self._translate = translate
    return self._translate


def tokenizers_lossless(tokenizer) -> bool:
  """Byte-level BPE decodes every byte back, so bits per byte are exact; WordPiece lower-cases and drops."""
  return "ByteLevel" in str(tokenizer.backend.pre_tokenizer)

