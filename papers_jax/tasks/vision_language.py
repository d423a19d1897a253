"""ViLT pre-training and VQA fine-tuning (`config.task = "vision_language"`), Kim et al. 2021.

`config.vl.objective` selects the recipe:
  "pretrain"  each step runs the model twice on the batch: (1) masked LM with whole-word masking
              (15% of the caption's tokens, data/mlm.py) on the true image; (2) image-text matching
              on the unmasked caption with half of the images swapped for another example's
              (objectives/vision_language.py `itm_pairs`), plus the word-patch alignment loss (IPOT)
              on that pass's text and patch outputs. Loss = MLM + ITM + wpa_weight (0.1) × WPA, as the
              official code. Eval: eval/loss and its parts, eval/itm_accuracy (on fixed pairs),
              eval/mlm_accuracy; after each evaluation, with `vl.retrieval_images` = N > 1, image↔text
              retrieval (evaluators/retrieval.py) by the ITM match log-odds of every pair of the first N
              eval scenes and all of their captions, as ALBEF's evaluation (tasks/albef.py; an image→text
              hit is any of the image's captions): eval/{i2t,t2i}_r{1,5,10}, and on the same set
              eval/baseline_chance_* (the expected recall of a random ranking) and
              eval/baseline_nearest_caption_* (the captions of the nearest training image in pixels,
              ranked by bag-of-words cosine).
  "vqa"       the question and the image through the model, the pooled output into the VQA head,
              binary cross-entropy on the answer scores (one-hot here: a generated question has one
              answer; VQA v2's soft scores plug into the same loss). Eval: eval/accuracy (argmax over the
              answer vocabulary) and eval/accuracy_<type> per question type.
Start VQA from a pre-training run with `init_from=<run>/checkpoints/<step>/state` and
`init_skip=VQA_INIT_SKIP`; without it the same model trains from scratch (the baseline).

Data: `data.name = "vqa_scenes"` (data/vqa_scenes.py): captions for pre-training, questions for VQA.
Text: "[CLS] words [SEP]" padded to `vl.max_text_len`, by `vl.tokenizer` (a tokenizer.json) or, when
empty, a WordPiece tokenizer trained on the training captions and questions (deterministic, so the
pre-training and VQA runs train the same one; saved as <workdir>/tokenizer.json). Images: uint8,
normalised with data.mean / data.std; training images go through RandAugment (`vl.randaugment`, timm's
string) without colour inversion, as the paper (which also leaves out cutout, not among timm's ops).
"""

import dataclasses
import functools
import os

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from flax import nnx

from papers_jax import models
from papers_jax.core import sharding
from papers_jax.core.config import image_preprocessing
from papers_jax.core.state import merge_model
from papers_jax.data import mlm, tokenizers, vqa_scenes
from papers_jax.data.randaugment import RandAugment
from papers_jax.errors import ConfigError
from papers_jax.evaluators import retrieval
from papers_jax.models import vilt
from papers_jax.objectives import lm
from papers_jax.objectives import vision_language as objective
from papers_jax.tasks.classification import normalize_images

OBJECTIVES = ("pretrain", "vqa")
# init_skip of a VQA run that starts from a pre-training checkpoint.
VQA_INIT_SKIP = ("^vqa_head/", "^mlm_head/", "^itm_head/")

RANGES = (
    ("max_text_len", "[4, 4096]"),
    ("mlm_prob", "(0, 1]"),
    ("max_predictions", "[1, 4096]"),
    ("wpa_weight", "[0, inf)"),
    ("retrieval_images", "[0, 100000]"),
)


def default_config(**overrides) -> ml_collections.ConfigDict:
  """`config.vl`, the fields this task reads."""
  return ml_collections.ConfigDict(dict(
      objective="pretrain", tokenizer="", vocab_size=256, max_text_len=24, mlm_prob=0.15, max_predictions=6,
      wpa_weight=0.1, randaugment="rand-m9-n2-mstd0.5", retrieval_images=0, retrieval_batch=500) | overrides)


class VisionLanguageTask:
  """Model + objectives + evaluation for `config.task = "vision_language"`."""

  def __init__(self, config):
    self.config = config
    self.vl = config.vl
    if self.vl.objective not in OBJECTIVES:
      raise ConfigError(f"vl.objective must be one of {OBJECTIVES}, got {self.vl.objective!r}")
    if config.data.name != "vqa_scenes":
      raise ConfigError(f"task vision_language reads data.name='vqa_scenes', got {config.data.name!r}")
    self.mean, self.std, _ = image_preprocessing(config)
    self.augment = (dataclasses.replace(RandAugment.parse(self.vl.randaugment), exclude=("Invert",))
                    if self.vl.randaugment else None)
    self._sources, self._jitted, self._baselines = {}, {}, None

  # ------------------------------------------------------------------ data
  @property
  def pretrain(self) -> bool:
    return self.vl.objective == "pretrain"

  def source(self, split: str):
    if split not in self._sources:
      self._sources[split] = vqa_scenes.VQAScenesSource(split, "captions" if self.pretrain else "vqa")
    return self._sources[split]

  @functools.cached_property
  def tokenizer(self) -> tokenizers.Tokenizer:
    if self.vl.tokenizer:
      return tokenizers.load(self.vl.tokenizer)
    return tokenizers.train_wordpiece(vqa_scenes.training_texts(), int(self.vl.vocab_size), min_frequency=1)

  @functools.cached_property
  def _specials(self) -> set[str]:
    return set(tokenizers.BERT_SPECIALS)

  def save_assets(self, workdir: str):
    self.tokenizer.save(os.path.join(workdir, tokenizers.FILE_NAME))

  def encode_texts(self, texts) -> tuple[np.ndarray, np.ndarray]:
    """"[CLS] text [SEP]" ids padded to max_text_len (B, T) and their attention mask."""
    tok, t = self.tokenizer, int(self.vl.max_text_len)
    ids = np.full((len(texts), t), tok.pad_id, np.int32)
    for row, text in zip(ids, texts):
      pieces = [tok.cls_id] + tok.encode(text)[:t - 2] + [tok.sep_id]
      row[:len(pieces)] = pieces
    return ids, (ids != tok.pad_id).astype(np.int32)

  def preprocess(self, train: bool):
    """example → {"image" uint8, "input_ids", "attention_mask", and the MLM inputs (pretrain) or the
    answer scores (vqa), "label"}."""
    fill = tuple(int(round(255 * m)) for m in self.mean) * (3 // len(self.mean))
    tok = self.tokenizer

    def fn(example, rng):
      image = example["image"]
      if train and self.augment is not None:
        image = self.augment(image, rng, fill)
      if self.pretrain:
        texts = example["texts"]
        text = texts[int(rng.integers(len(texts)))] if train else texts[0]
      else:
        text = example["question"]
      ids, mask = self.encode_texts([text])
      out = {"image": np.asarray(image, np.uint8), "input_ids": ids[0], "attention_mask": mask[0],
             "label": np.asarray(example["label"], np.int32)}
      if self.pretrain:
        words = mlm.word_ids([tok.id_to_token(int(i)) for i in ids[0]], self._specials)
        mask_rng = rng if train else np.random.default_rng(int(example["label"]))  # fixed masks for eval
        inputs, positions, labels, weights = mlm.whole_word_mask_tokens(
            ids[0], words, mask_rng, mask_id=tok.mask_id, vocab_size=tok.vocab_size,
            max_predictions=int(self.vl.max_predictions), prob=float(self.vl.mlm_prob))
        out |= {"mlm_input_ids": inputs, "mlm_positions": positions, "mlm_labels": labels, "mlm_weights": weights}
      else:
        out["answer_scores"] = np.eye(len(vqa_scenes.ANSWERS), dtype=np.float32)[int(example["answer"])]
        out["qtype"] = np.asarray(example["qtype"], np.int32)
      return out

    return fn

  # ------------------------------------------------------------------ model
  def build_model(self, rngs: nnx.Rngs) -> nnx.Module:
    kwargs = dict(self.config.model)
    name = kwargs.pop("name")
    if kwargs.get("dtype"):
      kwargs["dtype"] = jnp.dtype(kwargs["dtype"])
    else:
      kwargs.pop("dtype", None)
    kwargs.setdefault("vocab_size", self.tokenizer.vocab_size)
    kwargs.setdefault("max_text_len", int(self.vl.max_text_len))
    kwargs |= dict(itm_head=self.pretrain, mlm_head=self.pretrain,
                   num_answers=0 if self.pretrain else len(vqa_scenes.ANSWERS))
    model = models.create(name, rngs=rngs, **kwargs)
    if not isinstance(model, vilt.ViLT):
      raise ConfigError(f"model.name {name!r} is not a ViLT model (vilt_b32)")
    if model.vocab_size < self.tokenizer.vocab_size or model.max_text_len < int(self.vl.max_text_len):
      raise ConfigError(f"model vocab_size/max_text_len ({model.vocab_size}, {model.max_text_len}) are below the "
                        f"tokenizer's {self.tokenizer.vocab_size} / vl.max_text_len={self.vl.max_text_len}")
    return model

  def tokens_per_example(self) -> int:
    return int(self.vl.max_text_len)

  def forward_flops(self, model) -> float:
    """One forward pass per example (pre-training runs two: MLM and ITM)."""
    return models.forward_flops(model, text_len=int(self.vl.max_text_len)) * (2 if self.pretrain else 1)

  # ------------------------------------------------------------------ losses
  def _pretrain_terms(self, model, batch, key, *, train: bool, rngs=None):
    """Per-example MLM loss and weight, ITM loss, WPA distance, and the metrics' per-example values."""
    images = normalize_images(batch["image"], self.mean, self.std)
    t = batch["input_ids"].shape[1]
    kw = dict(train=train, rngs=rngs)
    x, _ = model.encode(batch["mlm_input_ids"], images, batch["attention_mask"], **kw)
    mlm_logits = model.mlm_logits(x[:, :t], batch["mlm_positions"])
    mlm_losses, mlm_weights = lm.masked_lm_loss(mlm_logits, batch["mlm_labels"], batch["mlm_weights"])
    itm_images, itm_labels = objective.itm_pairs(key, images)
    x, pooled = model.encode(batch["input_ids"], itm_images, batch["attention_mask"], **kw)
    itm_logits = model.itm_head(pooled).astype(jnp.float32)
    distances = objective.wpa_distance(x[:, :t], x[:, t:], batch["attention_mask"])
    mlm_correct = (jnp.argmax(mlm_logits, -1) == batch["mlm_labels"]).astype(jnp.float32) * mlm_weights
    return dict(mlm=mlm_losses * mlm_weights, mlm_weights=mlm_weights, itm=objective.itm_loss(itm_logits, itm_labels),
                distances=distances, itm_labels=itm_labels, mlm_correct=mlm_correct,
                itm_correct=(jnp.argmax(itm_logits, -1) == itm_labels).astype(jnp.float32))

  def _vqa_terms(self, model, batch, *, train: bool, rngs=None):
    images = normalize_images(batch["image"], self.mean, self.std)
    _, pooled = model.encode(batch["input_ids"], images, batch["attention_mask"], train=train, rngs=rngs)
    logits = model.vqa_head(pooled)
    correct = (jnp.argmax(logits, -1) == batch["label"]).astype(jnp.float32)
    return objective.vqa_bce(logits, batch["answer_scores"]), correct

  def make_loss_fn(self, graphdef):
    w = float(self.vl.wpa_weight)

    def loss_fn(params, model_state, batch, rng):
      model = merge_model(graphdef, params, model_state)
      k_itm, k_drop = jax.random.split(rng)
      rngs = nnx.Rngs(dropout=k_drop)
      if self.pretrain:
        r = self._pretrain_terms(model, batch, k_itm, train=True, rngs=rngs)
        mlm_loss = r["mlm"].sum() / jnp.maximum(r["mlm_weights"].sum(), 1.0)
        itm_loss, wpa = r["itm"].mean(), objective.wpa_loss(r["distances"], r["itm_labels"])
        loss = mlm_loss + itm_loss + w * wpa
        metrics = {"mlm_loss": mlm_loss, "itm_loss": itm_loss, "wpa_loss": wpa,
                   "itm_accuracy": r["itm_correct"].mean(),
                   "mlm_accuracy": r["mlm_correct"].sum() / jnp.maximum(r["mlm_weights"].sum(), 1.0)}
      else:
        losses, correct = self._vqa_terms(model, batch, train=True, rngs=rngs)
        loss, metrics = losses.mean(), {"accuracy": correct.mean()}
      new_model_state = nnx.to_pure_dict(nnx.state(model, nnx.Not(nnx.Param)))
      return loss, (metrics, new_model_state)

    return loss_fn

  def make_eval_fn(self, graphdef):
    """Sums over the real rows; the loop divides by `count` (or by the entry of `counts`)."""
    w = float(self.vl.wpa_weight)

    def eval_fn(params, model_state, batch):
      model = merge_model(graphdef, params, model_state)
      rows = batch["mask"].astype(jnp.float32)
      if self.pretrain:
        r = self._pretrain_terms(model, batch, jax.random.key(0), train=False)
        weights = r["mlm_weights"] * rows[:, None]
        sign = jnp.where(r["itm_labels"].astype(bool), 1.0, -1.0)
        mlm_mean = r["mlm"].sum(1) / jnp.maximum(r["mlm_weights"].sum(1), 1.0)
        per_example = mlm_mean + r["itm"] + w * sign * r["distances"]
        mlm_sum = (r["mlm"] * rows[:, None]).sum()
        return {"loss": (per_example * rows).sum(), "count": rows.sum(), "mlm_loss": mlm_sum,
                "mlm_accuracy": (r["mlm_correct"] * rows[:, None]).sum(), "itm_loss": (r["itm"] * rows).sum(),
                "itm_accuracy": (r["itm_correct"] * rows).sum(),
                "counts": {"mlm_loss": weights.sum(), "mlm_accuracy": weights.sum()}}
      losses, correct = self._vqa_terms(model, batch, train=False)
      out = {"loss": (losses * rows).sum(), "count": rows.sum(), "accuracy": (correct * rows).sum(), "counts": {}}
      for k, name in enumerate(vqa_scenes.QUESTION_TYPES):
        is_type = (batch["qtype"] == k).astype(jnp.float32) * rows
        out[f"accuracy_{name}"] = (correct * is_type).sum()
        out["counts"][f"accuracy_{name}"] = is_type.sum()
      return out

    return eval_fn

  # ------------------------------------------------------------------ after each evaluation
  def after_eval(self, trainer, step: int, writer, source, metrics) -> dict:
    """Retrieval by the ITM score (pre-training, vl.retrieval_images > 1): see the module docstring."""
    n = min(int(self.vl.retrieval_images), len(source)) if self.pretrain else 0
    if n < 2:
      return {}
    if "itm" not in self._jitted:
      graphdef, mean, std = trainer.graphdef, self.mean, self.std

      def score(params, model_state, images, ids, mask):
        model = merge_model(graphdef, params, model_state)
        _, pooled = model.encode(ids, normalize_images(images, mean, std), mask)
        logits = model.itm_head(pooled).astype(jnp.float32)
        return logits[:, 1] - logits[:, 0]

      self._jitted["itm"] = jax.jit(score, out_shardings=sharding.replicated(trainer.mesh))
    examples = [source[i] for i in range(n)]
    images = np.stack([e["image"] for e in examples])
    texts = [t for e in examples for t in e["texts"]]
    image_ids, text_ids = np.arange(n), np.repeat(np.arange(n), [len(e["texts"]) for e in examples])
    ids, mask = self.encode_texts(texts)
    pairs_i, pairs_t = np.repeat(np.arange(n), len(texts)), np.tile(np.arange(len(texts)), n)
    batch, scores = int(self.vl.retrieval_batch), []
    state = trainer.state
    with sharding.use_mesh(trainer.mesh, trainer.rules):
      for start in range(0, len(pairs_i), batch):
        i, t = pairs_i[start:start + batch], pairs_t[start:start + batch]
        pad = batch - len(i)
        i, t = np.concatenate([i, np.zeros(pad, int)]), np.concatenate([t, np.zeros(pad, int)])
        out = self._jitted["itm"](state.params, state.model_state, images[i], ids[t], mask[t])
        scores.append(np.asarray(out)[:batch - pad])
    scores = np.concatenate(scores).reshape(n, len(texts))  # [image, text]
    return retrieval.recall_from_scores(scores, image_ids, text_ids) | self.retrieval_baselines(
        trainer, images, texts, image_ids, text_ids)

  def retrieval_baselines(self, trainer, images, texts, image_ids, text_ids) -> dict:
    """baseline_chance_* and baseline_nearest_caption_* on the retrieval set (ALBEF's), computed once."""
    if self._baselines is None:
      from papers_jax.tasks.albef import nearest_caption_scores  # tasks/albef.py imports this module
      out = {f"baseline_chance_{k}": v for k, v in retrieval.chance_recall(image_ids, text_ids).items()}
      train = trainer.train_source
      train_images = np.stack([train.image(i) for i in range(len(train))])
      scores = nearest_caption_scores(train_images, [scene["captions"] for scene in train.scenes], images, texts)
      recall = retrieval.recall_from_scores(scores, image_ids, text_ids)
      self._baselines = out | {f"baseline_nearest_caption_{k}": v for k, v in recall.items()}
    return self._baselines
