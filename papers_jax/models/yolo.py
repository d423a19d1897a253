"""YOLOv1 ("You Only Look Once: Unified, Real-Time Object Detection", Redmon et al. 2016).

The detection network of Figure 3: 24 convolutional layers (1×1 reduction layers followed by 3×3
convolutions, four 2×2 max pools, a stride-2 3×3 convolution) and 2 fully connected layers: a 4096-wide
hidden layer, dropout 0.5 after it (§2.2), and the output layer of S·S·(B·5 + C) values reshaped to the
S×S×(B·5 + C) grid (objectives/yolo.py gives its layout). Leaky ReLU (slope 0.1) after every layer but
the last, which is linear. 448×448 inputs, S = 7, B = 2, C = 20 (PASCAL VOC).

Variants (`VARIANTS`):
  - `yolov1`: the paper's network. Convolutions with biases and no normalisation (batch normalisation came
    with YOLOv2). 271.7M parameters with C = 20 (tests/test_yolo.py: the count of each layer written out).
  - `yolov1_tiny`: a demo network of the same form, 6 convolutions (16–128 channels, BatchNorm) with four
    2×2 max pools and a 256-wide hidden FC layer; any `layers` tuple gives another.

`layers`: the convolutional part as a tuple of (kernel, channels, stride) triples and "M" (2×2 max pool).
Init: He-normal (fan-out) convolutions, Xavier-uniform FC layers, zero biases (the paper pretrains the
first 20 convolutions on ImageNet and does not state an init).

`decode` turns the grid into detections: each predictor's box with the class-specific confidence
Pr(class_c | object) · confidence for every class (§2, eq. 2), a score threshold and per-class
non-maximum suppression (ops/boxes.py). `forward_flops(model)` counts a forward pass.
"""

import jax
import jax.numpy as jnp
from flax import nnx

from papers_jax.core import sharding
from papers_jax.models import conv_flops
from papers_jax.models.registry import Preprocessing, register
from papers_jax.nn.conv import Conv, max_pool
from papers_jax.nn.drop import Dropout
from papers_jax.nn.linear import Dense
from papers_jax.nn.norms import BatchNorm
from papers_jax.objectives import yolo as yolo_objective
from papers_jax.ops import boxes as box_ops

# Figure 3, top to bottom.
PAPER_LAYERS = (
    (7, 64, 2), "M",
    (3, 192, 1), "M",
    (1, 128, 1), (3, 256, 1), (1, 256, 1), (3, 512, 1), "M",
    *((1, 256, 1), (3, 512, 1)) * 4, (1, 512, 1), (3, 1024, 1), "M",
    *((1, 512, 1), (3, 1024, 1)) * 2, (3, 1024, 1), (3, 1024, 2),
    (3, 1024, 1), (3, 1024, 1),
)
TINY_LAYERS = ((3, 16, 1), "M", (3, 32, 1), "M", (3, 64, 1), "M", (3, 64, 1), "M", (3, 128, 1), (3, 128, 1))
LEAKY_SLOPE = 0.1


class YOLOv1(nnx.Module):
  """`grid_size` S, `boxes_per_cell` B, `num_classes` C; `layers` the convolutions (module docstring),
  `fc_features` the hidden FC width, `batch_norm` a BatchNorm after each convolution (not the paper's),
  `img_size` the input size the FC layer is built for (the network takes only that size)."""

  def __init__(self, *, num_classes: int = 20, grid_size: int = 7, boxes_per_cell: int = 2, layers=PAPER_LAYERS,
               fc_features: int = 4096, drop_rate: float = 0.5, batch_norm: bool = False, img_size: int = 448,
               in_chans: int = 3, dtype=None, param_dtype=jnp.float32, rngs: nnx.Rngs):
    kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
    self.num_classes, self.grid_size, self.boxes_per_cell = num_classes, grid_size, boxes_per_cell
    self.img_size, self.in_chans, self.batch_norm = img_size, in_chans, batch_norm
    self.layers = tuple(layer if layer == "M" else tuple(layer) for layer in layers)
    convs, norms, c_in, size = [], [], in_chans, img_size
    for layer in self.layers:
      if layer == "M":
        size //= 2
        continue
      k, c, stride = layer
      convs.append(Conv(c_in, c, k, stride=stride, use_bias=not batch_norm, **kw))
      norms.append(BatchNorm(c, **kw) if batch_norm else None)
      c_in, size = c, (size + 2 * (k // 2) - k) // stride + 1
    if size < 1:
      raise ValueError(f"img_size {img_size} is too small for {len(convs)} convolutions and their pools")
    self.convs = nnx.List(convs)
    self.norms = nnx.List(norms)
    self.flat_features = size * size * c_in
    self.depth = boxes_per_cell * 5 + num_classes
    self.fc1 = Dense(self.flat_features, fc_features, axes=("embed", "mlp"), **kw)
    self.drop = Dropout(drop_rate)
    self.fc2 = Dense(fc_features, grid_size * grid_size * self.depth, axes=("mlp", None), **kw)

  def forward_features(self, x, *, train: bool = False):
    """Images (B, H, W, C) → the last convolution's maps (B, 7, 7, 1024 for the paper's network)."""
    if x.shape[1:] != (self.img_size, self.img_size, self.in_chans):
      raise ValueError(f"YOLOv1 takes {self.img_size}×{self.img_size}×{self.in_chans} images, got {x.shape[1:]}")
    i = 0
    for layer in self.layers:
      if layer == "M":
        x = max_pool(x, 2, 2, padding=0)
        continue
      x = self.convs[i](x)
      if self.norms[i] is not None:
        x = self.norms[i](x, train=train)
      x = jax.nn.leaky_relu(x, LEAKY_SLOPE)
      x = sharding.constrain(x, ("act_batch", None, None, None))
      i += 1
    return x

  def __call__(self, x, *, train: bool | None = None, rngs: nnx.Rngs | None = None):
    train = bool(train)
    x = self.forward_features(x, train=train).reshape(x.shape[0], -1)
    x = self.drop(jax.nn.leaky_relu(self.fc1(x), LEAKY_SLOPE), deterministic=not train, rngs=rngs)
    s = self.grid_size
    return {"grid": self.fc2(x).astype(jnp.float32).reshape(-1, s, s, self.depth)}


def decode(grid, num_classes: int, *, score_threshold: float = 0.001, iou_threshold: float = 0.5,
           max_detections: int = 100):
  """Grid (N, S, S, B·5 + C) → detections per image, (boxes (N, D, 4) normalised xyxy, scores (N, D),
  labels (N, D), keep (N, D) bool) with D = max_detections, best first. Every predictor's box is scored for
  every class by Pr(class | object) · confidence; scores ≤ score_threshold are dropped, then per-class NMS
  at `iou_threshold`. Jittable: static shapes throughout."""
  box_out, class_out = yolo_objective.split_output(grid.astype(jnp.float32), num_classes)
  n, s, _, b, _ = box_out.shape
  xyxy = box_ops.cxcywh_to_xyxy(yolo_objective.cell_boxes(box_out))  # (N, S, S, B, 4)
  scores = class_out[..., None, :] * box_out[..., 4:5]  # (N, S, S, B, C)
  candidates = s * s * b * num_classes
  boxes = jnp.broadcast_to(xyxy[..., None, :], (n, s, s, b, num_classes, 4)).reshape(n, candidates, 4)
  labels = jnp.broadcast_to(jnp.arange(num_classes), scores.shape).reshape(n, candidates)
  scores = scores.reshape(n, candidates)
  index, keep = box_ops.batched_nms(boxes, scores, labels, iou_threshold=iou_threshold, max_outputs=max_detections,
                                    score_threshold=score_threshold)
  index = jnp.maximum(index, 0)
  take = lambda x: jnp.take_along_axis(x, index, axis=1)  # noqa: E731
  return (jnp.take_along_axis(boxes, index[..., None], axis=1), jnp.where(keep, take(scores), 0.0),
          take(labels), keep)


def forward_flops(model: YOLOv1, img_size: int | None = None, *, count_padding: bool = True) -> float:
  """FLOPs of one forward pass per example (2 per multiply-add), element-wise work (biases, leaky ReLU, max
  pools, BatchNorm) included as XLA counts it (models/conv_flops.py). The network takes only its own size."""
  if img_size not in (None, model.img_size):
    raise ValueError(f"YOLOv1 takes only its img_size {model.img_size}")
  return conv_flops.forward_flops(model, model.img_size, count_padding=count_padding, elementwise=True)


# Darknet's input: the image resized to the network's size (no crop), pixels in [0, 1], no mean or std.
_RAW = dict(mean=(0.0,) * 3, std=(1.0,) * 3, crop_pct=1.0, interpolation="bilinear")
register("yolov1", YOLOv1, preprocessing=Preprocessing(448, **_RAW))
register("yolov1_tiny", YOLOv1, layers=TINY_LAYERS, fc_features=256, batch_norm=True, img_size=64,
         preprocessing=Preprocessing(64, **_RAW))

# The embedding parameters (models.embedding_params): none, as for any convnet.
EMBEDDINGS = ()
