"""DeiT: the distilled ViT against timm's `VisionTransformerDistilled` (parameter counts, both heads and the
test-time mean with every tensor perturbed), the hard and soft distillation losses against numpy, and a
distillation run whose teacher is read from a checkpoint (BatchNorm statistics included) and never changes."""

import importlib.util
import math
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

torch = pytest.importorskip("torch")
if importlib.util.find_spec("timm") is None:
  pytest.skip("timm is not installed", allow_module_level=True)

from conftest import load_config  # noqa: E402
from papers_jax import convert, models  # noqa: E402
from papers_jax.core import loop  # noqa: E402
from papers_jax.errors import CheckpointError, ConfigError  # noqa: E402
from papers_jax.objectives import distillation  # noqa: E402
from timm_parity import (TOL, abstract, images, load_ours, modified, num_params, numpy_state_dict,  # noqa: E402
                         our_logits, random_timm, timm_param_count)

pytestmark = pytest.mark.torch
NAMES = models.list_models("deit_*")
FULL = bool(os.environ.get("PAPERS_JAX_FULL_PARITY"))


def test_param_counts_match_timm():
  assert NAMES == sorted(n for n in __import__("timm").list_models("deit_*distilled*"))
  # Tiny by default (suite time); the others differ only in the widths of models/vit.py's table.
  for name in NAMES if FULL else ("deit_tiny_distilled_patch16_224",):
    assert num_params(abstract(name)) == timm_param_count(name), name


def test_both_heads_and_their_mean_match_timm():
  kw = dict(depth=2, num_classes=7, img_size=64)
  ref = random_timm("deit_tiny_distilled_patch16_224", **kw)
  ours, report = load_ours("deit_tiny_distilled_patch16_224", numpy_state_dict(ref), **kw)
  assert not (report.missing or report.unexpected or report.mismatched or report.resized)
  x = images(64, batch=2)
  ref.set_distilled_training(True)
  ref.train()  # timm returns both heads only in training mode; no dropout is set
  with torch.no_grad():
    want_cls, want_dist = (t.numpy() for t in ref(torch.from_numpy(x.transpose(0, 3, 1, 2).copy())))
  graphdef, state = nnx.split(ours)
  with jax.default_matmul_precision("highest"):
    both = jax.jit(lambda s, x: nnx.merge(graphdef, s)(x, train=False, return_distillation=True))(state, x)
  np.testing.assert_allclose(both[0], want_cls, atol=TOL)
  np.testing.assert_allclose(both[1], want_dist, atol=TOL)
  mean = our_logits(ours, x)
  np.testing.assert_allclose(mean, (want_cls + want_dist) / 2, atol=TOL)
  assert np.abs(want_cls - want_dist).max() > 100 * TOL  # the two heads differ: the test sees which is which
  for path in ("dist_token", "head_dist/bias"):
    assert np.abs(our_logits(modified(ours, path, np.zeros_like), x) - mean).max() > 3 * TOL, path


def test_hard_and_soft_distillation_equal_numpy():
  rng = np.random.RandomState(0)
  cls, dist, teacher = (rng.randn(4, 5).astype(np.float32) * 2 for _ in range(3))
  targets = np.eye(5, dtype=np.float32)[[0, 3, 1, 4]] * 0.9 + 0.02

  def log_softmax(z):
    z = z - z.max(-1, keepdims=True)
    return z - np.log(np.exp(z).sum(-1, keepdims=True))

  ce = -(targets * log_softmax(cls)).sum(-1)
  hard = [-log_softmax(dist)[i, teacher[i].argmax()] for i in range(4)]
  np.testing.assert_allclose(distillation.hard_distillation(cls, dist, targets, teacher),
                             0.5 * ce + 0.5 * np.array(hard), rtol=1e-5)
  tau, alpha = 3.0, 0.1
  pt = np.exp(log_softmax(teacher / tau))
  kl = [sum(pt[i, k] * (math.log(pt[i, k]) - log_softmax(dist / tau)[i, k]) for k in range(5)) for i in range(4)]
  np.testing.assert_allclose(distillation.soft_distillation(cls, dist, targets, teacher, alpha=alpha, tau=tau),
                             (1 - alpha) * ce + alpha * tau ** 2 * np.array(kl), rtol=1e-5)
  # A student that copies the teacher pays no soft-distillation term.
  np.testing.assert_allclose(distillation.soft_distillation(cls, teacher, targets, teacher, alpha=1.0, tau=tau), 0,
                             atol=1e-5)


def _teacher_checkpoint(config, path):
  """A random teacher of the config's `teacher_model`, with non-trivial BatchNorm statistics, written as a
  params checkpoint with its model state."""
  spec = dict(config.distillation.teacher_model)
  teacher = models.create(spec.pop("name"), rngs=nnx.Rngs(params=3), **spec, num_classes=10)
  state = nnx.to_pure_dict(nnx.state(teacher, nnx.Not(nnx.Param)))
  state = jax.tree.map(lambda v: np.random.RandomState(1).rand(*v.shape).astype(v.dtype) + 0.5, state)
  params = nnx.to_pure_dict(nnx.state(teacher, nnx.Param))
  convert.save_params(params, str(path), model_state=state)
  return params, state


def _check_teacher(model_state, params, state):
  flat_saved = convert._flatten(model_state["teacher"])
  flat_written = convert._flatten(params) | convert._flatten(state)
  assert set(flat_saved) == set(flat_written)
  for key, value in flat_written.items():
    np.testing.assert_array_equal(np.asarray(flat_saved[key]), value, err_msg=key)


def test_the_trainer_reads_the_teacher_into_model_state_and_names_a_misfit(tmp_path):
  config = load_config("deit/digits.py", "smoke,kind=hard").unlock()
  with pytest.raises(ConfigError, match="teacher"):
    loop.Trainer(config, str(tmp_path / "no_teacher"))
  params, state = _teacher_checkpoint(config, tmp_path / "teacher")
  config.distillation.teacher = str(tmp_path / "teacher")
  trainer = loop.Trainer(config.lock(), str(tmp_path / "run"))
  _check_teacher(trainer.state.model_state, params, state)  # loaded, BatchNorm statistics included
  assert not any(k.startswith("teacher") for k in convert._flatten(trainer.state.params))  # never trained
  # A teacher_model that does not fit the checkpoint is named, not silently half-loaded.
  bad = load_config("deit/digits.py", "smoke,kind=soft").unlock()
  bad.distillation.teacher = str(tmp_path / "teacher")
  bad.distillation.teacher_model = dict(bad.distillation.teacher_model, layers=(1, 1, 2))
  with pytest.raises(CheckpointError, match="teacher/"):
    loop.Trainer(bad.lock(), str(tmp_path / "bad"))


@pytest.mark.skipif(not FULL, reason="make test-full trains it (the loading is checked above, the losses by numpy)")
def test_distillation_run_reads_and_keeps_the_teacher_frozen(tmp_path):
  from test_configs import check_smoke_run
  config = load_config("deit/digits.py", "smoke,kind=hard").unlock()
  params, state = _teacher_checkpoint(config, tmp_path / "teacher")
  config.distillation.teacher = str(tmp_path / "teacher")
  workdir = str(tmp_path / "run")
  summary = loop.train(config.lock(), workdir)
  check_smoke_run(config, summary, workdir)
  # The run's last checkpoint holds the teacher exactly as written: never trained.
  step = max(int(s) for s in os.listdir(os.path.join(workdir, "checkpoints")) if s.isdigit())
  path = os.path.join(workdir, "checkpoints", str(step), "state")
  _check_teacher(convert._restore_params_numpy(path, "model_state"), params, state)
  assert not any(k.startswith("teacher") for k in convert._flatten(convert._restore_params_numpy(path)))
