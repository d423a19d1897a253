"""The loss and the metrics of single-image super-resolution, as SR papers (SwinIR, DAT, ATD) and BasicSR
compute them.

`l1_loss`: the mean absolute error over every pixel and channel of images in [0, 1] (BasicSR's `L1Loss`,
reduction "mean", the loss DAT and ATD train with).

The metrics follow BasicSR's `calculate_psnr` / `calculate_ssim` with `test_y_channel=True`:
- the super-resolved image is first quantised as it is saved: clipped to [0, 1], × 255, rounded
  (`quantize`, BasicSR's `tensor2img`);
- `rgb_to_y`: the luma of ITU-R BT.601 in studio swing, Y = 16 + (65.481 R + 128.553 G + 24.966 B) / 255
  for R, G, B in [0, 255] (MATLAB's `rgb2ycbcr`), kept as a float in [16, 235];
- `crop_border` pixels (the scale, by convention) are cut from every side;
- `psnr` = 10 log10(255² / MSE) per image (the MSE floored at 1e-10, i.e. at most 148 dB, so that an exact
  copy gives a finite number; BasicSR returns inf there);
- `ssim`: Wang et al. (2004) per image with an 11 × 11 Gaussian window, σ = 1.5, over the window positions
  that lie wholly inside the image ("valid"), C1 = (0.01·255)², C2 = (0.03·255)², the mean of the SSIM map.
  This is skimage's `structural_similarity(gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
  data_range=255)` (tests/test_super_resolution.py checks both against numpy and skimage).
A grey image (one channel) is measured on that channel.
"""

import jax
import jax.numpy as jnp
import numpy as np

Y_WEIGHTS = (65.481, 128.553, 24.966)  # ITU-R BT.601 luma for R, G, B in [0, 1] → Y in [16, 235]
SSIM_WINDOW, SSIM_SIGMA = 11, 1.5
MSE_FLOOR = 1e-10


def l1_loss(pred, target):
  """Mean |pred − target| over every element (float32)."""
  return jnp.abs(pred.astype(jnp.float32) - target.astype(jnp.float32)).mean()


def quantize(images):
  """Model outputs in [0, 1] → float32 in {0, ..., 255}, as the image would be saved (uint8)."""
  return jnp.round(jnp.clip(images.astype(jnp.float32), 0.0, 1.0) * 255.0)


def rgb_to_y(images):
  """(..., H, W, 3) RGB in [0, 255] → (..., H, W) Y in [16, 235]; one channel is returned as it is."""
  images = images.astype(jnp.float32)
  if images.shape[-1] == 1:
    return images[..., 0]
  return images @ (jnp.asarray(Y_WEIGHTS, jnp.float32) / 255.0) + 16.0


def _crop(x, border: int):
  return x[..., border:x.shape[-2] - border, border:x.shape[-1] - border] if border else x


def psnr(pred, target, *, crop_border: int = 0):
  """Per-image PSNR (dB) of (B, H, W) images in [0, 255] after cutting `crop_border` pixels per side."""
  pred, target = _crop(pred.astype(jnp.float32), crop_border), _crop(target.astype(jnp.float32), crop_border)
  mse = jnp.square(pred - target).mean(axis=(-2, -1))
  return 10.0 * jnp.log10(255.0 ** 2 / jnp.maximum(mse, MSE_FLOOR))


def gaussian_window(size: int = SSIM_WINDOW, sigma: float = SSIM_SIGMA) -> np.ndarray:
  """The normalised 1-D Gaussian of `size` taps (cv2.getGaussianKernel's; the 2-D window is its outer product)."""
  x = np.arange(size, dtype=np.float64) - (size - 1) / 2
  g = np.exp(-x ** 2 / (2 * sigma ** 2))
  return g / g.sum()


def _filter_valid(x, g):
  """The 2-D Gaussian filter (separable) of (B, H, W) at the positions where the window fits ("valid")."""
  k = jnp.asarray(g, jnp.float32)
  n = len(g)
  rows = sum(k[i] * x[:, i:x.shape[1] - n + 1 + i, :] for i in range(n))
  return sum(k[i] * rows[:, :, i:rows.shape[2] - n + 1 + i] for i in range(n))


def ssim(pred, target, *, crop_border: int = 0):
  """Per-image SSIM of (B, H, W) images in [0, 255] (the module docstring), after cutting `crop_border`."""
  x, y = _crop(pred.astype(jnp.float32), crop_border), _crop(target.astype(jnp.float32), crop_border)
  g = gaussian_window()
  c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
  mu_x, mu_y = _filter_valid(x, g), _filter_valid(y, g)
  sxx = _filter_valid(x * x, g) - mu_x ** 2
  syy = _filter_valid(y * y, g) - mu_y ** 2
  sxy = _filter_valid(x * y, g) - mu_x * mu_y
  ssim_map = ((2 * mu_x * mu_y + c1) * (2 * sxy + c2)) / ((mu_x ** 2 + mu_y ** 2 + c1) * (sxx + syy + c2))
  return ssim_map.mean(axis=(-2, -1))


def y_metrics(pred, target, *, crop_border: int) -> dict:
  """{"psnr", "ssim"}: per-image arrays (B,) of super-resolved `pred` in [0, 1] against uint8 `target`,
  on the Y channel with `crop_border` cut (the module docstring)."""
  pred_y, target_y = rgb_to_y(quantize(pred)), rgb_to_y(target.astype(jnp.float32))
  return {"psnr": psnr(pred_y, target_y, crop_border=crop_border),
          "ssim": ssim(pred_y, target_y, crop_border=crop_border)}
