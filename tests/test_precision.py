"""Precision is one trainer setting: `config.dtype` (core/precision.py).

Every model family, traced through its task's loss and gradient: with dtype=bfloat16 the matmuls and
convolutions run in bfloat16 while params, softmax (exp), norm statistics (rsqrt), logs and the loss
stay float32; with float32 nothing is bfloat16 (so the check cannot pass with the setting ignored).
Tracing compiles nothing. The smoke runs of ViT, MAE, GPT and CLIP in bfloat16 track float32.
"""

import glob
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from conftest import ROOT, load_config
from papers_jax import tasks
from papers_jax.core import loop, sharding
from papers_jax.core.state import abstract_model
from papers_jax.data import pipeline
from papers_jax.errors import ConfigError

# family → (config, overrides) of a smoke config that trains it
FAMILIES = {
    "vit": ("vit/imagenet.py", {}),
    "mae": ("mae/pretrain.py", {}),
    "swin": ("swin/imagenet.py", {}),
    "mixer": ("mixer/imagenet.py", {}),
    "resnet_ssl_heads": ("ssl/simclr.py", {"model": {"name": "resnet18", "in_chans": 1}}),
    "ssl_dino_head": ("ssl/dino.py", {}),
    "ssl_byol_predictor": ("ssl/byol.py", {}),
    "clip_vit": ("clip/paper.py", {}),
    "clip_resnet": ("clip/paper.py:variant=RN50", {}),
    "transformer": ("transformer/wmt14.py", {}),
    "bert": ("bert/wikipedia.py", {}),
    "gpt": ("gpt/gpt2.py", {}),
    "fnet": ("fnet/c4.py", {}),
}
PAPER_SCALE = ["vit/imagenet.py", "mae/pretrain.py", "mae/finetune.py", "mae/linprobe.py", "swin/imagenet.py",
               "mixer/imagenet.py", "clip/paper.py", "gpt/gpt2.py", "bert/wikipedia.py", "fnet/c4.py",
               "transformer/wmt14.py"] + [f"ssl/{os.path.basename(p)}" for p in glob.glob(f"{ROOT}/configs/ssl/*.py")]


def _config(name: str, dtype: str, overrides: dict | None = None):
  path, _, arg = name.partition(":")
  config = load_config(path, ",".join(filter(None, [arg, "smoke"]))).unlock()
  config.dtype = dtype
  for key, value in (overrides or {}).items():
    config[key] = value
  return config.lock()


def _batch(config, task):
  if hasattr(task, "synthetic_batch"):
    return task.synthetic_batch(config.batch_size, np.random.default_rng(0))
  source = task.source("train") if hasattr(task, "source") else loop.get_source(config.data, config.data.train_split)
  return next(pipeline.train_batches(source, loop.preprocess_fn(config, task, True), global_batch=config.batch_size,
                                     seed=0, starts=[0]))


def _eqns(jaxpr):
  """Every equation, those of nested jaxprs (jit, scan, custom_vjp, remat) included."""
  for eqn in jaxpr.eqns:
    yield eqn
    for value in eqn.params.values():
      for sub in value if isinstance(value, (tuple, list)) else (value,):
        inner = getattr(sub, "jaxpr", sub)
        if hasattr(inner, "eqns"):
          yield from _eqns(inner)


def _trace(config):
  """(jaxpr of the loss and its gradient, abstract params, loss) of the config's task."""
  task = tasks.get_task(config)
  task.num_steps = config.num_steps
  graphdef, params, rest = abstract_model(task.build_model)
  params, rest = nnx.to_pure_dict(params), nnx.to_pure_dict(rest)
  batch = {k: jax.ShapeDtypeStruct(np.shape(v), np.asarray(v).dtype) for k, v in _batch(config, task).items()}
  grad_fn = jax.value_and_grad(task.make_loss_fn(graphdef), has_aux=True)
  closed, out = jax.make_jaxpr(grad_fn, return_shape=True)(params, rest, batch, jax.random.key(0))
  return closed.jaxpr, params, out[0][0]


def _in_activation(eqn) -> bool:
  """The exp of GELU's derivative (erf' = 2/√π·exp(−x²)): an elementwise activation, in the compute dtype."""
  traceback = eqn.source_info.traceback
  return traceback is not None and any(f.function_name == "gelu" for f in traceback.frames)


def _dtypes(eqn):
  return {str(v.aval.dtype) for v in eqn.invars if hasattr(v, "aval") and hasattr(v.aval, "dtype")}


@pytest.mark.parametrize("family", FAMILIES)
def test_bf16_compute_with_float32_params_softmax_norms_and_loss(family):
  name, overrides = FAMILIES[family]
  jaxpr, params, loss = _trace(_config(name, "bfloat16", overrides))
  eqns = list(_eqns(jaxpr))
  matmuls = [e for e in eqns if e.primitive.name in ("dot_general", "conv_general_dilated")]
  bf16 = [e for e in matmuls if _dtypes(e) == {"bfloat16"}]
  assert len(bf16) >= 0.5 * len(matmuls), f"{len(bf16)} of {len(matmuls)} matmuls/convolutions in bfloat16"
  low = [(e.primitive.name, _dtypes(e)) for e in eqns if e.primitive.name in ("exp", "log", "rsqrt", "log_softmax")
         and "bfloat16" in _dtypes(e) and not _in_activation(e)]
  assert not low, f"softmax / log / norm statistics in bfloat16: {low[:5]}"
  assert {str(p.dtype) for p in jax.tree.leaves(params)} == {"float32"}
  assert loss.dtype == jnp.float32


@pytest.mark.parametrize("family", ["vit", "gpt"])
def test_float32_runs_have_no_bf16(family):
  name, overrides = FAMILIES[family]
  jaxpr, _, _ = _trace(_config(name, "float32", overrides))
  assert not [e for e in _eqns(jaxpr) if "bfloat16" in _dtypes(e)]


def test_paper_scale_configs_default_to_bf16_and_say_so():
  for name in PAPER_SCALE:
    config = load_config(name)
    assert config.dtype == "bfloat16", name
    assert "bfloat16" in open(os.path.join(ROOT, "configs", name)).read().split('"""')[1], name  # the docstring
  for name in ("vit/digits.py", "mae/digits.py", "clip/digits.py", "gpt/python_docs.py", "bert/python_docs.py",
               "ssl/simclr.py:digits"):
    path, _, arg = name.partition(":")
    assert load_config(path, arg or None).dtype == "float32", name


def test_dtype_errors_name_the_fix():
  with pytest.raises(ConfigError, match="float16 is not supported"):
    tasks.get_task(_config("vit/digits.py", "float16")).build_model(nnx.Rngs(0))
  stale = load_config("vit/digits.py").unlock()
  stale.model.dtype = "bfloat16"
  with pytest.raises(ConfigError, match="--config.dtype=bfloat16"):
    tasks.get_task(stale.lock()).build_model(nnx.Rngs(0))


def _train_losses(config, tmp_path, steps: int):
  """Per-step train losses of `steps` steps of the trainer's own jitted step, and the final params."""
  trainer = loop.Trainer(config, str(tmp_path / config.dtype))
  starts = pipeline.batch_starts(0, steps, config.batch_size)
  batches = pipeline.train_batches(trainer.train_source, trainer._preprocess(train=True),
                                   global_batch=config.batch_size, seed=config.seed, starts=starts)
  losses = []
  with sharding.use_mesh(trainer.mesh, trainer.rules):
    for _ in range(steps):
      trainer.state, metrics = trainer.train_step(trainer.state,
                                                  sharding.global_batch(next(batches), trainer.mesh, trainer.rules))
      losses.append(float(metrics["loss"]))
  return np.array(losses), trainer.state.params


# Stated tolerance: every step's bf16 loss within 1% (relative) of the float32 loss on the same
# batches, from the same init (bfloat16 keeps 8 bits of mantissa: ~0.4% per rounding). Measured on
# a 2-core CPU VM: at most 0.03% (ViT), 0.01% (MAE), 0.0005% (GPT), 0.14% (CLIP).
LOSS_RTOL = 0.01


_FULL = pytest.mark.skipif(not os.environ.get("PAPERS_JAX_FULL_PARITY"), reason="make test-full")


# ViT in make test; MAE, GPT-2 and CLIP, the same bf16 policy on their towers, in make test-full (GPT's
# matmuls, softmax, norms and loss dtypes: test_bf16_compute_with_float32_params_softmax_norms_and_loss[gpt]).
@pytest.mark.parametrize("name", ["vit/imagenet.py", pytest.param("mae/pretrain.py", marks=_FULL),
                                  pytest.param("gpt/gpt2.py", marks=_FULL), pytest.param("clip/paper.py", marks=_FULL)])
def test_bf16_smoke_run_tracks_float32(name, tmp_path):
  bf16 = _config(name, "bfloat16")
  assert load_config(name, "smoke").dtype == "bfloat16"  # the README's smoke command runs bf16
  losses, params = _train_losses(bf16, tmp_path, bf16.num_steps)
  reference, _ = _train_losses(_config(name, "float32"), tmp_path, bf16.num_steps)
  assert {str(p.dtype) for p in jax.tree.leaves(params)} == {"float32"}
  assert np.all(np.isfinite(losses))
  np.testing.assert_allclose(losses, reference, rtol=LOSS_RTOL)
  assert not np.array_equal(losses, reference)  # bf16 really ran: not bit-identical to float32
