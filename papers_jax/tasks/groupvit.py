"""GroupViT (`config.task = "groupvit"`): CLIP's training with the multi-label loss, and zero-shot
semantic segmentation of the generated scenes (data/vqa_scenes.py) from group-to-text similarity.

Everything of tasks/clip.py (captions, tokenizer, retrieval and single-object zero-shot after each
evaluation), plus:
  - Nouns: the object phrases of the training caption ("red circle", "blue 7"; at most
    `groupvit.num_nouns`, in caption order), each written into `groupvit.noun_template` ("a {}.");
    a caption that names no object ("there are two shapes and one digit.") is its own one prompt.
  - Loss: CLIP's symmetric image-text loss plus `groupvit.multi_label_weight` × the multi-label loss of
    the image against its prompted nouns (objectives/contrastive.py `multi_label_contrastive_loss`).
  - Zero-shot segmentation after each evaluation: per pixel, the cosine of its final segments with
    each class text (models/groupvit.py `segment`); a pixel whose best cosine is below a threshold is
    background (the paper's rule). Two label sets: colours (background + COLOURS; a colour's text
    feature is the mean of "a {colour} {kind}." over every kind) and kinds (background + KINDS; the
    mean over the colours). The threshold is chosen on `groupvit.calibration_scenes` training scenes
    (the best colour mIoU over a grid of quantiles of their best cosines) and applied to the first
    `groupvit.segmentation_scenes` eval scenes: eval/seg_colour_miou, eval/seg_kind_miou (means over
    the classes present, objectives/segmentation.py), eval/seg_threshold, and two baselines on the same
    pixels: everything background (eval/seg_colour_miou_all_background) and bright pixels (max channel >
    100) as the most frequent training colour (eval/seg_colour_miou_bright_majority).
"""

import re

import jax
import ml_collections
import numpy as np
from flax import nnx

from papers_jax.core import sharding
from papers_jax.core.state import merge_model
from papers_jax.data import vqa_scenes
from papers_jax.errors import ConfigError
from papers_jax.evaluators import zero_shot
from papers_jax.objectives import contrastive
from papers_jax.objectives.segmentation import confusion_matrix, iou_from_confusion
from papers_jax.tasks.classification import normalize_images
from papers_jax.tasks.clip import CLIPTask, in_batch_top1

RANGES = (
    ("num_nouns", "[1, 64]"),
    ("multi_label_weight", "[0, inf)"),
    ("segmentation_scenes", "[1, inf)"),
    ("calibration_scenes", "[1, inf)"),
)

_PHRASE = re.compile(r"\b(" + "|".join(vqa_scenes.COLOURS) + r") (" + "|".join(vqa_scenes.KINDS) + r")\b")


def default_config(**overrides) -> ml_collections.ConfigDict:
  """`config.groupvit`, the fields this task reads (besides config.clip's)."""
  return ml_collections.ConfigDict(dict(num_nouns=4, noun_template="a {}.", multi_label_weight=1.0,
                                        segmentation_scenes=200, calibration_scenes=64) | overrides)


def caption_nouns(caption: str, limit: int) -> list[str]:
  """The distinct object phrases of a scene caption in order ("red circle", "blue 7"), at most `limit`."""
  out = []
  for m in _PHRASE.finditer(caption):
    if m.group(0) not in out:
      out.append(m.group(0))
  return out[:limit]


def threshold_predictions(sims, threshold):
  """(..., K) per-pixel similarities → labels: 0 (background) where the best is below `threshold`, else 1 + argmax."""
  return np.where(sims.max(-1) >= threshold, 1 + sims.argmax(-1), 0)


def miou(predictions, labels, num_classes: int) -> float:
  return iou_from_confusion(confusion_matrix(predictions, labels, num_classes))["miou"]


class GroupViTTask(CLIPTask):
  """CLIP's task with GroupViT's multi-label loss and zero-shot segmentation (module docstring)."""

  def __init__(self, config):
    super().__init__(config)
    self.gv = config.groupvit
    if config.data.name != "vqa_scenes":
      raise ConfigError(f"task groupvit reads data.name='vqa_scenes' (captions and masks), got {config.data.name!r}")
    if "{}" not in self.gv.noun_template:
      raise ConfigError(f"groupvit.noun_template must contain '{{}}', got {self.gv.noun_template!r}")

  def preprocess(self, train: bool):
    """CLIP's example plus "noun_tokens" (num_nouns, T) and "noun_valid" (num_nouns,) of the drawn caption."""
    image_fn, k = self.image_preprocess(train), int(self.gv.num_nouns)

    def fn(example, rng):
      out = image_fn(example, rng)
      caption = self.caption(example, rng, train=train)
      nouns = [self.gv.noun_template.format(n) for n in caption_nouns(caption, k)] or [caption]
      tokens = self.tokenizer([caption] + nouns)
      out["tokens"] = tokens[0]
      out["noun_tokens"] = np.zeros((k, tokens.shape[1]), np.int32)
      out["noun_tokens"][:len(nouns)] = tokens[1:]
      out["noun_valid"] = np.arange(k) < len(nouns)
      return out

    return fn

  def make_loss_fn(self, graphdef):
    weight = float(self.gv.multi_label_weight)

    def loss_fn(params, model_state, batch, rng):
      model = merge_model(graphdef, params, model_state)
      rngs = nnx.Rngs(dropout=rng)
      image = model.encode_image(normalize_images(batch["image"], self.mean, self.std), train=True, rngs=rngs)
      text = model.encode_text(batch["tokens"], train=True, rngs=rngs)
      b, k, t = batch["noun_tokens"].shape
      nouns = model.encode_text(batch["noun_tokens"].reshape(b * k, t), train=True, rngs=rngs).reshape(b, k, -1)
      scale = model.temperature_scale()
      image_text = contrastive.clip_loss(image, text, scale)
      multi_label = contrastive.multi_label_contrastive_loss(image, nouns, batch["noun_valid"].astype(bool), scale)
      loss = image_text + weight * multi_label
      metrics = {"temperature": scale, "i2t_top1": in_batch_top1(image, text, batch["label"]),
                 "image_text_loss": image_text, "multi_label_loss": multi_label}
      new_model_state = nnx.to_pure_dict(nnx.state(model, nnx.Not(nnx.Param)))
      return loss, (metrics, new_model_state)

    return loss_fn

  # ------------------------------------------------------------------ zero-shot segmentation
  def _segmenter(self, trainer):
    if "segment" not in self._jitted:
      graphdef, mean, std = trainer.graphdef, self.mean, self.std

      def fn(params, model_state, images, text_features):
        model = merge_model(graphdef, params, model_state)
        return model.segment(normalize_images(images, mean, std), text_features)

      self._jitted["segment"] = jax.jit(fn, out_shardings=sharding.replicated(trainer.mesh))
    state = trainer.state
    return lambda images, feats: self._jitted["segment"](state.params, state.model_state, images, feats)

  def class_features(self, encode_text):
    """(colour rows (4, D), kind rows (13, D)): prompt-ensembled text features of the two label sets."""
    colours, kinds = tuple(vqa_scenes.COLOURS), vqa_scenes.KINDS
    colour_rows = zero_shot.classifier_weights(encode_text, self.tokenizer, colours,
                                               [f"a {{}} {k}." for k in kinds])
    kind_rows = zero_shot.classifier_weights(encode_text, self.tokenizer, kinds, [f"a {c} {{}}." for c in colours])
    return colour_rows, kind_rows

  def similarities(self, segment, images, rows) -> np.ndarray:
    batch = int(self.clip.feature_batch)
    out = []
    for start in range(0, len(images), batch):
      chunk = images[start:start + batch]
      pad = batch - len(chunk)
      if pad:
        chunk = np.concatenate([chunk, np.repeat(chunk[:1], pad, axis=0)])
      out.append(np.asarray(segment(chunk, rows), np.float32)[:batch - pad])
    return np.concatenate(out)

  def segmentation_scores(self, segment, encode_text) -> dict:
    colour_rows, kind_rows = self.class_features(encode_text)
    rows = np.concatenate([colour_rows, kind_rows])
    nc = len(colour_rows)
    # The background threshold: the best colour mIoU on training scenes over quantiles of their best cosines.
    images, colour_maps, _ = vqa_scenes.semantic_labels(self.config.data.train_split, int(self.gv.calibration_scenes))
    sims = self.similarities(segment, images, rows)[..., :nc]
    candidates = np.quantile(sims.max(-1), np.linspace(0.0, 0.99, 100))
    scores = [miou(threshold_predictions(sims, c), colour_maps, nc + 1) for c in candidates]
    threshold = float(candidates[int(np.argmax(scores))])
    # Majority training colour for the bright-pixel baseline.
    majority = 1 + int(np.argmax(np.bincount(colour_maps[colour_maps > 0] - 1, minlength=nc)))

    images, colour_maps, kind_maps = vqa_scenes.semantic_labels(self.config.data.eval_split,
                                                                int(self.gv.segmentation_scenes))
    sims = self.similarities(segment, images, rows)
    bright = images.max(-1) > 100
    return {"seg_colour_miou": miou(threshold_predictions(sims[..., :nc], threshold), colour_maps, nc + 1),
            "seg_kind_miou": miou(threshold_predictions(sims[..., nc:], threshold), kind_maps, len(kind_rows) + 1),
            "seg_threshold": threshold,
            "seg_colour_miou_all_background": miou(np.zeros_like(colour_maps), colour_maps, nc + 1),
            "seg_colour_miou_bright_majority": miou(np.where(bright, majority, 0), colour_maps, nc + 1)}

  def after_eval(self, trainer, step: int, writer, source, metrics) -> dict:
    out = super().after_eval(trainer, step, writer, source, metrics)
    _, encode_text = self._encoders(trainer)
    with sharding.use_mesh(trainer.mesh, trainer.rules):
      out |= self.segmentation_scores(self._segmenter(trainer), encode_text)
    return out
