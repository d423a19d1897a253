"""Semantic segmentation (`config.task = "segmentation"`): DANet and any model that maps images to
per-pixel logits (B, H, W, K).

Data: examples {"image": uint8 (H, W, C), "label": int32 (H, W)} (data/segmentation.py); the batch's
"mask" is the loop's padding mask, so the per-pixel classes are called "label". Training loss: the
per-pixel softmax cross-entropy averaged over the pixels whose label is not `ignore_index`, plus
`aux_loss_weight` times the same loss of each auxiliary output the model returns with `return_aux=True`
(DANet's PAM and CAM branches: weight 1 as its official code). Training augmentation
(`config.segmentation`): random rescaling by `scale_range`, padding and a random `crop_size` crop, a
left-right flip (data/segmentation.scale_crop_flip); evaluation takes the whole image.

Evaluation: the cross-entropy over counted pixels (`loss`), `pixel_accuracy`, and per class the
intersection and union pixel counts per image (`intersection/<class>`, `union/<class>`, summed over the
split by the loop); `after_eval` turns them into `iou/<class>` and `miou` (the mean over the classes
that occur in the labels or the predictions; objectives/segmentation.py). The weight-EMA evaluation
(`eval_ema/...`) carries the sums without the derived IoUs.
"""

import jax.numpy as jnp
import ml_collections
import numpy as np
from flax import nnx

from papers_jax import models
from papers_jax.core import precision
from papers_jax.core.config import image_preprocessing
from papers_jax.core.state import merge_model
from papers_jax.data import segmentation as data
from papers_jax.errors import ConfigError
from papers_jax.objectives import segmentation as objective
from papers_jax.tasks.classification import normalize_images

# Allowed values of config.segmentation's numbers (core/config.py check_ranges).
RANGES = (
    ("aux_loss_weight", "[0, inf)"),
    ("crop_size", "[0, inf)"),
    ("scale_range", "(0, inf)"),
    ("ignore_index", "[0, inf)"),
)


def default_config(**overrides) -> ml_collections.ConfigDict:
  """`config.segmentation`, the fields this task reads. crop_size 0: no crop (the whole image)."""
  return ml_collections.ConfigDict(dict(
      ignore_index=data.IGNORE_INDEX, aux_loss_weight=0.0, crop_size=0, scale_range=(1.0, 1.0), flip=True)
      | overrides)


class SegmentationTask:
  """Model + loss + evaluation for `config.task = "segmentation"`."""

  def __init__(self, config):
    self.config = config
    self.seg = config.segmentation
    self.num_classes = config.model.num_classes
    if self.num_classes < 1:  # the base config's 0 means "no head", which a per-pixel classifier cannot be
      raise ConfigError(f"model.num_classes={self.num_classes}: segmentation predicts a class per pixel; set "
                        "--config.model.num_classes to the number of classes (background included)")
    self.class_names = _class_names(config.data, self.num_classes)
    self.mean, self.std, _ = image_preprocessing(config)
    self.ignore_index = int(self.seg.ignore_index)
    self.aux_loss_weight = float(self.seg.aux_loss_weight)

  def build_model(self, rngs: nnx.Rngs) -> nnx.Module:
    name, kwargs = precision.model_kwargs(self.config)
    return models.create(name, rngs=rngs, **kwargs | {"num_classes": self.num_classes})

  def preprocess(self, train: bool):
    seg = self.seg
    crop = int(seg.crop_size)

    def fn(example, rng):
      image, label = np.asarray(example["image"]), np.asarray(example["label"], np.int32)
      if image.ndim == 2:
        image = image[..., None]
      if train and (crop or bool(seg.flip) or tuple(seg.scale_range) != (1.0, 1.0)):
        image, label = data.scale_crop_flip(image, label, rng, crop_size=crop or min(label.shape),
                                            scale_range=tuple(seg.scale_range), flip=bool(seg.flip))
      return {"image": image, "label": label}

    return fn

  def _outputs(self, model, batch, *, train: bool, rng=None):
    images = normalize_images(batch["image"], self.mean, self.std)
    if train and self.aux_loss_weight:
      return model(images, train=True, rngs=nnx.Rngs(dropout=rng), return_aux=True)
    return model(images, train=train, rngs=nnx.Rngs(dropout=rng) if train else None), []

  def make_loss_fn(self, graphdef):
    def loss_fn(params, model_state, batch, rng):
      model = merge_model(graphdef, params, model_state)
      logits, aux_logits = self._outputs(model, batch, train=True, rng=rng)
      loss = objective.mean_pixel_cross_entropy(logits, batch["label"], self.ignore_index)
      for aux in aux_logits:  # DANet's PAM- and CAM-branch outputs
        loss = loss + self.aux_loss_weight * objective.mean_pixel_cross_entropy(aux, batch["label"], self.ignore_index)
      valid = batch["label"] != self.ignore_index
      correct = (logits.argmax(-1) == batch["label"]) & valid
      metrics = {"pixel_accuracy": correct.sum() / jnp.maximum(valid.sum(), 1)}
      new_model_state = nnx.to_pure_dict(nnx.state(model, nnx.Not(nnx.Param)))
      return loss, (metrics, new_model_state)
    return loss_fn

  def make_eval_fn(self, graphdef):
    def eval_fn(params, model_state, batch):
      model = merge_model(graphdef, params, model_state)
      logits, _ = self._outputs(model, batch, train=False)
      example = batch["mask"].astype(jnp.float32)  # 0 on the padded rows of the last batch
      losses, valid = objective.pixel_cross_entropy(logits, batch["label"], self.ignore_index)
      weights = valid * example[:, None, None]
      confusion = objective.confusion_matrix(logits.argmax(-1), batch["label"], self.num_classes, weights)
      tp = jnp.diag(confusion)
      union = confusion.sum(0) + confusion.sum(1) - tp
      labeled = weights.sum()
      sums = {"loss": (losses * weights).sum(), "pixel_accuracy": tp.sum(), "count": example.sum(),
              "counts": {"loss": labeled, "pixel_accuracy": labeled}}
      for k, name in enumerate(self.class_names):
        sums[f"intersection/{name}"], sums[f"union/{name}"] = tp[k], union[k]
      return sums
    return eval_fn

  def after_eval(self, trainer, step, writer, source, metrics) -> dict:
    """Per-class IoU and mIoU from the summed intersections and unions (both per image: the ratio holds)."""
    del trainer, step, writer, source
    out, ious = {}, []
    for name in self.class_names:
      union = metrics.get(f"union/{name}", 0.0)
      if union > 0:
        out[f"iou/{name}"] = metrics[f"intersection/{name}"] / union
        ious.append(out[f"iou/{name}"])
    out["miou"] = float(np.mean(ious)) if ious else 0.0
    return out


def _class_names(data_config, num_classes: int) -> list[str]:
  """The source's class names where it has them, else "class_<k>"; names made safe for metric keys."""
  names = None
  if data_config.name == "segmentation_shapes":
    names = data.SHAPE_CLASSES
  elif data_config.name == "cityscapes":
    names = data.CITYSCAPES_CLASSES
  names = list(names or [])[:num_classes]
  names += [f"class_{k}" for k in range(len(names), num_classes)]
  return [n.replace(" ", "_") for n in names]

