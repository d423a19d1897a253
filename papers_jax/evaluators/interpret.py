"""Why a classifier said what it said: saliency maps for any registered model, through one mechanism.

The mechanism: every named feature of `model.forward_intermediates` is a tap (models/intermediates.py).
`score_gradient` runs the forward with an additive zero `delta` at the named feature and
differentiates the class score with respect to `delta`, which is the gradient with respect to the
feature itself. On top of it:

  - CAM (Zhou et al., 2016): for a global-average-pooled linear head, Σ_k w_k^c A_k(x, y). Here
    computed as HW · Σ_k A_k · ∂S_c/∂A_k at "encoded": the gradient of a GAP + linear head is
    w_k^c / HW at every position, so this is CAM exactly and needs no knowledge of where the head
    lives; a head that is not GAP + linear is detected (the gradient varies over positions) and refused.
  - Grad-CAM (Selvaraju et al., 2017) at any named layer: ReLU(Σ_k α_k A_k), α_k = the spatial mean
    of ∂S_c/∂A_k. Token features (ViT, Mixer) are reshaped to their patch grid first.
  - Guided backprop (Springenberg et al., 2015): ∂S_c/∂image with every ReLU's backward pass
    replaced by the guided rule (nn/activations.py), and guided Grad-CAM, its product with the
    upsampled Grad-CAM map.
  - Attention rollout (Abnar & Zuidema, 2020), DINO's last-layer [CLS] attention per head (Caron et
    al., 2021), and the ViT paper's mean attention distance (evaluators/vit_analysis.py).
  - The CAM paper's weakly supervised localisation: a box around the largest connected region of
    the map above 20% of its maximum, and the IoU of two boxes.

Functions take and return arrays; `jax.jit` them with the model as an argument (nnx modules are
pytrees) and the layer name and flags closed over.
"""

import contextlib

import jax
import jax.numpy as jnp
import numpy as np

from papers_jax.errors import UserError
from papers_jax.evaluators.vit_analysis import mean_attention_distance  # noqa: F401  (re-exported)
from papers_jax.models import intermediates
from papers_jax.nn.activations import guided_relu_backward


def _forward(model, images, *, deltas=None, guided: bool = False, **forward_kwargs) -> dict:
  with contextlib.ExitStack() as stack:
    if deltas:
      stack.enter_context(intermediates.perturbed(deltas))
    if guided:
      stack.enter_context(guided_relu_backward())
    out = model.forward_intermediates(images, train=False, **forward_kwargs)
  if "logits" not in out:
    raise UserError(f"{type(model).__name__} has no classifier head (num_classes=0): there is no class score "
                    "to explain")
  return out


def _class_score(logits, target):
  """Σ over the batch of logits[b, target[b]] (examples are independent in evaluation mode, so its
  gradient holds each example's own); target None = each example's predicted class."""
  target = jnp.argmax(logits, axis=-1) if target is None else jnp.asarray(target, jnp.int32)
  target = jnp.broadcast_to(target, logits.shape[:1])
  return jnp.take_along_axis(logits, target[:, None], axis=-1).sum(), target


def score_gradient(model, images, layer: str, target=None, *, guided: bool = False, **forward_kwargs):
  """(feature, ∂score/∂feature, logits, target) for the named feature `layer` of
  `model.forward_intermediates` (e.g. "stage3", "block05/+mlp", "encoded"); score = the logit of
  `target` (int or (batch,) ints; None = the predicted class)."""
  shape = jax.eval_shape(lambda x: _forward(model, x, **forward_kwargs)[layer], images)

  def score(delta):
    out = _forward(model, images, deltas={layer: delta}, guided=guided, **forward_kwargs)
    s, t = _class_score(out["logits"], target)
    return s, (out[layer], out["logits"], t)

  grad, (feature, logits, target) = jax.grad(score, has_aux=True)(jnp.zeros(shape.shape, shape.dtype))
  return feature, grad, logits, target


_jit_score_gradient = jax.jit(score_gradient, static_argnums=2, static_argnames="guided")


def input_gradient(model, images, target=None, *, guided: bool = False):
  """(∂score/∂images, target); with `guided`, guided backpropagation."""
  def score(x):
    return _class_score(_forward(model, x, guided=guided)["logits"], target)

  return jax.grad(score, has_aux=True)(images)


def spatial(model, feature):
  """A feature as a map (batch, h, w, channels): NHWC stays; tokens (batch, tokens, dim) lose the
  prefix tokens ([CLS], registers) and take the model's patch grid."""
  if feature.ndim == 4:
    return feature
  embed = getattr(model, "patch_embed", None) or getattr(model, "stem", None)
  if feature.ndim != 3 or not hasattr(embed, "grid_size"):
    raise UserError(f"a feature of shape {feature.shape} is neither NHWC nor patch tokens; pick a spatial layer")
  gh, gw = embed.grid_size
  prefix = feature.shape[1] - gh * gw
  return feature[:, prefix:].reshape(feature.shape[0], gh, gw, feature.shape[-1])


def grad_cam(model, images, layer: str, target=None):
  """Grad-CAM maps (batch, h, w) at the named layer (not upsampled), and the target classes."""
  feature, grad, _, target = score_gradient(model, images, layer, target)
  feature, grad = spatial(model, feature), spatial(model, grad)
  weights = grad.mean(axis=(1, 2), keepdims=True)  # α_k: global-average-pooled gradients
  return jax.nn.relu((weights * feature).sum(axis=-1)), target


def class_activation_map(model, images, target=None, *, rtol: float = 1e-3):
  """CAM (batch, h, w) of a GAP + linear classifier at its last feature map, the target classes and the logits.
  Not jittable as a whole (it checks the head on concrete values); its parts are jitted."""
  feature, grad, logits, target = _jit_score_gradient(model, images, "encoded", target)
  full = np.asarray(grad)
  feature, grad = spatial(model, feature), np.asarray(spatial(model, grad))
  h, w = feature.shape[1:3]
  mean = grad.mean(axis=(1, 2), keepdims=True)
  scale = float(np.abs(mean).max())
  # GAP + linear: the same gradient at every position, and none on what pooling leaves out ([CLS]).
  if (scale == 0 or not np.allclose(grad, mean, rtol=rtol, atol=rtol * scale)
      or np.abs(full).sum() > (1 + rtol) * np.abs(grad).sum()):
    raise UserError(f"CAM needs a global-average-pooled linear head; {type(model).__name__}'s head is not one "
                    "(its gradient varies over positions). Use Grad-CAM instead.")
  return (feature * mean).sum(axis=-1) * (h * w), target, logits


def guided_backprop(model, images, target=None):
  """Guided-backprop saliency (batch, H, W, C) and the target classes."""
  return input_gradient(model, images, target, guided=True)


def upsample(maps, size):
  """(batch, h, w) → (batch, *size), bilinear (as the CAM and Grad-CAM papers draw them)."""
  return jax.image.resize(maps, maps.shape[:1] + tuple(size), "bilinear")


def guided_grad_cam(model, images, layer: str, target=None):
  """Guided Grad-CAM (batch, H, W, C): guided backprop times the upsampled Grad-CAM map."""
  maps, target = grad_cam(model, images, layer, target)
  saliency, _ = guided_backprop(model, images, target)
  return saliency * upsample(maps, images.shape[1:3])[..., None], target


def attention_maps(model, images) -> list:
  """The attention probabilities of every block, [(batch, heads, tokens, tokens)] in depth order."""
  out = model.forward_intermediates(images, return_attention=True, train=False)
  keys = sorted(k for k in out if k.endswith("/attn"))
  if not keys:
    raise UserError(f"{type(model).__name__} reports no attention weights; rollout needs a ViT")
  return [out[k] for k in keys]


def attention_rollout(attentions, *, head_fusion: str = "mean"):
  """Abnar & Zuidema's rollout: per layer the heads' mean attention plus the identity (the residual
  path), rows renormalised, multiplied through the layers (last @ … @ first). (batch, tokens, tokens)."""
  rollout = None
  for attn in attentions:
    a = attn.mean(axis=1) if head_fusion == "mean" else attn.max(axis=1)
    a = a + jnp.eye(a.shape[-1], dtype=a.dtype)
    a = a / a.sum(axis=-1, keepdims=True)
    rollout = a if rollout is None else a @ rollout
  return rollout


def cls_maps(model, token_maps):
  """The [CLS] row of (batch, [heads,] tokens, tokens) over the patch tokens, as (batch, [heads,] gh, gw)."""
  gh, gw = model.patch_embed.grid_size
  prefix = token_maps.shape[-1] - gh * gw
  if prefix < 1:
    raise UserError(f"{type(model).__name__} has no [CLS] token to read the attention of")
  return token_maps[..., 0, prefix:].reshape(token_maps.shape[:-2] + (gh, gw))


def last_layer_cls_attention(model, images):
  """DINO's picture: the last block's attention of [CLS] to the patches, per head (batch, heads, gh, gw)."""
  return cls_maps(model, attention_maps(model, images)[-1])


# --- Weakly supervised localisation (Zhou et al., 2016, Sec. 3) ---


def box_from_map(heatmap, threshold: float = 0.2):
  """(top, left, bottom, right), bottom/right exclusive: the bounding box of the largest connected
  region (4-connectivity) where `heatmap` ≥ threshold · its maximum."""
  from scipy import ndimage

  heatmap = np.asarray(heatmap, np.float64)
  labels, count = ndimage.label(heatmap >= threshold * heatmap.max())
  if count == 0:  # a map ≤ 0 everywhere: the whole image
    return 0, 0, heatmap.shape[0], heatmap.shape[1]
  largest = 1 + int(np.argmax(np.bincount(labels.ravel())[1:]))
  rows, cols = np.nonzero(labels == largest)
  return int(rows.min()), int(cols.min()), int(rows.max()) + 1, int(cols.max()) + 1


def box_iou(a, b) -> float:
  """Intersection over union of two (top, left, bottom, right) boxes (bottom/right exclusive)."""
  h = max(0, min(a[2], b[2]) - max(a[0], b[0]))
  w = max(0, min(a[3], b[3]) - max(a[1], b[1]))
  inter = h * w
  area = lambda box: (box[2] - box[0]) * (box[3] - box[1])  # noqa: E731
  return inter / (area(a) + area(b) - inter)
