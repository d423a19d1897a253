"""Self-training with pseudo-labels (`config.task = "self_training"`): pseudo-labelling (Lee 2013) and Noisy
Student (Xie et al. 2020) on a labelled fraction of a classification data set.

The train split is cut in two: the labelled part, the first `labelled_fraction` of a fixed permutation
(data/sources.py: Subset, the same examples a `data.train_fraction` run trains on), and the unlabelled rest,
whose labels are never read. Without `teacher` the run trains on the labelled part alone: the
labelled-only baseline, and the first teacher. With `teacher` (a finished run's checkpoints/<step>/state and
its model `teacher_model`), the teacher labels the unlabelled part once, when the run starts: in
evaluation mode (no dropout, no stochastic depth) on the un-augmented images, as Noisy Student's teacher is
not noised. `labels` = "soft" keeps its softmax distribution (Noisy Student's default), "hard" its argmax
(pseudo-labelling); unlabelled examples whose top probability is under `threshold` are left out (Noisy
Student: 0.3 on ImageNet). The student (`config.model`, equal to or larger than the teacher) trains on the
labelled examples (one-hot targets) and the kept pseudo-labelled ones together, from scratch, with the
noise its config sets (data.randaugment, the model's dropout and drop_path_rate); the iteration (the
student becomes the next teacher) is tools/self_training.py, one trainer run per model.

The targets are a table indexed by `batch["index"]` (each row's position in the train source), so soft
targets need no change to the input pipeline; the train accuracy is against their argmax. Evaluation is
the classification task's (the test split's true labels).
"""

import logging

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from papers_jax import models
from papers_jax.core.state import merge_model, split_model
from papers_jax.data import sources
from papers_jax.errors import ConfigError
from papers_jax.objectives import classification as objective
from papers_jax.tasks.classification import ClassificationTask, normalize_images

log = logging.getLogger(__name__)

LABELS = ("soft", "hard")
RANGES = (("labelled_fraction", "(0, 1]"), ("threshold", "[0, 1]"))


class PseudoLabelledSource:
  """The labelled examples and the kept unlabelled ones of `base`, with `labels` (argmax targets) as labels."""

  def __init__(self, base, indices, labels):
    self.base, self.indices, self.labels = base, np.asarray(indices), np.asarray(labels, np.int32)

  def __len__(self) -> int:
    return len(self.indices)

  def __getitem__(self, i) -> dict:
    return dict(self.base[int(self.indices[i])], label=self.labels[i])

  def __getattr__(self, name):  # num_classes, ... of the whole source
    if name == "base":
      raise AttributeError(name)
    return getattr(self.base, name)


def split_labelled(num_examples: int, fraction: float):
  """(labelled, unlabelled) indices of a train split of `num_examples`: Subset's first `fraction` of its
  fixed permutation, and the rest, both sorted."""
  labelled = sources.Subset(range(num_examples), fraction).indices
  return labelled, np.setdiff1d(np.arange(num_examples), labelled)


def pseudo_targets(probs, labels: str, threshold: float):
  """(kept rows of `probs`, their targets): softmax rows whose top probability reaches `threshold`, as
  the distribution ("soft") or its one-hot argmax ("hard")."""
  probs = np.asarray(probs, np.float32)
  kept = np.flatnonzero(probs.max(axis=1) >= threshold)
  targets = probs[kept] if labels == "soft" else np.eye(probs.shape[1], dtype=np.float32)[probs[kept].argmax(1)]
  return kept, targets


class SelfTrainingTask(ClassificationTask):
  """ClassificationTask trained on labelled + teacher-labelled examples (module docstring)."""

  def __init__(self, config):
    super().__init__(config)
    s = self.s = config.self_training
    if s.labels not in LABELS:
      raise ConfigError(f"self_training.labels={s.labels!r}; choose one of {LABELS}")
    if config.data.get("train_fraction", 1.0) < 1.0:
      raise ConfigError("self_training cuts the labelled part itself: set self_training.labelled_fraction, "
                        "not data.train_fraction")
    if s.teacher and not dict(s.teacher_model).get("name"):
      raise ConfigError("self_training.teacher needs self_training.teacher_model=dict(name=..., <its settings>): "
                        "the model of the run the checkpoint comes from")
    if self.distillation.get("kind") or self.mixup:
      raise ConfigError("self_training trains on its targets table: no distillation or mixup")
    self.targets = self.stats = None

  # ---------------------------------------------------------------- data
  def source(self, split: str):
    base = sources.get_source(self.config.data, split)
    if split != self.config.data.train_split:
      return base
    labelled, unlabelled = split_labelled(len(base), self.s.labelled_fraction)
    onehot = np.eye(self.num_classes, dtype=np.float32)
    true = np.asarray([base[int(i)]["label"] for i in labelled])
    indices, targets = list(labelled), [onehot[true]]
    self.stats = {"labelled": len(labelled), "unlabelled": len(unlabelled), "pseudo_labelled": 0}
    if self.s.teacher:
      probs = self.teacher_probabilities(base, unlabelled)
      kept, pseudo = pseudo_targets(probs, self.s.labels, self.s.threshold)
      indices += list(unlabelled[kept])
      targets.append(pseudo)
      truth = np.asarray([base[int(i)]["label"] for i in unlabelled[kept]])  # for the log only, never trained on
      self.stats |= {"pseudo_labelled": len(kept),
                     "pseudo_label_accuracy": float(np.mean(pseudo.argmax(1) == truth)) if len(kept) else 0.0}
      log.info("self-training: %s", self.stats)
    self.targets = np.concatenate(targets)
    return PseudoLabelledSource(base, indices, self.targets.argmax(1))

  def teacher_probabilities(self, base, indices) -> np.ndarray:
    """(len(indices), classes) softmax of the frozen teacher on the un-augmented examples."""
    from papers_jax.convert import init_model_state_from_checkpoint, init_params_from_checkpoint
    from papers_jax.core.loop import preprocess_fn
    from papers_jax.evaluators import features as features_lib
    spec = dict(self.s.teacher_model)
    teacher = models.create(spec.pop("name"), rngs=nnx.Rngs(0), **spec | {"num_classes": self.num_classes})
    graphdef, params, model_state = split_model(teacher)
    params, _ = init_params_from_checkpoint(self.s.teacher, params, skip=())
    model_state, _ = init_model_state_from_checkpoint(self.s.teacher, model_state)
    mean, std = self.mean, self.std

    @jax.jit
    def probabilities(images):
      logits = merge_model(graphdef, params, model_state)(normalize_images(images, mean, std), train=False)
      return jax.nn.softmax(logits.astype(jnp.float32), axis=-1)

    unlabelled = PseudoLabelledSource(base, indices, np.zeros(len(indices)))
    probs, _ = features_lib.extract(probabilities, unlabelled, preprocess_fn(self.config, self, train=False))
    return probs

  # ---------------------------------------------------------------- loss
  def make_loss_fn(self, graphdef):
    if self.targets is None:  # the trainer reads the train source first; anyone else gets it read here
      self.source(self.config.data.train_split)
    table = jnp.asarray(self.targets)
    labelled = jnp.arange(len(self.targets)) < self.stats["labelled"]  # labelled rows come first

    def loss_fn(params, model_state, batch, rng):
      model = merge_model(graphdef, params, model_state)
      images = normalize_images(batch["image"], self.mean, self.std)
      targets = table[batch["index"]]
      if self.label_smoothing:
        targets = targets * (1.0 - self.label_smoothing) + self.label_smoothing / self.num_classes
      logits = model(images, train=True, rngs=nnx.Rngs(dropout=rng))
      losses = objective.softmax_cross_entropy(logits, targets)
      metrics = {"accuracy": objective.correct_top_k(logits, batch["label"]).mean(),
                 "labelled_in_batch": labelled[batch["index"]].mean()}
      return losses.mean(), (metrics, nnx.to_pure_dict(nnx.state(model, nnx.Not(nnx.Param))))

    return loss_fn
