"""Object detection (`config.task = "detection"`): set-prediction detectors (DETR, Deformable DETR and any model
of their form) and grid detectors (YOLOv1).

The model's output says which it is. A set-prediction model takes normalised NHWC images and returns
{"logits": (L, B, Q, K), "boxes": (L, B, Q, 4)}, one row per decoder layer (the last is the prediction;
"pred_logits" / "pred_boxes" are read too, and a 3-D output is one layer), boxes as normalised (cx, cy, w, h).
The loss is DETR's set loss with auxiliary losses at every layer (objectives/detection.py): the Hungarian
matching runs inside the jitted step, per image, on every backend. The class head decides the classification loss:
K = num_classes + 1 (no-object last) is DETR's softmax cross-entropy with the no-object weight,
K = num_classes is Deformable DETR's sigmoid focal loss; `detection.class_head` may name it instead.
A grid detector returns {"grid": (B, S, S, B·5 + C)} (models/yolo.py) and trains with YOLOv1's loss
(objectives/yolo.py: `detection.coord_weight` λcoord, `noobj_weight` λnoobj).

Data (data/scenes.py): the generated "shapes_scenes" / "digits_scenes" or a "coco" folder. Per example:
training flips (probability `flip_prob`), crops (probability `crop_prob`, each side a uniform
fraction in [crop_min_scale, 1]) and jitter (each side of the window moved by a uniform fraction in
[-jitter, jitter] of the image, padding outside with grey: YOLOv1's random scaling and translation)
keeping boxes and masks consistent, then every image is resized to data.image_size square, its exposure
and saturation scaled by random factors in [1/hsv_exposure, hsv_exposure] and [1/hsv_saturation,
hsv_saturation] (YOLOv1's HSV augmentation; 1 = off), and its objects padded to `detection.max_boxes`
with a `box_valid` mask.

Evaluation: the eval step's set loss (the mean over batches, weighted by their real examples), and
after it (`after_eval`) COCO box mAP (evaluators/coco.py: AP, AP50, AP75, APs/m/l, AR100) of the
final layer's predictions against the source's own boxes in original pixels: the softmax head gives
each query its most likely real class and that probability; the sigmoid head keeps the
`max_detections` best (query, class) scores, as Deformable DETR; a grid detector scores every
predictor's box for every class by Pr(class) · confidence and keeps the `max_detections` best over
`score_threshold` after per-class NMS at `nms_iou` (models/yolo.py `decode`). A PNG of the first `vis_examples`
images with their predicted boxes (score ≥ vis_score; ground truth in white) goes to
<workdir>/detections/step_<step>.png and to TensorBoard.

Config (`config.detection`): max_boxes, class_head, the matching costs and loss weights, eos_coef,
focal_alpha / focal_gamma, coord_weight / noobj_weight, flip_prob, crop_prob, crop_min_scale, jitter,
hsv_exposure / hsv_saturation, max_detections, score_threshold / nms_iou, vis_examples, vis_score.
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
from papers_jax.data import pipeline, scenes
from papers_jax.errors import ConfigError
from papers_jax.evaluators import coco
from papers_jax.models import yolo
from papers_jax.objectives import detection as objective
from papers_jax.objectives import yolo as yolo_objective
from papers_jax.tasks.classification import normalize_images

RANGES = (
    ("max_boxes", "[1, 10000]"),
    ("*_cost", "[0, 1000]"),
    ("*_weight", "[0, 1000]"),
    ("eos_coef", "[0, 1]"),
    ("focal_alpha", "-1 | [0, 1]"),
    ("focal_gamma", "[0, 10]"),
    ("flip_prob", "[0, 1]"),
    ("crop_prob", "[0, 1]"),
    ("crop_min_scale", "(0, 1]"),
    ("jitter", "[0, 0.45]"),
    ("hsv_*", "[1, 10]"),
    ("score_threshold", "[0, 1]"),
    ("nms_iou", "[0, 1]"),
    ("max_detections", "[1, 100000]"),
    ("vis_examples", "[0, 1024]"),
    ("vis_score", "[0, 1]"),
)
CLASS_HEADS = ("", "softmax", "sigmoid")


def default_config(**overrides) -> ml_collections.ConfigDict:
  """`config.detection`, the fields this task reads; the costs and weights are DETR's."""
  return ml_collections.ConfigDict(dict(
      max_boxes=10, class_head="", class_cost=1.0, bbox_cost=5.0, giou_cost=2.0, class_weight=1.0,
      bbox_weight=5.0, giou_weight=2.0, eos_coef=0.1, focal_alpha=0.25, focal_gamma=2.0, flip_prob=0.5,
      crop_prob=0.0, crop_min_scale=0.5, max_detections=100, vis_examples=8, vis_score=0.5,
      coord_weight=5.0, noobj_weight=0.5, jitter=0.0, hsv_exposure=1.0, hsv_saturation=1.0, score_threshold=0.001,
      nms_iou=0.5) | overrides)


def shapes_scenes_demo(config, *, image_size: int, steps: int, vis_score: float, batch_size: int, smoke: bool):
  """Points a paper config at the bundled `shapes_scenes` demo (up to 6 objects, so 6 padded boxes): data at
  `image_size` normalised to [-1, 1], `steps` steps with a 100-step warm-up then cosine, evaluation halfway
  and at the end; `smoke` shrinks it to the tests' 4-step run."""
  config.data.name = "shapes_scenes"
  config.data.train_split, config.data.eval_split = "train", "test"
  config.data.image_size = image_size
  config.data.mean, config.data.std = (0.5, 0.5, 0.5), (0.5, 0.5, 0.5)
  config.detection.update(max_boxes=6, vis_examples=8, vis_score=vis_score)
  config.batch_size = batch_size
  config.num_epochs = 0
  config.num_steps = steps
  config.schedule.update(name="cosine", warmup_steps=100, boundaries=())
  config.log_every = 50
  config.eval_every = steps // 2
  config.checkpoint_every = steps
  if smoke:
    config.batch_size = 8
    config.num_steps = 4
    config.schedule.warmup_steps = 1
    config.log_every = 2
    config.eval_every = 0
    config.checkpoint_every = 4
  return config


def model_outputs(out) -> tuple[jax.Array, jax.Array]:
  """(logits (L, B, Q, K), boxes (L, B, Q, 4)) of a set-prediction detector's output dict."""
  logits = out["logits"] if "logits" in out else out["pred_logits"]
  boxes = out["boxes"] if "boxes" in out else out["pred_boxes"]
  if logits.ndim == 3:
    logits, boxes = logits[None], boxes[None]
  return logits, boxes


def is_grid(out) -> bool:
  """Whether a detector's output dict is a grid detector's (YOLOv1) rather than a set predictor's."""
  return "grid" in out


def detection_preprocess(image_size: int, max_boxes: int, *, train: bool, flip_prob=0.5, crop_prob=0.0,
                         crop_min_scale=0.5, jitter=0.0, hsv_exposure=1.0, hsv_saturation=1.0):
  """Per-example host transform: a detection example → static-shape arrays for the step (see the module
  docstring); boxes normalised cxcywh, `orig_size` the source image's (height, width)."""

  def fn(example, rng):
    height, width = example["image"].shape[:2]
    example = {k: example[k] for k in ("image", "boxes", "labels")}  # the instance masks stay on the host
    if train and flip_prob > 0 and rng.random() < flip_prob:
      example = scenes.hflip(example)
    if train and crop_prob > 0 and rng.random() < crop_prob:
      example = scenes.random_crop(example, rng, crop_min_scale)
    if train and jitter > 0:
      example = scenes.random_jitter(example, rng, jitter)
    example = scenes.resize(example, image_size, image_size)
    if train and (hsv_exposure > 1 or hsv_saturation > 1):
      example = scenes.random_hsv(example, rng, hsv_exposure, hsv_saturation)
    example = scenes.pad_targets(example, max_boxes)
    x0, y0, x1, y1 = (example["boxes"] / np.float32(image_size)).T
    boxes = np.stack([(x0 + x1) / 2, (y0 + y1) / 2, x1 - x0, y1 - y0], -1)
    image = example["image"]
    if image.shape[-1] == 1:
      image = np.repeat(image, 3, -1)
    return {"image": image, "boxes": np.where(example["box_valid"][:, None], boxes, 0).astype(np.float32),
            "labels": example["labels"], "box_valid": example["box_valid"],
            "orig_size": np.array([height, width], np.int32)}

  return fn


def decode_predictions(logits, boxes, orig_size, *, sigmoid: bool, max_detections: int):
  """Host numpy: final-layer logits (B, Q, K) and boxes (B, Q, 4) → per image (xyxy boxes in original
  pixels, scores, labels)."""
  logits, boxes = np.asarray(logits, np.float64), np.asarray(boxes, np.float64)
  out = []
  for i in range(len(logits)):
    if sigmoid:
      prob = 1 / (1 + np.exp(-logits[i]))
      flat = prob.reshape(-1)
      top = np.argsort(-flat, kind="stable")[:max_detections]
      scores, labels, query = flat[top], top % prob.shape[1], top // prob.shape[1]
    else:
      z = logits[i] - logits[i].max(-1, keepdims=True)
      prob = np.exp(z) / np.exp(z).sum(-1, keepdims=True)
      labels = prob[:, :-1].argmax(-1)
      scores = prob[np.arange(len(prob)), labels]
      query = np.arange(len(prob))
    h, w = orig_size[i]
    cx, cy, bw, bh = boxes[i][query].T
    xyxy = np.stack([(cx - bw / 2) * w, (cy - bh / 2) * h, (cx + bw / 2) * w, (cy + bh / 2) * h], -1)
    out.append((xyxy, scores, labels))
  return out


def grid_predictions(decoded) -> list:
  """Host numpy: a grid detector's decoded batch (models/yolo.py `decode`, plus orig_size) → per image (xyxy
  boxes in original pixels, scores, labels) of its kept detections."""
  out = []
  for boxes, scores, labels, keep, (h, w) in zip(decoded["boxes"], decoded["scores"], decoded["labels"],
                                                 decoded["keep"], decoded["orig_size"]):
    scale = np.array([w, h, w, h], np.float64)
    out.append((np.asarray(boxes[keep], np.float64) * scale, np.asarray(scores[keep], np.float64), labels[keep]))
  return out


def draw_detections(images, predictions, ground_truth, class_names, *, min_score: float, scale: int = 4):
  """A row of the images (upscaled `scale`×), predicted boxes (score ≥ min_score) in colour with their class
  and score, ground truth boxes in white. `predictions` and `ground_truth` are in the images' pixels."""
  from PIL import Image, ImageDraw
  palette = [(255, 64, 64), (64, 200, 255), (255, 210, 0), (80, 255, 80), (255, 96, 255), (255, 150, 40),
             (150, 120, 255), (0, 255, 200), (200, 255, 120), (255, 180, 180)]
  tiles = []
  for image, (boxes, scores, labels), (gt_boxes, _) in zip(images, predictions, ground_truth):
    tile = Image.fromarray(np.asarray(image)).resize((image.shape[1] * scale, image.shape[0] * scale), Image.NEAREST)
    draw = ImageDraw.Draw(tile)
    for box in gt_boxes:
      draw.rectangle([float(v) * scale for v in box], outline=(255, 255, 255), width=1)
    for box, score, label in zip(boxes, scores, labels):
      if score >= min_score:
        color = palette[int(label) % len(palette)]
        draw.rectangle([float(v) * scale for v in box], outline=color, width=2)
        draw.text((float(box[0]) * scale + 2, float(box[1]) * scale + 1), f"{class_names[int(label)]} {score:.2f}",
                  fill=color)
    tiles.append(np.asarray(tile.convert("RGB")))
  gap = np.full((tiles[0].shape[0], 4, 3), 255, np.uint8)
  return np.concatenate([x for t in tiles for x in (t, gap)][:-1], axis=1)


class DetectionTask:
  """Model + set loss + mAP evaluation for `config.task = "detection"`."""

  def __init__(self, config):
    self.config = config
    self.det = config.detection
    if self.det.class_head not in CLASS_HEADS:
      raise ConfigError(f"detection.class_head={self.det.class_head!r}; choose one of {CLASS_HEADS} ('' reads the "
                        "model's number of logits)")
    # The image-classification augmentations would move pixels without their boxes.
    for key, off in (("augment", "none"), ("randaugment", ""), ("random_erasing", 0.0), ("pca_lighting", 0.0)):
      if config.data.get(key, off) != off:
        raise ConfigError(f"data.{key}={config.data[key]!r} is an image-classification augmentation, which would move "
                          f"pixels without their boxes; leave it at {off!r} and use detection.flip_prob / crop_prob")
    self.mean, self.std, _ = image_preprocessing(config)
    self.class_names = tuple(self.source(config.data.train_split).class_names)
    self.num_classes = len(self.class_names)
    self._jitted = {}

  def source(self, split: str):
    return scenes.get_detection_source(self.config.data, split)

  def build_model(self, rngs: nnx.Rngs) -> nnx.Module:
    name, kwargs = precision.model_kwargs(self.config)
    return models.create(name, rngs=rngs, **kwargs | {"num_classes": self.num_classes})

  def forward_flops(self, model) -> float:
    """FLOPs per example: the detector on one image of data.image_size, every decoder layer's heads included
    (the matching and the set loss are left out)."""
    return models.forward_flops(model, img_size=int(self.config.data.image_size))

  def preprocess(self, train: bool):
    d = self.det
    return detection_preprocess(self.config.data.image_size, d.max_boxes, train=train, flip_prob=d.flip_prob,
                                crop_prob=d.crop_prob, crop_min_scale=d.crop_min_scale, jitter=d.jitter,
                                hsv_exposure=d.hsv_exposure, hsv_saturation=d.hsv_saturation)

  def _sigmoid_head(self, num_logits: int) -> bool:
    if self.det.class_head:
      return self.det.class_head == "sigmoid"
    if num_logits not in (self.num_classes, self.num_classes + 1):
      raise ConfigError(f"the model gives {num_logits} class logits for {self.num_classes} classes; a detector "
                        "needs num_classes + 1 (softmax with no-object) or num_classes (sigmoid)")
    return num_logits == self.num_classes

  def _grid_loss(self, out, batch, valid):
    return yolo_objective.yolo_loss(out["grid"], batch["labels"], batch["boxes"], valid, num_classes=self.num_classes,
                                    coord_weight=self.det.coord_weight, noobj_weight=self.det.noobj_weight)

  def _set_loss(self, out, batch, valid):
    logits, boxes = model_outputs(out)
    d = self.det
    if logits.shape[2] < batch["boxes"].shape[1]:  # the matching gives every target its own query
      raise ConfigError(f"detection.max_boxes={batch['boxes'].shape[1]} is more than the model's {logits.shape[2]} "
                        "queries; lower detection.max_boxes or raise model.num_queries")
    return objective.set_loss(
        logits, boxes, batch["labels"], batch["boxes"], valid, class_cost=d.class_cost, bbox_cost=d.bbox_cost,
        giou_cost=d.giou_cost, class_weight=d.class_weight, bbox_weight=d.bbox_weight, giou_weight=d.giou_weight,
        eos_coef=d.eos_coef, focal=self._sigmoid_head(logits.shape[-1]), focal_alpha=d.focal_alpha,
        focal_gamma=d.focal_gamma)

  def make_loss_fn(self, graphdef):
    def loss_fn(params, model_state, batch, rng):
      model = merge_model(graphdef, params, model_state)
      images = normalize_images(batch["image"], self.mean, self.std)
      out = model(images, train=True, rngs=nnx.Rngs(dropout=rng))
      if is_grid(out):
        loss, parts = self._grid_loss(out, batch, batch["box_valid"])
        metrics = {k: parts[k] for k in ("loss_coord", "loss_obj", "loss_noobj", "loss_class")}
      else:
        loss, parts = self._set_loss(out, batch, batch["box_valid"])
        metrics = {k: parts[k] for k in ("loss_class", "loss_bbox", "loss_giou", "aux_loss")}
      new_model_state = nnx.to_pure_dict(nnx.state(model, nnx.Not(nnx.Param)))
      return loss, (metrics, new_model_state)
    return loss_fn

  def make_eval_fn(self, graphdef):
    def eval_fn(params, model_state, batch):
      model = merge_model(graphdef, params, model_state)
      out = model(normalize_images(batch["image"], self.mean, self.std), train=False)
      real = batch["mask"].astype(bool)
      count = real.sum().astype(jnp.float32)
      if is_grid(out):
        _, parts = self._grid_loss(out, batch, batch["box_valid"])  # a batch mean: sum the real examples instead
        return {"loss": jnp.where(real, parts["per_example"], 0.0).sum(), "count": count}
      loss, parts = self._set_loss(out, batch, batch["box_valid"] & real[:, None])
      return {"loss": loss * count, "loss_bbox": parts["loss_bbox"] * count,
              "loss_giou": parts["loss_giou"] * count, "count": count}
    return eval_fn

  # ------------------------------------------------------------------ after each evaluation
  def _predict_fn(self, trainer):
    if trainer not in self._jitted:
      graphdef, mean, std = trainer.graphdef, self.mean, self.std

      def predict(params, model_state, images, orig_size):
        model = merge_model(graphdef, params, model_state)
        out = model(normalize_images(images, mean, std), train=False)
        if is_grid(out):
          d = self.det
          boxes, scores, labels, keep = yolo.decode(out["grid"], self.num_classes, score_threshold=d.score_threshold,
                                                    iou_threshold=d.nms_iou, max_detections=d.max_detections)
          return {"boxes": boxes, "scores": scores, "labels": labels, "keep": keep, "orig_size": orig_size}
        logits, boxes = model_outputs(out)
        return {"logits": logits[-1], "boxes": boxes[-1], "orig_size": orig_size}
      # Replicated outputs: every process runs this (the params are global arrays) and may read them.
      self._jitted = {trainer: jax.jit(predict, out_shardings=sharding.replicated(trainer.mesh))}
    return self._jitted[trainer]

  def predict(self, trainer, source, state=None):
    """Decoded final-layer predictions of every example of `source`, in original pixels."""
    state = trainer.state if state is None else state
    predict = self._predict_fn(trainer)
    batch_size = self.config.batch_size // self.config.grad_accum_steps
    out = []
    with sharding.use_mesh(trainer.mesh, trainer.rules):
      for local in pipeline.eval_batches(source, self.preprocess(train=False), global_batch=batch_size,
                                         process_index=jax.process_index(), process_count=jax.process_count()):
        batch = sharding.global_batch({k: local[k] for k in ("image", "orig_size")}, trainer.mesh, trainer.rules)
        got = jax.device_get(predict(state.params, state.model_state, batch["image"], batch["orig_size"]))
        if "keep" in got:
          out += grid_predictions(got)
        else:
          out += decode_predictions(got["logits"], got["boxes"], got["orig_size"],
                                    sigmoid=self._sigmoid_head(got["logits"].shape[-1]),
                                    max_detections=self.det.max_detections)
    return out[:len(source)]

  def after_eval(self, trainer, step: int, writer, source, metrics) -> dict:
    predictions = self.predict(trainer, source)
    if getattr(self, "_truth_of", None) is not source:  # the evaluated split's boxes, read once
      self._truth = [(e["boxes"], e["labels"]) for e in (source[i] for i in range(len(source)))]
      self._truth_of = source
    truth = self._truth
    result = coco.coco_map([t[0] for t in truth], [t[1] for t in truth], [p[0] for p in predictions],
                           [p[1] for p in predictions], [p[2] for p in predictions], num_classes=self.num_classes)
    n = min(int(self.det.vis_examples), len(source))
    if n and trainer.is_main:
      picture = draw_detections([source[i]["image"] for i in range(n)], predictions[:n], truth[:n],
                                self.class_names, min_score=self.det.vis_score)
      from papers_jax.evaluators.reconstruction import save_png
      save_png(picture, os.path.join(trainer.workdir, "detections", f"step_{step:06d}.png"))
      if writer is not None:
        writer.write_image(step, "detection/predictions", picture)
    return result
