"""ResNet against timm (parameter counts, eval and train-mode parity after conversion), the CIFAR
stem, the paper's plain nets, option A and C shortcuts and CIFAR-10 networks against torch references
built from timm's blocks, global vs per-group BatchNorm, and MoCo's shuffle-BN on 8 devices."""

import importlib.util
import math
import types

import chex

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from jax.sharding import NamedSharding, PartitionSpec as P

from papers_jax import convert, models
from papers_jax.nn.norms import BatchNorm

torch = pytest.importorskip("torch")
if importlib.util.find_spec("timm") is None:
  pytest.skip("timm is not installed", allow_module_level=True)
from papers_jax.convert.torch_compat import import_timm  # noqa: E402

from timm_parity import FixedKeyRngs  # noqa: E402

timm = import_timm()
NAMES = ["resnet18", "resnet34", "resnet50", "resnet101", "resnet152"]


def count(tree):
  return sum(math.prod(x.shape) for x in jax.tree.leaves(tree))


@pytest.mark.parametrize("name", NAMES)
def test_parameter_count_equals_timm(name):
  ours = nnx.eval_shape(lambda: models.create(name, rngs=FixedKeyRngs()))
  with torch.device("meta"):
    ref = timm.create_model(name, pretrained=False)
  assert count(nnx.state(ours, nnx.Param)) == sum(p.numel() for p in ref.parameters())
  assert count(nnx.state(ours, nnx.BatchStat)) == sum(b.numel() for k, b in ref.named_buffers()
                                                      if not k.endswith("num_batches_tracked"))


def random_timm(name, **kwargs):
  """Every tensor random, BatchNorm statistics too (timm's init leaves them at 0/1 and BN at 1/0)."""
  return perturb(timm.create_model(name, pretrained=False, **kwargs))


def perturb(model):
  g = torch.Generator().manual_seed(0)
  with torch.no_grad():
    for key, t in list(model.named_parameters()) + list(model.named_buffers()):
      if key.endswith("num_batches_tracked"):
        continue
      if key.endswith("running_var"):
        t.copy_(0.5 + torch.rand(t.shape, generator=g))
      elif key.endswith("weight") and t.ndim == 1:
        t.copy_(1.0 + 0.2 * torch.randn(t.shape, generator=g))
      elif t.ndim == 1:
        t.copy_(0.1 * torch.randn(t.shape, generator=g))
      else:
        fan_in = math.prod(t.shape[1:])
        t.copy_(torch.randn(t.shape, generator=g) / math.sqrt(fan_in))
  return model.eval()


def convert_from(ref, name, **overrides):
  ours = models.create(name, **overrides)
  convert.load_torch_weights(ours, ref.state_dict(), source="timm")
  return ours


def test_bottleneck_eval_logits_match_timm():
  ref = random_timm("resnet50", num_classes=10)
  ours = convert_from(ref, "resnet50", num_classes=10)
  x = np.random.default_rng(0).standard_normal((2, 48, 48, 3)).astype(np.float32)
  with torch.no_grad():
    expected = ref(torch.from_numpy(x).permute(0, 3, 1, 2)).numpy()
  with jax.default_matmul_precision("highest"):
    logits = np.asarray(ours(x, train=False))
  chex.assert_trees_all_close(logits, expected, atol=1e-4, rtol=1e-4)


def test_train_mode_batchnorm_matches_torch_outputs_and_running_statistics():
  ref = random_timm("resnet18", num_classes=10)
  ours = convert_from(ref, "resnet18", num_classes=10)
  x = np.random.default_rng(1).standard_normal((4, 32, 32, 3)).astype(np.float32)
  ref.train()
  with torch.no_grad():
    expected = ref(torch.from_numpy(x).permute(0, 3, 1, 2)).numpy()
  with jax.default_matmul_precision("highest"):
    logits = np.asarray(ours(x, train=True))
  chex.assert_trees_all_close(logits, expected, atol=1e-4, rtol=1e-4)
  np.testing.assert_allclose(np.asarray(ours.layer2[0].bn1.mean[...]), ref.layer2[0].bn1.running_mean.numpy(),
                             atol=1e-5, rtol=1e-5)
  np.testing.assert_allclose(np.asarray(ours.layer2[0].bn1.var[...]), ref.layer2[0].bn1.running_var.numpy(),
                             atol=1e-5, rtol=1e-5)


def test_cifar_stem_matches_timm_with_a_3x3_stride_1_stem():
  ref = random_timm("resnet18", num_classes=10)
  ref.conv1 = torch.nn.Conv2d(3, 64, 3, 1, 1, bias=False)
  torch.nn.init.normal_(ref.conv1.weight, std=0.2, generator=torch.Generator().manual_seed(1))  # not the global RNG
  ref.maxpool = torch.nn.Identity()
  ref.eval()
  ours = convert_from(ref, "resnet18", num_classes=10, stem="cifar")
  x = np.random.default_rng(2).standard_normal((2, 32, 32, 3)).astype(np.float32)
  with torch.no_grad():
    expected = ref(torch.from_numpy(x).permute(0, 3, 1, 2)).numpy()
  with jax.default_matmul_precision("highest"):
    chex.assert_trees_all_close(np.asarray(ours(x, train=False)), expected, atol=1e-4, rtol=1e-4)
  assert [s.shape[1] for s in ours.stages(x)] == [32, 16, 8, 4]


# ---------------------------------------------------------------- the paper's other networks
def paper_block_forward(block, x):
  """timm's BasicBlock with the paper's shortcut choices: none (plain), option A (the subsampled
  identity with zero channels appended, as fb.resnet.torch), or its own `downsample` (B, C)."""
  y = block.bn2(block.conv2(block.act1(block.bn1(block.conv1(x)))))
  if block.paper_shortcut == "none":
    return block.act2(y)
  if block.downsample is not None:
    shortcut = block.downsample(x)
  else:
    stride = block.conv1.stride[0]
    shortcut = x[:, :, ::stride, ::stride]
    shortcut = torch.nn.functional.pad(shortcut, (0, 0, 0, 0, 0, y.shape[1] - x.shape[1]))
  return block.act2(y + shortcut)


def paper_timm_resnet(name, shortcut, residual=True, **kwargs):
  """A timm ResNet re-wired as the paper's option A/B/C or plain network, every tensor random."""
  model = timm.create_model(name, pretrained=False, **kwargs)
  for stage in (model.layer1, model.layer2, model.layer3, model.layer4):
    for block in stage:
      channels = block.conv2.out_channels
      if not residual or shortcut == "A":
        block.downsample = None
      elif shortcut == "C" and block.downsample is None:
        block.downsample = torch.nn.Sequential(torch.nn.Conv2d(channels, channels, 1, bias=False),
                                               torch.nn.BatchNorm2d(channels))
      block.paper_shortcut = shortcut if residual else "none"
      block.forward = types.MethodType(paper_block_forward, block)
  return perturb(model)


@pytest.mark.parametrize("name,shortcut", [("plain18", "B"), ("resnet18", "A"), ("resnet18", "C")])
def test_plain_and_option_a_c_nets_match_torch(name, shortcut):
  ref = paper_timm_resnet("resnet18", shortcut, residual=name.startswith("resnet"), num_classes=10)
  ours = convert_from(ref, name, num_classes=10, shortcut=shortcut)
  x = np.random.default_rng(5).standard_normal((2, 32, 32, 3)).astype(np.float32)
  with torch.no_grad():
    expected = ref(torch.from_numpy(x).permute(0, 3, 1, 2)).numpy()
  with jax.default_matmul_precision("highest"):
    chex.assert_trees_all_close(np.asarray(ours(x, train=False)), expected, atol=1e-4, rtol=1e-4)


class TorchCifarResNet(torch.nn.Module):
  """The paper's CIFAR-10 network (§4.2) in torch, from timm's BasicBlock: 3×3 conv with 16 filters,
  3 stages of n blocks at widths 16/32/64, option-A shortcuts (or none), pooling, a 10-way classifier."""

  def __init__(self, n: int, residual: bool):
    super().__init__()
    from timm.models.resnet import BasicBlock
    self.conv1, self.bn1 = torch.nn.Conv2d(3, 16, 3, 1, 1, bias=False), torch.nn.BatchNorm2d(16)
    c = 16
    for i, width in enumerate((16, 32, 64)):
      blocks = []
      for j in range(n):
        block = BasicBlock(c, width, stride=2 if i and not j else 1)
        block.paper_shortcut = "A" if residual else "none"
        block.forward = types.MethodType(paper_block_forward, block)
        blocks.append(block)
        c = width
      setattr(self, f"layer{i + 1}", torch.nn.Sequential(*blocks))
    self.fc = torch.nn.Linear(64, 10)

  def forward(self, x):
    x = torch.relu(self.bn1(self.conv1(x)))
    x = self.layer3(self.layer2(self.layer1(x)))
    return self.fc(x.mean(dim=(2, 3)))


@pytest.mark.parametrize("kind", ["resnet", "plain"])
def test_cifar_networks_match_a_torch_reference(kind):
  ref = perturb(TorchCifarResNet(n=2, residual=kind == "resnet"))
  assert sum(p.numel() for p in TorchCifarResNet(n=3, residual=True).parameters()) == 269_722  # ResNet-20
  ours = convert_from(ref, f"{kind}20_cifar", layers=(2, 2, 2))
  x = np.random.default_rng(6).standard_normal((2, 32, 32, 3)).astype(np.float32)
  with torch.no_grad():
    expected = ref(torch.from_numpy(x).permute(0, 3, 1, 2)).numpy()
  with jax.default_matmul_precision("highest"):
    chex.assert_trees_all_close(np.asarray(ours(x, train=False)), expected, atol=1e-4, rtol=1e-4)


# ---------------------------------------------------------------- BatchNorm over devices
def _bn_step(group_size, x):
  bn = BatchNorm(x.shape[-1], group_size=group_size, rngs=nnx.Rngs(0))
  y = bn(x, train=True)
  return y, bn.mean.value


def test_global_batchnorm_on_8_devices_equals_one_device_and_groups_are_per_device():
  x = np.random.default_rng(3).standard_normal((16, 4, 4, 5)).astype(np.float32) * 3 + 1
  mesh = jax.make_mesh((8,), ("data",), axis_types=(jax.sharding.AxisType.Auto,), devices=jax.devices()[:8])
  sharded = jax.device_put(x, NamedSharding(mesh, P("data")))
  for group in (None, 2):  # None: the global batch; 2: each device's 2 examples
    single = jax.jit(lambda x: _bn_step(group, x))(x)
    multi = jax.jit(lambda x: _bn_step(group, x))(sharded)
    np.testing.assert_allclose(np.asarray(multi[0]), np.asarray(single[0]), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(np.asarray(multi[1]), np.asarray(single[1]), rtol=1e-5, atol=1e-6)
  y_global = np.asarray(jax.jit(lambda x: _bn_step(None, x))(x)[0])
  np.testing.assert_allclose(y_global.mean(axis=(0, 1, 2)), 0, atol=1e-5)
  y_group = np.asarray(jax.jit(lambda x: _bn_step(2, x))(x)[0]).reshape(8, 2, 4, 4, 5)
  np.testing.assert_allclose(y_group.mean(axis=(1, 2, 3)), 0, atol=1e-5)  # each group on its own statistics


def test_shuffle_bn_permutes_the_key_batch_across_devices_and_back():
  from papers_jax.models.resnet import shuffle_batch, unshuffle_batch
  x = np.random.default_rng(4).standard_normal((16, 2, 2, 3)).astype(np.float32)
  mesh = jax.make_mesh((8,), ("data",), axis_types=(jax.sharding.AxisType.Auto,), devices=jax.devices()[:8])
  sharded = jax.device_put(x, NamedSharding(mesh, P("data")))
  key = jax.random.key(7)

  def encode(x, key):  # per-device BatchNorm (groups of 2 = one device's examples) on the shuffled batch
    shuffled, perm = shuffle_batch(x, key)
    y, _ = _bn_step(2, shuffled)
    return unshuffle_batch(y, perm), perm

  y, perm = jax.jit(encode)(sharded, key)
  perm = np.asarray(perm)
  assert sorted(perm.tolist()) == list(range(16)) and (perm != np.arange(16)).any()
  devices_mixed = (perm.reshape(8, 2) // 2 != np.arange(8)[:, None]).any(axis=1).mean()
  assert devices_mixed > 0.5  # most devices' groups hold other devices' examples
  # Reference in numpy: group statistics over the shuffled batch, then the inverse permutation.
  shuffled = x[perm].reshape(8, -1, 3)
  norm = (shuffled - shuffled.mean(1, keepdims=True)) / np.sqrt(shuffled.var(1, keepdims=True) + 1e-5)
  expected = np.empty_like(x)
  expected[perm] = norm.reshape(x.shape)
  np.testing.assert_allclose(np.asarray(y), expected, rtol=1e-4, atol=1e-4)
  assert len(y.sharding.device_set) == 8
