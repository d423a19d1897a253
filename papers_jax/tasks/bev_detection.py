"""Multi-camera 3-D detection in bird's-eye view (`config.task = "bev_detection"`): BEVFormer (models/bevformer.py).

Data (data/bev_scenes.py, `data.name = "bev_scenes"`): two frames of N camera images per example with their
lidar2img matrices, the ego motion between the frames, and the current frame's 3-D boxes (x, y, z, w, l,
h, yaw) and classes, padded to `bev_detection.max_boxes` with a `box_valid` mask. No augmentation.
Images are scaled to [0, 1] and normalised by `data.mean` / `data.std`.

Loss: BEVFormer's set loss over every decoder layer (objectives/bev_detection.py). Evaluation: the loss,
then (`after_eval`) nuScenes-style BEV mAP (evaluators/bev_map.py: centre distance thresholds 0.5/1/2/4 m)
of the last layer's `max_detections` best (query, class) sigmoid scores per sample (the official
NMS-free decoder), and the same mAP of an image-blind prior as the baseline (`prior_mAP`): per class,
the `max_detections` · class-frequency most frequent cells of a `prior_cell`-metre grid of the training
boxes' centres (from `prior_examples` training layouts), scored by their frequency, in every sample.

Config (`config.bev_detection`): max_boxes, class_cost, reg_cost, class_weight, bbox_weight, focal_alpha,
focal_gamma, max_detections, prior_cell, prior_examples.
"""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from flax import nnx

from papers_jax import models
from papers_jax.core import precision, sharding
from papers_jax.core.state import merge_model
from papers_jax.data import bev_scenes, pipeline
from papers_jax.errors import ConfigError
from papers_jax.evaluators import bev_map
from papers_jax.objectives import bev_detection as objective

RANGES = (
    ("max_boxes", "[1, 1000]"),
    ("*_cost", "[0, 1000]"),
    ("*_weight", "[0, 1000]"),
    ("focal_alpha", "[0, 1]"),
    ("focal_gamma", "[0, 10]"),
    ("max_detections", "[1, 10000]"),
    ("prior_cell", "(0, 100]"),
    ("prior_examples", "[1, 1000000]"),
)


def default_config(**overrides) -> ml_collections.ConfigDict:
  """`config.bev_detection`; the costs and weights are the official BEVFormer's."""
  return ml_collections.ConfigDict(dict(
      max_boxes=bev_scenes.MAX_OBJECTS, class_cost=2.0, reg_cost=0.25, class_weight=2.0, bbox_weight=0.25,
      focal_alpha=0.25, focal_gamma=2.0, max_detections=50, prior_cell=2.0, prior_examples=2000) | overrides)


def pad_boxes(boxes, labels, max_boxes: int):
  n = len(boxes)
  if n > max_boxes:
    raise ConfigError(f"an example has {n} boxes, more than bev_detection.max_boxes={max_boxes}")
  out = np.zeros((max_boxes, 7), np.float32)
  out[:, 3:6] = 1.0  # padded sizes of 1 m keep the log of the encoding finite
  out[:n] = boxes
  lab = np.zeros((max_boxes,), np.int32)
  lab[:n] = labels
  return out, lab, np.arange(max_boxes) < n


def decode(logits, codes, max_detections: int):
  """Host numpy: last-layer logits (B, Q, K) and codes (B, Q, C) → per sample (boxes (k, 7), scores, labels)
  of the k = max_detections best (query, class) sigmoid scores."""
  logits, codes = np.asarray(logits, np.float64), np.asarray(codes, np.float64)
  boxes = np.asarray(objective.decode_codes(jnp.asarray(codes, jnp.float32)), np.float64)
  out = []
  for i in range(len(logits)):
    flat = (1 / (1 + np.exp(-logits[i]))).reshape(-1)
    top = np.argsort(-flat, kind="stable")[:max_detections]
    out.append((boxes[i][top // logits.shape[-1]], flat[top], top % logits.shape[-1]))
  return out


def prior_predictions(train_targets, num_samples: int, num_classes: int, *, cell: float, max_detections: int,
                      bev_range: float):
  """The image-blind baseline: the same boxes for every sample (see the module docstring)."""
  bins = int(np.ceil(2 * bev_range / cell))
  counts = np.zeros((num_classes, bins, bins))
  for boxes, labels in train_targets:
    ij = np.clip(((np.asarray(boxes)[:, :2] + bev_range) / cell).astype(int), 0, bins - 1)
    for (i, j), c in zip(ij, labels):
      counts[c, i, j] += 1
  freq = counts.sum((1, 2)) / counts.sum()
  boxes, scores, labels = [], [], []
  for c in range(num_classes):
    k = max(1, int(round(max_detections * freq[c])))
    top = np.argsort(-counts[c].reshape(-1), kind="stable")[:k]
    centres = (np.stack(np.unravel_index(top, (bins, bins)), -1) + 0.5) * cell - bev_range
    boxes.append(np.concatenate([centres, np.zeros((k, 5))], -1))
    scores.append(counts[c].reshape(-1)[top] / counts.sum())
    labels.append(np.full(k, c))
  one = (np.concatenate(boxes), np.concatenate(scores), np.concatenate(labels))
  return [one] * num_samples


class BEVDetectionTask:
  """Model + set loss + BEV mAP for `config.task = "bev_detection"`."""

  def __init__(self, config):
    self.config = config
    self.det = config.bev_detection
    if config.data.name != "bev_scenes":
      raise ConfigError(f"bev_detection reads data.name='bev_scenes' (data/bev_scenes.py), not {config.data.name!r}")
    self.mean = np.asarray(config.data.mean, np.float32)
    self.std = np.asarray(config.data.std, np.float32)
    self.class_names = bev_scenes.CLASSES
    self.num_classes = len(self.class_names)
    self._jitted, self._prior = {}, None

  def source(self, split: str):
    return bev_scenes.BEVScenes(split)

  def build_model(self, rngs: nnx.Rngs) -> nnx.Module:
    name, kwargs = precision.model_kwargs(self.config)
    return models.create(name, rngs=rngs, **kwargs | {"num_classes": self.num_classes})

  def forward_flops(self, model) -> float:
    """FLOPs per example: BEVFormer on both frames of the simulator's cameras (the set loss left out)."""
    return models.forward_flops(model, image_size=bev_scenes.IMAGE, frames=bev_scenes.FRAMES)

  def preprocess(self, train: bool):
    del train
    max_boxes = int(self.det.max_boxes)

    def fn(example, rng):
      del rng
      boxes, labels, valid = pad_boxes(example["boxes"], example["labels"], max_boxes)
      return {"images": example["images"], "lidar2img": example["lidar2img"].astype(np.float32),
              "ego_motion": example["ego_motion"].astype(np.float32), "boxes": boxes, "labels": labels,
              "box_valid": valid}

    return fn

  def _forward(self, model, batch, *, train: bool, rng=None):
    images = (batch["images"].astype(jnp.float32) / 255.0 - self.mean) / self.std
    images = images.astype(precision.compute_dtype(self.config))
    return model(images, batch["lidar2img"], batch["ego_motion"], train=train,
                 rngs=nnx.Rngs(dropout=rng) if train else None)

  def _loss(self, out, batch, valid):
    d = self.det
    return objective.set_loss(out["logits"], out["boxes"], batch["labels"], batch["boxes"], valid,
                              class_cost=d.class_cost, reg_cost=d.reg_cost, class_weight=d.class_weight,
                              bbox_weight=d.bbox_weight, alpha=d.focal_alpha, gamma=d.focal_gamma)

  def make_loss_fn(self, graphdef):
    def loss_fn(params, model_state, batch, rng):
      model = merge_model(graphdef, params, model_state)
      out = self._forward(model, batch, train=True, rng=rng)
      loss, parts = self._loss(out, batch, batch["box_valid"])
      new_model_state = nnx.to_pure_dict(nnx.state(model, nnx.Not(nnx.Param)))
      return loss, (parts, new_model_state)
    return loss_fn

  def make_eval_fn(self, graphdef):
    def eval_fn(params, model_state, batch):
      model = merge_model(graphdef, params, model_state)
      out = self._forward(model, batch, train=False)
      real = batch["mask"].astype(bool)
      count = real.sum().astype(jnp.float32)
      loss, parts = self._loss(out, batch, batch["box_valid"] & real[:, None])
      return {"loss": loss * count, "loss_bbox": parts["loss_bbox"] * count, "count": count}
    return eval_fn

  # ------------------------------------------------------------------ after each evaluation
  def _predict_fn(self, trainer):
    if trainer not in self._jitted:
      graphdef = trainer.graphdef

      def predict(params, model_state, batch):
        out = self._forward(merge_model(graphdef, params, model_state), batch, train=False)
        return {"logits": out["logits"][-1], "boxes": out["boxes"][-1]}
      self._jitted = {trainer: jax.jit(predict, out_shardings=sharding.replicated(trainer.mesh))}
    return self._jitted[trainer]

  def predict(self, trainer, source, state=None):
    """Decoded last-layer predictions of every example of `source`: per sample (boxes (k, 7), scores, labels)."""
    state = trainer.state if state is None else state
    predict = self._predict_fn(trainer)
    keys = ("images", "lidar2img", "ego_motion")
    out = []
    with sharding.use_mesh(trainer.mesh, trainer.rules):
      for local in pipeline.eval_batches(source, self.preprocess(train=False),
                                         global_batch=self.config.batch_size // self.config.grad_accum_steps,
                                         process_index=jax.process_index(), process_count=jax.process_count()):
        batch = sharding.global_batch({k: local[k] for k in keys}, trainer.mesh, trainer.rules)
        got = jax.device_get(predict(state.params, state.model_state, batch))
        out += decode(got["logits"], got["boxes"], int(self.det.max_detections))
    return out[:len(source)]

  def evaluate_predictions(self, source, predictions) -> dict:
    truth = [source.targets(i) for i in range(len(source))]
    return bev_map.bev_map([t[0] for t in truth], [t[1] for t in truth], [p[0] for p in predictions],
                           [p[1] for p in predictions], [p[2] for p in predictions], num_classes=self.num_classes,
                           class_names=self.class_names)

  def after_eval(self, trainer, step: int, writer, source, metrics) -> dict:
    del step, writer, metrics
    result = self.evaluate_predictions(source, self.predict(trainer, source))
    if self._prior is None:
      train = bev_scenes.BEVScenes(self.config.data.train_split)
      n = min(int(self.det.prior_examples), len(train))
      prior = prior_predictions([train.targets(i) for i in range(n)], len(source), self.num_classes,
                                cell=float(self.det.prior_cell), max_detections=int(self.det.max_detections),
                                bev_range=bev_scenes.BEV_RANGE)
      self._prior = self.evaluate_predictions(source, prior)
    return result | {"prior_" + k: v for k, v in self._prior.items()}
