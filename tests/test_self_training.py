"""Self-training (tasks/self_training.py): the labelled split, the pseudo-label selection against numpy, and
a saved tiny teacher's labels of the unlabelled digits against the same model applied directly."""

import importlib.util
import os

import jax
import numpy as np
import pytest
from flax import nnx

from papers_jax.data import sources
from papers_jax.tasks import self_training

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _config(arg="smoke"):
  path = os.path.join(ROOT, "configs", "self_training", "digits.py")
  spec = importlib.util.spec_from_file_location("st_config", path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config(arg)


def test_split_labelled_is_the_train_fraction_subset():
  labelled, unlabelled = self_training.split_labelled(1437, 0.1)
  np.testing.assert_array_equal(labelled, sources.Subset(range(1437), 0.1).indices)
  assert len(labelled) == 144 and len(unlabelled) == 1293
  np.testing.assert_array_equal(np.sort(np.concatenate([labelled, unlabelled])), np.arange(1437))


def test_pseudo_targets_soft_hard_and_threshold():
  probs = np.random.default_rng(0).dirichlet(np.ones(5) * 0.5, size=40).astype(np.float32)
  kept, soft = self_training.pseudo_targets(probs, "soft", 0.6)
  np.testing.assert_array_equal(kept, np.flatnonzero(probs.max(1) >= 0.6))
  np.testing.assert_array_equal(soft, probs[kept])
  kept_all, hard = self_training.pseudo_targets(probs, "hard", 0.0)
  assert len(kept_all) == 40 and 0 < len(kept) < 40
  np.testing.assert_array_equal(hard, np.eye(5)[probs.argmax(1)])


def test_without_teacher_it_trains_on_the_labelled_part_only():
  task = self_training.SelfTrainingTask(_config())
  source = task.source("train")
  labelled, _ = self_training.split_labelled(1437, 0.1)
  base = sources.get_source(task.config.data, "train")
  assert len(source) == 144 and task.stats["pseudo_labelled"] == 0
  np.testing.assert_array_equal([source[i]["label"] for i in range(0, 144, 13)],
                                [base[int(labelled[i])]["label"] for i in range(0, 144, 13)])
  np.testing.assert_array_equal(task.targets.argmax(1), [source[i]["label"] for i in range(144)])


def test_a_config_error_for_train_fraction():
  from papers_jax.errors import ConfigError
  config = _config().unlock()
  config.data.train_fraction = 0.5
  with pytest.raises(ConfigError, match="labelled_fraction"):
    self_training.SelfTrainingTask(config)


def test_teacher_labels_the_unlabelled_part(tmp_path):
  from papers_jax import models
  from papers_jax.convert import save_params
  from papers_jax.core.loop import preprocess_fn
  from papers_jax.core.state import split_model
  from papers_jax.tasks.classification import normalize_images
  spec = dict(name="vit_tiny_patch16_224", img_size=16, patch_size=4, in_chans=1, embed_dim=16, depth=1,
              num_heads=2, mlp_ratio=2.0)
  teacher = models.create(spec["name"], rngs=nnx.Rngs(3), num_classes=10, **{k: v for k, v in spec.items()
                                                                              if k != "name"})
  kernel = teacher.head.kernel
  kernel[...] = jax.random.normal(jax.random.key(4), kernel.shape)  # timm's head starts at zero: all ties
  _, params, model_state = split_model(teacher)
  save_params(params, str(tmp_path / "teacher"), model_state=model_state)
  config = _config("smoke,labels=hard").unlock()
  task = self_training.SelfTrainingTask(config)
  base = sources.get_source(config.data, "train")
  _, unlabelled = self_training.split_labelled(len(base), 0.1)
  prep = preprocess_fn(config, task, train=False)
  images = np.stack([prep(dict(base[int(i)]), None)["image"] for i in unlabelled])
  probs = np.asarray(jax.nn.softmax(teacher(normalize_images(images, task.mean, task.std), train=False)))
  top = np.sort(probs.max(1))
  gap = np.flatnonzero(np.diff(top) > 1e-4)  # a cut far from any example: jit and eager round differently
  cut = gap[np.argmin(np.abs(gap - len(top) // 2))]
  threshold = float(top[cut] + top[cut + 1]) / 2  # about half kept
  config.self_training.update(teacher=str(tmp_path / "teacher"), teacher_model=spec, threshold=threshold)
  task = self_training.SelfTrainingTask(config.lock())
  source = task.source("train")
  kept = np.flatnonzero(probs.max(1) >= threshold)
  assert 0 < len(kept) < len(unlabelled) and len(source) == 144 + len(kept)
  np.testing.assert_array_equal(task.targets[144:].argmax(1), probs[kept].argmax(1))
  np.testing.assert_array_equal(source.indices[144:], unlabelled[kept])
  np.testing.assert_array_equal(task.targets[144:].sum(1), 1.0)
