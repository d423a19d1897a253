"""GLIP (`config.task = "glip"`): detection as phrase grounding on the generated image-text scenes.

Data: `data.name = "vqa_scenes"` read as a detection source (data/vqa_scenes.py DetectionScenesSource): 64×64
scenes of 2-4 objects, each a coloured shape or tinted digit (13 kinds, 4 colours) with its box and phrase.

Prompts (a word-level vocabulary of the scenes' words, `WORDS`; one token per word):
  grounding  the phrases of the scene's objects ("red circle", each distinct pair once) and random absent
             colour-kind phrases (negatives) up to `glip.num_phrases`, shuffled, joined by ". ": each box's
             positive tokens are its phrase's colour and kind words;
  detection  the class names "circle. square. triangle. 0. 1. ... 9.": each box's positive token is its kind.
Training uses `glip.train_prompt` ("grounding", or "detection" for the supervised reference); the eval step's
loss uses the detection prompt. The loss is objectives/glip.py's: ATSS assignment, the word-region alignment
focal loss over tokens, GIoU box regression and centerness.

After each evaluation (`after_eval`), COCO box mAP (evaluators/coco.py) of the test scenes detected with a
prompt: `det_` metrics with the detection prompt (13 classes), `pair_` metrics with the prompt of all 52
colour-kind phrases (52 classes). A class's score at an anchor is the mean of its tokens' sigmoid alignment
scores (the official SCORE_AGG "MEAN"), times the sigmoid centerness, square-rooted (ATSS's inference); the
best `pre_nms_top_n` (anchor, class) pairs over `score_threshold` go through per-class NMS at `nms_iou` and the
best `max_detections` are kept. A PNG of the first `vis_examples` test scenes' detections (detection prompt)
goes to <workdir>/detections/step_<step>.png and TensorBoard. `glip.eval_scenes` > 0 evaluates on the first
that many test scenes only (the smoke run).
"""

import os

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from flax import nnx

from papers_jax import models
from papers_jax.core import precision, sharding
from papers_jax.core.config import image_preprocessing
from papers_jax.core.state import merge_model
from papers_jax.data import pipeline, scenes, vqa_scenes
from papers_jax.errors import ConfigError
from papers_jax.evaluators import coco
from papers_jax.objectives import glip as objective
from papers_jax.ops import boxes as box_ops
from papers_jax.tasks.classification import normalize_images
from papers_jax.tasks.detection import detection_preprocess, draw_detections

COLOURS = tuple(vqa_scenes.COLOURS)
KINDS = vqa_scenes.KINDS
PAIRS = tuple((c, k) for c in COLOURS for k in KINDS)  # pair index = colour index · 13 + kind index
WORDS = ("[PAD]", "[CLS]", "[SEP]", ".") + COLOURS + KINDS
WORD_IDS = {w: i for i, w in enumerate(WORDS)}
PROMPTS = ("grounding", "detection")

RANGES = (
    ("max_boxes", "[1, 100]"),
    ("num_phrases", "[1, 52]"),
    ("text_len", "[4, 512]"),
    ("topk", "[1, 100]"),
    ("focal_alpha", "-1 | [0, 1]"),
    ("focal_gamma", "[0, 10]"),
    ("*_weight", "[0, 1000]"),
    ("score_threshold", "[0, 1]"),
    ("nms_iou", "[0, 1]"),
    ("pre_nms_top_n", "[1, 100000]"),
    ("max_detections", "[1, 10000]"),
    ("vis_examples", "[0, 1024]"),
    ("vis_score", "[0, 1]"),
    ("eval_scenes", "[0, 100000]"),
)


def default_config(**overrides) -> ml_collections.ConfigDict:
  """`config.glip`: ATSS's topk 9, reg weight 2; the focal loss's 0.25 / 2; ATSS's inference (threshold 0.05,
  NMS 0.6, 100 detections)."""
  return ml_collections.ConfigDict(dict(
      max_boxes=4, train_prompt="grounding", num_phrases=8, text_len=32, pair_eval=True, topk=9, focal_alpha=0.25,
      focal_gamma=2.0, alignment_weight=1.0, reg_weight=2.0, centerness_weight=1.0, score_threshold=0.05,
      nms_iou=0.6, pre_nms_top_n=300, max_detections=100, vis_examples=8, vis_score=0.3, eval_scenes=0) | overrides)


def encode_prompt(phrases, text_len: int):
  """Phrases (tuples of words) → (ids (text_len,), mask (text_len,), each phrase's token positions without
  its "."): [CLS] phrase . phrase . ... [SEP], padded."""
  ids, spans = [WORD_IDS["[CLS]"]], []
  for phrase in phrases:
    spans.append(list(range(len(ids), len(ids) + len(phrase))))
    ids += [WORD_IDS[w] for w in phrase] + [WORD_IDS["."]]
  ids.append(WORD_IDS["[SEP]"])
  if len(ids) > text_len:
    raise ConfigError(f"a prompt of {len(phrases)} phrases takes {len(ids)} tokens, more than glip.text_len="
                      f"{text_len}; raise glip.text_len (and model.max_text_len) or lower glip.num_phrases")
  mask = np.zeros((text_len,), bool)
  mask[:len(ids)] = True
  return np.array(ids + [0] * (text_len - len(ids)), np.int32), mask, spans


def prompt_length(phrases) -> int:
  """Tokens of a prompt: [CLS], each phrase's words and its ".", [SEP]."""
  return 2 + sum(len(p) + 1 for p in phrases)


def class_token_matrix(spans, text_len: int) -> np.ndarray:
  """(text_len, classes): column c averages class c's tokens (the MEAN aggregation of token scores)."""
  out = np.zeros((text_len, len(spans)), np.float32)
  for c, span in enumerate(spans):
    out[span, c] = 1.0 / len(span)
  return out


DETECTION_PHRASES = tuple((k,) for k in KINDS)
PAIR_PHRASES = PAIRS


class GroundingSource:
  """DetectionScenesSource with each object's colour index ("colours") in the example; `limit` > 0 keeps the
  first `limit` scenes."""

  def __init__(self, split: str, limit: int = 0):
    self.base = vqa_scenes.DetectionScenesSource(split)
    self.class_names, self.num_classes = self.base.class_names, self.base.num_classes
    self.size = min(limit, len(self.base)) if limit > 0 else len(self.base)

  def __len__(self):
    return self.size

  def __getitem__(self, i):
    return self.base[i] | {"colours": self.base.colours(i)}


def glip_preprocess(image_size: int, max_boxes: int, text_len: int, *, prompt: str, num_phrases: int):
  """Per-example host transform: image, xyxy boxes in input pixels (padded to max_boxes with `box_valid`),
  the prompt's ids / mask and each box's positive tokens (`positive_map` (max_boxes, text_len))."""
  boxes_fn = detection_preprocess(image_size, max_boxes, train=False)

  def fn(example, rng):
    colours = np.asarray(example["colours"])[:max_boxes]
    out = boxes_fn(example, rng)
    cx, cy, w, h = (out.pop("boxes") * np.float32(image_size)).T
    out["boxes"] = np.where(out["box_valid"][:, None], np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], -1),
                            0).astype(np.float32)
    kinds = out["labels"][:len(colours)]
    if prompt == "detection" or rng is None:
      phrases = list(DETECTION_PHRASES)
      phrase_of = [int(k) for k in kinds]
    else:
      present = sorted({(COLOURS[int(c)], KINDS[int(k)]) for c, k in zip(colours, kinds)})
      absent = [p for p in PAIRS if p not in present]
      negatives = [absent[j] for j in rng.permutation(len(absent))[:max(num_phrases - len(present), 0)]]
      phrases = present + negatives
      phrases = [phrases[j] for j in rng.permutation(len(phrases))]
      phrase_of = [phrases.index((COLOURS[int(c)], KINDS[int(k)])) for c, k in zip(colours, kinds)]
    ids, mask, spans = encode_prompt(phrases, text_len)
    positive = np.zeros((max_boxes, text_len), bool)
    for j, p in enumerate(phrase_of):
      positive[j, spans[p]] = True
    return out | {"input_ids": ids, "text_mask": mask, "positive_map": positive}

  return fn


class GLIPTask:
  """Model + grounding loss + prompt-based mAP for `config.task = "glip"`."""

  def __init__(self, config):
    self.config = config
    self.cfg = config.glip
    if config.data.name != "vqa_scenes":
      raise ConfigError(f"task glip reads data.name='vqa_scenes' (objects with colours and phrases), got "
                        f"{config.data.name!r}")
    if self.cfg.train_prompt not in PROMPTS:
      raise ConfigError(f"glip.train_prompt={self.cfg.train_prompt!r}; choose one of {PROMPTS}")
    if config.data.image_size % 4:
      raise ConfigError(f"data.image_size={config.data.image_size} must be a multiple of 4 (the stem's stride)")
    max_text_len = config.model.get("max_text_len", 64)
    pair_len = prompt_length(PAIR_PHRASES) if self.cfg.pair_eval else 0
    for name, length in (("glip.text_len", int(self.cfg.text_len)),
                         ("the 52-phrase prompt of glip.pair_eval", pair_len),
                         ("the class-name prompt", prompt_length(DETECTION_PHRASES))):
      if length > max_text_len:
        raise ConfigError(f"{name} takes {length} tokens, more than model.max_text_len={max_text_len} (the text "
                          "encoder's positions); raise model.max_text_len")
    self.mean, self.std, _ = image_preprocessing(config)
    self.class_names = KINDS
    self.num_classes = len(KINDS)
    self._jitted = {}

  def source(self, split: str):
    return GroundingSource(split, self.cfg.eval_scenes if split == self.config.data.eval_split else 0)

  def build_model(self, rngs: nnx.Rngs) -> nnx.Module:
    name, kwargs = precision.model_kwargs(self.config)
    return models.create(name, rngs=rngs, **{"vocab_size": len(WORDS)} | kwargs)

  def forward_flops(self, model) -> float:
    """FLOPs per example: the model on one image of data.image_size and a prompt of glip.text_len tokens."""
    return models.forward_flops(model, img_size=int(self.config.data.image_size), seq_len=int(self.cfg.text_len))

  def preprocess(self, train: bool):
    c = self.cfg
    return glip_preprocess(self.config.data.image_size, c.max_boxes, c.text_len,
                           prompt=c.train_prompt if train else "detection", num_phrases=c.num_phrases)

  def _loss(self, model, batch, *, train: bool, rngs=None, valid=None):
    images = normalize_images(batch["image"], self.mean, self.std)
    out = model(images, batch["input_ids"], batch["text_mask"], train=train, rngs=rngs)
    c = self.cfg
    anchor_boxes = jnp.asarray(model.anchors(images.shape[1]))
    return objective.glip_loss(out, anchor_boxes, batch["boxes"], batch["box_valid"] if valid is None else valid,
                               batch["positive_map"], batch["text_mask"], topk=c.topk, alpha=c.focal_alpha,
                               gamma=c.focal_gamma, alignment_weight=c.alignment_weight, reg_weight=c.reg_weight,
                               centerness_weight=c.centerness_weight)

  def make_loss_fn(self, graphdef):
    def loss_fn(params, model_state, batch, rng):
      model = merge_model(graphdef, params, model_state)
      loss, parts = self._loss(model, batch, train=True, rngs=nnx.Rngs(dropout=rng))
      metrics = {k: parts[k] for k in ("loss_align", "loss_reg", "loss_centerness")}
      metrics["positives_per_box"] = parts["num_pos"] / jnp.maximum(batch["box_valid"].sum(), 1)
      new_model_state = nnx.to_pure_dict(nnx.state(model, nnx.Not(nnx.Param)))
      return loss, (metrics, new_model_state)
    return loss_fn

  def make_eval_fn(self, graphdef):
    def eval_fn(params, model_state, batch):
      model = merge_model(graphdef, params, model_state)
      real = batch["mask"].astype(bool)
      count = real.sum().astype(jnp.float32)
      loss, parts = self._loss(model, batch, train=False, valid=batch["box_valid"] & real[:, None])
      return {"loss": loss * count, "loss_align": parts["loss_align"] * count, "count": count}
    return eval_fn

  # ------------------------------------------------------------------ prompt-based detection
  def _predict_fn(self, trainer, tokens_to_classes: np.ndarray):
    key = (trainer, tokens_to_classes.shape)
    if key not in self._jitted:
      graphdef, mean, std, c = trainer.graphdef, self.mean, self.std, self.cfg

      def predict(params, model_state, images, input_ids, text_mask, classes_of_tokens):
        model = merge_model(graphdef, params, model_state)
        out = model(normalize_images(images, mean, std), input_ids, text_mask, train=False)
        return detect(out, classes_of_tokens, score_threshold=c.score_threshold, nms_iou=c.nms_iou,
                      pre_nms_top_n=c.pre_nms_top_n, max_detections=c.max_detections)
      self._jitted[key] = jax.jit(predict, out_shardings=sharding.replicated(trainer.mesh))
    return self._jitted[key]

  def predict(self, trainer, source, phrases, state=None):
    """Per image of `source`: (xyxy boxes in its pixels, scores, class indices into `phrases`), detected with
    the prompt of `phrases`."""
    state = trainer.state if state is None else state
    text_len = max(int(self.cfg.text_len), prompt_length(phrases))
    ids, mask, spans = encode_prompt(phrases, text_len)
    matrix = class_token_matrix(spans, text_len)
    predict = self._predict_fn(trainer, matrix)
    batch_size = self.config.batch_size // self.config.grad_accum_steps
    size = self.config.data.image_size
    out = []
    with sharding.use_mesh(trainer.mesh, trainer.rules):
      for local in pipeline.eval_batches(source, detection_preprocess(size, 1, train=False),
                                         global_batch=batch_size, process_index=jax.process_index(),
                                         process_count=jax.process_count()):
        n = len(local["image"])  # padded rows included
        text = {"input_ids": np.repeat(ids[None], n, 0), "text_mask": np.repeat(mask[None], n, 0)}
        batch = sharding.global_batch({"image": local["image"]} | text, trainer.mesh, trainer.rules)
        got = jax.device_get(predict(state.params, state.model_state, batch["image"], batch["input_ids"],
                                     batch["text_mask"], jnp.asarray(matrix)))
        for i in range(len(got["boxes"])):
          keep = got["keep"][i]
          h, w = local["orig_size"][i]
          scale = np.array([w / size, h / size, w / size, h / size])
          out.append((np.asarray(got["boxes"][i][keep], np.float64) * scale,
                      np.asarray(got["scores"][i][keep], np.float64), np.asarray(got["labels"][i][keep])))
    return out[:len(source)]

  def after_eval(self, trainer, step: int, writer, source, metrics) -> dict:
    if getattr(self, "_truth_of", None) is not source:  # the evaluated split's boxes, read once
      examples = [source[i] for i in range(len(source))]
      self._truth = [(e["boxes"], e["labels"], e["colours"]) for e in examples]
      self._truth_of = source
    truth = self._truth
    result = {}
    predictions = self.predict(trainer, source, DETECTION_PHRASES)
    det = coco.coco_map([t[0] for t in truth], [t[1] for t in truth], [p[0] for p in predictions],
                        [p[1] for p in predictions], [p[2] for p in predictions], num_classes=len(KINDS))
    result |= {f"det_{k}": v for k, v in det.items()}
    if self.cfg.pair_eval:
      pairs = self.predict(trainer, source, PAIR_PHRASES)
      pair = coco.coco_map([t[0] for t in truth], [t[2] * len(KINDS) + t[1] for t in truth],
                           [p[0] for p in pairs], [p[1] for p in pairs], [p[2] for p in pairs],
                           num_classes=len(PAIRS))
      result |= {f"pair_{k}": v for k, v in pair.items()}
    n = min(int(self.cfg.vis_examples), len(source))
    if n and trainer.is_main:
      picture = draw_detections([source[i]["image"] for i in range(n)], predictions[:n],
                                [(t[0], t[1]) for t in truth[:n]], self.class_names, min_score=self.cfg.vis_score)
      from papers_jax.evaluators.reconstruction import save_png
      save_png(picture, os.path.join(trainer.workdir, "detections", f"step_{step:06d}.png"))
      if writer is not None:
        writer.write_image(step, "glip/predictions", picture)
    return result


def class_scores(out, classes_of_tokens):
  """Model outputs → (B, A, K) detection scores: the mean sigmoid alignment score of each class's tokens,
  times the sigmoid centerness, square-rooted (ATSS)."""
  token_prob = jax.nn.sigmoid(out["logits"])
  cls = token_prob @ classes_of_tokens
  return jnp.sqrt(cls * jax.nn.sigmoid(out["centerness"])[..., None])


def detect(out, classes_of_tokens, *, score_threshold: float, nms_iou: float, pre_nms_top_n: int,
           max_detections: int):
  """Under jit: the best `pre_nms_top_n` (anchor, class) scores, per-class NMS → boxes (B, M, 4), scores,
  labels, keep (B, M) with M = max_detections."""
  scores = class_scores(out, classes_of_tokens)
  b, a, k = scores.shape
  top_scores, flat = jax.lax.top_k(scores.reshape(b, a * k), min(pre_nms_top_n, a * k))
  anchor, label = flat // k, flat % k
  boxes = jnp.take_along_axis(out["boxes"], anchor[..., None], axis=1)
  index, keep = box_ops.batched_nms(boxes, top_scores, label, iou_threshold=nms_iou, max_outputs=max_detections,
                                    score_threshold=score_threshold)
  safe = jnp.maximum(index, 0)
  return {"boxes": jnp.take_along_axis(boxes, safe[..., None], axis=1),
          "scores": jnp.take_along_axis(top_scores, safe, axis=1),
          "labels": jnp.take_along_axis(label, safe, axis=1), "keep": keep}
