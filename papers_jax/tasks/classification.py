"""Supervised image classification (ViT and every other backbone).

Images arrive as uint8 NHWC and are normalised on device. The train loss is softmax (or sigmoid)
cross-entropy with optional label smoothing; evaluation returns per-batch sums over the real
(unpadded) examples so that every example counts exactly once.

Optional `config.mixup` (mixup_alpha, cutmix_alpha, switch_prob, prob) mixes each training batch
with timm's batch-mode Mixup/CutMix (objectives/classification.py), as in DeiT / MAE fine-tuning;
the train accuracy is then measured against the unmixed labels.

`features` gives the model's pre-logits features to the k-NN and linear-probe evaluations of
`config.evals` (core/evals.py).
`config.aux_loss_weight` (GoogLeNet 0.3, Inception-v3 0.4) adds that weight times each auxiliary classifier's
loss in training (the model returns them with `return_aux=True`); evaluation reads the main head only.

`config.train_in_eval_mode` runs the model as in evaluation while it trains (BatchNorm on its
running statistics, no dropout): the linear protocol on a frozen encoder (configs/ssl/moco_linear.py),
whose freezing is the optimizer's (`optimizer.freeze`).

`config.distillation` (kind "hard" / "soft", teacher, teacher_model, alpha, tau) trains with DeiT's
distillation (objectives/distillation.py): a frozen teacher, built from `teacher_model` (its `name` and
settings) and read from the params checkpoint `teacher` (a run's checkpoints/<step>/state, its BatchNorm
statistics included), sees the same augmented images in evaluation mode. A student with a distillation
token (models/deit.py) learns the teacher on that token's head; any other learns it on its one head. The
teacher is a `Frozen` module attached to the model (`model.teacher`): it is saved with the run's model
state, so a resumed run needs no teacher path, and it is never trained.
With an image folder (data.name="folder") or generated data with fewer classes than
model.num_classes, the head has the source's number of classes; more classes than the head is an error.
"""

import jax
import jax.numpy as jnp
from flax import nnx

from papers_jax import models
from papers_jax.core import precision, sharding
from papers_jax.core.config import image_preprocessing
from papers_jax.core.state import merge_model
from papers_jax.data import sources
from papers_jax.errors import ConfigError
from papers_jax.evaluators import features as features_lib
from papers_jax.nn.frozen import freeze
from papers_jax.objectives import classification as objective
from papers_jax.objectives import distillation as distill


def normalize_images(images, mean, std, dtype=jnp.float32):
  x = images.astype(jnp.float32) / 255.0
  x = (x - jnp.asarray(mean, jnp.float32)) / jnp.asarray(std, jnp.float32)
  return x.astype(dtype)


class ClassificationTask:
  """Model + loss + evaluation for `config.task = "classification"`."""

  def __init__(self, config):
    self.config = config
    # An image folder (or generated data) with fewer classes than model.num_classes (ImageNet's 1,000 in a
    # paper config) gets a head of its own size; one with more is an error (Trainer._check_data).
    known = sources.known_num_classes(config.data)
    self.num_classes = known if known and known <= config.model.num_classes else config.model.num_classes
    if self.num_classes < 1:  # the base config's 0 means "no head" (a backbone), which a classifier cannot be
      raise ConfigError(f"model.num_classes={self.num_classes}: a classifier needs a head; set "
                        "--config.model.num_classes to the number of classes")
    self.mean, self.std, _ = image_preprocessing(config)  # the config's, else the model name's
    self.loss_kind = config.get("loss", "softmax")
    self.label_smoothing = float(config.get("label_smoothing", 0.0))
    self.mixup = dict(config.get("mixup") or {})
    self.train_in_eval_mode = bool(config.get("train_in_eval_mode", False))
    self.aux_loss_weight = float(config.get("aux_loss_weight", 0.0))
    self.distillation = dict(config.get("distillation") or {})
    if self.distillation.get("kind"):
      self._check_distillation()

  def _check_distillation(self):
    d = self.distillation
    if d["kind"] not in distill.KINDS:
      raise ConfigError(f"distillation.kind={d['kind']!r}; choose one of {distill.KINDS} (or '' for none)")
    if not d.get("teacher") or not dict(d.get("teacher_model") or {}).get("name"):
      raise ConfigError("distillation needs a teacher: distillation.teacher=<params checkpoint, e.g. a run's "
                        "checkpoints/<step>/state> and distillation.teacher_model=dict(name=..., <its settings>)")
    if self.aux_loss_weight or self.loss_kind != "softmax":
      raise ConfigError("distillation trains with the softmax loss and no auxiliary heads")

  def frozen_checkpoints(self) -> dict:
    """{model-state prefix: checkpoint} of the frozen modules the trainer loads after init (core/loop.py)."""
    return {"teacher/": self.distillation["teacher"]} if self.distillation.get("kind") else {}

  def build_model(self, rngs: nnx.Rngs) -> nnx.Module:
    name, kwargs = precision.model_kwargs(self.config)
    model = models.create(name, rngs=rngs, **kwargs | {"num_classes": self.num_classes})
    if self.distillation.get("kind"):
      spec = dict(self.distillation["teacher_model"])
      teacher = models.create(spec.pop("name"), rngs=rngs, **spec | {"num_classes": self.num_classes})
      model.teacher = freeze(teacher)  # random here; the trainer reads its checkpoint (frozen_checkpoints)
    return model

  def _distillation_losses(self, model, images, targets, train: bool, rng):
    teacher_logits = jax.lax.stop_gradient(model.teacher(images, train=False))
    if hasattr(model, "head_dist"):
      logits, dist_logits = model(images, train=train, rngs=nnx.Rngs(dropout=rng), return_distillation=True)
    else:
      logits = dist_logits = model(images, train=train, rngs=nnx.Rngs(dropout=rng))
    d = self.distillation
    losses = distill.distillation_loss(d["kind"], logits, dist_logits, targets, teacher_logits,
                                       alpha=float(d.get("alpha", 0.5)), tau=float(d.get("tau", 1.0)))
    return logits, losses

  def make_loss_fn(self, graphdef):
    def loss_fn(params, model_state, batch, rng):
      model = merge_model(graphdef, params, model_state)
      images = normalize_images(batch["image"], self.mean, self.std)
      targets = objective.smooth_labels(batch["label"], self.num_classes, self.label_smoothing)
      if self.mixup:
        rng, mix_rng = jax.random.split(rng)
        images, targets = objective.mixup_cutmix(mix_rng, images, targets, **self.mixup)
      # `train_in_eval_mode`: the linear protocol on frozen features (MoCo's `model.eval()`):
      # BatchNorm on its running statistics, no dropout, while the optimizer trains the classifier.
      train = not self.train_in_eval_mode
      if self.distillation.get("kind"):
        logits, losses = self._distillation_losses(model, images, targets, train, rng)
        accuracy = objective.correct_top_k(logits, batch["label"]).mean()
        new_model_state = nnx.to_pure_dict(nnx.state(model, nnx.Not(nnx.Param)))
        return losses.mean(), ({"accuracy": accuracy}, new_model_state)
      if self.aux_loss_weight:
        logits, aux_logits = model(images, train=train, rngs=nnx.Rngs(dropout=rng), return_aux=True)
      else:
        logits, aux_logits = model(images, train=train, rngs=nnx.Rngs(dropout=rng)), []
      loss_of = objective.sigmoid_cross_entropy if self.loss_kind == "sigmoid" else objective.softmax_cross_entropy
      losses = loss_of(logits, targets)
      for aux in aux_logits:  # GoogLeNet's / Inception-v3's auxiliary classifiers
        losses = losses + self.aux_loss_weight * loss_of(aux, targets)
      accuracy = objective.correct_top_k(logits, batch["label"]).mean()
      new_model_state = nnx.to_pure_dict(nnx.state(model, nnx.Not(nnx.Param)))
      return losses.mean(), ({"accuracy": accuracy}, new_model_state)
    return loss_fn

  def make_eval_fn(self, graphdef):
    def eval_fn(params, model_state, batch):
      model = merge_model(graphdef, params, model_state)
      images = normalize_images(batch["image"], self.mean, self.std)
      mask = batch["mask"].astype(jnp.float32)
      heads = {}
      if hasattr(model, "head_dist"):  # DeiT: each head alone, then their mean (the model's prediction)
        heads["cls"], heads["dist"] = model(images, train=False, return_distillation=True)
        logits = (heads["cls"] + heads["dist"]) / 2
      else:
        logits = model(images, train=False)
      targets = objective.smooth_labels(batch["label"], self.num_classes)
      losses = objective.softmax_cross_entropy(logits, targets)
      sums = {"loss": (losses * mask).sum(), "accuracy": (objective.correct_top_k(logits, batch["label"]) * mask).sum()}
      if self.num_classes >= 5:
        sums["top5"] = (objective.correct_top_k(logits, batch["label"], 5) * mask).sum()
      for head, head_logits in heads.items():
        sums[f"accuracy_{head}_head"] = (objective.correct_top_k(head_logits, batch["label"]) * mask).sum()
      sums["count"] = mask.sum()
      return sums
    return eval_fn

  def features(self, trainer):
    """(uint8 images → pre-logits features in evaluation mode, the evaluation preprocessing)."""
    if getattr(self, "_features_for", None) is not trainer:
      graphdef, mean, std = trainer.graphdef, self.mean, self.std

      def apply(params, model_state, images):
        model = merge_model(graphdef, params, model_state)
        return features_lib.named(model, normalize_images(images, mean, std), "pre_logits")
      # Replicated outputs: every process runs this (the params are global arrays) and may read them.
      self._features_jit = jax.jit(apply, out_shardings=sharding.replicated(trainer.mesh))
      self._features_for = trainer
    from papers_jax.core.loop import preprocess_fn
    state = trainer.state
    return (lambda images: self._features_jit(state.params, state.model_state, images)), preprocess_fn(
        self.config, self, train=False)
