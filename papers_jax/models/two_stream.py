"""The ConvNet of each stream of Two-Stream ConvNets ("Two-Stream Convolutional Networks for Action Recognition
in Videos", Simonyan & Zisserman, NeurIPS 2014, Fig. 1 and §5 "ConvNets configuration"): CNN-M-2048.

conv1 7×7/2 96 + LRN + pool, conv2 5×5/2 256 + LRN + pool, conv3-5 3×3/1 512, pool after conv5, full6 4096
+ dropout, full7 2048 + dropout, softmax; ReLU after every hidden layer. Pooling is max over 3×3 windows at
stride 2 (§5; Fig. 1's "pool 2×2" is the factor of the downsampling), with Caffe's rounding up of the output
size (the paper's code is Caffe-derived, §5). The padding (none on conv1, 1 on conv2-5) is CNN-M's (Chatfield
et al. 2014), which the paper does not print: at the paper's 224 px crops the maps are 109 → 54 → 26 → 13 → 13
→ 13 → 6, so full6 sees 6·6·512 inputs. LRN "uses the same settings as [15]" (§5: AlexNet's; nn/norms.py,
k=2, n=5, α=1e-4, β=0.75). The spatial stream takes RGB frames (3 channels); the temporal stream a stack of 2L
flow channels (L=10: 20), and has no LRN after conv2 (the paper removed it "to reduce memory consumption",
§5). The two streams are separate networks, fused by their softmax scores (tools/two_stream_eval.py).

Variants (`VARIANTS`):
  - `two_stream_spatial`, `two_stream_temporal`: the paper's nets, UCF-101's 101 classes; 90,627,813 and
    90,707,781 parameters, counted from Fig. 1 (the paper prints no count; tests/test_two_stream.py checks
    these against a hand computation).
  - `two_stream_{spatial,temporal}_demo`: the same layers at 1/8 of the widths (12/32/64/64/64, full6 512,
    full7 256) for 28 px crops of the 32 px generated clips: conv1 with padding 3 and conv2 at stride 1
    with padding 2, so that the maps are 28 → 14 → 7 → 7 → 3 → 3 → 1 (at the paper's strides and paddings
    a 28 px crop leaves no map after pool5); the paper's 3×3/2 pooling, rounded up.
"""

import chex
import jax
import jax.numpy as jnp
from flax import nnx

from papers_jax.models import conv_flops
from papers_jax.models.registry import IMAGENET_MEAN, IMAGENET_STD, Preprocessing, register
from papers_jax.nn.conv import Conv, max_pool
from papers_jax.nn.drop import Dropout
from papers_jax.nn.linear import Dense
from papers_jax.nn.norms import local_response_norm

KERNELS = (7, 5, 3, 3, 3)
POOL_AFTER = (True, True, False, False, True)
LRN = dict(size=5, alpha=1e-4, beta=0.75, k=2.0)  # CNN-M's (AlexNet's)
PAPER = dict(channels=(96, 256, 512, 512, 512), strides=(2, 2, 1, 1, 1), paddings=(0, 1, 1, 1, 1),
             fc_features=(4096, 2048), num_classes=101, img_size=224,
             pool_window=3, pool_ceil=True)
DEMO = dict(channels=(12, 32, 64, 64, 64), strides=(2, 1, 1, 1, 1), paddings=(3, 2, 1, 1, 1),
            fc_features=(512, 256), num_classes=12, img_size=28, pool_window=3, pool_ceil=True)
# The paper names no init: torch's default weights (uniform ±1/√fan_in), zero biases. He init (fan-out) grew
# the activations ~3× a layer on the smooth flow inputs (no normalisation but LRN), logits ~100 at the start.
CONV_INIT = nnx.initializers.variance_scaling(1 / 3, "fan_in", "uniform", in_axis=(0, 1, 2), out_axis=3)
DENSE_INIT = nnx.initializers.variance_scaling(1 / 3, "fan_in", "uniform")
FLOW_LENGTH = 10  # L: flow fields stacked into the temporal input (§3.1, §6: L = 10 is the best)


def pooled_size(size: int, window: int, ceil: bool) -> int:
  """A map's size after max-pooling at stride 2, rounded up (Caffe; torch's ceil_mode) or down."""
  if size < window:
    return 0
  return (-(-(size - window) // 2) if ceil else (size - window) // 2) + 1


class TwoStreamConvNet(nnx.Module):
  """One stream: `in_chans` 3 (spatial) or 2L (temporal); `lrn`: LRN after (conv1, conv2); `channels`,
  `strides`, `paddings`: of conv1-5; `fc_features`: full6 and full7; `drop_rate` on both; `pool_window`:
  the max-pooling window at stride 2, `pool_ceil`: round its output size up (the paper's: 3, True, as Caffe)."""

  def __init__(self, *, channels=PAPER["channels"], strides=PAPER["strides"], paddings=PAPER["paddings"],
               lrn=(True, True), fc_features=(4096, 2048), in_chans: int = 3, num_classes: int = 101,
               drop_rate: float = 0.5, img_size: int = 224, pool_window: int = 3, pool_ceil: bool = True,
               dtype=None, param_dtype=jnp.float32, rngs: nnx.Rngs):
    kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
    self.lrn, self.in_chans, self.num_classes, self.img_size = tuple(lrn), in_chans, num_classes, img_size
    self.pool_window, self.pool_ceil = pool_window, pool_ceil
    self.num_features = fc_features[-1]
    c_in, size = in_chans, img_size
    for i, (c, k, s, p) in enumerate(zip(channels, KERNELS, strides, paddings)):
      setattr(self, f"conv{i + 1}", Conv(c_in, c, k, stride=s, padding=p, use_bias=True, kernel_init=CONV_INIT,
                                              **kw))
      c_in, size = c, (size + 2 * p - k) // s + 1
      if POOL_AFTER[i]:
        size = pooled_size(size, pool_window, pool_ceil)
    if size < 1:
      raise ValueError(f"a {img_size} px input leaves no map after conv5's pool")
    self.flat_features = size * size * c_in
    self.full6 = Dense(self.flat_features, fc_features[0], axes=("embed", "mlp"), kernel_init=DENSE_INIT, **kw)
    self.full7 = Dense(fc_features[0], fc_features[1], axes=("embed", "mlp"), kernel_init=DENSE_INIT, **kw)
    self.head = Dense(fc_features[1], num_classes, axes=("embed", "classes"), kernel_init=DENSE_INIT, **kw)
    self.drop6, self.drop7 = Dropout(drop_rate), Dropout(drop_rate)

  def forward_features(self, x, *, train: bool = False):
    """Inputs (B, H, W, in_chans) → conv5's pooled maps."""
    del train
    chex.assert_rank(x, 4)
    chex.assert_axis_dimension(x, 3, self.in_chans)
    for i in range(5):
      x = jax.nn.relu(getattr(self, f"conv{i + 1}")(x))
      if i < 2 and self.lrn[i]:
        x = local_response_norm(x, **LRN)
      if POOL_AFTER[i]:
        x = max_pool(x, self.pool_window, 2, padding=0, ceil_mode=self.pool_ceil)
    return x

  def forward_head(self, x, *, pre_logits: bool = False, train: bool = False, rngs=None):
    x = x.reshape(x.shape[0], -1)
    x = self.drop6(jax.nn.relu(self.full6(x)), deterministic=not train, rngs=rngs)
    x = self.drop7(jax.nn.relu(self.full7(x)), deterministic=not train, rngs=rngs)
    return x if pre_logits else self.head(x)

  def __call__(self, x, *, train: bool | None = None, rngs: nnx.Rngs | None = None):
    train = bool(train)
    out = self.forward_head(self.forward_features(x, train=train), train=train, rngs=rngs)
    return out.astype(jnp.float32)


def paper_param_count(in_chans: int, num_classes: int = 101) -> int:
  """Fig. 1's parameters by hand: weights + biases of conv1-5 and full6/7/8 at 224 px (6×6 after pool5)."""
  convs = [(in_chans, 96, 7), (96, 256, 5), (256, 512, 3), (512, 512, 3), (512, 512, 3)]
  fcs = [(6 * 6 * 512, 4096), (4096, 2048), (2048, num_classes)]
  return sum(k * k * a * b + b for a, b, k in convs) + sum(a * b + b for a, b in fcs)


def forward_flops(model: TwoStreamConvNet, img_size: int | None = None, *, count_padding: bool = True) -> float:
  """Matmul FLOPs of one forward pass per example (models/conv_flops.py counts them from the traced program)."""
  return conv_flops.forward_flops(model, img_size or model.img_size, count_padding=count_padding)


# Inputs: RGB frames (the paper's 224 crops of 256 px frames, its mean subtraction given ImageNet's statistics
# here; the demo's 28 crops of 32 px clips with their own pixel statistics), or the uint8 flow store (128 + 16·d,
# data/flow_clips.py), normalised back to pixels for every one of the 2L channels.
_FLOW = dict(mean=(128 / 255,), std=(16 / 255,), crop_pct=0.875, interpolation="bilinear")
_PREPROCESSING = {
    "two_stream_spatial": Preprocessing(224, IMAGENET_MEAN, IMAGENET_STD, crop_pct=0.875, interpolation="bilinear"),
    "two_stream_spatial_demo": Preprocessing(28, (0.125,) * 3, (0.13,) * 3, crop_pct=0.875, interpolation="bilinear"),
    "two_stream_temporal": Preprocessing(224, **_FLOW),
    "two_stream_temporal_demo": Preprocessing(28, **_FLOW),
}
for _stream, _chans, _lrn in (("spatial", 3, (True, True)), ("temporal", 2 * FLOW_LENGTH, (True, False))):
  register(f"two_stream_{_stream}", TwoStreamConvNet, in_chans=_chans, lrn=_lrn,
           preprocessing=_PREPROCESSING[f"two_stream_{_stream}"], **PAPER)
  register(f"two_stream_{_stream}_demo", TwoStreamConvNet, in_chans=_chans, lrn=_lrn,
           preprocessing=_PREPROCESSING[f"two_stream_{_stream}_demo"], **DEMO)

# The embedding parameters (models.embedding_params): none, as for any convnet.
EMBEDDINGS = ()
