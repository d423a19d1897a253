"""ALBEF pre-training and retrieval fine-tuning (`config.task = "albef"`), Li et al. 2021.

Train step (objectives/albef.py), on the global batch:
  ITC  online image and text features against [the batch's momentum features; the queue of earlier
       momentum features] (`model.queue_size`, 65,536 in the paper), temperature learnt (init 0.07, clipped
       to [0.001, 0.5]); momentum distillation mixes softmax(momentum similarities) into the targets with
       weight α (`albef.alpha`, 0.4), which rises linearly from 0 over `albef.alpha_warmup_steps` (the
       official code: over the first epoch); the batch's momentum features then enter the queues;
  ITM  the fused [CLS] of the B true pairs, of each text with a hard negative image and of each image with a
       hard negative text, the negatives drawn from the rest of the batch ∝ exp(ITC similarity);
  MLM  15% of the caption's tokens (data/mlm.py `mask_tokens`, at most `albef.max_predictions`) predicted
       through the text and fusion encoders given the image, with the momentum model's soft predictions
       mixed in with weight α. `albef.mlm_weight` = 0 leaves it out (retrieval fine-tuning, as the paper).
  Loss = ITC + ITM + mlm_weight × MLM. `post_update` moves the momentum model (the model's `*_m` EMA
  variables) towards the new online weights with `albef.momentum` (0.995) via optax, as the SSL teachers.

Evaluation: eval/loss is the in-batch ITC loss (padding rows left out, no queue, α = 0); eval/itm_accuracy on
the true pairs and on each text paired with the next example's image; eval/itm_pair_ranking, how often the own
image gets the higher match log-odds of the two (chance 50%, whatever the head's bias); eval/mlm_accuracy on fixed
masks. After each evaluation, on the first `albef.retrieval_images` eval scenes and all of their captions
(evaluators/retrieval.py; image→text counts a hit when any of the image's captions is in the top K):
  eval/itc_{i2t,t2i}_r{1,5,10}   ranked by the ITC similarity of the unimodal features;
  eval/itm_{i2t,t2i}_r{1,5,10}   the ITC top `albef.rerank_k` re-ranked by the ITM match logit (the
                                 official evaluation; the rest keep −100);
  eval/itm_itc_{i2t,t2i}_r{1,5,10}  the same top k re-ranked by the match logit + the ITC similarity (BLIP's
                                 official evaluation, which falls back on ITC where ITM cannot tell);
  eval/baseline_*                the same protocol for trivial rankings, computed once per run: chance
                                 (`chance_*`: the expected recall of a random ranking) and the nearest-caption
                                 baseline (`nearest_caption_*`): each eval image takes the captions of its
                                 nearest training image in pixel space, and a caption scores its best
                                 bag-of-words cosine with those.

Data and text: data.name = "vqa_scenes" captions, the tokenizer and text encoding of tasks/vision_language.py
(a WordPiece trained on the training texts unless `albef.tokenizer` names one; "[CLS] words [SEP]").
"""

import functools

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from flax import nnx

from papers_jax import models
from papers_jax.core import precision, sharding
from papers_jax.core.state import merge_model
from papers_jax.data import mlm, vqa_scenes
from papers_jax.errors import ConfigError
from papers_jax.evaluators import retrieval
from papers_jax.models import albef as albef_model
from papers_jax.objectives import albef as objective
from papers_jax.objectives import memory
from papers_jax.tasks.classification import normalize_images
from papers_jax.tasks.clip import masked_clip_losses
from papers_jax.tasks.ssl.common import entries_like, replace_entries
from papers_jax.tasks.vision_language import VisionLanguageTask

# The official pre-training normalisation (CLIP's mean and std).
ALBEF_MEAN, ALBEF_STD = albef_model.ALBEF_MEAN, albef_model.ALBEF_STD

RANGES = (
    ("max_text_len", "[4, 4096]"),
    ("mlm_prob", "(0, 1]"),
    ("max_predictions", "[1, 4096]"),
    ("alpha", "[0, 1]"),
    ("alpha_warmup_steps", "[0, inf)"),
    ("momentum", "[0, 1]"),
    ("queue_size", "[0, 16777216]"),
    ("mlm_weight", "[0, inf)"),
    ("retrieval_images", "[0, 100000]"),
    ("rerank_k", "[1, 100000]"),
    ("retrieval_batch", "[1, 1048576]"),
)


def default_config(**overrides) -> ml_collections.ConfigDict:
  """`config.albef`, the fields this task reads (the paper's values where it has them)."""
  return ml_collections.ConfigDict(dict(
      tokenizer="", vocab_size=256, max_text_len=30, mlm_prob=0.15, max_predictions=6, alpha=0.4,
      alpha_warmup_steps=0, momentum=0.995, queue_size=65536, mlm_weight=1.0, retrieval_images=0, rerank_k=128,
      retrieval_batch=256) | overrides)


def bag_of_words(texts, vocabulary: dict) -> np.ndarray:
  """L2-normalised word counts (N, V) over `vocabulary` (word → column)."""
  out = np.zeros((len(texts), len(vocabulary)), np.float32)
  for row, text in zip(out, texts):
    for word in text.lower().replace(".", " ").replace(",", " ").split():
      if word in vocabulary:
        row[vocabulary[word]] += 1
  return out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)


def nearest_caption_scores(train_images, train_captions, images, texts) -> np.ndarray:
  """The nearest-caption baseline's (images × texts) scores: each image's nearest training image by
  pixel distance lends its captions; a text scores its best bag-of-words cosine with them."""
  vocabulary = {w: i for i, w in enumerate(sorted({w for ts in train_captions for t in ts
                                                    for w in t.lower().replace(".", " ").replace(",", " ").split()}))}
  a = train_images.reshape(len(train_images), -1).astype(np.float32)
  b = images.reshape(len(images), -1).astype(np.float32)
  distances = (b * b).sum(1)[:, None] - 2 * b @ a.T + (a * a).sum(1)[None, :]
  nearest = np.argmin(distances, axis=1)
  text_bows = bag_of_words(texts, vocabulary)
  scores = np.zeros((len(images), len(texts)), np.float32)
  for i, j in enumerate(nearest):
    scores[i] = (bag_of_words(train_captions[j], vocabulary) @ text_bows.T).max(0)
  return scores


class ALBEFTask(VisionLanguageTask):
  """Model + objectives + evaluation for `config.task = "albef"`; data and text as ViLT's task."""

  def __init__(self, config):
    self.config = config
    self.vl = self.a = config.albef
    if config.data.name != "vqa_scenes":
      raise ConfigError(f"task albef reads data.name='vqa_scenes', got {config.data.name!r}")
    from papers_jax.core.config import image_preprocessing
    self.mean, self.std, _ = image_preprocessing(config)
    self.augment = None
    self._sources, self._jitted, self._baselines = {}, {}, None

  @property
  def pretrain(self) -> bool:  # captions, not questions (VisionLanguageTask.source)
    return True

  def preprocess(self, train: bool):
    """example → {"image" uint8, "input_ids", "attention_mask", "mlm_input_ids", "mlm_positions",
    "mlm_labels", "mlm_weights", "label"}; a random caption of the scene for training, its first otherwise."""
    tok = self.tokenizer
    specials = np.asarray([tok.pad_id, tok.cls_id, tok.sep_id])
    size = int(self.config.data.image_size)

    def fn(example, rng):
      image = np.asarray(example["image"], np.uint8)
      if image.shape[0] != size:  # the paper's 256 px model on the 64 px scenes (configs/albef/paper.py)
        from PIL import Image
        image = np.asarray(Image.fromarray(image).resize((size, size), Image.BILINEAR))
      texts = example["texts"]
      text = texts[int(rng.integers(len(texts)))] if train else texts[0]
      ids, mask = self.encode_texts([text])
      mask_rng = rng if train else np.random.default_rng(int(example["label"]))  # fixed masks for eval
      inputs, positions, labels, weights = mlm.mask_tokens(
          ids[0], ~np.isin(ids[0], specials), mask_rng, mask_id=tok.mask_id, vocab_size=tok.vocab_size,
          max_predictions=int(self.a.max_predictions), prob=float(self.a.mlm_prob))
      return {"image": image, "input_ids": ids[0], "attention_mask": mask[0],
              "mlm_input_ids": inputs, "mlm_positions": positions, "mlm_labels": labels, "mlm_weights": weights,
              "label": np.asarray(example["label"], np.int32)}

    return fn

  # ------------------------------------------------------------------ model
  def build_model(self, rngs: nnx.Rngs) -> nnx.Module:
    name, kwargs = precision.model_kwargs(self.config)
    kwargs.setdefault("vocab_size", self.tokenizer.vocab_size)
    kwargs |= dict(momentum=True, queue_size=int(self.a.queue_size))
    model = models.create(name, rngs=rngs, **kwargs)
    if not isinstance(model, albef_model.ALBEF):
      raise ConfigError(f"model.name {name!r} is not an ALBEF model ({', '.join(albef_model.VARIANTS)})")
    positions = model.text_encoder.embeddings.max_positions
    if model.vocab_size < self.tokenizer.vocab_size or positions < int(self.a.max_text_len):
      raise ConfigError(f"model vocab_size/max_position_embeddings ({model.vocab_size}, {positions}) are below the "
                        f"tokenizer's {self.tokenizer.vocab_size} / albef.max_text_len={self.a.max_text_len}")
    return model

  def tokens_per_example(self) -> int:
    return int(self.a.max_text_len)

  def forward_flops(self, model) -> float:
    """The training forward per example: online and momentum ViT, online and momentum text encoder on the
    caption, fusion on 3 ITM pairs, and with MLM the masked caption through both models' text encoder,
    fusion and MLM head (at max_predictions positions)."""
    t, p = int(self.a.max_text_len), int(self.a.max_predictions)
    flops = 2 * albef_model.image_encoder_flops(model) + 2 * albef_model.text_encoder_flops(model, t)
    flops += 3 * albef_model.fusion_flops(model, t)
    if float(self.a.mlm_weight):
      d = model.hidden_size
      flops += 2 * (albef_model.text_encoder_flops(model, t) + albef_model.fusion_flops(model, t)
                    + 2 * p * d * d + 2 * p * d * model.vocab_size)
    return float(flops)

  # ------------------------------------------------------------------ losses
  def make_loss_fn(self, graphdef):
    a = self.a

    def loss_fn(params, model_state, batch, rng):
      model = merge_model(graphdef, params, model_state)
      k_neg, k_drop = jax.random.split(rng)
      kw = dict(train=True, rngs=nnx.Rngs(dropout=k_drop))
      images = normalize_images(batch["image"], self.mean, self.std)
      ids, mask = batch["input_ids"], batch["attention_mask"]
      b = ids.shape[0]
      alpha = objective.distill_alpha(model.step[...], float(a.alpha), int(a.alpha_warmup_steps))
      image_embeds, image_feat = model.encode_image(images, **kw)
      text_embeds, text_feat = model.encode_text(ids, mask, **kw)
      image_embeds_m, image_feat_m = model.encode_image(images, momentum=True)
      _, text_feat_m = model.encode_text(ids, mask, momentum=True)
      queues = ((model.image_queue[...], model.text_queue[...]) if model.queue_size else
                (jnp.zeros((0, model.embed_dim)), jnp.zeros((0, model.embed_dim))))
      itc, sim_i2t, sim_t2i = objective.itc_loss(image_feat, text_feat, image_feat_m, text_feat_m, *queues,
                                                 model.temperature(), alpha)
      same_text = jnp.all(ids[:, None, :] == ids[None, :, :], axis=-1)
      neg_text, neg_image = objective.sample_hard_negatives(k_neg, sim_i2t, sim_t2i, same_text)
      itm_mask = jnp.concatenate([mask, mask, mask[neg_text]])
      fused = model.fuse(jnp.concatenate([text_embeds, text_embeds, text_embeds[neg_text]]), itm_mask,
                         jnp.concatenate([image_embeds, image_embeds[neg_image], image_embeds]), **kw)
      itm_logits = model.itm_logits(fused, itm_mask)
      labels = objective.itm_labels(b)
      itm = objective.itm_loss(itm_logits, labels)
      loss = itc + itm
      itm_correct = jnp.argmax(itm_logits, -1) == labels
      metrics = {"itc_loss": itc, "itm_loss": itm, "temperature": model.temperature(), "alpha": alpha,
                 "itm_accuracy": jnp.mean(itm_correct), "itm_positive_accuracy": jnp.mean(itm_correct[:b]),
                 "i2t_top1": jnp.mean(jnp.argmax(sim_i2t[:, :b], -1) == jnp.arange(b))}
      if float(a.mlm_weight):
        mlm_args = (batch["mlm_input_ids"], mask)
        logits = model.mlm_logits(*mlm_args, image_embeds, batch["mlm_positions"], **kw)
        logits_m = model.mlm_logits(*mlm_args, image_embeds_m, batch["mlm_positions"], momentum=True)
        mlm_loss = objective.mlm_distill_loss(logits, batch["mlm_labels"], batch["mlm_weights"], logits_m, alpha)
        loss = loss + float(a.mlm_weight) * mlm_loss
        weights = batch["mlm_weights"]
        metrics |= {"mlm_loss": mlm_loss, "mlm_accuracy": jnp.sum((jnp.argmax(logits, -1) == batch["mlm_labels"])
                                                                  * weights) / jnp.maximum(weights.sum(), 1.0)}
      if model.queue_size:
        pointer = model.queue_ptr[...]
        model.image_queue[...], new_pointer = memory.enqueue(model.image_queue[...], pointer, image_feat_m)
        model.text_queue[...], _ = memory.enqueue(model.text_queue[...], pointer, text_feat_m)
        model.queue_ptr[...] = new_pointer
      new_model_state = nnx.to_pure_dict(nnx.state(model, nnx.Not(nnx.Param)))
      return loss, (metrics, new_model_state)

    return loss_fn

  @property
  def post_update(self):
    m = float(self.a.momentum)

    def update(params, model_state, step):
      """The momentum model ← m · momentum + (1 − m) · online (optax.incremental_update), and the step count."""
      model_state = dict(model_state)
      for name in albef_model.MOMENTUM_ENCODERS:
        target = model_state[f"{name}_m"]
        averaged = memory.ema_update(entries_like(target, params[name]), params[name], m)
        model_state[f"{name}_m"] = replace_entries(target, averaged)
      model_state["step"] = (step + 1).astype(jnp.int32)
      return model_state

    return update

  def make_eval_fn(self, graphdef):
    """Sums over the real rows; the loop divides by `count` (or by the entry of `counts`)."""

    def eval_fn(params, model_state, batch):
      model = merge_model(graphdef, params, model_state)
      rows = batch["mask"].astype(jnp.float32)
      images = normalize_images(batch["image"], self.mean, self.std)
      ids, mask = batch["input_ids"], batch["attention_mask"]
      image_embeds, image_feat = model.encode_image(images)
      text_embeds, text_feat = model.encode_text(ids, mask)
      losses = masked_clip_losses(image_feat, text_feat, 1.0 / model.temperature(), batch["mask"].astype(bool))
      shifted = jnp.roll(image_embeds, -1, axis=0)  # each text with the next example's image
      fused = model.fuse(jnp.concatenate([text_embeds, text_embeds]), jnp.concatenate([mask, mask]),
                         jnp.concatenate([image_embeds, shifted]))
      labels = objective.itm_labels(ids.shape[0])[:2 * ids.shape[0]]
      itm_logits = model.itm_logits(fused, jnp.concatenate([mask, mask]))
      correct = (jnp.argmax(itm_logits, -1) == labels).astype(jnp.float32)
      pair_rows = jnp.concatenate([rows, rows * jnp.roll(rows, -1)])
      # Ranking, not calibration: does the own image get the higher match log-odds than the next scene's?
      odds = (itm_logits[:, 1] - itm_logits[:, 0]).reshape(2, -1)
      ranked = (odds[0] > odds[1]).astype(jnp.float32) * pair_rows[ids.shape[0]:]
      logits = model.mlm_logits(batch["mlm_input_ids"], mask, image_embeds, batch["mlm_positions"])
      weights = batch["mlm_weights"] * rows[:, None]
      mlm_correct = (jnp.argmax(logits, -1) == batch["mlm_labels"]).astype(jnp.float32) * weights
      return {"loss": losses.sum(), "count": rows.sum(), "itm_accuracy": (correct * pair_rows).sum(),
              "itm_pair_ranking": ranked.sum(), "mlm_accuracy": mlm_correct.sum(),
              "counts": {"itm_accuracy": pair_rows.sum(), "itm_pair_ranking": pair_rows[ids.shape[0]:].sum(),
                         "mlm_accuracy": weights.sum()}}

    return eval_fn

  # ------------------------------------------------------------------ retrieval after each evaluation
  def _retrieval_fns(self, trainer):
    if "retrieval" not in self._jitted:
      graphdef, mean, std = trainer.graphdef, self.mean, self.std
      rep = sharding.replicated(trainer.mesh)

      def image_fn(params, model_state, images):
        model = merge_model(graphdef, params, model_state)
        return model.encode_image(normalize_images(images, mean, std))

      def text_fn(params, model_state, ids, mask):
        return merge_model(graphdef, params, model_state).encode_text(ids, mask)

      def itm_fn(params, model_state, text_embeds, mask, image_embeds):
        model = merge_model(graphdef, params, model_state)
        return model.itm_logits(model.fuse(text_embeds, mask, image_embeds), mask)[:, 1]

      self._jitted["retrieval"] = tuple(jax.jit(f, out_shardings=rep) for f in (image_fn, text_fn, itm_fn))
    return self._jitted["retrieval"]

  @staticmethod
  def _in_batches(fn, arrays, batch: int):
    """fn over fixed-size row batches of `arrays` (the last one padded), outputs concatenated (numpy)."""
    n, outs = len(arrays[0]), []
    for start in range(0, n, batch):
      chunk = [x[start:start + batch] for x in arrays]
      pad = batch - len(chunk[0])
      chunk = [np.concatenate([x, np.repeat(x[:1], pad, axis=0)]) if pad else x for x in chunk]
      out = fn(*chunk)
      outs.append(jax.tree.map(lambda y: np.asarray(y)[:batch - pad], out))
    return jax.tree.map(lambda *ys: np.concatenate(ys), *outs)

  def retrieval_set(self, source):
    """(images (N, H, W, C) uint8, texts, image_ids (N,), text_ids) of the first retrieval_images scenes."""
    n = min(int(self.a.retrieval_images), len(source))
    examples = [source[i] for i in range(n)]
    images = np.stack([e["image"] for e in examples])
    texts = [t for e in examples for t in e["texts"]]
    text_ids = np.repeat(np.arange(n), [len(e["texts"]) for e in examples])
    return images, texts, np.arange(n), text_ids

  def baselines(self, trainer, images, texts, image_ids, text_ids) -> dict:
    """Chance and nearest-caption recall (module docstring), computed once."""
    if self._baselines is None:
      ks = (1, 5, 10)
      out = {f"baseline_chance_{k}": v for k, v in retrieval.chance_recall(image_ids, text_ids, ks).items()}
      train = trainer.train_source
      train_images = np.stack([train.image(i) for i in range(len(train))])
      train_captions = [scene["captions"] for scene in train.scenes]
      scores = nearest_caption_scores(train_images, train_captions, images, texts)
      recall = retrieval.recall_from_scores(scores, image_ids, text_ids, ks)
      self._baselines = out | {f"baseline_nearest_caption_{k}": v for k, v in recall.items()}
    return self._baselines

  def after_eval(self, trainer, step: int, writer, source, metrics) -> dict:
    if int(self.a.retrieval_images) < 2:
      return {}
    image_fn, text_fn, itm_fn = self._retrieval_fns(trainer)
    images, texts, image_ids, text_ids = self.retrieval_set(source)
    ids, mask = self.encode_texts(texts)
    state, batch = trainer.state, int(self.a.retrieval_batch)
    p, s = state.params, state.model_state
    with sharding.use_mesh(trainer.mesh, trainer.rules):
      image_embeds, image_feat = self._in_batches(lambda x: image_fn(p, s, x), [images], batch)
      text_embeds, text_feat = self._in_batches(lambda i, m: text_fn(p, s, i, m), [ids, mask], batch)
      itc = image_feat @ text_feat.T
      out = {f"itc_{k}": v for k, v in retrieval.recall_from_scores(itc, image_ids, text_ids).items()}

      def itm_scores(text_idx, image_idx):
        return self._in_batches(lambda t, m, x: itm_fn(p, s, t, m, x),
                                [text_embeds[text_idx], mask[text_idx], image_embeds[image_idx]], batch)

      i2t, t2i = retrieval.rerank_with_itm(itc, itm_scores, int(self.a.rerank_k))
      out |= {f"itm_{k}": v for k, v in retrieval.recall_from_scores(i2t, image_ids, text_ids, t2i_scores=t2i).items()}
      i2t, t2i = retrieval.add_itc(i2t, t2i, itc)
      out |= {f"itm_itc_{k}": v
              for k, v in retrieval.recall_from_scores(i2t, image_ids, text_ids, t2i_scores=t2i).items()}
    return out | self.baselines(trainer, images, texts, image_ids, text_ids)
