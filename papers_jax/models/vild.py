"""ViLD's detector (Gu et al., ICLR 2022): a two-stage detector whose classifier is a region embedding.

A small single-scale version of the paper's Mask R-CNN for the 64×64 scenes:
- backbone: six 3×3 convolutions with GroupNorm and ReLU, stride 4 overall (a 16×16 map on 64 pixels);
- RPN: a 3×3 convolution, then per cell and anchor an objectness logit and Faster R-CNN box deltas; square
  anchors of `anchor_sizes` pixels at every cell; proposals are the decoded anchors, the `pre_nms` most
  object-like, NMS at `rpn_nms`, `num_proposals` kept (no gradient flows through them, as Faster R-CNN);
- RoI head: RoIAlign (ops/roi_align.py) to `roi_size`² bins, two fully connected layers (the "2fc" box head),
  then a class-agnostic box regression (4 deltas, Detectron's weights 10, 10, 5, 5) and two projections to
  CLIP's embedding space: the ViLD-text head and the ViLD-image head (ViLD-ensemble's two heads, §3.4),
  L2-normalised; plus the learned background embedding e_bg.

`__call__(images, rois=None)` runs the RPN, takes its proposals, appends the given `rois` (B, R, 4) (the
ground-truth boxes and the precomputed distillation proposals in training) and runs the RoI head on all of
them. Boxes are xyxy in input pixels. The objectives and the scoring are in objectives/vild.py.
"""

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from papers_jax.models import conv_flops
from papers_jax.data.vqa_scenes import MEAN as SCENES_MEAN, STD as SCENES_STD
from papers_jax.models.registry import Preprocessing, register
from papers_jax.ops import boxes as box_ops
from papers_jax.ops.roi_align import decode_boxes, roi_align

ROI_BOX_WEIGHTS = (10.0, 10.0, 5.0, 5.0)  # Detectron's RoI head box coder


def anchor_grid(img_size: int, stride: int, sizes) -> np.ndarray:
  """(G·G·A, 4) xyxy square anchors centred on each stride-`stride` cell, ordered (row, column, size)."""
  grid = img_size // stride
  centres = (np.arange(grid) + 0.5) * stride
  cy, cx, s = np.meshgrid(centres, centres, np.asarray(sizes, np.float32), indexing="ij")
  return np.stack([cx - s / 2, cy - s / 2, cx + s / 2, cy + s / 2], -1).reshape(-1, 4).astype(np.float32)


class ViLDDetector(nnx.Module):
  """See the module docstring."""

  def __init__(self, *, embed_dim: int = 64, widths=(32, 64, 64, 64, 64, 64), strides=(1, 2, 1, 2, 1, 1),
               anchor_sizes=(10.0, 14.0, 18.0), img_size: int = 64, roi_size: int = 4, sampling_ratio: int = 2,
               head_width: int = 256, pre_nms: int = 200, num_proposals: int = 32, rpn_nms: float = 0.7,
               in_chans: int = 3, rngs: nnx.Rngs, dtype=None, param_dtype=jnp.float32):
    kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
    self.stride = int(np.prod(strides))
    if img_size % self.stride:
      raise ValueError(f"img_size {img_size} is not a multiple of the backbone's stride {self.stride}")
    self.img_size, self.roi_size, self.sampling_ratio = img_size, roi_size, sampling_ratio
    self.pre_nms, self.num_proposals, self.rpn_nms = pre_nms, num_proposals, rpn_nms
    self.anchor_sizes = tuple(float(a) for a in anchor_sizes)
    self.num_anchors = len(anchor_sizes)
    convs, norms, c = [], [], in_chans
    for width, stride in zip(widths, strides):
      convs.append(nnx.Conv(c, width, (3, 3), strides=(stride, stride), padding=1, use_bias=False, **kw))
      norms.append(nnx.GroupNorm(width, num_groups=8, **kw))
      c = width
    self.convs, self.norms = nnx.List(convs), nnx.List(norms)
    self.rpn_conv = nnx.Conv(c, c, (3, 3), padding=1, **kw)
    small = nnx.initializers.normal(0.01)
    self.rpn_objectness = nnx.Conv(c, self.num_anchors, (1, 1), kernel_init=small, **kw)
    self.rpn_deltas = nnx.Conv(c, 4 * self.num_anchors, (1, 1), kernel_init=small, **kw)
    self.fc1 = nnx.Linear(roi_size * roi_size * c, head_width, **kw)
    self.fc2 = nnx.Linear(head_width, head_width, **kw)
    self.box_deltas = nnx.Linear(head_width, 4, kernel_init=nnx.initializers.normal(0.001), **kw)
    self.text_projection = nnx.Linear(head_width, embed_dim, **kw)
    self.image_projection = nnx.Linear(head_width, embed_dim, **kw)
    self.background = nnx.Param(nnx.initializers.normal(1.0)(rngs.params(), (embed_dim,), param_dtype))

  @property
  def anchors(self) -> np.ndarray:
    return anchor_grid(self.img_size, self.stride, self.anchor_sizes)

  def features(self, images):
    x = images
    for conv, norm in zip(self.convs, self.norms):
      x = jax.nn.relu(norm(conv(x)))
    return x

  def rpn(self, features):
    """(objectness logits (B, G·G·A), deltas (B, G·G·A, 4)), anchors ordered as `anchor_grid`."""
    h = jax.nn.relu(self.rpn_conv(features))
    b = h.shape[0]
    return (self.rpn_objectness(h).reshape(b, -1).astype(jnp.float32),
            self.rpn_deltas(h).reshape(b, -1, 4).astype(jnp.float32))

  def proposals(self, logits, deltas):
    """The RPN's top proposals: (boxes (B, P, 4), valid (B, P)); no gradient."""
    logits, deltas = jax.lax.stop_gradient(logits), jax.lax.stop_gradient(deltas)
    boxes = jnp.clip(decode_boxes(deltas, jnp.asarray(self.anchors)), 0.0, float(self.img_size))
    scores, top = jax.lax.top_k(logits, min(self.pre_nms, logits.shape[1]))
    boxes = jnp.take_along_axis(boxes, top[..., None], axis=1)
    big_enough = ((boxes[..., 2] - boxes[..., 0]) >= 1.0) & ((boxes[..., 3] - boxes[..., 1]) >= 1.0)
    keep_idx, keep = box_ops.batched_nms(boxes, scores, iou_threshold=self.rpn_nms, max_outputs=self.num_proposals,
                                         valid=big_enough)
    chosen = jnp.take_along_axis(boxes, jnp.maximum(keep_idx, 0)[..., None], axis=1)
    return jnp.where(keep[..., None], chosen, 0.0), keep

  def region_heads(self, features, rois):
    """RoIs (B, R, 4) → (text embeddings (B, R, D), image embeddings (B, R, D), both L2-normalised,
    box deltas (B, R, 4))."""
    pooled = jax.vmap(lambda f, r: roi_align(f, r, output_size=self.roi_size, spatial_scale=1.0 / self.stride,
                                             sampling_ratio=self.sampling_ratio))(features, rois)
    x = pooled.reshape(*rois.shape[:2], -1)
    x = jax.nn.relu(self.fc2(jax.nn.relu(self.fc1(x))))

    def unit(v):
      v = v.astype(jnp.float32)
      return v / jnp.maximum(jnp.linalg.norm(v, axis=-1, keepdims=True), 1e-6)

    return unit(self.text_projection(x)), unit(self.image_projection(x)), self.box_deltas(x).astype(jnp.float32)

  def background_embedding(self):
    bg = self.background[...].astype(jnp.float32)
    return bg / jnp.maximum(jnp.linalg.norm(bg), 1e-6)

  def __call__(self, images, rois=None, *, train: bool = False, rngs: nnx.Rngs | None = None):
    del train, rngs  # no dropout, no batch statistics
    features = self.features(images)
    rpn_logits, rpn_deltas = self.rpn(features)
    proposals, proposal_valid = self.proposals(rpn_logits, rpn_deltas)
    all_rois = proposals if rois is None else jnp.concatenate([proposals, rois.astype(proposals.dtype)], axis=1)
    text_embed, image_embed, deltas = self.region_heads(features, all_rois)
    return {"rpn_logits": rpn_logits, "rpn_deltas": rpn_deltas, "proposals": proposals,
            "proposal_valid": proposal_valid, "rois": all_rois, "text_embed": text_embed,
            "image_embed": image_embed, "box_deltas": deltas, "background": self.background_embedding()}


# Trained from scratch on the 64-pixel scenes, normalised with their own mean / std (as the scenes CLIP is).
register("vild_detector_tiny", ViLDDetector,
         preprocessing=Preprocessing(64, SCENES_MEAN, SCENES_STD, crop_pct=1.0, interpolation="bilinear"))


def refined_boxes(out, img_size: int):
  """The RoI head's class-agnostic boxes: its deltas applied to the RoIs, clipped to the image."""
  return jnp.clip(decode_boxes(out["box_deltas"], out["rois"], ROI_BOX_WEIGHTS), 0.0, float(img_size))


def forward_flops(model: ViLDDetector, img_size: int = 64, *, count_padding: bool = True) -> float:
  """FLOPs of one inference forward pass on one image (backbone, RPN, proposals, RoIAlign and the RoI head
  on `num_proposals` RoIs), element-wise work included (models/conv_flops.py)."""
  in_chans = model.convs[0].kernel.shape[2]
  return conv_flops.traced_flops(lambda m, x: m(x), model, conv_flops.images(img_size, in_chans),
                                 count_padding=count_padding)


EMBEDDINGS = ("background",)
