"""AlexNet ("ImageNet Classification with Deep Convolutional Neural Networks", Krizhevsky et al. 2012).

Five convolutions and three fully connected layers with ReLU, local response normalisation after conv1
and conv2 (k=2, n=5, α=1e-4, β=0.75, §3.3), overlapping 3×3/2 max pooling after conv1, conv2 and conv5
(§3.4), dropout 0.5 in the first two fully connected layers (§4.2). The two-GPU model (§3.2, Fig. 2) is
`two_gpu=True`: conv2, conv4 and conv5 see only the maps of their own GPU, i.e. grouped convolutions
with 2 groups; conv3 and the FC layers connect across GPUs. The paper's init (§5): weights N(0, 0.01)
(a standard deviation of 0.01; "variance 0.01" in some notes is a misreading), biases 1 in conv2, conv4,
conv5 and the fully connected hidden layers, 0 elsewhere. NHWC.

Variants (`VARIANTS`):
  - `alexnet_paper`: 96/256/384/384/256 channels, LRN, the two-GPU groups, the paper's init. Input
    224×224 with padding 2 on conv1, giving the paper's 55×55 maps (the paper's 224 with no padding does
    not divide; Caffe used 227 crops instead).
  - `alexnet` (torchvision's): the single-GPU "one weird trick" network (Krizhevsky 2014) that torchvision
    ships: 64/192/384/256/256 channels, no LRN, no groups, torch's default init, and dropout on the inputs of
    FC1 and FC2 rather than on their outputs.
Both end with torchvision's adaptive average pool to 6×6 before FC1: the identity at 224 px (the paper's
size), and what lets either network take other sizes. `forward_flops(model)` counts a forward pass.
"""

import math

import chex
import jax
import jax.numpy as jnp
from flax import nnx

from papers_jax.core import sharding
from papers_jax.errors import ConfigError
from papers_jax.models import conv_flops, intermediates
from papers_jax.models.registry import IMAGENET_MEAN, IMAGENET_STD, Preprocessing, register
from papers_jax.nn.conv import Conv, adaptive_avg_pool, max_pool
from papers_jax.nn.drop import Dropout
from papers_jax.nn.linear import Dense
from papers_jax.nn.norms import local_response_norm

# name: (conv channels, LRN, two-GPU groups, init, dropout on the FC layers' "inputs" or "outputs").
VARIANTS = {
    "alexnet_paper": ((96, 256, 384, 384, 256), True, True, "paper", "outputs"),
    "alexnet": ((64, 192, 384, 256, 256), False, False, "torch", "inputs"),
}
KERNELS = (11, 5, 3, 3, 3)
POOL_AFTER = (True, True, False, False, True)
PAPER_BIAS_ONE = ("conv2", "conv4", "conv5", "fc1", "fc2")
LRN = dict(size=5, alpha=1e-4, beta=0.75, k=2.0)  # §3.3


def _uniform(bound: float):
  def init(key, shape, dtype=jnp.float32):
    return jax.random.uniform(key, shape, dtype, -bound, bound)
  return init


class AlexNet(nnx.Module):
  """`channels`: the five conv widths; `lrn`: local response normalisation after conv1 and conv2;
  `two_gpu`: conv2/4/5 as 2-group convolutions; `init`: "paper" (N(0, 0.01), biases 1 where §5 says) or
  "torch" (torch's default uniform init, as torchvision's model); `dropout_on`: "outputs" of FC1/FC2 (the
  paper, Caffe) or their "inputs" (torchvision); `fc_features`: the width of FC1 and FC2 (4096)."""

  def __init__(self, *, channels=(96, 256, 384, 384, 256), lrn: bool = True, two_gpu: bool = True,
               init: str = "paper", dropout_on: str = "outputs", num_classes: int = 1000, in_chans: int = 3,
               fc_features: int = 4096, drop_rate: float = 0.5, img_size: int = 224, dtype=None,
               param_dtype=jnp.float32, rngs: nnx.Rngs):
    if init not in ("paper", "torch"):
      raise ConfigError(f"init={init!r}; choose 'paper' (N(0, 0.01), biases 1 in conv2/4/5 and FC1/FC2) or 'torch'")
    if dropout_on not in ("inputs", "outputs"):
      raise ConfigError(f"dropout_on={dropout_on!r}; choose 'outputs' (the paper) or 'inputs' (torchvision)")
    kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
    self.lrn, self.two_gpu, self.dropout_on = lrn, two_gpu, dropout_on
    self.num_classes, self.in_chans, self.img_size = num_classes, in_chans, img_size
    self.num_features = fc_features
    groups = (1, 2, 1, 2, 2) if two_gpu else (1,) * 5
    fan_in = [in_chans * KERNELS[0] ** 2] + [c * k * k // g for c, k, g in zip(channels, KERNELS[1:], groups[1:])]

    def inits(name, fan):
      if init == "paper":
        return nnx.initializers.normal(0.01), nnx.initializers.constant(1.0 if name in PAPER_BIAS_ONE else 0.0)
      bound = 1.0 / math.sqrt(fan)  # torch's default for Conv2d and Linear
      return _uniform(bound), _uniform(bound)

    c_in = in_chans
    for i, (c, k, g) in enumerate(zip(channels, KERNELS, groups)):
      kernel_init, bias_init = inits(f"conv{i + 1}", fan_in[i])
      conv = Conv(c_in, c, k, stride=4 if i == 0 else 1, padding=2 if i < 2 else 1, groups=g, use_bias=True,
                  kernel_init=kernel_init, bias_init=bias_init, **kw)
      setattr(self, f"conv{i + 1}", conv)
      c_in = c
    self.flat_features = 6 * 6 * c_in
    dims = (self.flat_features, fc_features, fc_features, num_classes)
    for i, name in enumerate(("fc1", "fc2", "head")):
      if name == "head" and not num_classes:
        self.head = None
        continue
      kernel_init, bias_init = inits(name, dims[i])
      setattr(self, name, Dense(dims[i], dims[i + 1], axes=("embed", "classes" if name == "head" else "mlp"),
                                kernel_init=kernel_init, bias_init=bias_init, **kw))
    self.drop1 = Dropout(drop_rate)
    self.drop2 = Dropout(drop_rate)

  def conv_modules(self) -> list:
    return [getattr(self, f"conv{i + 1}") for i in range(5)]

  def _conv_layer(self, i: int, x):
    x = jax.nn.relu(self.conv_modules()[i](x))
    if self.lrn and i < 2:
      x = local_response_norm(x, **LRN)
    if POOL_AFTER[i]:
      x = max_pool(x, 3, 2, padding=0)
    return sharding.constrain(x, ("act_batch", None, None, None))

  def forward_features(self, x, *, train: bool = False):
    """Images (B, H, W, C) → conv5's pooled maps (B, 6, 6, 256 at 224 px)."""
    del train
    chex.assert_rank(x, 4)
    chex.assert_axis_dimension(x, 3, self.in_chans)
    for i in range(5):
      x = self._conv_layer(i, x)
    return x

  def forward_intermediates(self, x, *, indices=None, stop_early: bool = False, train: bool = False) -> dict:
    """Named features (models/intermediates.py): "stage{i}" after conv{i+1} (with its LRN and pooling),
    then "encoded", "pre_logits" (FC2's 4096-d output) and "logits" unless `stop_early`."""
    picked = intermediates.select(indices, 5)
    out = {}
    for i in range(5):
      x = self._conv_layer(i, x)
      if i in picked:
        out[f"stage{i}"] = x
      if stop_early and picked and i == picked[-1]:
        return out
    return intermediates.add_head_outputs(out, self, x)

  def forward_head(self, x, *, pre_logits: bool = False, train: bool = False, rngs=None):
    x = adaptive_avg_pool(x, 6).reshape(x.shape[0], -1)
    drop = lambda d, y: d(y, deterministic=not train, rngs=rngs)  # noqa: E731
    if self.dropout_on == "inputs":
      x = jax.nn.relu(self.fc1(drop(self.drop1, x)))
      x = jax.nn.relu(self.fc2(drop(self.drop2, x)))
    else:
      x = drop(self.drop1, jax.nn.relu(self.fc1(x)))
      x = drop(self.drop2, jax.nn.relu(self.fc2(x)))
    if pre_logits or self.head is None:
      return x
    return self.head(x)

  def __call__(self, x, *, train: bool | None = None, rngs: nnx.Rngs | None = None):
    train = bool(train)
    out = self.forward_head(self.forward_features(x, train=train), train=train, rngs=rngs)
    chex.assert_shape(out, (x.shape[0], self.num_classes or self.num_features))
    return out.astype(jnp.float32)


def forward_flops(model: AlexNet, img_size: int | None = None, *, count_padding: bool = True) -> float:
  """Matmul FLOPs of one forward pass per example (2 per multiply-add): the convolutions, the adaptive pool
  where it is not the identity, and the FC layers (models/conv_flops.py counts them from the traced
  program's shapes). `count_padding=False` leaves out the kernel taps on the zero padding, as XLA does."""
  return conv_flops.forward_flops(model, img_size or model.img_size, count_padding=count_padding)


# Preprocessing: torchvision's ImageNet weights' (shorter side 256, 224 crop, bilinear, ImageNet mean / std);
# the paper's variant takes the same (its 224 crops of 256 images; per-pixel mean subtraction only).
TORCHVISION_IN1K = Preprocessing(224, IMAGENET_MEAN, IMAGENET_STD, crop_pct=0.875, interpolation="bilinear")

for _name, (_channels, _lrn, _two_gpu, _init, _dropout_on) in VARIANTS.items():
  register(_name, AlexNet, channels=_channels, lrn=_lrn, two_gpu=_two_gpu, init=_init, dropout_on=_dropout_on,
           preprocessing=TORCHVISION_IN1K)


# The embedding parameters (models.embedding_params): none, as for any convnet.
EMBEDDINGS = ()
