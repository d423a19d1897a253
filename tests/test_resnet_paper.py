"""ResNet as in He et al. 2016 without torch: the CIFAR-10 networks' parameter counts against the paper's
table, their 6n+2 structure, option A/B/C shortcuts and plain nets, the analytic FLOP counter against
XLA's cost analysis and the paper's ImageNet FLOPs, and the recipes in configs/resnet/."""

import functools
import math

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from conftest import load_config
from papers_jax import models
from papers_jax.core import optim
from papers_jax.models import resnet


class FixedKeyRngs:
  """A shape-only stand-in for nnx.Rngs: eval_shape with real Rngs is quadratic in depth (see timm_parity.py)."""

  def params(self):
    return jax.random.key(0)


@functools.cache
def _abstract(name, overrides):
  return nnx.eval_shape(lambda: models.create(name, rngs=FixedKeyRngs(), **dict(overrides)))


def abstract(name, **overrides):
  return _abstract(name, tuple(sorted(overrides.items())))


def num_params(model) -> int:
  return sum(math.prod(x.shape) for x in jax.tree.leaves(nnx.state(model, nnx.Param)))


# Exact counts of our models (BatchNorm's scale and bias included), which round to the paper's
# Table 6: 0.27M, 0.46M, 0.66M, 0.85M, 1.7M. Option A adds no parameters, so plain = residual.
CIFAR_PARAMS = {20: 269_722, 32: 464_154, 44: 658_586, 56: 853_018, 110: 1_727_962}


@pytest.mark.parametrize("depth", sorted(CIFAR_PARAMS))
def test_cifar_parameter_counts_match_the_papers_table(depth):
  for kind in ("resnet", "plain"):
    count = num_params(abstract(f"{kind}{depth}_cifar"))
    assert count == CIFAR_PARAMS[depth], (kind, count)
    paper = resnet.CIFAR_PAPER_PARAMS_M[depth]
    digits = 1 if depth == 110 else 2  # the paper's precision: 1.7M, 0.27M
    assert round(count / 1e6, digits) == paper, (kind, count, paper)


def test_cifar_networks_have_6n_plus_2_layers_widths_16_32_64_and_maps_32_16_8():
  for depth, n in resnet.CIFAR_VARIANTS.items():
    model = abstract(f"resnet{depth}_cifar")
    convs = 1 + sum(2 for stage in model.stage_modules() for _ in stage)
    assert convs + 1 == 6 * n + 2 == depth  # + the classifier
    assert all(b.downsample_conv is None for stage in model.stage_modules() for b in stage)  # option A
  model = abstract("resnet20_cifar")
  assert [stage[0].conv2.kernel.shape[-1] for stage in model.stage_modules()] == [16, 32, 64]
  outs = jax.eval_shape(lambda m, x: m.stages(x), model, jax.ShapeDtypeStruct((2, 32, 32, 3), jnp.float32))
  assert [o.shape for o in outs] == [(2, 32, 32, 16), (2, 16, 16, 32), (2, 8, 8, 64)]
  logits = jax.eval_shape(lambda m, x: m(x), model, jax.ShapeDtypeStruct((2, 32, 32, 3), jnp.float32))
  assert logits.shape == (2, 10)
  # The paper's nets start every residual branch at He init, not at timm's zeroed last BN.
  small = models.create("resnet20_cifar", layers=(1, 1, 1), rngs=nnx.Rngs(0))
  assert all(np.all(np.asarray(b.bn2.scale[...]) == 1) for stage in small.stage_modules() for b in stage)


def test_option_a_shortcut_is_the_subsampled_identity_with_zero_channels_appended():
  # A stride-2 block from 4 to 8 channels whose residual branch outputs zero (its last BN scale is 0):
  # the block's output is then relu(shortcut), i.e. relu(x[::2, ::2]) then 4 zero channels.
  block = resnet.Block("basic", 4, 8, 2, zero_init_last=True, shortcut="A", rngs=nnx.Rngs(0))
  assert block.downsample_conv is None and block.pad_channels == 4
  x = np.random.default_rng(0).standard_normal((2, 6, 6, 4)).astype(np.float32)
  y = np.asarray(block(x, train=False))
  chex.assert_trees_all_close(y[..., :4], np.maximum(x[:, ::2, ::2, :], 0), atol=1e-6)
  chex.assert_trees_all_close(y[..., 4:], np.zeros((2, 3, 3, 4), np.float32))


def test_shortcut_options_b_and_c_and_plain_nets():
  b, c, a = (abstract("resnet34", shortcut=s) for s in "BCA")
  blocks = lambda m: [blk for stage in m.stage_modules() for blk in stage]  # noqa: E731
  assert sum(blk.downsample_conv is not None for blk in blocks(b)) == 3  # where the shape changes
  assert all(blk.downsample_conv is not None for blk in blocks(c))
  assert not any(blk.downsample_conv is not None for blk in blocks(a))
  plain = abstract("plain34")
  assert not any(blk.residual or blk.downsample_conv is not None for blk in blocks(plain))
  assert num_params(plain) == num_params(a) < num_params(b) < num_params(c)
  # A plain block keeps its last BN at 1: zeroing it, as timm does for residual branches, would cut the net.
  block = resnet.Block("basic", 4, 4, 1, zero_init_last=True, residual=False, rngs=nnx.Rngs(0))
  assert np.all(np.asarray(block.bn2.scale[...]) == 1)
  with pytest.raises(ValueError, match="shortcut"):
    models.create("resnet18", shortcut="D")


def test_model_boundary_rejects_a_wrong_channel_count():
  model = abstract("resnet20_cifar", in_chans=1)
  with pytest.raises(AssertionError):
    jax.eval_shape(lambda m, x: m(x), model, jax.ShapeDtypeStruct((2, 32, 32, 3), jnp.float32))


# ---------------------------------------------------------------- FLOPs
def test_flops_match_the_papers_imagenet_numbers():
  # The paper counts multiply-adds: 1.8 (ResNet-18, plain-18), 3.6 (ResNet-34 and plain-34) × 10⁹ at
  # 224. ResNet-50 is timm's v1.5 (stride on the 3×3), 4.1 rather than the paper's 3.8 (stride on the 1×1).
  gmacs = {name: resnet.forward_flops(abstract(name)) / 2e9
           for name in ("resnet18", "plain18", "resnet34", "plain34", "resnet50")}
  assert {k: round(v, 1) for k, v in gmacs.items()} == {"resnet18": 1.8, "plain18": 1.8, "resnet34": 3.7,
                                                        "plain34": 3.6, "resnet50": 4.1}
  assert 3.6 < gmacs["resnet34"] < 3.7  # 3.66: the paper's "3.6" includes no projection shortcut (option A)
  assert resnet.forward_flops(abstract("resnet34", shortcut="A")) == resnet.forward_flops(abstract("plain34"))


def test_benchmark_uses_the_resnet_counter():
  import importlib.util
  import os
  from conftest import ROOT
  spec = importlib.util.spec_from_file_location("benchmark", os.path.join(ROOT, "tools", "benchmark.py"))
  benchmark = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(benchmark)
  model = abstract("resnet56_cifar")
  assert benchmark.forward_flops(model) == resnet.forward_flops(model) == resnet.forward_flops(model, 32)


# ---------------------------------------------------------------- recipes
def lr_at(config, steps):
  schedule = optim.make_schedule(config.schedule, config.optimizer.lr, config.num_steps)
  return [float(schedule(s)) for s in steps]


def test_cifar_recipe_is_the_papers():
  c = load_config("resnet/cifar10.py", "variant=56")
  assert c.model.name == "resnet56_cifar" and (c.batch_size, c.num_steps) == (128, 64_000)
  o = c.optimizer
  assert (o.name, o.lr, o.momentum, o.nesterov, o.weight_decay, o.clip_grad_norm) == ("sgd", 0.1, 0.9, False, 1e-4, 0.0)
  assert tuple(o.wd_exclude) == () and c.label_smoothing == 0.0 and c.data.augment == "cifar"
  np.testing.assert_allclose(lr_at(c, [0, 31_999, 32_000, 47_999, 48_000, 63_999]),
                             [0.1, 0.1, 0.01, 0.01, 0.001, 0.001], rtol=1e-6)
  c110 = load_config("resnet/cifar10.py", "variant=110")
  np.testing.assert_allclose(lr_at(c110, [0, 399, 400, 31_999, 32_000, 48_000]),
                             [0.01, 0.01, 0.1, 0.1, 0.01, 0.001], rtol=1e-6)
  assert load_config("resnet/cifar10.py", "variant=20,plain").model.name == "plain20_cifar"


def test_imagenet_recipe_is_the_papers():
  c = load_config("resnet/imagenet.py", "variant=34,plain")
  assert c.model.name == "plain34" and c.batch_size == 256
  o = c.optimizer
  assert (o.name, o.lr, o.momentum, o.weight_decay, o.clip_grad_norm, tuple(o.wd_exclude)) == \
      ("sgd", 0.1, 0.9, 1e-4, 0.0, ())
  assert c.model.zero_init_last is False
  n = c.num_steps
  np.testing.assert_allclose(lr_at(c, [0, n // 4 - 1, n // 4, n // 2, 3 * n // 4]), [0.1, 0.1, 0.01, 0.001, 1e-4],
                             rtol=1e-6)
  assert load_config("resnet/imagenet.py", "variant=34,shortcut=A").model.shortcut == "A"


def test_degradation_tool_builds_the_digits_recipe_with_and_without_warmup():
  import importlib.util
  import os
  from conftest import ROOT
  spec = importlib.util.spec_from_file_location("resnet_degradation", os.path.join(ROOT, "tools", "resnet_degradation.py"))
  tool = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(tool)
  c = tool.config_for(56, True, None)
  assert c.model.name == "plain56_cifar" and (c.optimizer.clip_grad_norm, tuple(c.optimizer.wd_exclude)) == (0.0, ())
  np.testing.assert_allclose(lr_at(c, [0, 149, 150, 225]), [0.1, 0.1, 0.01, 0.001], rtol=1e-6)
  warm = tool.config_for(56, False, None, warmup_steps=75)
  np.testing.assert_allclose(lr_at(warm, [0, 74, 75, 150, 225]), [0.01, 0.01, 0.1, 0.01, 0.001], rtol=1e-6)
