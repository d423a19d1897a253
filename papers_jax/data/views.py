"""On-device augmentations for self-supervised views, in JAX, with per-example randomness.

Images are float32 in [0, 1], NHWC. Each function takes a batch and one PRNG key, splits the key
per example and maps over the batch, so the host only ships uint8 images and the accelerator makes
the views. Parameters follow torchvision's definitions (RandomResizedCrop, ColorJitter with its
four ops in random order, RandomGrayscale, GaussianBlur, RandomSolarize), which the papers' recipes
are written in. `make_views(images, key, recipe)` builds every crop of a method's recipe.

dm_pix 0.4.5 against the hand-written ops (tests/test_views.py pins both to the same references), on
quantised photos in float32, and timed jitted on 32 × 224² × 3 on a shared 2-core CPU:
- From dm_pix, as the results are equal: `random_flip_left_right` (the same bernoulli draw per key)
  and `solarize`, bit for bit, at the same speed.
- Ours kept, equal results but slower there: `adjust_hue` (max |Δ| 7.5e-7; colour jitter 1.45 s
  against 1.25 s) and `gaussian_blur` with padding="VALID" on our reflect-padded image (max |Δ| 4.2e-7
  at 23 taps; 2.23 s against 0.34 s: one σ per call, so per-example σ becomes a grouped convolution).
  Not yet timed on an accelerator.
- Ours kept, other definitions: dm_pix follows TensorFlow, the papers torchvision. Brightness adds a
  delta instead of scaling (max |Δ| 0.40 at factor 1.4), contrast subtracts per-channel means instead of
  the grey mean (6.0e-3), saturation scales HSV saturation instead of blending with grey (0.34), the
  luma weights are 0.2989/0.5870/0.1140 instead of 0.299/0.587/0.114 (1.0e-4), and the blur's default
  "SAME" padding is zeros, not reflection (0.47 at the borders). dm_pix has no random-resized crop
  and no L*a*b* conversion; the host-side ops (preprocess.py, randaugment.py) are PIL on uint8.
"""

import dataclasses
import math

import dm_pix as pix
import jax
import jax.numpy as jnp

GRAY = jnp.asarray([0.299, 0.587, 0.114], jnp.float32)  # ITU-R 601-2 luma, as torchvision


def _per_example(fn, images, key, *args):
  keys = jax.random.split(key, images.shape[0])
  return jax.vmap(fn, in_axes=(0, 0) + (None,) * len(args))(images, keys, *args)


# ----------------------------------------------------------------------------- geometry
def _crop_box(key, height: int, width: int, scale, ratio, attempts: int = 10):
  """torchvision's RandomResizedCrop box: 10 draws of (area, log-aspect); the first that fits,
  else the whole image clipped to the ratio range, centred. Returns (top, left, h, w) floats."""
  k_area, k_ratio, k_top, k_left = jax.random.split(key, 4)
  area = height * width * jax.random.uniform(k_area, (attempts,), minval=scale[0], maxval=scale[1])
  log_ratio = jax.random.uniform(k_ratio, (attempts,), minval=math.log(ratio[0]), maxval=math.log(ratio[1]))
  aspect = jnp.exp(log_ratio)
  w = jnp.round(jnp.sqrt(area * aspect))
  h = jnp.round(jnp.sqrt(area / aspect))
  fits = (w > 0) & (h > 0) & (w <= width) & (h <= height)
  first = jnp.argmax(fits)
  in_ratio = width / height
  fallback_w = jnp.where(in_ratio < ratio[0], width, jnp.where(in_ratio > ratio[1], jnp.round(height * ratio[1]), width))
  fallback_h = jnp.where(in_ratio < ratio[0], jnp.round(width / ratio[0]), height)
  ok = fits.any()
  h = jnp.where(ok, h[first], fallback_h)
  w = jnp.where(ok, w[first], fallback_w)
  top = jnp.where(ok, jnp.floor(jax.random.uniform(k_top) * (height - h + 1)), jnp.round((height - h) / 2))
  left = jnp.where(ok, jnp.floor(jax.random.uniform(k_left) * (width - w + 1)), jnp.round((width - w) / 2))
  return top, left, h, w


def _resize_box(image, top, left, h, w, size: int):
  """Bilinear resize of the box [top, top+h) × [left, left+w) to size × size (antialiased)."""
  scale = jnp.stack([size / h, size / w])
  translation = -jnp.stack([top, left]) * scale
  return jax.image.scale_and_translate(image, (size, size, image.shape[-1]), (0, 1), scale, translation,
                                       method="linear", antialias=True)


def random_resized_crop(images, key, size: int, scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3)):
  def one(image, k):
    top, left, h, w = _crop_box(k, image.shape[0], image.shape[1], scale, ratio)
    return _resize_box(image, top, left, h, w, size)
  return _per_example(one, images, key)


def random_flip(images, key, p: float = 0.5):
  return _per_example(lambda image, k: pix.random_flip_left_right(k, image, probability=p), images, key)


# ----------------------------------------------------------------------------- colour
def grayscale(image):
  if image.shape[-1] == 1:  # already one channel: grayscale, saturation and hue leave it unchanged
    return image
  return jnp.broadcast_to(jnp.sum(image * GRAY, axis=-1, keepdims=True), image.shape)


def _blend(a, b, factor):
  return jnp.clip(factor * a + (1 - factor) * b, 0.0, 1.0)


def _rgb_to_hsv(rgb):
  r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
  maxc, minc = rgb.max(-1), rgb.min(-1)
  v, delta = maxc, maxc - minc
  s = jnp.where(maxc > 0, delta / jnp.where(maxc > 0, maxc, 1.0), 0.0)
  safe = jnp.where(delta > 0, delta, 1.0)
  rc, gc, bc = (maxc - r) / safe, (maxc - g) / safe, (maxc - b) / safe
  h = jnp.where(maxc == r, bc - gc, jnp.where(maxc == g, 2.0 + rc - bc, 4.0 + gc - rc))
  h = jnp.where(delta > 0, (h / 6.0) % 1.0, 0.0)
  return jnp.stack([h, s, v], -1)


def _hsv_to_rgb(hsv):
  h, s, v = hsv[..., 0], hsv[..., 1], hsv[..., 2]
  i = jnp.floor(h * 6.0)
  f = h * 6.0 - i
  p, q, t = v * (1 - s), v * (1 - s * f), v * (1 - s * (1 - f))
  i = i.astype(jnp.int32) % 6
  choices = [jnp.stack(c, -1) for c in ((v, t, p), (q, v, p), (p, v, t), (p, q, v), (t, p, v), (v, p, q))]
  return jnp.select([(i == n)[..., None] for n in range(6)], choices)


# sRGB (D65) → CIE XYZ → CIE L*a*b*, with the constants of scikit-image's `rgb2lab`, which CMC's
# reference pipeline calls on every crop.
XYZ_FROM_RGB = jnp.asarray([[0.412453, 0.357580, 0.180423],
                            [0.212671, 0.715160, 0.072169],
                            [0.019334, 0.119193, 0.950227]], jnp.float32)
D65_WHITE = jnp.asarray([0.95047, 1.0, 1.08883], jnp.float32)
# CMC's normalisation of (L, a, b): the centre and half-range of each channel over the sRGB gamut.
LAB_MEAN = ((0 + 100) / 2, (-86.183 + 98.233) / 2, (-107.857 + 94.478) / 2)
LAB_STD = ((100 - 0) / 2, (86.183 + 98.233) / 2, (107.857 + 94.478) / 2)


def rgb_to_lab(rgb):
  """sRGB in [0, 1] (..., 3) → CIE L*a*b* (..., 3): L in [0, 100], a and b roughly in [−110, 100]."""
  rgb = rgb.astype(jnp.float32)
  linear = jnp.where(rgb > 0.04045, ((rgb + 0.055) / 1.055) ** 2.4, rgb / 12.92)  # undo the sRGB gamma
  xyz = (linear @ XYZ_FROM_RGB.T) / D65_WHITE
  f = jnp.where(xyz > 0.008856, jnp.cbrt(xyz), 7.787 * xyz + 16.0 / 116.0)
  fx, fy, fz = f[..., 0], f[..., 1], f[..., 2]
  return jnp.stack([116.0 * fy - 16.0, 500.0 * (fx - fy), 200.0 * (fy - fz)], axis=-1)


def adjust_brightness(image, factor):
  return _blend(image, jnp.zeros_like(image), factor)


def adjust_contrast(image, factor):
  return _blend(image, jnp.mean(grayscale(image)), factor)


def adjust_saturation(image, factor):
  return _blend(image, grayscale(image), factor)


def adjust_hue(image, shift):
  if image.shape[-1] == 1:
    return image
  hsv = _rgb_to_hsv(image)
  return _hsv_to_rgb(hsv.at[..., 0].set((hsv[..., 0] + shift) % 1.0))


def color_jitter(images, key, *, brightness=0.4, contrast=0.4, saturation=0.4, hue=0.1, p: float = 0.8):
  """torchvision's ColorJitter (factors U[1−s, 1+s], hue shift U[−h, h], the four ops in a random
  order), applied to each example with probability p."""
  def one(image, k):
    k_apply, k_order, k_b, k_c, k_s, k_h = jax.random.split(k, 6)
    factors = [jax.random.uniform(k_b, minval=1 - brightness, maxval=1 + brightness),
               jax.random.uniform(k_c, minval=1 - contrast, maxval=1 + contrast),
               jax.random.uniform(k_s, minval=1 - saturation, maxval=1 + saturation),
               jax.random.uniform(k_h, minval=-hue, maxval=hue)]
    ops = [lambda x: adjust_brightness(x, factors[0]), lambda x: adjust_contrast(x, factors[1]),
           lambda x: adjust_saturation(x, factors[2]), lambda x: adjust_hue(x, factors[3])]
    order = jax.random.permutation(k_order, 4)
    # A loop, not four unrolled switches: the four ops are compiled once.
    jittered = jax.lax.fori_loop(0, 4, lambda i, x: jax.lax.switch(order[i], ops, x), image)
    return jnp.where(jax.random.bernoulli(k_apply, p), jittered, image)
  return _per_example(one, images, key)


def random_grayscale(images, key, p: float = 0.2):
  def one(image, k):
    return jnp.where(jax.random.bernoulli(k, p), grayscale(image), image)
  return _per_example(one, images, key)


def gaussian_blur(images, key, *, p: float = 0.5, sigma=(0.1, 2.0), kernel_size: int | None = None):
  """Separable Gaussian blur with σ ~ U[σ₀, σ₁] per example; the kernel is about 10% of the image
  side (23 taps at 224, as SimCLR), reflect-padded."""
  size = kernel_size or (int(0.1 * images.shape[1]) // 2 * 2 + 1)
  radius = size // 2

  def one(image, k):
    k_apply, k_sigma = jax.random.split(k)
    s = jax.random.uniform(k_sigma, minval=sigma[0], maxval=sigma[1])
    taps = jnp.exp(-0.5 * (jnp.arange(-radius, radius + 1, dtype=jnp.float32) / s) ** 2)
    taps = taps / taps.sum()
    padded = jnp.pad(image, ((radius, radius), (radius, radius), (0, 0)), mode="reflect")
    rows = sum(taps[i] * padded[i:i + image.shape[0]] for i in range(size))
    blurred = sum(taps[i] * rows[:, i:i + image.shape[1]] for i in range(size))
    return jnp.where(jax.random.bernoulli(k_apply, p), blurred, image)
  return _per_example(one, images, key)


def random_solarize(images, key, p: float = 0.2, threshold: float = 0.5):
  def one(image, k):
    return jnp.where(jax.random.bernoulli(k, p), pix.solarize(image, threshold), image)
  return _per_example(one, images, key)


# ----------------------------------------------------------------------------- recipes
@dataclasses.dataclass(frozen=True)
class ViewRecipe:
  """One kind of crop and its photometric pipeline (probabilities 0 switch an op off)."""
  size: int
  scale: tuple = (0.08, 1.0)
  flip: float = 0.5
  jitter: tuple = (0.4, 0.4, 0.4, 0.1)  # brightness, contrast, saturation, hue
  jitter_p: float = 0.8
  grayscale_p: float = 0.2
  blur_p: float = 0.0
  solarize_p: float = 0.0


def make_view(images, key, recipe: ViewRecipe):
  keys = jax.random.split(key, 7)
  x = random_resized_crop(images, keys[0], recipe.size, recipe.scale)
  if recipe.flip:
    x = random_flip(x, keys[1], recipe.flip)
  if recipe.jitter_p:
    b, c, s, h = recipe.jitter
    x = color_jitter(x, keys[2], brightness=b, contrast=c, saturation=s, hue=h, p=recipe.jitter_p)
  if recipe.grayscale_p:
    x = random_grayscale(x, keys[3], recipe.grayscale_p)
  if recipe.blur_p:
    x = gaussian_blur(x, keys[4], p=recipe.blur_p)
  if recipe.solarize_p:
    x = random_solarize(x, keys[5], recipe.solarize_p)
  return x


def make_views(images, key, recipes) -> list:
  """One view per recipe (e.g. BYOL's two asymmetric views, or 2 global + N local crops).

  Runs of identical recipes are made by one vmapped pipeline, so they compile once.
  """
  keys = jax.random.split(key, len(recipes))
  out, i = [], 0
  while i < len(recipes):
    j = i
    while j < len(recipes) and recipes[j] == recipes[i]:
      j += 1
    if j - i == 1:
      out.append(make_view(images, keys[i], recipes[i]))
    else:
      stacked = jax.vmap(lambda k, r=recipes[i]: make_view(images, k, r))(keys[i:j])
      out.extend(stacked[n] for n in range(j - i))
    i = j
  return out


# The papers' pipelines at 224 (SimCLR: blur 0.5 both views; BYOL: asymmetric blur 1.0/0.1 and
# solarisation 0/0.2, saturation 0.2; MoCo v2 = SimCLR's; DINO/SwAV: multi-crop).
def simclr(size=224):
  return [ViewRecipe(size, blur_p=0.5, jitter=(0.8, 0.8, 0.8, 0.2))] * 2


def moco_v2(size=224):
  return [ViewRecipe(size, scale=(0.2, 1.0), blur_p=0.5)] * 2


def byol(size=224):
  return [ViewRecipe(size, jitter=(0.4, 0.4, 0.2, 0.1), blur_p=1.0),
          ViewRecipe(size, jitter=(0.4, 0.4, 0.2, 0.1), blur_p=0.1, solarize_p=0.2)]


def multi_crop(global_size=224, local_size=96, num_local=8, global_scale=(0.4, 1.0), local_scale=(0.05, 0.4)):
  """DINO's defaults (SwAV: global_scale (0.14, 1), local_scale (0.05, 0.14))."""
  return ([ViewRecipe(global_size, global_scale, jitter=(0.4, 0.4, 0.2, 0.1), blur_p=1.0),
           ViewRecipe(global_size, global_scale, jitter=(0.4, 0.4, 0.2, 0.1), blur_p=0.1, solarize_p=0.2)]
          + [ViewRecipe(local_size, local_scale, jitter=(0.4, 0.4, 0.2, 0.1), blur_p=0.5)] * num_local)


def swav_multi_crop(global_size=224, local_size=96, num_local=6, global_scale=(0.14, 1.0), local_scale=(0.05, 0.14)):
  """SwAV: 2 global + N local crops, each with SimCLR's colour distortion (strength 1) and blur 0.5."""
  return ([ViewRecipe(global_size, global_scale, jitter=(0.8, 0.8, 0.8, 0.2), blur_p=0.5)] * 2
          + [ViewRecipe(local_size, local_scale, jitter=(0.8, 0.8, 0.8, 0.2), blur_p=0.5)] * num_local)


def instdisc(size=224):
  """InstDisc (lemniscate): one view per image, crops of 20–100%, grayscale 0.2, jitter 0.4 always."""
  return [ViewRecipe(size, scale=(0.2, 1.0), jitter=(0.4, 0.4, 0.4, 0.4), jitter_p=1.0)]


def cmc(size=224):
  """CMC on ImageNet: one crop (8–100%) and a flip; its L and ab channels (`rgb_to_lab`) are the views."""
  return [ViewRecipe(size, scale=(0.08, 1.0), jitter_p=0.0, grayscale_p=0.0)]


def moco_v1(size=224):
  """MoCo v1: crops of 20–100%, grayscale 0.2, colour jitter (0.4, 0.4, 0.4, 0.4) always, no blur."""
  return [ViewRecipe(size, scale=(0.2, 1.0), jitter=(0.4, 0.4, 0.4, 0.4), jitter_p=1.0)] * 2


def pretext(size=224):
  """The pretext tasks' one view (RotNet, jigsaw, relative position, colourisation): a random-resized crop
  (8–100%) and a flip, no colour distortion (colourisation needs the colours; the others make their own
  inputs from the crop)."""
  return [ViewRecipe(size, scale=(0.08, 1.0), jitter_p=0.0, grayscale_p=0.0)]
