"""SAM's training loss (Kirillov et al., 2023, §3 and appendix A "Losses and training").

Masks are supervised with a linear combination of focal and dice loss in the ratio 20 : 1 (DETR's /
MaskFormer's sigmoid focal loss, α = 0.25, γ = 2, averaged over pixels; the soft dice loss with +1
smoothing on the sigmoid probabilities), and the IoU head with the mean squared error between its
prediction and the IoU of the thresholded (logit > 0) predicted mask with the ground truth, at weight 1.
With several output masks (the ambiguity-aware multimask output) only the mask of minimum loss is
back-propagated; the IoU head is trained on all of them.

Shapes: logits (..., M, H, W), target (..., H, W) bool or {0, 1}, iou_pred (..., M). The leading axes
are prompts; `valid` (...) leaves out padded prompts.
"""

import jax
import jax.numpy as jnp

FOCAL_WEIGHT, DICE_WEIGHT, IOU_WEIGHT = 20.0, 1.0, 1.0


def sigmoid_focal_loss(logits, target, alpha: float = 0.25, gamma: float = 2.0):
  """Per-mask mean over pixels of the sigmoid focal loss: (..., H, W) → (...)."""
  logits, target = logits.astype(jnp.float32), target.astype(jnp.float32)
  p = jax.nn.sigmoid(logits)
  ce = jnp.maximum(logits, 0) - logits * target + jnp.log1p(jnp.exp(-jnp.abs(logits)))
  p_t = p * target + (1 - p) * (1 - target)
  loss = ce * (1 - p_t) ** gamma
  if alpha >= 0:
    loss = loss * (alpha * target + (1 - alpha) * (1 - target))
  return loss.mean((-2, -1))


def dice_loss(logits, target, smooth: float = 1.0):
  """Per-mask soft dice loss 1 − (2 Σ p·t + s) / (Σ p + Σ t + s): (..., H, W) → (...)."""
  p = jax.nn.sigmoid(logits.astype(jnp.float32))
  t = target.astype(jnp.float32)
  inter = (p * t).sum((-2, -1))
  return 1 - (2 * inter + smooth) / (p.sum((-2, -1)) + t.sum((-2, -1)) + smooth)


def mask_iou(logits, target):
  """IoU of the thresholded masks (logit > 0) with the target: (..., H, W) → (...); 1 when both are empty."""
  pred, t = logits > 0, target.astype(bool)
  inter = (pred & t).sum((-2, -1)).astype(jnp.float32)
  union = (pred | t).sum((-2, -1)).astype(jnp.float32)
  return jnp.where(union > 0, inter / jnp.maximum(union, 1.0), 1.0)


def prompt_losses(logits, iou_pred, target, *, focal_weight: float = FOCAL_WEIGHT, dice_weight: float = DICE_WEIGHT,
                  iou_weight: float = IOU_WEIGHT) -> dict:
  """Per prompt (...): "mask_loss" (of the best of the M masks), "iou_loss", their weighted sum "loss", and the
  "best_iou" (the best mask's IoU), for logits (..., M, H, W) against target (..., H, W)."""
  target = target[..., None, :, :]
  mask_losses = focal_weight * sigmoid_focal_loss(logits, target) + dice_weight * dice_loss(logits, target)  # (..., M)
  best = jnp.argmin(mask_losses, axis=-1)
  mask_loss = jnp.take_along_axis(mask_losses, best[..., None], -1)[..., 0]
  ious = jax.lax.stop_gradient(mask_iou(logits, target))
  iou_loss = jnp.square(iou_pred.astype(jnp.float32) - ious).mean(-1)
  return {"loss": mask_loss + iou_weight * iou_loss, "mask_loss": mask_loss, "iou_loss": iou_loss,
          "best_iou": jnp.take_along_axis(ious, best[..., None], -1)[..., 0]}


def mean_over_prompts(per_prompt: dict, valid=None):
  """(the mean "loss" over the valid prompts, the means of the other parts) of `prompt_losses`' output."""
  w = jnp.ones(per_prompt["loss"].shape, jnp.float32) if valid is None else valid.astype(jnp.float32)
  n = jnp.maximum(w.sum(), 1.0)
  means = {k: (v * w).sum() / n for k, v in per_prompt.items()}
  return means.pop("loss"), means


def sam_loss(logits, iou_pred, target, valid=None, *, focal_weight: float = FOCAL_WEIGHT,
             dice_weight: float = DICE_WEIGHT, iou_weight: float = IOU_WEIGHT):
  """(loss averaged over the valid prompts, parts) for logits (..., M, H, W) against target (..., H, W)."""
  return mean_over_prompts(prompt_losses(logits, iou_pred, target, focal_weight=focal_weight, dice_weight=dice_weight,
                                         iou_weight=iou_weight), valid)
