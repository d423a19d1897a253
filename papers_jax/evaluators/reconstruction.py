"""Pictures of masked-autoencoder reconstructions: one column per image, three rows: the original,
the masked input the encoder saw (removed patches grey), and the reconstruction (visible patches
copied from the input, removed ones predicted).

With `norm_pix_loss` the model predicts each patch normalised by that patch's own mean and std,
which the model never sees for a removed patch. De-normalising with those target statistics
(`mode="target"`) puts the true brightness and contrast of every removed patch into the picture,
so it looks better than what the model knows. The default is the honest view:
  "visible"     de-normalise with the mean / std of the image's visible patches (what the encoder saw);
  "normalized"  no de-normalisation: the rows show the normalised target and the raw prediction;
  "target"      the leaky view above, only on request and labelled as such.
Without `norm_pix_loss` the prediction is in pixel space and shown as it is. The caption names the view.
"""

import os
import textwrap

import numpy as np
from PIL import Image, ImageDraw

from papers_jax.objectives import reconstruction as rec

MODES = ("visible", "normalized", "target")

CAPTIONS = {
    "pixels": "removed patches: predicted pixels (no norm_pix_loss)",
    "visible": "removed patches: norm_pix_loss prediction de-normalised with the mean/std of the VISIBLE "
               "patches (no statistics of the removed patches used)",
    "normalized": "norm_pix_loss space: rows show the per-patch NORMALISED target and prediction "
                  "(mean 0, std 1 per patch; 0.5 + x/4 on screen)",
    "target": "removed patches: de-normalised with their OWN target mean/std: this LEAKS information "
              "the model never saw",
}


def _np_patch_stats(patches, eps=1e-6):
  mean = patches.mean(-1, keepdims=True)
  var = ((patches - mean) ** 2).sum(-1, keepdims=True) / (patches.shape[-1] - 1)
  return mean, np.sqrt(var + eps)


def panels(images_uint8, pred, mask, *, patch_size, mean, std, norm_pix_loss: bool, mode: str = "visible"):
  """(original, masked, reconstruction) as float images in [0, 1], each (B, H, W, C), and the caption key."""
  if mode not in MODES:
    raise ValueError(f"unknown visualisation mode {mode!r}; choose from {MODES}")
  b, h, w, c = images_uint8.shape
  ph, pw = (patch_size, patch_size) if np.isscalar(patch_size) else patch_size
  grid = (h // ph, w // pw)
  mean, std = np.asarray(mean, np.float64), np.asarray(std, np.float64)
  x = (images_uint8.astype(np.float64) / 255.0 - mean) / std  # the model's input space
  target = np.asarray(rec.patchify(x, (ph, pw)), np.float64)
  pred = np.asarray(pred, np.float64)
  removed = np.asarray(mask, bool)[..., None]  # (B, N, 1)
  to_display = lambda p: np.asarray(rec.unpatchify(p, (ph, pw), grid, c)) * std + mean  # noqa: E731

  if not norm_pix_loss:
    key, shown_target, shown_pred = "pixels", target, pred
  elif mode == "normalized":
    key = "normalized"
    t_mean, t_std = _np_patch_stats(target)
    shown_target, shown_pred = (target - t_mean) / t_std, pred
    to_display = lambda p: 0.5 + np.asarray(rec.unpatchify(p, (ph, pw), grid, c)) / 4  # noqa: E731
  elif mode == "target":
    key = "target"
    t_mean, t_std = _np_patch_stats(target)
    shown_target, shown_pred = target, pred * t_std + t_mean
  else:
    key = "visible"
    t_mean, t_std = _np_patch_stats(target)
    vis = (~removed).astype(np.float64)
    v_mean = (t_mean * vis).sum(1, keepdims=True) / vis.sum(1, keepdims=True)  # per image, visible patches only
    v_std = (t_std * vis).sum(1, keepdims=True) / vis.sum(1, keepdims=True)
    shown_target, shown_pred = target, pred * v_std + v_mean

  original = to_display(shown_target)
  masked = to_display(np.where(removed, np.nan, shown_target))
  recon = to_display(np.where(removed, shown_pred, shown_target))
  masked = np.where(np.isnan(masked), 0.5, masked)
  clip = lambda a: np.clip(a, 0.0, 1.0)  # noqa: E731
  return clip(original), clip(masked), clip(recon), key


def grid_image(rows, *, cell: int = 96, gap: int = 2, caption: str = "") -> np.ndarray:
  """Rows of (B, H, W, C) images in [0, 1] → one uint8 RGB picture (nearest upscaling), caption on top."""
  b, h, w, c = rows[0].shape
  scale = max(1, cell // max(h, w))
  ch, cw = h * scale, w * scale
  lines = textwrap.wrap(caption, width=max(40, (b * (cw + gap)) // 6)) if caption else []
  top = 12 * len(lines) + (4 if lines else 0)
  out = np.full((top + len(rows) * (ch + gap) + gap, b * (cw + gap) + gap, 3), 255, np.uint8)
  for r, row in enumerate(rows):
    for i in range(b):
      img = np.repeat(np.repeat(row[i], scale, 0), scale, 1)
      img = np.repeat(img, 3, -1) if c == 1 else img[..., :3]
      y, x = top + gap + r * (ch + gap), gap + i * (cw + gap)
      out[y:y + ch, x:x + cw] = np.round(img * 255).astype(np.uint8)
  if lines:
    pil = Image.fromarray(out)
    draw = ImageDraw.Draw(pil)
    for j, line in enumerate(lines):
      draw.text((gap, 2 + 12 * j), line, fill=(0, 0, 0))
    out = np.asarray(pil)
  return out


def render(images_uint8, pred, mask, *, patch_size, mean, std, norm_pix_loss: bool, mode: str = "visible",
           title: str = "") -> tuple[np.ndarray, str]:
  """The three-row picture (uint8 HWC) and its caption."""
  original, masked, recon, key = panels(images_uint8, pred, mask, patch_size=patch_size, mean=mean, std=std,
                                        norm_pix_loss=norm_pix_loss, mode=mode)
  caption = f"{title}rows: original / masked input / reconstruction. {CAPTIONS[key]}"
  return grid_image([original, masked, recon], caption=caption), caption


def save_png(image: np.ndarray, path: str) -> str:
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  Image.fromarray(image).save(path)
  return path
