"""Single-image super-resolution (`config.task = "super_resolution"`): SwinIR, DAT, ATD (models/swinir.py,
dat.py, atd.py) on bicubic-degraded pairs.

Data (data/super_resolution.py): any image source gives the HR images ("photo_crops": the bundled scikit-image
photographs, fixed crops, a fixed train/test split; "sr_folder": DIV2K / Set5 / Set14-style folders, with
their paired LR images where the folder has them). An HR patch of `hr_crop` pixels (random in training,
central in evaluation) and the LR patch under it (hr_crop / scale) are cut; without a paired LR image the
LR patch is MATLAB's bicubic ×1/scale of the HR image (computed on the patch with a margin, equal to shrinking
the whole image and cropping). Training adds the random flips and transposition of the SR papers.

Model input: the LR patch in [0, 1], less `data.mean`, over `data.std` (the DIV2K mean and 1, the models'
registered preprocessing, as their code's `img_range = 1`); the output is mapped back the same way.
Loss: L1 against the HR patch in [0, 1] (objectives/super_resolution.py). Evaluation: the L1 loss, PSNR and
SSIM on the Y channel with `crop_border` (default: the scale) pixels cut from each side, averaged over the
images, and the same two metrics of MATLAB-bicubic upscaling of the same LR patches (`bicubic_psnr`,
`bicubic_ssim`), the table's baseline.

`bicubic_residual` (False; the papers' models have no such skip): the model's output is added to the
MATLAB-bicubic upscaling of its input (`imresize`'s matrices, unrounded), so the model learns the residual over
bicubic, VDSR's global residual learning; the reconstruction's last convolution then starts at zero, so that
the untrained model is bicubic upscaling rather than bicubic plus noise (both departures for the short CPU
demos, which the configs declare).

Config (`config.super_resolution`): scale (2), hr_crop (48), augment (True), crop_border (-1: the scale),
bicubic_residual (False).
The model is built for the LR patch: the task passes `img_size = hr_crop / scale` and `upscale = scale`.
"""

import jax.numpy as jnp
import ml_collections
import numpy as np
from flax import nnx

from papers_jax import models
from papers_jax.core import precision
from papers_jax.core.config import image_preprocessing
from papers_jax.core.state import merge_model
from papers_jax.data import sources
from papers_jax.data import super_resolution as data
from papers_jax.errors import ConfigError, DataError
from papers_jax.objectives import super_resolution as objective

RANGES = (
    ("scale", "[2, 8]"),
    ("hr_crop", "[8, 4096]"),
    ("crop_border", "-1 | [0, 64]"),
)


def default_config(**overrides) -> ml_collections.ConfigDict:
  """`config.super_resolution`, the fields this task reads."""
  return ml_collections.ConfigDict(dict(scale=2, hr_crop=48, augment=True, crop_border=-1, bicubic_residual=False)
                                    | overrides)


class SuperResolutionTask:
  """Model + loss + evaluation for `config.task = "super_resolution"`."""

  def __init__(self, config):
    self.config = config
    sr = config.super_resolution
    self.scale, self.hr_crop = int(sr.scale), int(sr.hr_crop)
    if self.hr_crop % self.scale:
      raise ConfigError(f"super_resolution.hr_crop={self.hr_crop} is not a multiple of super_resolution.scale="
                        f"{self.scale}; the LR patch must have whole pixels")
    self.lr_size = self.hr_crop // self.scale
    self.crop_border = self.scale if int(sr.crop_border) < 0 else int(sr.crop_border)
    if 2 * self.crop_border + 11 > self.hr_crop:
      raise ConfigError(f"super_resolution.hr_crop={self.hr_crop} leaves no 11×11 SSIM window after cutting "
                        f"crop_border={self.crop_border} pixels per side; raise hr_crop")
    self.augment = bool(sr.augment)
    self.mean, self.std, _ = image_preprocessing(config)
    self.bicubic_residual = bool(sr.get("bicubic_residual", False))
    # MATLAB-bicubic ×scale of the LR patch as one matrix per axis (float32; the same for rows and columns).
    self.upscale_matrix = data.resize_matrix(self.lr_size, self.hr_crop, float(self.scale)).astype(np.float32)

  def source(self, split: str):
    d = self.config.data
    if d.name == "sr_folder":
      if not d.get("data_dir"):
        raise DataError('data.name="sr_folder" needs data.data_dir: the root of <split>/HR/*.png '
                        "(and optionally <split>/LR_bicubic/X<scale>/)")
      return data.SRFolderSource(d.data_dir, split, self.scale)
    return sources.get_source(d, split)

  def build_model(self, rngs: nnx.Rngs) -> nnx.Module:
    name, kwargs = precision.model_kwargs(self.config)
    model = models.create(name, rngs=rngs, **kwargs | {"img_size": self.lr_size, "upscale": self.scale})
    if self.bicubic_residual:  # the untrained model adds nothing to bicubic (module docstring)
      up = model.upsample
      last = up.upsample if up.kind == "pixelshuffledirect" else up.conv_last
      last.kernel[...] = jnp.zeros_like(last.kernel[...])
      last.bias[...] = jnp.zeros_like(last.bias[...])
    return model

  def preprocess(self, train: bool):
    scale, lr_size = self.scale, self.lr_size

    def fn(example, rng):
      hr = np.asarray(example["image"])
      if hr.ndim == 2:
        hr = hr[..., None]
      if "lr" in example:  # a folder's paired LR image
        lr, hr = np.asarray(example["lr"]), data.modcrop(hr, scale)
        lr, hr = (data.random_pair_crop(lr, hr, lr_size, scale, rng) if train
                  else data.center_pair_crop(lr, hr, lr_size, scale))
      else:
        lr, hr = data.degrade_patch(hr, scale, lr_size, rng if train else None)
      out = {}
      if train and self.augment:
        lr, hr = data.flip_rotate(lr, hr, rng)
      if not train:  # the baseline of the table: MATLAB-bicubic upscaling of the same LR patch
        out["bicubic"] = data.imresize(lr, scale)
      return out | {"lr": np.ascontiguousarray(lr), "hr": np.ascontiguousarray(hr)}

    return fn

  def _super_resolve(self, model, lr, *, train: bool, rng=None):
    mean, std = jnp.asarray(self.mean, jnp.float32), jnp.asarray(self.std, jnp.float32)
    x = ((lr.astype(jnp.float32) / 255.0 - mean) / std).astype(precision.compute_dtype(self.config))
    y = model(x, train=train, rngs=nnx.Rngs(dropout=rng) if train else None).astype(jnp.float32)
    if self.bicubic_residual:  # bicubic is linear with weights summing to one: it commutes with the normalisation
      m = jnp.asarray(self.upscale_matrix)
      y = y + jnp.einsum("ah,bw,nhwc->nabc", m, m, x.astype(jnp.float32))
    return y * std + mean

  def make_loss_fn(self, graphdef):
    def loss_fn(params, model_state, batch, rng):
      model = merge_model(graphdef, params, model_state)
      pred = self._super_resolve(model, batch["lr"], train=True, rng=rng)
      loss = objective.l1_loss(pred, batch["hr"].astype(jnp.float32) / 255.0)
      new_model_state = nnx.to_pure_dict(nnx.state(model, nnx.Not(nnx.Param)))
      return loss, ({}, new_model_state)
    return loss_fn

  def make_eval_fn(self, graphdef):
    def eval_fn(params, model_state, batch):
      model = merge_model(graphdef, params, model_state)
      pred = self._super_resolve(model, batch["lr"], train=False)
      mask = batch["mask"].astype(jnp.float32)
      hr = batch["hr"]
      l1 = jnp.abs(pred - hr.astype(jnp.float32) / 255.0).mean(axis=(1, 2, 3))
      ours = objective.y_metrics(pred, hr, crop_border=self.crop_border)
      bicubic = objective.y_metrics(batch["bicubic"].astype(jnp.float32) / 255.0, hr, crop_border=self.crop_border)
      sums = {"loss": (l1 * mask).sum(), "count": mask.sum()}
      for key in ("psnr", "ssim"):
        sums[key] = (ours[key] * mask).sum()
        sums[f"bicubic_{key}"] = (bicubic[key] * mask).sum()
      return sums
    return eval_fn
